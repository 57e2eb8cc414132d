"""The campaign store (neurofuzz.corpus): layout, dedupe, lineage, resume, crash safety, export,
replay. Fast; every random image comes from a seeded local generator."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from neurofuzz.corpus import CampaignStore, MemoryStore, content_hash, export_npz, export_png, replay
from neurofuzz.corpus.store import MemoryStore as MemoryStoreFromStore
from neurofuzz.ground.errors import UserError


def img(seed: int, shape: tuple[int, ...] = (1, 4, 4)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def camp(tmp_path: Path):
    s = CampaignStore.create(tmp_path / "camp", setup={"metric": "nc", "seed": 0})
    yield s
    s.close()


# ------------------------------------------------------------------------------ entries
def test_create_layout_and_setup(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={"metric": "kmnc", "versions": {"torch": torch.__version__}}) as s:
        assert s.setup == {"metric": "kmnc", "versions": {"torch": torch.__version__}}
        assert {p.name for p in d.iterdir()} >= {"queue", "failures", "state", "index.sqlite", "fuzzer_setup"}
        doc = json.loads((d / "fuzzer_setup").read_text())
        assert doc["format"] == "neurofuzz-campaign" and doc["setup"]["metric"] == "kmnc"
        conn = sqlite3.connect(d / "index.sqlite")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert s.index.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with CampaignStore.open(d, fsync=False) as s:
        assert s.index.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert MemoryStoreFromStore is MemoryStore


def test_add_get_layout_and_load(camp: CampaignStore) -> None:
    x = img(1)
    seed = camp.add(x, kind="queue", label=3, pred=3, iteration=0, time_found=0.5, gains={"nc": 4})
    assert (seed.id, seed.root, seed.parent, seed.depth, seed.duplicate) == (1, 1, None, 0, False)
    assert seed.sha == content_hash(x) and seed.shape == (1, 4, 4)
    assert seed.path == camp.path / f"queue/id_000001_{seed.sha[:16]}.npy" and seed.path.is_file()
    fail = camp.add(img(2), kind="failure", oracle="misclassified", label=3, pred=5, parent=seed.id,
                    chain=[{"op": "rotate", "angle": 7.5}], gains={"nc": 1}, iteration=9, time_found=1.25,
                    extra={"logit_margin": -0.5})
    assert fail.path == camp.path / f"failures/misclassified/id_000002_{fail.sha[:16]}.npy"
    assert (fail.root, fail.parent, fail.depth) == (1, 1, 1)
    got = camp.get(fail.id)
    assert got == fail and got.chain == [{"op": "rotate", "angle": 7.5}] and got.extra == {"logit_margin": -0.5}
    assert torch.equal(camp.get(1).load(), x) and camp.get(1).load().dtype == torch.float32
    assert [e.id for e in camp.entries()] == [1, 2]
    assert [e.id for e in camp.entries(kind="failure")] == [2]
    assert camp.entries(oracle="nonfinite") == []
    assert (camp.count(), camp.count("queue"), camp.count(oracle="misclassified"), len(camp)) == (2, 1, 1, 2)
    assert camp.oracles() == ["misclassified"]
    with pytest.raises(KeyError, match="no entry with id 99"):
        camp.get(99)
    assert camp.verify() == [] and camp.verify(sha=True) == []


def test_dedupe_same_kind_and_oracle_only(camp: CampaignStore) -> None:
    x = img(3)
    a = camp.add(x, kind="queue", label=1, pred=1)
    before = files(camp.path)
    b = camp.add(x.clone(), kind="queue", label=7, pred=2, iteration=5)  # same content, other metadata
    assert b.duplicate and b.id == a.id and b.label == 1 and files(camp.path) == before
    f1 = camp.add(x, kind="failure", oracle="misclassified", label=1, pred=2, parent=a.id)
    f2 = camp.add(x, kind="failure", oracle="pred_changed", label=1, pred=2, parent=a.id)
    f3 = camp.add(x, kind="failure", oracle="misclassified", label=1, pred=2, parent=a.id)
    assert not f1.duplicate and not f2.duplicate and f3.duplicate and f3.id == f1.id
    assert [e.id for e in camp.entries()] == [1, 2, 3]
    # a different shape with the same bytes is a different image
    y = camp.add(x.reshape(4, 2, 2).contiguous(), kind="queue", label=1, pred=1)
    assert not y.duplicate and y.sha != a.sha


def test_lineage_rules(camp: CampaignStore) -> None:
    r1 = camp.add(img(10), kind="queue", label=0, pred=0)
    r2 = camp.add(img(11), kind="queue", label=1, pred=1)
    c1 = camp.add(img(12), kind="queue", label=0, pred=0, parent=r1.id)  # root inherited from parent
    c2 = camp.add(img(13), kind="queue", label=0, pred=0, root=r1.id, parent=c1.id)
    c3 = camp.add(img(14), kind="queue", label=1, pred=1, root=r2.id)  # parent defaults to the root
    f = camp.add(img(15), kind="failure", oracle="misclassified", label=0, pred=4, parent=c2.id)
    assert (c1.root, c1.depth, c2.depth, c3.parent, c3.depth, f.root, f.depth) == (1, 1, 2, 2, 1, 1, 3)
    assert [e.id for e in camp.lineage(f.id)] == [r1.id, c1.id, c2.id, f.id]
    assert [e.id for e in camp.lineage(r2.id)] == [r2.id]
    with pytest.raises(ValueError, match="descends from root"):
        camp.add(img(16), kind="queue", label=0, pred=0, root=r2.id, parent=c1.id)
    with pytest.raises(ValueError, match="not a seed"):
        camp.add(img(16), kind="queue", label=0, pred=0, root=c1.id)
    with pytest.raises(ValueError, match="not in the corpus"):
        camp.add(img(16), kind="queue", label=0, pred=0, parent=999)
    assert camp.count() == 6  # refused adds wrote nothing
    assert len(list((camp.path / "queue").iterdir())) == 5


def test_add_validates_inputs(camp: CampaignStore) -> None:
    with pytest.raises(TypeError, match="float32"):
        camp.add(img(1).double(), kind="queue", label=0, pred=0)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        camp.add(torch.zeros(1, 1, 4, 4), kind="queue", label=0, pred=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        camp.add(np.zeros((1, 4, 4), np.float32), kind="queue", label=0, pred=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="oracle"):
        camp.add(img(1), kind="failure", label=0, pred=0)
    with pytest.raises(ValueError, match="no oracle"):
        camp.add(img(1), kind="queue", oracle="misclassified", label=0, pred=0)
    with pytest.raises(UserError, match="file name"):
        camp.add(img(1), kind="failure", oracle="../escape", label=0, pred=0)
    with pytest.raises(ValueError, match="kind"):
        camp.add(img(1), kind="crash", label=0, pred=0)
    with pytest.raises(TypeError, match="JSON"):
        camp.add(img(1), kind="queue", label=0, pred=0, chain=[{"op": object()}])
    with pytest.raises(TypeError, match="integer"):
        camp.add(img(1), kind="queue", label=0.5, pred=0)  # type: ignore[arg-type]
    assert camp.count() == 0 and files(camp.path / "queue") == []
    # numpy / tensor scalars and tensors inside the chain are accepted and stored as plain JSON
    e = camp.add(img(1), kind="queue", label=np.int64(2), pred=torch.tensor(2),
                 chain=[{"op": "noise", "sigma": np.float32(0.25), "shift": torch.tensor([1, 2])}])
    assert camp.get(e.id).chain == [{"op": "noise", "sigma": 0.25, "shift": [1, 2]}]


def test_ids_monotone_across_reopen_and_orphans_removed(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        ids = [s.add(img(i), kind="queue", label=0, pred=0).id for i in range(3)]
    assert ids == [1, 2, 3]
    # what a crash between the image write and the commit leaves behind
    (d / "queue" / f"id_000004_{'ab' * 8}.npy").write_bytes(b"junk")
    (d / "failures" / "misclassified").mkdir()
    (d / "failures" / "misclassified" / f"id_000004_{'cd' * 8}.npy").write_bytes(b"junk")
    (d / "queue" / ".tmp-123-abc-id_000004_x.npy").write_bytes(b"partial")
    (d / ".tmp-9-xyz-fuzzer_stats").write_text("partial")
    (d / "queue" / "notes.txt").write_text("user file, not ours")
    with CampaignStore.open(d) as s:
        assert s.recovered == {"temp_files": 2, "orphans": 2, "plot_bytes_truncated": 0}
        assert files(d / "queue") == sorted(Path(e.path).name for e in s.entries()) + ["notes.txt"]
        assert list((d / "failures" / "misclassified").iterdir()) == []
        new = s.add(img(100), kind="queue", label=0, pred=0)
        assert new.id == 4
    with CampaignStore.open(d) as s:
        assert [e.id for e in s.entries()] == [1, 2, 3, 4]
        assert s.add(img(101), kind="queue", label=0, pred=0).id == 5


def test_add_interrupted_before_commit_leaves_nothing(tmp_path: Path) -> None:
    class Interrupted(CampaignStore):
        def _insert(self, row, arr):  # the image is written, then the process is interrupted
            e = super()._insert(row, arr)
            assert e.path.is_file()
            raise KeyboardInterrupt

    d = tmp_path / "c"
    CampaignStore.create(d, setup={}).close()
    s = Interrupted.open(d)
    with pytest.raises(KeyboardInterrupt):
        s.add(img(1), kind="queue", label=0, pred=0)
    assert s.count() == 0 and files(d / "queue") == []
    s.close()
    with CampaignStore.open(d) as s:
        assert s.add(img(2), kind="queue", label=0, pred=0).id == 1  # never reported, so reissued


def test_ids_never_reused_after_rows_deleted(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        for i in range(3):
            s.add(img(i), kind="queue", label=0, pred=0)
    conn = sqlite3.connect(d / "index.sqlite")
    path = conn.execute("SELECT path FROM entries WHERE id = 3").fetchone()[0]
    conn.execute("DELETE FROM entries WHERE id = 3")
    conn.commit()
    conn.close()
    (d / path).unlink()
    with CampaignStore.open(d) as s:
        assert s.add(img(50), kind="queue", label=0, pred=0).id == 4  # AUTOINCREMENT: 3 is gone for good


def test_missing_indexed_file_is_reported(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        e = s.add(img(1), kind="queue", label=0, pred=0)
    e.path.unlink()
    with pytest.raises(UserError, match=r"missing from disk \(first: queue/id_000001_"):
        CampaignStore.open(d)


# ------------------------------------------------------------------------------ create / open
def test_new_refuses_nonempty_and_force_replaces_campaign(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={"run": 1}) as s:
        s.add(img(1), kind="queue", label=0, pred=0)
        s.save_state("coverage", {"covered": torch.ones(3, dtype=torch.bool)})
    (d / "extra_log.txt").write_text("from the previous run")
    with pytest.raises(UserError, match="--resume.*--force"):
        CampaignStore.create(d, setup={"run": 2})
    with pytest.raises(TypeError, match="JSON"):  # a bad setup is refused before anything is deleted
        CampaignStore.create(d, setup={"bad": object()}, mode="force")
    with CampaignStore.open(d) as s:
        assert s.count() == 1
    with CampaignStore.create(d, setup={"run": 2}, mode="force") as s:
        assert s.count() == 0 and s.setup == {"run": 2} and s.state_names() == []
        assert not (d / "extra_log.txt").exists() and files(d / "queue") == []
        assert s.add(img(2), kind="queue", label=0, pred=0).id == 1


def test_empty_dir_is_fine_and_foreign_dir_is_never_wiped(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    CampaignStore.create(empty, setup={}).close()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="does not look like a neurofuzz campaign"):
        CampaignStore.create(foreign, setup={})
    with pytest.raises(UserError, match="refusing to overwrite"):
        CampaignStore.create(foreign, setup={}, mode="force")
    assert files(foreign) == ["thesis.tex"]
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        CampaignStore.create(f, setup={})


def test_open_refuses_non_campaigns(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        CampaignStore.open(tmp_path / "nope")
    with pytest.raises(UserError, match="not a neurofuzz campaign.*fuzzer_setup"):
        CampaignStore.open(tmp_path)


def test_corrupted_index_names_the_file(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        s.add(img(1), kind="queue", label=0, pred=0)
    (d / "index.sqlite").write_bytes(b"this is not a database, just garbage bytes" * 100)
    with pytest.raises(UserError, match=r"corrupted: index\.sqlite is not a readable SQLite database.*--force"):
        CampaignStore.open(d)
    (d / "index.sqlite").write_bytes(b"")  # an empty file is an empty database: no tables
    with pytest.raises(UserError, match=r"index\.sqlite has no neurofuzz index tables"):
        CampaignStore.open(d)
    (d / "index.sqlite").unlink()
    with pytest.raises(UserError, match=r"index\.sqlite is missing"):
        CampaignStore.open(d)
    # the failed opens released the lock: --force can replace the damaged campaign
    CampaignStore.create(d, setup={}, mode="force").close()


def test_missing_or_invalid_setup_names_the_file(tmp_path: Path) -> None:
    d = tmp_path / "c"
    CampaignStore.create(d, setup={}).close()
    (d / "fuzzer_setup").write_text("{not json")
    with pytest.raises(UserError, match=r"fuzzer_setup is not valid JSON.*--force"):
        CampaignStore.open(d)
    (d / "fuzzer_setup").write_text('{"some": "other json"}')
    with pytest.raises(UserError, match="fuzzer_setup is not a neurofuzz campaign setup"):
        CampaignStore.open(d)
    (d / "fuzzer_setup").unlink()
    with pytest.raises(UserError, match="fuzzer_setup is missing"):
        CampaignStore.open(d)
    with pytest.raises(UserError, match="--resume.*--force"):  # still recognised as a campaign
        CampaignStore.create(d, setup={})


def test_one_writer_and_concurrent_readonly_reader(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as w:
        w.add(img(1), kind="queue", label=0, pred=0)
        with pytest.raises(UserError, match="in use by another process"):
            CampaignStore.open(d)
        with pytest.raises(UserError, match="in use by another process"):
            CampaignStore.create(d, setup={}, mode="force")
        assert w.count() == 1 and (d / "fuzzer_setup").is_file()
        with CampaignStore.open(d, readonly=True) as r:
            assert r.count() == 1
            w.add(img(2), kind="queue", label=0, pred=0)
            assert [e.id for e in r.entries()] == [1, 2]  # sees the writer's commits
            assert torch.equal(r.get(2).load(), img(2))
            with pytest.raises(ValueError, match="read-only"):
                r.add(img(3), kind="queue", label=0, pred=0)
    with CampaignStore.open(d) as w:  # lock released on close
        assert w.count() == 2
    with pytest.raises(ValueError, match="closed"):
        w.count()


# ------------------------------------------------------------------------------ monitor + state
def test_stats_rewrite_is_atomic(camp: CampaignStore, monkeypatch: pytest.MonkeyPatch) -> None:
    camp.write_stats({"start_time": 1712345678.25, "execs_done": 10, "command_line": "neurofuzz run a:b"})
    text = (camp.path / "fuzzer_stats").read_text()
    assert text.splitlines()[0] == "start_time        : 1712345678.25"
    assert camp.read_stats() == {"start_time": 1712345678.25, "execs_done": 10, "command_line": "neurofuzz run a:b"}
    camp.write_stats({"execs_done": 20})
    assert camp.read_stats() == {"execs_done": 20}
    assert not [p for p in camp.path.iterdir() if p.name.startswith(".tmp-")]

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        camp.write_stats({"execs_done": 30})
    monkeypatch.undo()
    assert camp.read_stats() == {"execs_done": 20}  # the old file is whole
    assert not [p for p in camp.path.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(ValueError, match="identifier"):
        camp.write_stats({"bad key": 1})
    with pytest.raises(ValueError, match="single line"):
        camp.write_stats({"k": "two\nlines"})


def test_plot_data_append_and_torn_last_line(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        s.append_plot({"relative_time": 1.5, "execs": 100, "coverage": 0.25})
        s.append_plot({"relative_time": 3.0, "execs": 200, "coverage": 0.5})
        with pytest.raises(ValueError, match="columns are fixed"):
            s.append_plot({"relative_time": 4.0, "execs": 300})
    assert (d / "plot_data").read_text().splitlines() == [
        "relative_time,execs,coverage", "1.5,100,0.25", "3.0,200,0.5"]
    with open(d / "plot_data", "a") as f:  # a kill in the middle of a write
        f.write("4.5,30")
    with CampaignStore.open(d, readonly=True) as r:  # readers skip the torn line, leave the file alone
        assert len(r.read_plot()) == 2
    assert (d / "plot_data").read_text().endswith("4.5,30")
    with CampaignStore.open(d) as s:
        assert s.recovered["plot_bytes_truncated"] == len("4.5,30")
        assert (d / "plot_data").read_text().endswith("0.5\n")
        s.append_plot({"relative_time": 6.0, "execs": 400, "coverage": 0.75})
        rows = s.read_plot()
    assert [r["execs"] for r in rows] == ["100", "200", "400"]
    assert rows[-1] == {"relative_time": "6.0", "execs": "400", "coverage": "0.75"}
    # a torn header alone: the file is emptied and the next append writes the header again
    (d / "plot_data").write_text("relative_ti")
    with CampaignStore.open(d) as s:
        s.append_plot({"t": 1})
        assert s.read_plot() == [{"t": "1"}]


def test_state_round_trip_and_refusals(camp: CampaignStore) -> None:
    rng_state = np.random.default_rng(7).bit_generator.state
    obj = {"covered": torch.tensor([True, False, True]), "step": 12, "ratio": 0.5, "name": "nc",
           "hist": [1, 2, 3], "pair": (1, "a"), "numpy_rng": rng_state,
           "torch_rng": torch.Generator().manual_seed(3).get_state()}
    camp.save_state("fuzz", obj)
    back = camp.load_state("fuzz")
    assert torch.equal(back["covered"], obj["covered"]) and torch.equal(back["torch_rng"], obj["torch_rng"])
    assert back["numpy_rng"] == rng_state and back["hist"] == [1, 2, 3] and back["step"] == 12
    camp.save_state("fuzz", {"step": 13})  # replaced atomically
    assert camp.load_state("fuzz") == {"step": 13} and camp.state_names() == ["fuzz"]
    assert camp.load_state("absent", None) is None and not camp.has_state("absent")
    with pytest.raises(KeyError, match="no state named 'absent'"):
        camp.load_state("absent")
    with pytest.raises(TypeError, match=r"\['arr'\].*numpy.ndarray"):
        camp.save_state("bad", {"arr": np.zeros(3)})
    assert camp.state_names() == ["fuzz"]
    with pytest.raises(UserError, match="file name"):
        camp.save_state("../x", {})
    assert not [p for p in (camp.path / "state").iterdir() if p.name.startswith(".tmp-")]
    path, name = camp.path, "fuzz"
    camp.close()
    with CampaignStore.open(path) as s:
        assert s.load_state(name) == {"step": 13}
        (path / "state" / "fuzz.pt").write_bytes(b"garbage")
        with pytest.raises(UserError, match=r"state/fuzz\.pt is unreadable"):
            s.load_state("fuzz")


# ------------------------------------------------------------------------------ export
def _mixed_store(store) -> list:
    a = store.add(img(1, (3, 5, 4)), kind="queue", label=2, pred=2)
    b = store.add(img(2, (3, 5, 4)), kind="queue", label=2, pred=2, parent=a.id, chain=[{"op": "blur", "k": 3}])
    c = store.add(img(3, (3, 5, 4)), kind="failure", oracle="misclassified", label=2, pred=7, parent=b.id)
    return [a, b, c]


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_export_npz_round_trip(tmp_path: Path, kind: str) -> None:
    store = CampaignStore.create(tmp_path / "c", setup={"s": 1}) if kind == "disk" else MemoryStore({"s": 1})
    a, b, c = _mixed_store(store)
    out = export_npz(store, tmp_path / "all.npz", "all")
    with np.load(out) as z:
        assert z["x"].dtype == np.float32 and z["x"].shape == (3, 3, 5, 4)
        for i, e in enumerate([a, b, c]):
            np.testing.assert_array_equal(z["x"][i], e.load().numpy())
        assert z["ids"].tolist() == [1, 2, 3] and z["labels"].tolist() == [2, 2, 2]
        assert z["preds"].tolist() == [2, 2, 7] and z["roots"].tolist() == [1, 1, 1]
        assert z["parents"].tolist() == [-1, 1, 2] and z["kinds"].tolist() == ["queue", "queue", "failure"]
        assert z["oracles"].tolist() == ["", "", "misclassified"]
        assert [json.loads(s) for s in z["chains"]] == [[], [{"op": "blur", "k": 3}], []]
        assert json.loads(str(z["setup"])) == {"s": 1}
    with pytest.raises(UserError, match="already exists"):
        export_npz(store, out, "queue")
    export_npz(store, out, "failures", overwrite=True)
    with np.load(out) as z:
        assert z["ids"].tolist() == [3] and z["x"].shape == (1, 3, 5, 4)
    with np.load(export_npz(store, tmp_path / "none.npz", "failures", oracle="nonfinite")) as z:
        assert z["x"].shape == (0, 0, 0, 0) and z["ids"].shape == (0,)
    store.add(img(4, (1, 5, 4)), kind="queue", label=0, pred=0)
    with pytest.raises(UserError, match="different shapes"):
        export_npz(store, tmp_path / "mixed.npz", "all")
    assert not (tmp_path / "mixed.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    store.close()


def test_export_png_round_trip(tmp_path: Path) -> None:
    store = MemoryStore()
    rgb = _mixed_store(store)
    gray = store.add(img(9, (1, 6, 6)), kind="failure", oracle="nonfinite", label=1, pred=-1)
    out = export_png(store, tmp_path / "png", "all")
    lines = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["id"] for m in lines] == [1, 2, 3, 4]
    assert lines[2] == {**lines[2], "file": "failures/misclassified/id_000003.png", "kind": "failure",
                        "oracle": "misclassified", "label": 2, "pred": 7, "root": 1, "parent": 2}
    assert lines[1]["chain"] == [{"op": "blur", "k": 3}]
    for m, e in zip(lines, [*rgb, gray]):
        raw = cv2.imread(str(out / m["file"]), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8
        back = raw[None] if raw.ndim == 2 else raw[..., ::-1].transpose(2, 0, 1)  # BGR -> RGB, HWC -> CHW
        assert np.abs(back / 255.0 - e.load().numpy()).max() <= 1 / 255
    # channel order: a pure red RGB image must be red in the PNG (cv2 reads BGR)
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    s2 = MemoryStore()
    s2.add(red, kind="queue", label=0, pred=0)
    bgr = cv2.imread(str(export_png(s2, tmp_path / "red") / "queue/id_000001.png"))
    assert bgr[0, 0].tolist() == [0, 0, 255]
    with pytest.raises(UserError, match="not empty"):
        export_png(store, out, "queue")
    export_png(store, out, "queue", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "queue"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
    store.add(torch.zeros(2, 3, 3), kind="queue", label=0, pred=0)
    with pytest.raises(UserError, match="1- or 3-channel"):
        export_png(store, tmp_path / "two", "queue")
    assert not (tmp_path / "two").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------------------ replay
class Brightness(nn.Module):
    """Class 1 if the mean pixel exceeds 0.5, else class 0; NaN logits for images with a
    negative first pixel. Records the batch sizes it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        m = x.flatten(1).mean(1)
        logits = torch.stack([0.5 - m, m - 0.5], 1)
        logits[x.flatten(1)[:, 0] < 0] = float("nan")
        return logits


def test_replay_report_numbers(tmp_path: Path) -> None:
    store = CampaignStore.create(tmp_path / "c", setup={})
    dark, light = torch.full((1, 2, 2), 0.2), torch.full((1, 2, 2), 0.8)
    a = store.add(dark, kind="queue", label=0, pred=0)            # new 0: correct, unchanged
    b = store.add(light, kind="queue", label=0, pred=0, parent=a.id)  # new 1: failing, changed
    c = store.add(light + 0.1, kind="failure", oracle="misclassified", label=0, pred=1, parent=a.id)  # failing, same
    d = store.add(dark + 0.1, kind="failure", oracle="misclassified", label=0, pred=1, parent=a.id)  # fixed, changed
    bad = dark.clone()
    bad[0, 0, 0] = -1.0
    e = store.add(bad, kind="failure", oracle="nonfinite", label=0, pred=0, parent=a.id)  # non-finite
    wide = store.add(torch.full((1, 3, 3), 0.9), kind="queue", label=1, pred=1)  # other shape: correct
    model = Brightness()
    r = replay(store, model, "all", batch_size=2)
    assert r.ids == [1, 2, 3, 4, 5, 6] and r.preds == [0, 1, 1, 0, -1, 1]
    assert (r.n, r.total.correct, r.total.changed) == (6, 3, 3)
    assert r.accuracy == pytest.approx(3 / 6) and r.changed_share == pytest.approx(3 / 6)
    assert r.failing_ids == [b.id, c.id, e.id] and r.changed_ids == [b.id, d.id, e.id]
    assert r.nonfinite_ids == [e.id]
    assert (r.by_kind["queue"].n, r.by_kind["queue"].correct, r.by_kind["failure"].n) == (3, 2, 3)
    mis = r.by_oracle["misclassified"]
    assert (mis.n, mis.correct, mis.changed) == (2, 1, 1) and r.by_oracle["nonfinite"].n == 1
    assert max(model.batches) <= 2 and sum(model.batches) == 6  # batch by batch, never all at once
    assert wide.id in r.ids
    assert "accuracy 0.5000" in r.summary() and json.dumps(r.to_dict())
    q = replay(store, Brightness(), "queue", batch_size=256)
    assert q.ids == [1, 2, 6] and q.failing_ids == [2]
    f = replay(store, Brightness(), "failures", oracle="misclassified")
    assert f.ids == [3, 4] and f.by_kind.keys() == {"failure"}
    with pytest.raises(UserError, match="batch_size"):
        replay(store, model, batch_size=0)
    with pytest.raises(UserError, match="n_classes"):
        replay(store, lambda x: x.flatten(), "queue")
    with pytest.raises(UserError, match="which"):
        replay(store, model, "everything")
    empty = replay(MemoryStore(), model)
    assert empty.n == 0 and np.isnan(empty.accuracy)
    store.close()


def test_replay_with_neurofuzz_target(tmp_path: Path) -> None:
    from neurofuzz.fuzzer import Target

    store = MemoryStore()
    for i in range(5):
        store.add(img(i, (1, 4, 4)), kind="queue", label=i % 2, pred=0)
    with torch.random.fork_rng():  # nn.Linear's init draws from the global RNG
        lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([0.0, 1.0]))  # always class 1
    r = replay(store, Target(nn.Sequential(nn.Flatten(), lin)))
    assert r.preds == [1] * 5 and r.failing_ids == [1, 3, 5] and r.changed_share == 1.0


# ------------------------------------------------------------------------------ crash safety
_CHILD = r"""
import sys
import numpy as np, torch
from neurofuzz.corpus import CampaignStore
store = CampaignStore.open(sys.argv[1], fsync=sys.argv[3] == '1')
rng = np.random.default_rng(int(sys.argv[2]))
roots, i = [], 0
while True:
    x = torch.from_numpy(rng.random((3, 8, 8), dtype=np.float32))
    parent = roots[-1] if roots and i % 3 else None
    if i % 4 == 3:
        e = store.add(x, kind="failure", oracle="misclassified", label=i % 10, pred=(i + 1) % 10,
                      parent=parent, iteration=i, time_found=float(i))
    else:
        e = store.add(x, kind="queue", label=i % 10, pred=i % 10, parent=parent,
                      chain=[{"op": "noise", "i": i}], iteration=i, time_found=float(i))
    if e.is_root:
        roots.append(e.id)
    store.append_plot({"i": i, "id": e.id})
    print(e.id, e.sha, flush=True)
    i += 1
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fsync", [True, False])
def test_sigkill_loses_nothing_reported(tmp_path: Path, fsync: bool) -> None:
    """A killed writer loses no entry it reported; with fsync=False too (a kill is not a power
    loss: the OS still holds the written data)."""
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={"child": True}) as s:
        s.add(img(0), kind="queue", label=0, pred=0)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(d), "1234", "1" if fsync else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reported: dict[int, str] = {}
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(reported) < 40:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {proc.stderr.read() if proc.stderr else ''}")
            i, sha = line.split()
            reported[int(i)] = sha
            assert time.monotonic() < deadline, "child too slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines():  # everything printed before the kill was committed
        parts = line.split()
        if len(parts) == 2 and len(parts[1]) == 64:
            reported[int(parts[0])] = parts[1]
    with CampaignStore.open(d) as s:
        for i, sha in reported.items():
            e = s.get(i)
            assert e.sha == sha and content_hash(e.load()) == sha
        assert s.verify(sha=True) == []
        old = [e.id for e in s.entries()]
        assert set(reported) <= set(old)
        for e in s.entries():  # lineage intact
            assert s.lineage(e.id)[0].is_root
        assert all(set(r) == {"i", "id"} and r["id"] for r in s.read_plot())
        new = [s.add(img(1000 + k), kind="queue", label=0, pred=0).id for k in range(3)]
        assert min(new) > max(old) and new == sorted(new)
        on_disk = sorted(p.name for p in (d / "queue").iterdir()) + sorted(
            p.name for p in (d / "failures" / "misclassified").iterdir())
        assert sorted(on_disk) == sorted(Path(e.path).name for e in s.entries())
