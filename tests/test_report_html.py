"""`neurofuzz report` (issue 12, item 1): one self-contained, well-formed HTML file with every
section, for a campaign with failures, one without, and one that is running; --png; the
one-line errors; a real headless browser renders it (slow)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from neurofuzz.corpus import CampaignStore
from neurofuzz.fuzzer.campaign import Campaign
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.reports.html import SECTIONS


def make_campaign(path: Path, target, x, y, *, failures: bool) -> Path:
    if failures:  # translations break digits quickly
        cfg = FuzzConfig(seed=3, mutators=[{"name": "translate"}, {"name": "contrast"}], budget=Budget(iterations=4),
                         seeds_per_batch=8, mutants_per_seed=16, fsync_every_write=False)
        n = 40
    else:  # tiny noise and only the NaN oracle: nothing fails
        cfg = FuzzConfig(seed=3, mutators=[{"name": "gaussian_noise", "std": [0.001, 0.002]}], oracles=["nonfinite"],
                         budget=Budget(iterations=2), seeds_per_batch=4, mutants_per_seed=8, fsync_every_write=False)
        n = 16
    fz = Campaign.create(path, target, x[:n], y[:n], cfg, profile_data=x[:64])
    fz.run()
    fz.close()
    return path


@pytest.fixture(scope="module")
def camps(tmp_path_factory, digits_target, digits_test):
    d = tmp_path_factory.mktemp("camps")
    x, y = digits_test
    return {"fail": make_campaign(d / "fail", digits_target, x, y, failures=True),
            "clean": make_campaign(d / "clean", digits_target, x, y, failures=False)}


@pytest.fixture(scope="module")
def reports(camps, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    rc = main(["report", str(camps["fail"]), "--out", str(out / "fail.html"), "--png", str(out / "png")])
    assert rc == 0
    with CampaignStore.open(camps["clean"]):  # a writer holds the campaign's lock, as a running fuzzer does
        assert main(["report", str(camps["clean"])]) == 0  # default: DIR/report.html
    return {"fail": (out / "fail.html").read_text(encoding="utf-8"),
            "clean": (camps["clean"] / "report.html").read_text(encoding="utf-8"), "png": out / "png"}


def parse(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(text.split("\n", 1)[1])  # raises on any unclosed or mis-nested element


def section_ids(root: ET.Element) -> list[str]:
    return [s.get("id") for s in root.iter("section")]


@pytest.mark.parametrize("which", ["fail", "clean"])
def test_report_is_well_formed_and_holds_every_section(reports, which):
    root = parse(reports[which])
    assert section_ids(root) == list(SECTIONS)
    text = reports[which]
    assert not re.search(r"(src|href)=\"(?!data:image/png;base64,)", text)  # nothing outside the file
    assert "<script" not in text


def test_report_with_failures_shows_the_grid_plots_and_measures(reports, camps):
    root = parse(reports["fail"])
    imgs = [i.get("src") for i in root.iter("img")]
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    with CampaignStore.open(camps["fail"], readonly=True) as s:
        found = {e.sha for e in s.entries(kind="failure") if e.depth > 0}
    assert found, "the fixture campaign must have failures"
    grid = next(s for s in root.iter("section") if s.get("id") == "failing-inputs")
    tiles = [d for d in grid.iter("div") if d.get("class") == "tile"]
    assert len(tiles) == min(48, len(found))
    assert len([i for t in tiles for i in t.iter("img")]) == 2 * len(tiles)  # seed beside mutant
    assert "translate(" in reports["fail"] or "contrast(" in reports["fail"]  # the chain is spelled out
    for sid, kind in (("coverage", "plot"), ("failures-over-time", "plot"), ("confusion", "plot")):
        sec = next(s for s in root.iter("section") if s.get("id") == sid)
        assert any(i.get("class") == kind for i in sec.iter("img")), sid
    assert f"<td>found failures (distinct inputs)</td><td>{len(found)}</td>" in reports["fail"]
    assert sorted(p.name for p in reports["png"].iterdir()) == sorted(
        f"{n}.png" for n in ("coverage", "failures", "mutators", "confusion", "classes", "depth"))
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in reports["png"].iterdir())


def test_report_without_failures_says_so(reports):
    root = parse(reports["clean"])
    for sid in ("failing-inputs", "confusion", "classes", "triage"):
        sec = next(s for s in root.iter("section") if s.get("id") == sid)
        assert any(p.get("class") == "none" for p in sec.iter("p")), sid
        assert not list(sec.iter("img")), sid
    assert "No failure found" in reports["clean"]


def test_report_on_a_running_campaign(reports, camps):
    text = reports["clean"]  # written while a writer held the lock
    assert "status <b>running</b>" in text and "This campaign is running" in text
    assert "This campaign is running" not in reports["fail"]


@pytest.mark.parametrize("case,argv,needle", [
    ("not-a-campaign", lambda c, t: ["report", str(t)], "not a neurofuzz campaign"),
    ("missing", lambda c, t: ["report", str(t / "nope")], "no campaign at"),
    ("out-is-dir", lambda c, t: ["report", str(c), "--out", str(t)], "is a directory"),
    ("out-folder-missing", lambda c, t: ["report", str(c), "--out", str(t / "a" / "b.html")], "does not exist"),
    ("png-is-file", lambda c, t: ["report", str(c), "--out", str(t / "r.html"), "--png", str(t / "f")], "is a file"),
    ("max-failures", lambda c, t: ["report", str(c), "--max-failures", "-1"], "--max-failures"),
    ("merge-linf", lambda c, t: ["report", str(c), "--merge-linf", "-0.1"], "--merge-linf"),
])
def test_report_errors_are_one_line(camps, tmp_path, capsys, case, argv, needle):
    (tmp_path / "f").write_text("x")
    rc = main(argv(camps["clean"], tmp_path))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("neurofuzz: error: ") and err.count("\n") == 1 and needle in err, err


def test_report_without_matplotlib_says_how_to_install_it(camps, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc = main(["report", str(camps["clean"]), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'neurofuzz[report]'" in err and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(reports, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium); the HTML checks above still ran")
    page = tmp_path / "report.html"
    page.write_text(reports["fail"], encoding="utf-8")
    shot = tmp_path / "report.png"
    proc = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PIL import Image

    im = Image.open(shot).convert("L")
    assert im.size == (1280, 2400)
    lo, hi = im.getextrema()
    assert lo < 60 and hi > 200  # text and plots drawn on a white page, not a blank or error page
    print(f"screenshot: {shot}")


@pytest.mark.allow_global_rng  # examples may use torch.rand for brevity; library code may not
@pytest.mark.parametrize("name", ["data", "html", "live", "minimise", "model_coverage", "plots", "triage"])
def test_reports_docstring_examples(name):
    import doctest
    import importlib

    mod = importlib.import_module(f"neurofuzz.reports.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0, name


def test_colour_images_keep_their_channels(tmp_path):
    import base64

    import cv2
    import numpy as np
    import torch

    from neurofuzz.corpus import MemoryStore
    from neurofuzz.reports.html import write_report

    s = MemoryStore()
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    seed = s.add(red, kind="queue", label=0, pred=0)
    s.add(red * 0.5, kind="failure", oracle="misclassified", label=0, pred=1, parent=seed.id,
          chain=[{"mutator": "contrast", "params": {"alpha": 0.5, "beta": 0.0}, "config": {}}])
    root = parse(write_report(s, tmp_path / "r.html").read_text(encoding="utf-8"))
    grid = next(x for x in root.iter("section") if x.get("id") == "failing-inputs")
    srcs = [i.get("src") for i in grid.iter("img")]
    assert len(srcs) == 2
    rgb = [cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(u.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)[0, 0].tolist() for u in srcs]
    assert rgb == [[255, 0, 0], [128, 0, 0]]  # the seed is red, the failure half as bright (0.5 -> 128)


@pytest.mark.slow
def test_demo_ends_by_naming_its_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--time", "2", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("report: ") and last.endswith("(open it in a browser)")
    page = Path(last.split()[1])
    assert page.name == "report.html" and page.parent.parent == tmp_path
    assert section_ids(parse(page.read_text(encoding="utf-8"))) == list(SECTIONS)
