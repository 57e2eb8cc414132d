"""Regression tests of a model against a neurofuzz campaign, with the neurofuzz pytest plugin.

Run it as it is (it fuzzes the built-in digits model for a few seconds to have a corpus):

    pytest examples/test_model_regression.py

or point it at your own campaign (made by ``neurofuzz fuzz --out camp ...``):

    pytest examples/test_model_regression.py --neurofuzz-corpus camp

In your own suite, mark a test ``@pytest.mark.neurofuzz_corpus("path/to/camp")`` or set
``neurofuzz_corpus = path/to/camp`` in the pytest ini, and use the ``neurofuzz_corpus`` fixture
(the campaign opened read-only). ``assert_no_regressions`` fails with the regressed ids, their
root seed and mutation chain; ``mutants`` draws mutated seeds for Hypothesis property tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings

from neurofuzz.fuzzer.zoo import load_digits32, load_lenet5_digits
from neurofuzz.ground import Target
from neurofuzz.strategies import assert_no_regressions, mutants


@pytest.fixture(scope="module")
def neurofuzz_corpus_path(request, tmp_path_factory) -> Path:
    """The campaign given on the command line or in the ini; else a short campaign made here."""
    given_path = request.config.getoption("neurofuzz_corpus") or request.config.getini("neurofuzz_corpus")
    if given_path:
        return Path(given_path)
    from neurofuzz.fuzzer.cli import main

    out = tmp_path_factory.mktemp("neurofuzz") / "camp"
    assert main(["fuzz", "--out", str(out), "--mutants", "400", "--seed", "0", "--quiet"]) == 0
    return out


def perturbed(model: torch.nn.Module, scale: float, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with Gaussian noise of ``scale`` * |w| added to every weight."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: v + scale * v.abs() * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    new = load_lenet5_digits()
    new.load_state_dict(sd)
    return new.eval()


def test_the_fuzzed_model_keeps_its_corpus(neurofuzz_corpus):
    # the model that was fuzzed reproduces the stored predictions: nothing regresses
    report = assert_no_regressions(load_lenet5_digits(), neurofuzz_corpus, max_new=0, which="queue")
    assert report.counts["new_regression"] == 0 and report.n > 0


def test_a_damaged_model_is_caught_with_the_regressed_ids(neurofuzz_corpus):
    with pytest.raises(AssertionError, match=r"new regression\(s\).*\n(.|\n)*entry \d+: class \d -> \d; root \d+"):
        assert_no_regressions(perturbed(load_lenet5_digits(), 0.5), neurofuzz_corpus, max_new=0)


def test_accuracy_floor_on_all_stored_inputs(neurofuzz_corpus):
    assert_no_regressions(load_lenet5_digits(), neurofuzz_corpus, max_new=0, min_accuracy=0.5, which="all")


_X, _Y = load_digits32("test")
_MODEL = Target(load_lenet5_digits())
_SEEDS = _X[:40][_MODEL.predict(_X[:40]) == _Y[:40]]  # seeds the model gets right
_LABELS = _Y[:40][_MODEL.predict(_X[:40]) == _Y[:40]]


@settings(max_examples=25, derandomize=True, database=None, deadline=None)
@given(mutants(_SEEDS, labels=_LABELS, max_chain=2,
               mutators=[{"name": "rotate", "angle": (-4, 4)},
                         {"name": "contrast", "alpha": (0.9, 1.1), "beta": (-0.05, 0.05)}]))
def test_prediction_is_invariant_under_mild_rotation_and_contrast(m):
    # a failure reports the mildest mutation that still changes the prediction (Hypothesis shrinks it)
    assert int(_MODEL.predict(m.x[None])[0]) == m.label, m
