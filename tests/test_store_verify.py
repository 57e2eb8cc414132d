"""Entries are checked against the index when loaded: a damaged image file (NaN pixels, another
shape or dtype, values outside the recorded range, unreadable, or other content with sha=True) is
reported by id and file, with what to do, and a writer's open (a resume) refuses the campaign
naming every damaged id instead of crashing mid-run."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofuzz.corpus import CampaignStore, DamagedEntry, MemoryStore, export_npz, replay
from neurofuzz.ground.errors import UserError


def img(seed: int, shape: tuple[int, ...] = (1, 4, 4)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 0.5 + 0.25  # values in [0.25, 0.75]


@pytest.fixture
def camp(tmp_path: Path) -> Path:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        a = s.add(img(1), kind="queue", label=0, pred=0)
        b = s.add(img(2), kind="queue", label=0, pred=0, parent=a.id)
        s.add(img(3), kind="failure", oracle="misclassified", label=0, pred=1, parent=b.id)
        s.add(img(4), kind="queue", label=1, pred=1)
    return d


def path_of(d: Path, id: int) -> Path:
    with CampaignStore.open(d, readonly=True) as r:
        return r.get(id).path


def nan_pixels(p: Path) -> None:
    a = np.load(p)
    a[0, 1, 1] = np.nan
    a[0, 2, 2] = np.inf
    np.save(p, a)


DAMAGES = {
    "nan": (nan_pixels, r"holds 2 NaN/Inf value\(s\), recorded all finite"),
    "shape": (lambda p: np.save(p, np.zeros((1, 2, 8), np.float32)),
              r"holds an array of shape \[1, 2, 8\], recorded \[1, 4, 4\]"),
    "dtype": (lambda p: np.save(p, np.load(p).astype(np.float64)), "holds float64 values, recorded float32"),
    "range": (lambda p: np.save(p, np.load(p) * 3),
              r"holds values in \[0\.8\d+, 2\.\d+\], outside the recorded range \[0\.2\d+, 0\.7\d+\]"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:60]), r"is unreadable \(EOF: reading array header[^)]*\)"),
    "pickle": (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
               r"is unreadable \(Object arrays cannot be loaded when allow_pickle=False\)"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_file_is_reported_by_id_on_load_and_on_resume(camp: Path, damage: str) -> None:
    spoil, problem = DAMAGES[damage]
    p = path_of(camp, 2)
    spoil(p)
    with CampaignStore.open(camp, readonly=True) as r:  # readers open cheaply, loads check
        assert torch.equal(r.get(1).load(), img(1))
        with pytest.raises(DamagedEntry, match=rf"entry 2 is damaged: its file {re.escape(str(p))} {problem}; "
                                               r"restore the file from a backup, or delete entry 2") as err:
            r.get(2).load()
        assert (err.value.entry_id, err.value.file) == (2, p) and isinstance(err.value, UserError)
        assert r.verify() == [2] and list(r.damaged()) == [2]
        with pytest.raises(UserError, match="entry 2 is damaged"):  # export / replay name it too
            export_npz(r, camp.parent / "out.npz")
        with pytest.raises(UserError, match="entry 2 is damaged"):
            replay(r, lambda x: torch.zeros(len(x), 2))
    assert not (camp.parent / "out.npz").exists()
    with pytest.raises(UserError, match=rf"has 1 damaged input file\(s\) \(entry 2: {problem}\); restore them") as err:
        CampaignStore.open(camp)  # the resume is refused up front, naming the id
    assert f"CampaignStore.open({str(camp)!r}, verify=False).delete([2], descendants=True)" in str(err.value)
    assert "\n" not in str(err.value)
    with CampaignStore.open(camp, verify=False) as s:
        with pytest.raises(UserError, match=r"entries \[3\] derive from \[2\]; pass descendants=True"):
            s.delete([2])
        assert s.count() == 4
        assert s.delete([2], descendants=True) == [2, 3]
        assert not p.exists() and [e.id for e in s.entries()] == [1, 4]
    with CampaignStore.open(camp) as s:  # sound again; ids are never reissued
        assert s.recovered["orphans"] == 0 and s.verify(sha=True) == []
        assert s.add(img(9), kind="queue", label=0, pred=0).id == 5


def test_many_damaged_are_listed_and_sha_check_on_request(camp: Path) -> None:
    for id in (1, 4):
        nan_pixels(path_of(camp, id))
    p3 = path_of(camp, 3)
    a = np.load(p3)
    a[0, 0, 0], a[0, 0, 1] = a[0, 0, 1], a[0, 0, 0]  # same values, other content: only the hash sees it
    np.save(p3, a)
    with pytest.raises(UserError, match=r"has 2 damaged input file\(s\) \(entry 1: .*; entry 4: .*delete\(\[1, 4\]"):
        CampaignStore.open(camp)
    with CampaignStore.open(camp, readonly=True) as r:
        assert r.verify() == [1, 4]
        assert r.verify(sha=True) == [1, 3, 4]
        assert "SHA-256 differs" in r.damaged(sha=True)[3]
        r.get(3).load()  # without sha the swap passes
        with pytest.raises(DamagedEntry, match="entry 3 is damaged.*SHA-256"):
            r.get(3).load(sha=True)


def test_missing_file_and_delete_refusals(camp: Path) -> None:
    path_of(camp, 4).unlink()
    with pytest.raises(UserError, match=r"missing from disk \(first: queue/id_000004_"):
        CampaignStore.open(camp)
    with pytest.raises(UserError, match=r"missing from disk"):
        CampaignStore.open(camp, readonly=True)


def test_delete_api(camp: Path) -> None:
    with CampaignStore.open(camp) as s:
        with pytest.raises(KeyError, match="no entry with id 99"):
            s.delete(99)
        assert s.delete(4) == [4] and s.count() == 3
    with CampaignStore.open(camp, readonly=True) as r:
        with pytest.raises(ValueError, match="read-only"):
            r.delete(1)


def test_nonfinite_images_are_stored_and_load(tmp_path: Path) -> None:
    """An input with NaN in it (caught by the nonfinite oracle) is recorded as not finite and loads."""
    x = img(5)
    x[0, 0, 0] = float("nan")
    for store in (CampaignStore.create(tmp_path / "c", setup={}), MemoryStore()):
        e = store.add(x, kind="failure", oracle="nonfinite", label=0, pred=-1)
        assert (e.finite, e.dtype, e.shape) == (False, "<f4", (1, 4, 4))
        assert e.vmin == pytest.approx(float(np.nanmin(x.numpy()))) and e.vmax == pytest.approx(float(np.nanmax(x.numpy())))
        assert torch.equal(torch.isnan(e.load(sha=True)), torch.isnan(x)) and store.verify(sha=True) == []
        all_nan = store.add(torch.full((1, 2, 2), float("nan")), kind="failure", oracle="nonfinite", label=0, pred=-1)
        assert (all_nan.finite, all_nan.vmin, all_nan.vmax) == (False, None, None)
        store.close()
    with CampaignStore.open(tmp_path / "c") as s:
        assert s.verify() == []


def test_index_made_before_the_image_columns_is_upgraded(tmp_path: Path) -> None:
    """An index without dtype / finite / vmin / vmax (older neurofuzz): readers see NULLs and load
    with the shape check only; the first writer adds the columns; new entries record them."""
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        s.add(img(1), kind="queue", label=0, pred=0)
    conn = sqlite3.connect(d / "index.sqlite")
    for col in ("dtype", "finite", "vmin", "vmax"):
        conn.execute(f"ALTER TABLE entries DROP COLUMN {col}")
    conn.commit()
    conn.close()
    with CampaignStore.open(d, readonly=True) as r:
        e = r.get(1)
        assert (e.finite, e.vmin, e.vmax, e.dtype) == (None, None, None, "<f4")
        assert torch.equal(e.load(), img(1))
    with CampaignStore.open(d) as s:
        cols = {row[1] for row in s.index.conn.execute("PRAGMA table_info(entries)")}
        assert {"dtype", "finite", "vmin", "vmax"} <= cols
        assert s.get(1).dtype == "<f4" and s.get(1).finite is None
        e = s.add(img(2), kind="queue", label=0, pred=0)
        assert e.finite is True and s.get(e.id).vmax == pytest.approx(float(img(2).max()))
