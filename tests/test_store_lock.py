"""The single-writer lock: held on the campaign directory itself, so deleting ``.lock`` lets no
second writer in; dropped by the kernel when the holder dies (SIGKILL at a fixed point); and
:func:`campaign_status` / :func:`live_writer` tell a running campaign from a crashed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurofuzz.corpus import CampaignStore, MemoryStore, campaign_status, check_replaceable, live_writer
from neurofuzz.corpus.lock import recorded_pid
from neurofuzz.ground.errors import UserError

_HOLDER = r"""
import os, signal, sys
from neurofuzz.corpus import CampaignStore
store = CampaignStore.open(sys.argv[1])
store.write_stats({"status": "running", "pid": os.getpid()})
print("holding", os.getpid(), flush=True)
sys.stdin.readline()          # the fixed point: killed right after the parent says so
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def camp(tmp_path: Path) -> Path:
    d = tmp_path / "c"
    with CampaignStore.create(d, setup={}) as s:
        s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    return d


def test_two_writers_refused_in_process_even_after_rm_lock(camp: Path) -> None:
    with CampaignStore.open(camp) as w:
        assert recorded_pid(camp) == os.getpid()
        (camp / ".lock").unlink()
        with pytest.raises(UserError, match=r"in use by another process \(pid \?\)"):
            CampaignStore.open(camp)
        with pytest.raises(UserError, match="in use by another process"):
            CampaignStore.create(camp, setup={}, mode="force")
        assert w.count() == 1 and (camp / "fuzzer_setup").is_file()  # the refused create wiped nothing
        with CampaignStore.open(camp, readonly=True) as r:  # readers take no lock
            assert r.count() == 1
    with CampaignStore.open(camp) as w:  # released on close
        assert recorded_pid(camp) == os.getpid()


@pytest.mark.timeout(120)
def test_lock_held_by_another_process_then_released_by_sigkill(camp: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(camp)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.startswith("holding"), proc.stderr.read() if proc.stderr else ""
        pid = int(line.split()[1])
        assert live_writer(camp) and campaign_status(camp) == "running"
        with pytest.raises(UserError, match=rf"in use by another process \(pid {pid}\)"):
            CampaignStore.open(camp)
        (camp / ".lock").unlink()  # deleting the pid file does not let a second writer in
        with pytest.raises(UserError, match=r"in use by another process \(pid \?\)"):
            CampaignStore.open(camp)
        os.rename(camp / "queue", camp / "queue2")  # nor does any other file game
        os.rename(camp / "queue2", camp / "queue")
        with pytest.raises(UserError, match="in use by another process"):
            CampaignStore.open(camp)
        with pytest.raises(UserError, match="in use by another process"):
            check_replaceable(camp)
        proc.stdin.write("die\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not live_writer(camp)
    assert campaign_status(camp) == f"crashed (pid {pid} not running)"
    with CampaignStore.open(camp, readonly=True) as r:
        assert campaign_status(r) == f"crashed (pid {pid} not running)"
    check_replaceable(camp)  # no writer: --force may replace it
    with CampaignStore.open(camp) as s:  # the kernel dropped the lock with the process
        assert s.count() == 1
        assert campaign_status(s) == "running"  # this process holds it now
        s.write_stats({"status": "finished", "pid": os.getpid()})
    assert campaign_status(camp) == "finished"


def test_campaign_status_cases(tmp_path: Path, camp: Path) -> None:
    assert campaign_status(camp) == "not started"  # no fuzzer_stats yet
    assert campaign_status(str(camp)) == "not started"
    with CampaignStore.open(camp) as s:
        assert campaign_status(camp) == "running"
        s.write_stats({"status": "stopped", "pid": os.getpid()})
    assert campaign_status(camp) == "stopped"
    with CampaignStore.open(camp) as s:
        s.write_stats({"status": "running"})  # no pid recorded in the stats: the .lock pid is used
    assert campaign_status(camp) == f"crashed (pid {os.getpid()} no longer holds the campaign lock)"
    (camp / ".lock").unlink()
    assert campaign_status(camp) == "crashed (writer not running)"
    m = MemoryStore()
    assert campaign_status(m) == "not started"
    m.write_stats({"status": "finished"})
    assert campaign_status(m) == "finished"
    assert not live_writer(tmp_path / "nowhere")


def test_check_replaceable(tmp_path: Path, camp: Path) -> None:
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="does not look like a neurofuzz campaign"):
        check_replaceable(foreign)
    check_replaceable(tmp_path / "missing")
    check_replaceable(camp)
