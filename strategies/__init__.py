"""neurofuzz.strategies: writing tests of a model — Hypothesis strategies and the pytest plugin.

* :func:`mutants` — a seed and a chain of natural mutations applied to it, drawn so that
  Hypothesis shrinks toward the unmutated seed and the mildest parameters;
  :class:`Mutant` — what it yields (the mutated image, its label, the seed index, the chain).
* :func:`assert_no_regressions` — replay a campaign's corpus through a model, fail with the
  regressed ids and their lineage (:mod:`neurofuzz.strategies.pytest_plugin`, also the pytest
  plugin with the ``neurofuzz_corpus`` fixture).

Names are imported on first use, so that pytest loading the plugin imports neither torch nor
Hypothesis.

Example::

    >>> import torch
    >>> from hypothesis import given, settings
    >>> from neurofuzz.strategies import mutants
    >>> seeds = torch.full((3, 1, 8, 8), 0.5)
    >>> @settings(max_examples=5, derandomize=True, database=None)
    ... @given(mutants(seeds, labels=[0, 1, 2], mutators=["rotate", "contrast"]))
    ... def test_in_bounds(m):
    ...     assert m.x.shape == (1, 8, 8) and 0.0 <= float(m.x.min()) <= float(m.x.max()) <= 1.0
    >>> test_in_bounds()
"""

from typing import Any

__all__ = ["MILD", "Mutant", "assert_no_regressions", "mutants"]
_HOME = {"MILD": "mutant_strategy", "Mutant": "mutant_strategy", "mutants": "mutant_strategy",
         "assert_no_regressions": "pytest_plugin"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"neurofuzz.strategies.{_HOME[name]}"), name)
    raise AttributeError(f"module 'neurofuzz.strategies' has no attribute {name!r}")
