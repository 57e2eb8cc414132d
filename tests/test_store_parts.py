"""The store's pieces: typed ``fuzzer_stats``, meta values committed with a batch, targeted fsync
(never syncfs), the read-only wrapper, the one entry definition behind the index schema, and the
small abstract core of BaseStore."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from pathlib import Path

import pytest
import torch

import neurofuzz.corpus.fs as fs
import neurofuzz.corpus.store as store_mod
from neurofuzz.corpus import BaseStore, CampaignStore, Entry, MemoryStore, ReadOnlyStore
from neurofuzz.corpus.entry import COLUMNS
from neurofuzz.corpus.index import SCHEMA
from neurofuzz.corpus.monitor import parse_stats, parse_value
from neurofuzz.ground.errors import UserError


def img(v: float) -> torch.Tensor:
    return torch.full((1, 2, 2), v)


@pytest.fixture(params=["disk", "memory"])
def store(request, tmp_path: Path):
    s = CampaignStore.create(tmp_path / "c", setup={}) if request.param == "disk" else MemoryStore()
    yield s
    s.close()


# ------------------------------------------------------------------------------ stats
def test_read_stats_gives_numbers_as_numbers(store) -> None:
    store.write_stats({"execs": 12, "neg": -3, "rate": 1.5, "tiny": 1e-05, "big": 1e20, "nan": float("nan"),
                       "inf": float("-inf"), "status": "running", "per_mutator": '{"noise": [1, 2, 3]}',
                       "command_line": "neurofuzz fuzz --out x:y", "none": None, "flag": True, "ver": "1.2.3"})
    st = store.read_stats()
    assert (st["execs"], st["neg"], st["rate"], st["tiny"], st["big"]) == (12, -3, 1.5, 1e-05, 1e20)
    assert type(st["execs"]) is int and type(st["rate"]) is float and type(st["big"]) is float
    assert math.isnan(st["nan"]) and st["inf"] == float("-inf")
    assert st["status"] == "running" and st["per_mutator"] == '{"noise": [1, 2, 3]}'
    assert st["command_line"] == "neurofuzz fuzz --out x:y" and st["none"] == "" and st["flag"] == "True"
    assert st["ver"] == "1.2.3"
    assert parse_value("007") == 7 and parse_value("1.") == 1.0 and parse_value(".5") == 0.5
    assert parse_value("1e5x") == "1e5x" and parse_value("") == "" and parse_value("0x10") == "0x10"
    assert parse_stats("a : 1\nno separator line\nb:two words\n") == {"a": 1, "b": "two words"}


# ------------------------------------------------------------------------------ meta
def test_meta_commits_with_the_batch_and_rolls_back_with_it(store) -> None:
    assert store.get_meta("counters", None) is None
    with pytest.raises(KeyError, match="no meta value named 'counters'"):
        store.get_meta("counters")
    store.set_meta("counters", {"iterations": 1, "mutants": [1, 2]})
    assert store.get_meta("counters") == {"iterations": 1, "mutants": [1, 2]}
    with store.batch():
        store.add(img(0.1), kind="queue", label=0, pred=0)
        store.set_meta("counters", {"iterations": 2})
    assert store.get_meta("counters") == {"iterations": 2} and store.count() == 1
    if isinstance(store, CampaignStore):  # the memory store does not roll back
        with pytest.raises(RuntimeError, match="boom"):
            with store.batch():
                store.add(img(0.2), kind="queue", label=0, pred=0)
                store.set_meta("counters", {"iterations": 3})
                raise RuntimeError("boom")
        assert store.get_meta("counters") == {"iterations": 2} and store.count() == 1
        assert store.index.get_meta("format_version") == "1"  # the caller's keys cannot clash with it
    store.set_meta("format_version", 99)
    assert store.get_meta("format_version") == 99
    with pytest.raises(UserError, match="meta name '../x' cannot be used"):
        store.set_meta("../x", 1)
    with pytest.raises(TypeError, match="JSON"):
        store.set_meta("bad", object())


def test_meta_is_visible_to_a_reader_of_the_same_campaign(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as w, CampaignStore.open(d, readonly=True) as r:
        w.set_meta("counters", {"n": 1})
        assert r.get_meta("counters") == {"n": 1}
        with w.batch():
            w.set_meta("counters", {"n": 2})
            assert r.get_meta("counters") == {"n": 1}  # not committed yet
        assert r.get_meta("counters") == {"n": 2}
        with pytest.raises(ValueError, match="read-only"):
            r.set_meta("counters", {"n": 3})


# ------------------------------------------------------------------------------ fsync
def test_fsync_is_targeted_and_syncfs_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hasattr(store_mod, "_syncfs") and not hasattr(fs, "syncfs")
    d = tmp_path / "c"
    synced: list[Path] = []
    real = fs.fsync_path

    def spy(path, *, missing_ok=True):
        synced.append(Path(path))
        real(path, missing_ok=missing_ok)

    CampaignStore.create(d, setup={}).close()
    for mod in (fs, store_mod):
        monkeypatch.setattr(mod, "fsync_path", spy)
    monkeypatch.setattr(store_mod, "fsync_dir", lambda p: spy(p))
    with CampaignStore.open(d, fsync=False) as s:
        synced.clear()
        with s.batch():
            a = s.add(img(0.1), kind="queue", label=0, pred=0)
            b = s.add(img(0.2), kind="failure", oracle="misclassified", label=0, pred=1, parent=a.id)
        s.save_state("fuzzer", {"step": 1})
        s.write_stats({"status": "running"})
        s.append_plot({"t": 1})
        # fsync=False: the noted files may already be flushing in the background (never a
        # directory: those wait for sync); a new folder's creation is flushed at once
        early = set(synced) - {d / "failures"}
        assert d / "failures" in synced and early <= {a.path, b.path, d / "state/fuzzer.pt", d / "fuzzer_stats",
                                                      d / "plot_data"}
        s.sync()
        synced.remove(d / "failures")
        assert set(synced) == {a.path, b.path, d / "state/fuzzer.pt", d / "fuzzer_stats", d / "plot_data",
                               d / "index.sqlite", d / "index.sqlite-wal", d, d / "queue", d / "state",
                               d / "failures/misclassified"}
        assert len(synced) == len(set(synced))  # each exactly once, in the background or at sync
        synced.clear()
        s.sync()
        assert set(synced) <= {d / "index.sqlite", d / "index.sqlite-wal", d}  # nothing new but the index
    with CampaignStore.open(d) as s:  # fsync=True: a batch flushes exactly its files, then their folders
        synced.clear()
        with s.batch():
            c = s.add(img(0.3), kind="queue", label=0, pred=0)
            e = s.add(img(0.4), kind="queue", label=0, pred=0)
        assert synced == [c.path, e.path, d / "queue"]


# ------------------------------------------------------------------------------ read-only wrapper
def test_readonly_is_a_wrapper_refusing_every_write(tmp_path: Path) -> None:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={"k": 1}) as w:
        w.add(img(0.5), kind="queue", label=0, pred=0)
        w.save_state("s", {"a": 1})
        w.write_stats({"n": 1})
        w.append_plot({"t": 1})
    r = CampaignStore.open(d, readonly=True)
    assert isinstance(r, ReadOnlyStore) and isinstance(r, BaseStore) and r.readonly
    assert (r.path, r.setup, r.count(), r.oracles(), r.state_names()) == (d.absolute(), {"k": 1}, 1, [], ["s"])
    assert r.read_stats() == {"n": 1} and r.read_plot() == [{"t": "1"}] and r.load_state("s") == {"a": 1}
    assert [x.id for x in r.lineage(1)] == [1] and r.verify(sha=True) == [] and len(r) == 1
    refusals = {
        "add": lambda: r.add(img(0.1), kind="queue", label=0, pred=0),
        "add(bad input)": lambda: r.add("not a tensor", kind="nonsense", label=0, pred=0),
        "batch": lambda: r.batch(), "save_state": lambda: r.save_state("s", {}),
        "write_stats": lambda: r.write_stats({}), "append_plot": lambda: r.append_plot({"t": 2}),
        "set_meta": lambda: r.set_meta("k", 1), "delete": lambda: r.delete([1]), "sync": lambda: r.sync(),
    }
    for name, call in refusals.items():
        with pytest.raises(ValueError, match=f"campaign at {d} was opened read-only; open it without readonly=True"):
            call()
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.count()
    with pytest.raises(ValueError, match="closed"):
        r.read_stats()
    m = ReadOnlyStore(MemoryStore())
    with pytest.raises(ValueError, match="this store was opened read-only"):
        m.add(img(0.1), kind="queue", label=0, pred=0)


def test_closed_stores_refuse_everything(store) -> None:
    store.close()
    store.close()  # idempotent
    for call in (lambda: store.count(), lambda: store.entries(), lambda: store.get(1), lambda: store.read_stats(),
                 lambda: store.add(img(0.1), kind="queue", label=0, pred=0), lambda: store.save_state("a", {}),
                 lambda: store.load_state("a", None), lambda: store.get_meta("a", None), lambda: store.write_stats({})):
        with pytest.raises(ValueError, match="is closed"):
            call()


# ------------------------------------------------------------------------------ one definition
def test_entry_schema_has_one_definition(tmp_path: Path) -> None:
    names = [c.name for c in COLUMNS]
    fields = [f.name for f in dataclasses.fields(Entry)]
    assert names == [n for n in fields if n not in ("duplicate", "_loader")]
    with CampaignStore.create(tmp_path / "c", setup={}) as s:
        info = s.index.conn.execute("PRAGMA table_info(entries)").fetchall()
        e = s.add(img(0.5), kind="queue", label=0, pred=0)
    assert [row[1] for row in info] == names
    assert {row[1]: row[2] for row in info}["time_found"] == "REAL" and "CREATE TABLE entries" in SCHEMA
    assert set(e.record()) == set(names) - {"path"}
    conn = sqlite3.connect(tmp_path / "c" / "index.sqlite")
    assert conn.execute("SELECT dtype, finite, vmin, vmax FROM entries").fetchone() == ("<f4", 1, 0.5, 0.5)
    conn.close()


def test_base_store_core_is_small() -> None:
    assert sorted(BaseStore.__abstractmethods__) == ["_insert", "_query", "_read_meta", "_transaction",
                                                      "_write_meta", "close"]


def test_background_fsyncs_are_all_done_when_flush_returns_and_their_errors_surface(tmp_path, monkeypatch):
    import threading

    done: list[Path] = []
    gate = threading.Event()

    def slow(path, *, missing_ok=True):
        gate.wait(5)  # held until the main thread is inside flush (or 5 s)
        if Path(path).name == "bad":
            raise OSError(5, "Input/output error", str(path))
        done.append(Path(path))

    monkeypatch.setattr(fs, "fsync_path", slow)
    u = fs.Unsynced()
    names = [tmp_path / f"f{i}" for i in range(5)]
    for p in names:
        p.write_bytes(b"x")
        u.add(p)
    assert not done  # nothing finished: the worker waits on the gate
    threading.Timer(0.2, gate.set).start()
    assert u.flush() == 5
    assert set(names) <= set(done) and tmp_path in done  # every file, then the directory
    u.add(tmp_path / "bad")
    with pytest.raises(OSError, match="Input/output"):
        u.flush()
    sync = fs.Unsynced(background=False)
    sync.add(names[0])
    done.clear()
    assert sync.flush() == 1 and done == [names[0], tmp_path]
