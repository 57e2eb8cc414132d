"""The neurofuzz pytest plugin (entry point ``pytest11``, installed with the package): regression
tests of a model against a fuzzing campaign's corpus, in the project's own test suite.

* fixture ``neurofuzz_corpus``: the campaign opened read-only (closed after the test), from
  ``neurofuzz_corpus_path``, which is, first found: the marker
  ``@pytest.mark.neurofuzz_corpus("path")`` (relative to the test file), the option
  ``--neurofuzz-corpus PATH``, the ini option ``neurofuzz_corpus = path`` (relative to the
  rootdir). Override the ``neurofuzz_corpus_path`` fixture to build or fetch a corpus yourself.
* :func:`assert_no_regressions` — replay the corpus through a model and fail with the regressed
  ids and their lineage (root seed, mutation chain).

Nothing heavy is imported when pytest starts: torch and the corpus are imported by the fixture
and the helper, when a test uses them.

Example test module::

    import pytest
    from neurofuzz.strategies.pytest_plugin import assert_no_regressions

    @pytest.mark.neurofuzz_corpus("campaigns/digits")
    def test_new_model_keeps_the_corpus(neurofuzz_corpus):
        assert_no_regressions(load_new_model(), neurofuzz_corpus, max_new=0, min_accuracy=0.9)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    parser.addini("neurofuzz_corpus", "campaign directory opened by the neurofuzz_corpus fixture", default="")
    parser.getgroup("neurofuzz").addoption("--neurofuzz-corpus", metavar="PATH", default=None,
                                           help="campaign directory opened by the neurofuzz_corpus fixture")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "neurofuzz_corpus(path): the campaign directory the neurofuzz_corpus "
                                       "fixture opens (relative to the test file)")


@pytest.fixture
def neurofuzz_corpus_path(request: Any) -> Path:
    """The campaign directory for this test (marker, then --neurofuzz-corpus, then the ini option)."""
    marker = request.node.get_closest_marker("neurofuzz_corpus")
    if marker is not None:
        if len(marker.args) != 1:
            pytest.fail("@pytest.mark.neurofuzz_corpus takes one argument, the campaign directory", pytrace=False)
        return Path(request.path).parent / Path(marker.args[0])
    opt = request.config.getoption("neurofuzz_corpus")
    if opt:
        return Path(opt)
    ini = request.config.getini("neurofuzz_corpus")
    if ini:
        return Path(request.config.rootpath) / ini
    pytest.fail("no neurofuzz corpus for this test: mark it @pytest.mark.neurofuzz_corpus('path/to/campaign'), "
                "run pytest --neurofuzz-corpus PATH, or set neurofuzz_corpus = PATH in the pytest ini", pytrace=False)


@pytest.fixture
def neurofuzz_corpus(neurofuzz_corpus_path: Path) -> Any:
    """The campaign at ``neurofuzz_corpus_path``, opened read-only (a fuzzer may be writing it)."""
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.ground.errors import UserError

    try:
        store = CampaignStore.open(neurofuzz_corpus_path, readonly=True)
    except UserError as e:
        pytest.fail(f"cannot open the neurofuzz corpus: {e}", pytrace=False)
    with store:
        yield store


def _as_target(model: Any, setup: dict[str, Any]) -> Any:
    """A bare ``nn.Module`` gets the campaign's recorded bounds and normalisation; a Target or any
    other callable is used as it is."""
    import torch

    from neurofuzz.ground.target import Target

    if isinstance(model, torch.nn.Module) and not isinstance(model, Target):
        bounds = tuple(setup.get("bounds") or (0.0, 1.0))
        return Target(model, bounds=bounds, mean=setup.get("mean"), std=setup.get("std"))
    return model


def assert_no_regressions(model: Any, corpus: Any, *, max_new: int = 0, min_accuracy: float | None = None,
                          which: str = "queue", baseline: Any = None, top: int = 20) -> Any:
    """Replay ``corpus`` through ``model`` and fail unless at most ``max_new`` inputs newly regress
    and (if given) the accuracy on them is at least ``min_accuracy``.

    Args:
        model, baseline: an ``nn.Module`` (given the campaign's recorded bounds and normalisation),
            a :class:`~neurofuzz.ground.Target` or any callable ``x -> logits``; ``baseline=None``
            compares with the predictions stored in the campaign.
        corpus: a store (e.g. the ``neurofuzz_corpus`` fixture) or a campaign directory.
        which: ``"queue"``, ``"failures"`` or ``"all"``.
        top: how many regressed ids the failure message lists with their lineage.

    Returns the :class:`~neurofuzz.corpus.regression.RegressionReport` when the gate holds.
    """
    __tracebackhide__ = True
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.corpus.regression import regression_report
    from neurofuzz.corpus.regression_out import Gate

    gate = Gate(max_new=max_new, min_accuracy=min_accuracy)
    if isinstance(corpus, (str, Path)):
        with CampaignStore.open(corpus, readonly=True) as store:
            return assert_no_regressions(model, store, max_new=max_new, min_accuracy=min_accuracy, which=which,
                                         baseline=baseline, top=top)
    setup = getattr(corpus, "setup", {}) or {}
    report = regression_report(corpus, _as_target(model, setup), which=which,
                               baseline=None if baseline is None else _as_target(baseline, setup))
    problems = gate.problems(report)
    if problems:
        new = [r for r in report.results if r.category == "new_regression"]
        lines = [f"neurofuzz regression gate failed on {report.n} {which} input(s) against {report.baseline}:",
                 *(f"  {p}" for p in problems),
                 *(f"  entry {r.id}: class {r.before} -> {r.after}; {r.lineage()}" for r in new[:top])]
        if len(new) > top:
            lines.append(f"  ... {len(new) - top} more")
        raise AssertionError("\n".join(lines))
    return report
