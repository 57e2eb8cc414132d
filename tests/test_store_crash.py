"""SIGKILL at fixed points of a write: a child process opens a campaign, installs a hook that
kills the process (``os.kill(os.getpid(), SIGKILL)``) at exactly one point, and writes; the test
then asserts exactly what a writer's open recovers. No timing is involved."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from neurofuzz.corpus import CampaignStore, content_hash


def img(seed: int, shape: tuple[int, ...] = (1, 4, 4)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


_PRELUDE = """
import os, signal, sys
import torch
from neurofuzz.corpus import CampaignStore
from neurofuzz.corpus.index import EntryIndex

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def img(seed, shape=(1, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)

store = CampaignStore.open(sys.argv[1], fsync=sys.argv[2] == "1")
"""


def run_child(d: Path, body: str, fsync: bool = True) -> str:
    code = _PRELUDE + textwrap.dedent(body) + "\nprint('not killed', flush=True)\n"
    p = subprocess.run([sys.executable, "-c", code, str(d), "1" if fsync else "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, f"child was not killed (rc {p.returncode}): {p.stderr}"
    assert "not killed" not in p.stdout
    return p.stdout


def npy_files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*.npy"))


@pytest.fixture
def camp(tmp_path: Path) -> Path:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        s.add(img(0), kind="queue", label=0, pred=0)
        s.save_state("fuzzer", {"step": 1})
        s.set_meta("counters", {"iterations": 1})
    return d


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fsync", [True, False])
def test_kill_after_image_write_before_commit(camp: Path, fsync: bool) -> None:
    """(a) The image file is on disk (fsynced when fsync=True), its row inserted but not committed:
    the entry is not in the campaign, its file is an orphan removed on open, and its id is issued
    again (it was never reported)."""
    out = run_child(camp, """
        def commit(self):
            assert any(p.name.startswith("id_000002_") for p in (store.path / "queue").iterdir())
            print("image on disk", flush=True)
            die()
        EntryIndex.commit = commit
        store.add(img(1), kind="queue", label=0, pred=0, parent=1)
    """, fsync)
    assert out.strip() == "image on disk"
    assert len(npy_files(camp)) == 2  # the orphan is there until a writer opens
    with CampaignStore.open(camp, readonly=True) as r:  # a reader sees only the committed entry
        assert [e.id for e in r.entries()] == [1]
    assert len(npy_files(camp)) == 2  # and touches nothing
    with CampaignStore.open(camp) as s:
        assert s.recovered == {"temp_files": 0, "orphans": 1, "plot_bytes_truncated": 0}
        assert [e.id for e in s.entries()] == [1] and npy_files(camp) == [s.get(1).path.relative_to(camp).as_posix()]
        assert s.get_meta("counters") == {"iterations": 1}
        e = s.add(img(1), kind="queue", label=0, pred=0, parent=1)
        assert e.id == 2 and not e.duplicate


@pytest.mark.timeout(120)
def test_kill_in_a_batch_before_commit_loses_the_whole_batch(camp: Path) -> None:
    """(a) for a batch: three images written and the counters set, then killed before the commit:
    none of it is in the campaign, the three files are orphans, the counters are the old ones."""
    run_child(camp, """
        EntryIndex.commit = lambda self: die()
        with store.batch():
            for i in range(3):
                store.add(img(10 + i), kind="queue", label=0, pred=0, parent=1)
            store.set_meta("counters", {"iterations": 99})
    """)
    assert len(npy_files(camp)) == 4
    with CampaignStore.open(camp) as s:
        assert s.recovered["orphans"] == 3 and s.count() == 1
        assert s.get_meta("counters") == {"iterations": 1}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fsync", [True, False])
def test_kill_right_after_commit(camp: Path, fsync: bool) -> None:
    """(b) Killed right after the index commit: the entry, its file and the meta value written in
    the same batch are all there; nothing needs cleaning."""
    out = run_child(camp, f"""
        real = EntryIndex.commit
        def commit(self):
            real(self)
            die()
        EntryIndex.commit = commit
        with store.batch():
            e = store.add(img(1), kind="queue", label=3, pred=3, parent=1, chain=[{{"op": "noise"}}])
            store.set_meta("counters", {{"iterations": 2}})
            print(e.id, e.sha, flush=True)
    """, fsync)
    id, sha = out.split()
    with CampaignStore.open(camp) as s:
        assert s.recovered == {"temp_files": 0, "orphans": 0, "plot_bytes_truncated": 0}
        e = s.get(int(id))
        assert e.sha == sha == content_hash(img(1)) and torch.equal(e.load(sha=True), img(1))
        assert (e.label, e.parent, e.chain) == (3, 1, [{"op": "noise"}])
        assert s.get_meta("counters") == {"iterations": 2} and s.verify(sha=True) == []
        assert s.add(img(2), kind="queue", label=0, pred=0).id == 3


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fsync", [True, False])
def test_kill_in_the_middle_of_save_state(camp: Path, fsync: bool) -> None:
    """(c) torch.save has written part of the new blob into its temp file when the process dies:
    the previous blob is whole and loads; the temp file is deleted by the next writer's open."""
    out = run_child(camp, """
        def half_save(obj, f):
            f.write(b"PK\\x03\\x04 half a zip")
            f.flush()
            print("half written", flush=True)
            die()
        torch.save = half_save
        store.save_state("fuzzer", {"step": 2, "big": torch.zeros(1000)})
    """, fsync)
    assert out.strip() == "half written"
    temps = [p.name for p in (camp / "state").iterdir() if p.name.startswith(".tmp-")]
    assert len(temps) == 1 and temps[0].endswith("-fuzzer.pt")
    with CampaignStore.open(camp, readonly=True) as r:
        assert r.load_state("fuzzer") == {"step": 1} and r.state_names() == ["fuzzer"]
    with CampaignStore.open(camp) as s:
        assert s.recovered == {"temp_files": 1, "orphans": 0, "plot_bytes_truncated": 0}
        assert s.load_state("fuzzer") == {"step": 1}
        assert sorted(p.name for p in (camp / "state").iterdir()) == ["fuzzer.pt"]


@pytest.mark.timeout(120)
def test_kill_mid_plot_append_and_stats_rewrite(camp: Path) -> None:
    """A kill in the middle of a plot line and of a stats rewrite: the torn line is cut on open,
    the previous stats file is whole, the stats temp file removed."""
    with CampaignStore.open(camp) as s:
        s.append_plot({"t": 1, "n": 10})
        s.write_stats({"status": "running", "n": 10})
    run_child(camp, """
        import neurofuzz.corpus.fs as fs
        with open(store.path / "plot_data", "a") as f:
            f.write("2,2")
            f.flush()
        def half(path, write, *, fsync=True):
            tmp = fs.temp_name(path)
            tmp.write_bytes(b"status : fin")
            die()
        fs.atomic_write = half
        import neurofuzz.corpus.monitor as mon
        mon.atomic_write_bytes = lambda path, data, fsync=True: half(path, None)
        store.write_stats({"status": "finished", "n": 20})
    """)
    with CampaignStore.open(camp) as s:
        assert s.recovered == {"temp_files": 1, "orphans": 0, "plot_bytes_truncated": 3}
        assert s.read_plot() == [{"t": "1", "n": "10"}]
        assert s.read_stats() == {"status": "running", "n": 10}
