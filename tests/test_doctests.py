"""Run the examples in the public modules' docstrings: documented examples must run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import neurofuzz.corpus
import neurofuzz.coverage
import neurofuzz.defenses
import neurofuzz.evaluators
import neurofuzz.fuzzer
import neurofuzz.mutators


def _modules() -> list[str]:
    names = []
    for pkg in (neurofuzz.coverage, neurofuzz.mutators, neurofuzz.fuzzer, neurofuzz.corpus, neurofuzz.evaluators,
                neurofuzz.defenses):
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            names.append(info.name)
    return sorted(set(names) - {"neurofuzz.fuzzer.__main__"})


@pytest.mark.allow_global_rng  # examples may use torch.rand for brevity; library code may not
@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
