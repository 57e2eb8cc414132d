"""Documented examples must run, and the documented layers must hold (DESIGN.md "Layers")."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import neurofuzz.corpus
import neurofuzz.coverage
import neurofuzz.defenses
import neurofuzz.evaluators
import neurofuzz.fuzzer
import neurofuzz.ground
import neurofuzz.mutators

#: Library packages: none may import the demo model zoo (the zoo is for the CLI, tests, benchmarks).
LIBRARY = ("ground", "corpus", "coverage", "mutators", "defenses", "evaluators", "strategies", "security", "reliability",
           "reports", "privacy")


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


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement of ``path`` names (module level or inside functions;
    docstring examples are text, not imports)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _package_files(short: str) -> list[Path]:
    pkg = importlib.import_module(f"neurofuzz.{short}")
    return sorted(p for d in pkg.__path__ for p in Path(d).rglob("*.py"))


@pytest.mark.parametrize("short", LIBRARY)
def test_library_packages_never_import_the_model_zoo(short: str) -> None:
    files = _package_files(short)
    assert files, short
    bad = [f"{p.name}:{line}: {mod}" for p in files for line, mod in _imports(p)
           if mod == "neurofuzz.fuzzer.zoo" or mod.startswith("neurofuzz.fuzzer.zoo.")]
    assert not bad, f"neurofuzz.{short} imports the demo model zoo (take the model/data as arguments): {bad}"


def test_ground_imports_nothing_else_of_the_product() -> None:
    bad = [f"{p.name}:{line}: {mod}" for p in _package_files("ground") for line, mod in _imports(p)
           if mod.startswith("neurofuzz.") and not mod.startswith("neurofuzz.ground")]
    assert not bad, bad


def test_the_import_check_sees_function_level_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text('"""\n>>> from neurofuzz.fuzzer.zoo import LeNet5\n"""\n'
                   "def f():\n    from neurofuzz.fuzzer.zoo import LeNet5\n", encoding="utf-8")
    assert (5, "neurofuzz.fuzzer.zoo") in _imports(src) and all(line == 5 for line, _ in _imports(src))


def test_importing_the_library_registers_no_oracle() -> None:
    import subprocess
    import sys

    code = ("from neurofuzz.fuzzer.oracles import ORACLES; before = list(ORACLES); "
            "import neurofuzz.defenses, neurofuzz.evaluators, neurofuzz.coverage, neurofuzz.mutators, neurofuzz.corpus; "
            "assert list(ORACLES) == before, (before, list(ORACLES)); "
            "import sys; assert 'neurofuzz.fuzzer.zoo' not in sys.modules, 'a library import loaded the zoo'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
