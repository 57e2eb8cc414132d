"""An export can never destroy a campaign: output paths inside any campaign directory are refused
(with or without overwrite), --overwrite never removes a directory holding a campaign, and the
temp files of a killed export are cleaned by the next export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofuzz.corpus import CampaignStore, MemoryStore, export_npz, export_png
from neurofuzz.ground.errors import UserError


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes, except SQLite's own -wal / -shm companions (a reader may create them)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture
def camp(tmp_path: Path) -> Path:
    d = tmp_path / "C"
    with CampaignStore.create(d, setup={"s": 1}) as s:
        a = s.add(torch.full((1, 3, 3), 0.5), kind="queue", label=0, pred=0)
        s.add(torch.full((1, 3, 3), 0.25), kind="failure", oracle="misclassified", label=0, pred=1, parent=a.id)
        s.save_state("fuzzer", {"step": 1})
        s.write_stats({"status": "finished"})
    (d / "corpus.npz").write_bytes(b"a user's file inside the campaign")
    return d


TARGETS = ["", "queue", "index.sqlite", "state/fuzzer.pt", "corpus.npz", "queue/new.npz", "failures/misclassified",
           "nowhere/deeper/x.npz"]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("rel", TARGETS)
@pytest.mark.parametrize("fmt", ["npz", "png"])
def test_every_path_inside_the_campaign_is_refused(camp: Path, rel: str, overwrite: bool, fmt: str) -> None:
    before = snapshot(camp)
    out = camp / rel if rel else camp
    export = export_npz if fmt == "npz" else export_png
    with CampaignStore.open(camp, readonly=True) as r:
        with pytest.raises(UserError, match=rf"is inside the campaign directory {camp}; .*outside any campaign"):
            export(r, out, overwrite=overwrite)
    with pytest.raises(UserError, match="is inside the campaign directory"):  # from another store too
        export(MemoryStore(), out, overwrite=overwrite)
    assert snapshot(camp) == before
    with CampaignStore.open(camp) as s:
        assert s.count() == 2 and s.verify(sha=True) == [] and s.load_state("fuzzer") == {"step": 1}


@pytest.mark.parametrize("fmt", ["npz", "png"])
def test_other_campaigns_and_symlinks_into_them_are_refused(tmp_path: Path, camp: Path, fmt: str) -> None:
    other = tmp_path / "other"
    CampaignStore.create(other, setup={}).close()
    link = tmp_path / "link"
    link.symlink_to(other, target_is_directory=True)
    before = snapshot(other)
    export = export_npz if fmt == "npz" else export_png
    with CampaignStore.open(camp, readonly=True) as r:
        for out in (other / "x.npz", other / "queue"):
            with pytest.raises(UserError, match=f"is inside the campaign directory {other}; "):
                export(r, out, overwrite=True)
        for out in (link / "x.npz", link):  # named as the user wrote it
            with pytest.raises(UserError, match=f"is inside the campaign directory ({link}|{other}); "):
                export(r, out, overwrite=True)
    (other / "fuzzer_setup").unlink()  # a damaged campaign (only index.sqlite left) counts too
    with pytest.raises(UserError, match="is inside the campaign directory"):
        export(MemoryStore(), other / "x.npz", overwrite=True)
    assert set(snapshot(other)) == set(before) - {"fuzzer_setup"}


def test_overwrite_never_removes_a_directory_holding_a_campaign(tmp_path: Path, camp: Path) -> None:
    s = MemoryStore()
    s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    before = snapshot(camp)
    with pytest.raises(UserError, match=f"{tmp_path} holds a campaign \\({camp}\\); an export never replaces it"):
        export_png(s, tmp_path, overwrite=True)  # the campaign's parent
    with pytest.raises(UserError, match=f"{tmp_path.parent} holds a campaign"):
        export_png(s, tmp_path.parent, overwrite=True)  # and grand-parent
    nested = tmp_path / "old_export"
    export_png(s, nested)
    (nested / "sub").mkdir()
    CampaignStore.create(nested / "sub" / "camp2", setup={}).close()
    with pytest.raises(UserError, match="holds a campaign"):  # even a previous export with a campaign put inside it
        export_png(s, nested, overwrite=True)
    assert (nested / "sub" / "camp2" / "fuzzer_setup").is_file() and snapshot(camp) == before
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "todo.txt").write_text("keep me")
    with pytest.raises(UserError, match=r"is not a previous PNG export \(no manifest.jsonl\)"):
        export_png(s, plain, overwrite=True)
    assert (plain / "todo.txt").read_text() == "keep me"


_KILLED_EXPORT = r"""
import os, signal, sys
import neurofuzz.corpus.export as ex
from neurofuzz.corpus import CampaignStore
fmt, out = sys.argv[2], sys.argv[3]
if fmt == "npz":
    ex._write_npy = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # x.npy written, then killed
else:
    ex.to_uint8_image = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # folder made, then killed
with CampaignStore.open(sys.argv[1], readonly=True) as r:
    (ex.export_npz if fmt == "npz" else ex.export_png)(r, out)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["npz", "png"])
def test_killed_export_leaves_only_temp_files_cleaned_by_the_next(tmp_path: Path, camp: Path, fmt: str) -> None:
    dest = tmp_path / "exports"
    dest.mkdir()
    out = dest / ("c.npz" if fmt == "npz" else "png")
    (dest / "unrelated.txt").write_text("mine")
    mine = dest / f".tmp-{os.getpid()}-0123456789ab-in-progress.npz"  # a live process's temp file
    mine.write_bytes(b"busy")
    p = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(camp), fmt, str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    left = sorted(c.name for c in dest.iterdir() if c.name.startswith(".tmp-") and c != mine)
    assert len(left) == 1 and left[0].endswith("-" + out.name) and not out.exists()
    with CampaignStore.open(camp, readonly=True) as r:
        (export_npz if fmt == "npz" else export_png)(r, out)
    assert sorted(c.name for c in dest.iterdir()) == sorted([out.name, "unrelated.txt", mine.name])
    if fmt == "npz":
        with np.load(out) as z:
            assert z["ids"].tolist() == [1, 2]
    else:
        assert (out / "manifest.jsonl").read_text().count("\n") == 2
