"""The regression report of ``neurofuzz replay``: every category on a hand-built corpus and two
hand-built models, the groups, lineage, confidence deltas, JSON, JUnit XML, the gates' exit
codes, the recorded normalisation, and the one-line errors."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest
import torch

from neurofuzz.corpus import CampaignStore, MemoryStore
from neurofuzz.corpus.regression import regression_report
from neurofuzz.corpus.regression_out import Gate, junit_xml
from neurofuzz.fuzzer.cli import main

MODELS = textwrap.dedent('''
    import torch

    class Bright(torch.nn.Module):
        """Class 1 if the mean brightness exceeds the threshold, else class 0."""
        def __init__(self, t):
            super().__init__()
            self.t = torch.nn.Parameter(torch.tensor(float(t)), requires_grad=False)
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([self.t - m, m - self.t], 1) * 10

    def old():
        return Bright(0.5)

    def new():
        return Bright(0.3)
''')
ROTATE = {"mutator": "rotate", "params": {"angle": 2.0}}
CONTRAST = {"mutator": "contrast", "params": {"alpha": 1.2, "beta": 0.1}}


def _fill(store) -> None:
    """Ids 1..5: stable, new regression, fixed, still failing, new regression (under old -> new)."""
    img = lambda v: torch.full((1, 2, 2), v)  # noqa: E731
    a = store.add(img(0.1), kind="queue", label=0, pred=0)
    store.add(img(0.4), kind="queue", label=0, pred=0, parent=a.id, chain=[CONTRAST])
    store.add(img(0.45), kind="failure", oracle="misclassified", label=1, pred=0)
    store.add(img(0.9), kind="failure", oracle="misclassified", label=0, pred=1)
    store.add(img(0.35), kind="queue", label=0, pred=0, parent=2, chain=[CONTRAST, ROTATE])


@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    d = tmp_path_factory.mktemp("regr")
    (d / "models.py").write_text(MODELS)
    store = CampaignStore.create(d / "camp", setup={"bounds": [0.0, 1.0], "mean": None, "std": None}, fsync=False)
    _fill(store)
    store.close()
    norm = CampaignStore.create(d / "norm", setup={"bounds": [0.0, 1.0], "mean": [0.2], "std": None}, fsync=False)
    norm.add(torch.full((1, 2, 2), 0.6), kind="queue", label=1, pred=1)
    norm.close()
    return d


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _models(d, new="new", old=None) -> list:
    out = ["--model", f"{d / 'models.py'}:{new}"]
    return out + (["--baseline", f"{d / 'models.py'}:{old}"] if old else [])


def _bright(t):
    return lambda x: torch.stack([t - x.mean((1, 2, 3)), x.mean((1, 2, 3)) - t], 1) * 10


def test_every_category_groups_and_confidence():
    s = MemoryStore()
    _fill(s)
    r = regression_report(s, _bright(0.3), baseline=_bright(0.5))
    assert {c: r.ids(c) for c in ("fixed", "still_failing", "new_regression", "stable")} == {
        "fixed": [3], "still_failing": [4], "new_regression": [2, 5], "stable": [1]}
    assert (r.accuracy_before, r.accuracy) == (0.6, 0.4)
    assert r.groups("kind")["queue"] == {"n": 3, "fixed": 0, "still_failing": 0, "new_regression": 2, "stable": 1,
                                         "changed": 2}
    assert r.groups("oracle")["misclassified"]["fixed"] == 1
    assert set(r.groups("mutator")) == {"seed", "contrast", "rotate"} and r.groups("class")["1"]["n"] == 1
    # the confidence in the label fell most for the new regressions, and is listed largest first
    drops = r.largest_drops(3)
    assert [d.id for d in drops[:2]] == [2, 5] and drops[0].drop > drops[1].drop > 0
    assert r.results[4].lineage() == "root 1 (label 0) -> contrast(alpha=1.2, beta=0.1) -> rotate(angle=2)"
    # against the stored predictions (no baseline model) the categories are the same, without confidences
    r0 = regression_report(s, _bright(0.3))
    assert r0.ids("new_regression") == [2, 5] and r0.largest_drops() == [] and r0.baseline == "stored predictions"


def test_a_still_failing_input_that_changes_its_wrong_class_is_counted():
    s = MemoryStore()
    s.add(torch.zeros(1, 2, 2), kind="failure", oracle="misclassified", label=0, pred=1)
    r = regression_report(s, lambda x: torch.tensor([[0.0, 0.0, 1.0]]).expand(len(x), 3))
    assert r.ids("still_failing") == [1] and r.counts["changed"] == 1


def test_gates_on_the_report():
    s = MemoryStore()
    _fill(s)
    r = regression_report(s, _bright(0.3))
    assert Gate().holds(r) and not Gate(fail_on="new-regressions").holds(r)
    assert Gate(max_new=2).holds(r) and not Gate(max_new=1).holds(r)
    assert not Gate(fail_on="failures").holds(regression_report(s, _bright(0.5)))  # 2 wrong under the old model too
    assert Gate(min_accuracy=0.4).holds(r) and not Gate(min_accuracy=0.41).holds(r)
    xml = ET.fromstring(junit_xml(r))
    cases = xml.findall(".//testcase")
    assert len(cases) == 5 and [c.get("name") for c in cases if c.find("failure") is not None] == ["entry_2", "entry_5"]
    assert "contrast" in xml.find(".//testcase[@name='entry_5']/failure").text


def test_cli_baseline_gate_exit_codes_and_lineage(camp, capsys, tmp_path):
    rc, out, err = _run(capsys, "replay", camp / "camp", *_models(camp, "new", "old"))
    assert rc == 1, err
    assert "new regression 2" in out and "gate: FAILS" in out and "ids 2, 5" in out
    assert "5: 0 -> 1" in out and "root 1 (label 0) -> contrast(alpha=1.2, beta=0.1) -> rotate(angle=2)" in out
    assert "largest confidence drops" in out
    rc, out, err = _run(capsys, "replay", camp / "camp", *_models(camp, "old", "old"))
    assert rc == 0 and "gate: holds" in out, err
    # without a baseline no gate by default (the old behaviour), the gates on request
    assert _run(capsys, "replay", camp / "camp", *_models(camp))[0] == 0
    assert _run(capsys, "replay", camp / "camp", *_models(camp), "--fail-on", "new-regressions")[0] == 1
    assert _run(capsys, "replay", camp / "camp", *_models(camp, "new", "old"), "--max-new", "2")[0] == 0
    assert _run(capsys, "replay", camp / "camp", *_models(camp, "new", "old"), "--fail-on", "none")[0] == 0
    assert _run(capsys, "replay", camp / "camp", *_models(camp), "--min-accuracy", "0.5")[0] == 1
    assert _run(capsys, "replay", camp / "camp", *_models(camp), "--min-accuracy", "0.5", "--which", "failures")[0] == 0
    # JSON and JUnit for CI
    rc, out, _ = _run(capsys, "replay", camp / "camp", *_models(camp, "new", "old"), "--json", "--junit", tmp_path / "j.xml")
    doc = json.loads(out)
    assert rc == 1 and doc["new_regression_ids"] == [2, 5] and doc["fixed_ids"] == [3] and not doc["gate"]["holds"]
    assert doc["new_regression_lineage"]["2"].startswith("root 1") and doc["counts"]["stable"] == 1
    assert len(ET.parse(tmp_path / "j.xml").findall(".//failure")) == 2


def test_cli_recorded_normalisation_and_stated_override(camp, capsys):
    # the campaign recorded mean 0.2: 0.6 - 0.2 is below the old model's threshold
    rc, out, _ = _run(capsys, "replay", camp / "norm", *_models(camp, "old"), "--min-accuracy", "1")
    assert rc == 1 and "accuracy 1.0000 -> 0.0000" in out
    rc, out, _ = _run(capsys, "replay", camp / "norm", *_models(camp, "old"), "--min-accuracy", "1", "--mean", "0")
    assert rc == 0 and "note: --mean 0 overrides the campaign's recorded mean 0.2" in out


@pytest.mark.parametrize("extra, needle", [
    (["--max-new", "-1"], "--max-new"),
    (["--min-accuracy", "1.5"], "--min-accuracy"),
    (["--fail-on", "sometimes"], "sometimes"),
    (["--baseline", "nowhere.py:old"], "nowhere.py"),
    (["--top", "-2"], "--top"),
], ids=["max-new", "min-accuracy", "fail-on", "baseline-missing", "top"])
def test_cli_user_errors_are_one_line(camp, capsys, extra, needle):
    rc, out, err = _run(capsys, "replay", camp / "camp", *_models(camp), *extra)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("neurofuzz: error:") and needle in err


def test_cli_junit_inside_the_campaign_is_refused(camp, capsys):
    rc, _, err = _run(capsys, "replay", camp / "camp", *_models(camp), "--junit", camp / "camp" / "j.xml")
    assert rc == 2 and "inside the campaign" in err and not (camp / "camp" / "j.xml").exists()
