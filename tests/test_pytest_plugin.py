"""The neurofuzz pytest plugin, through ``pytester``: the ``neurofuzz_corpus`` fixture found by
marker, command-line option and ini option; ``assert_no_regressions`` passing for the fuzzed
model and failing with the regressed ids and their lineage for a broken one; a clear failure
without a corpus; and no torch import when pytest loads the plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from neurofuzz.corpus import CampaignStore

pytest_plugins = ["pytester"]

MODELS = textwrap.dedent('''
    import torch

    class Bright(torch.nn.Module):
        def __init__(self, t):
            super().__init__()
            self.register_buffer("t", torch.tensor(float(t)))
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([self.t - m, m - self.t], 1) * 10
''')

TESTS = textwrap.dedent('''
    import pytest
    from brightmodels import Bright
    from neurofuzz.strategies import assert_no_regressions

    {mark}
    def test_same_model(neurofuzz_corpus):
        report = assert_no_regressions(Bright(0.5), neurofuzz_corpus)
        assert report.n == 3

    {mark}
    def test_broken_model(neurofuzz_corpus):
        assert_no_regressions(Bright(0.3), neurofuzz_corpus, max_new=0)
''')


@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    path = tmp_path_factory.mktemp("plug") / "camp"
    store = CampaignStore.create(path, setup={"bounds": [0.0, 1.0], "mean": None, "std": None}, fsync=False)
    a = store.add(torch.full((1, 2, 2), 0.1), kind="queue", label=0, pred=0)
    b = store.add(torch.full((1, 2, 2), 0.4), kind="queue", label=0, pred=0, parent=a.id,
                  chain=[{"mutator": "contrast", "params": {"alpha": 1.5, "beta": 0.25}}])
    store.add(torch.full((1, 2, 2), 0.9), kind="queue", label=1, pred=1)
    store.close()
    assert b.id == 2
    return path


def _write(pytester, mark: str) -> None:
    pytester.makepyfile(brightmodels=MODELS)
    pytester.makepyfile(test_model=TESTS.format(mark=mark))


def test_marker_fixture_and_the_failure_message(pytester, camp):
    _write(pytester, f"@pytest.mark.neurofuzz_corpus({str(camp)!r})")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*1 new regression(s) (the gate allows 0): ids 2*",
                                 "*entry 2: class 0 -> 1; root 1 (label 0) -> contrast(alpha=1.5, beta=0.25)*"])


def test_ini_option_and_command_line_option(pytester, camp):
    _write(pytester, "")
    pytester.makeini(f"[pytest]\nneurofuzz_corpus = {camp}\n")
    pytester.runpytest("-p", "no:cacheprovider", "-k", "same").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\n")
    pytester.runpytest("-p", "no:cacheprovider", "-k", "same", f"--neurofuzz-corpus={camp}").assert_outcomes(passed=1)


def test_no_corpus_or_a_bad_one_fails_clearly(pytester, camp):
    _write(pytester, "")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "same")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no neurofuzz corpus for this test*"])
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "same", f"--neurofuzz-corpus={camp.parent / 'nowhere'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot open the neurofuzz corpus*nowhere*"])


def test_the_plugin_is_registered_and_imports_no_torch():
    code = ("import sys; from importlib.metadata import entry_points; "
            "ep = [e for e in entry_points(group='pytest11') if e.name == 'neurofuzz'][0]; ep.load(); "
            "print(ep.value, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["neurofuzz.strategies.pytest_plugin", "False"]


def test_the_example_regression_file_passes_as_shipped():
    """examples/test_model_regression.py is documented as runnable: it is run here, as a user would."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(root / "examples" / "test_model_regression.py")],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0 and " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]
