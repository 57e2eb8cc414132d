"""``neurofuzz.strategies.mutants``: property tests catch a deliberately fragile model, and the
shrunk counterexample is milder than the first failing one (shorter chain, smaller strengths)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, find, given, settings

from neurofuzz.ground.errors import UserError
from neurofuzz.strategies import Mutant, mutants

SEEDS = torch.full((4, 1, 8, 8), 0.4)
LABELS = [0, 0, 0, 0]


def fragile(x: torch.Tensor) -> int:
    """A "model" that calls an image class 1 once its mean brightness passes 0.45."""
    return int(float(x.mean()) > 0.45)


def test_a_fragile_model_is_caught_by_a_property_test():
    @settings(max_examples=30, phases=[Phase.generate])  # caught; the shrinking is the next test's subject
    @given(mutants(SEEDS, labels=LABELS, mutators=["translate", "contrast"]))
    def prediction_is_invariant(m):
        assert fragile(m.x) == m.label

    with pytest.raises(AssertionError):
        prediction_is_invariant()


def test_the_shrunk_counterexample_is_milder_than_the_first_failure():
    first: list[Mutant] = []

    def breaks(m: Mutant) -> bool:
        bad = fragile(m.x) != m.label
        if bad and not first:
            first.append(m)
        return bad

    strat = mutants(SEEDS, labels=LABELS, mutators=["translate", "contrast"], max_chain=2)
    shrunk = find(strat, breaks, settings=settings(max_examples=300))
    assert first and shrunk.strength < first[0].strength
    assert len(shrunk.chain) <= len(first[0].chain) and shrunk.seed_index == 0
    # the mildest breaking mutation: one contrast step, only just over the threshold
    assert [s["mutator"] for s in shrunk.chain] == ["contrast"] and 0.45 < float(shrunk.x.mean()) < 0.452
    assert "contrast(" in repr(shrunk) and "seed_index=0" in repr(shrunk)


@settings(max_examples=30)
@given(mutants(torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)), labels=[2, 0, 1],
               mutators=["translate", "gaussian_noise", {"name": "rotate", "angle": (-5, 5)}], min_chain=1, max_chain=2))
def test_mutants_keep_shape_bounds_labels_and_replay(m):
    assert m.x.shape == (3, 8, 8) and m.x.dtype == torch.float32 and 0.0 <= float(m.x.min()) <= float(m.x.max()) <= 1.0
    assert m.label == [2, 0, 1][m.seed_index] and 1 <= len(m.chain) <= 2
    for step in m.chain:
        if step["mutator"] == "rotate":
            assert -5 <= step["params"]["angle"] <= 5
        assert all(-1.0 <= t <= 1.0 for t in step["strength"].values())


@pytest.mark.parametrize("kwargs, needle", [
    ({"mutators": ["fgsm"]}, "attack"),
    ({"mutators": ["nope"]}, "unknown mutator"),
    ({"labels": [0, 1]}, "labels"),
    ({"min_chain": 3, "max_chain": 1}, "min_chain"),
    ({"mutators": [{"name": "rotate", "angle": (-500, 5)}]}, "out of range"),
], ids=["attack", "unknown", "labels", "chain", "range"])
def test_bad_arguments_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        mutants(SEEDS, **kwargs)


@pytest.mark.parametrize("name", ["neurofuzz.strategies", "neurofuzz.strategies.mutant_strategy",
                                  "neurofuzz.strategies.pytest_plugin"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
