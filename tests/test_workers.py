"""Several workers fuzzing one campaign (``fuzz --workers N``): one campaign for the readers, the
union of the workers' coverage, ids that never collide, determinism per worker, kills and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from neurofuzz.corpus import CampaignStore
from neurofuzz.corpus.shards import SHARD_STRIDE, shard_dir, shard_of
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.config import Budget
from neurofuzz.fuzzer.sync import FINAL, SYNC_DIR, latest_publication
from neurofuzz.fuzzer.workers import merge_counters, split_budget, worker_device, worker_seed
from neurofuzz.fuzzer.stats import Counters

RUN = ["fuzz", "--workers", "2", "--iterations", "40", "--sync-every", "3", "--quiet"]


def _shard_entries(camp: Path, k: int) -> list[tuple[int, str, int | None]]:
    s = CampaignStore._reader(shard_dir(camp, k), True)
    try:
        return [(e.id, e.sha, e.parent) for e in s.entries()]
    finally:
        s.close()


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same two-worker campaign (seed 3) made twice."""
    d = tmp_path_factory.mktemp("workers")
    out = {}
    for name, seed in (("a", 3), ("b", 3)):
        assert main([*RUN, "--out", str(d / name), "--seed", str(seed)]) == 0
        out[name] = d / name
    return out


def test_readers_see_one_campaign_with_unique_ids(twins, capsys):
    camp = twins["a"]
    with CampaignStore.open(camp, readonly=True) as store:
        ids = [e.id for e in store.entries()]
        n_queue, n_fail = store.count("queue"), store.count("failure")
        lineages = [store.lineage(e.id) for e in store.entries(kind="failure")]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    per_shard = {k: _shard_entries(camp, k) for k in (1, 2)}
    for k, rows in per_shard.items():
        assert rows and all(shard_of(i) == k and i > k * SHARD_STRIDE for i, _, _ in rows)
    seeds = [i for i in ids if shard_of(i) == 0]
    assert len(ids) == len(seeds) + sum(len(r) for r in per_shard.values())
    # the workers did exchange inputs: some entries descend from a peer's find
    crossed = [(k, p) for k, rows in per_shard.items() for _, _, p in rows if p and shard_of(p) not in (0, k)]
    assert crossed
    assert all(lin[0].parent is None and shard_of(lin[0].id) == 0 for lin in lineages)  # lineage crosses shards
    assert main(["status", str(camp), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["stored"] == {"queue": n_queue, "failures": n_fail}
    assert st["status"] == "finished" and st["stats"]["iterations"] == 40


def test_campaign_coverage_is_the_union_of_the_workers_maps(twins):
    camp = twins["a"]
    with CampaignStore.open(camp, readonly=True) as store:
        merged = store.load_state("fuzzer")["coverage"]
        stats = store.read_stats()
    finals = [torch.load(shard_dir(camp, k) / SYNC_DIR / FINAL, weights_only=True)["coverage"] for k in (1, 2)]
    own = [CampaignStore._reader(shard_dir(camp, k), True) for k in (1, 2)]
    worker_stats = [s.read_stats() for s in own]
    for s in own:
        s.close()
    for metric, st in merged.items():
        union = finals[0][metric]["covered"] | finals[1][metric]["covered"]
        assert torch.equal(st["covered"], union), metric
        # the campaign's figure is the union's, at least each worker's own
        assert stats[f"cov_{metric}"] >= max(w[f"cov_{metric}"] for w in worker_stats) - 1e-9
    assert stats["mutants"] == sum(w["mutants"] for w in worker_stats)


def test_each_worker_is_deterministic_for_a_fixed_seed(twins):
    for k in (1, 2):
        assert _shard_entries(twins["a"], k) == _shard_entries(twins["b"], k)
    # the two workers' streams differ (their seeds are derived from the campaign seed and the index)
    assert {s for _, s, _ in _shard_entries(twins["a"], 1)}.isdisjoint(s for _, s, _ in _shard_entries(twins["a"], 2))
    assert worker_seed(3, 1) != worker_seed(3, 2) != worker_seed(4, 2)


def test_budget_split_devices_and_counter_merge():
    assert split_budget(Budget(iterations=5, seconds=9), 2) == Budget(iterations=3, seconds=9)
    assert [worker_device("cuda", k, gpus=2) for k in (1, 2, 3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_device("cuda:1", 2, gpus=4) == "cuda:1" and worker_device("auto", 2, gpus=0) == "cpu"
    a, b = Counters(mutants=10, first_failure=4.0), Counters(mutants=5, first_failure=2.5)
    a.failing_pairs, b.failing_pairs = {(1, 2)}, {(1, 2), (3, 4)}
    a.failures_total, b.failures_total = {"misclassified": 2}, {"misclassified": 3}
    m = merge_counters([a, b])
    assert (m.mutants, m.first_failure, m.failing_pairs, m.failures_total) == \
        (15, 2.5, {(1, 2), (3, 4)}, {"misclassified": 5})


@pytest.mark.parametrize("argv, msg", [
    (["--workers", "0"], "--workers must lie in"),
    (["--worker", "1"], "give --resume too"),
    (["--ray", "auto"], "give --workers N too"),
    (["--workers", "2", "--threads", "0"], "--threads must lie in"),
    (["--workers", "2", "--sync-every", "0"], "--sync-every must lie in"),
])
def test_bad_worker_options_are_one_line_errors(tmp_path, capsys, argv, msg):
    rc = main(["fuzz", "--out", str(tmp_path / "c"), "--iterations", "1", "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_metric_that_cannot_be_shared_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[metrics]\nnc = {}\nnlc = {}\n")
    rc = main(["fuzz", "--out", str(tmp_path / "c"), "--workers", "2", "--config", str(cfg), "--iterations", "1",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "nlc cannot be shared between workers" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_workers_cannot_change_on_resume(twins, capsys):
    rc = main(["fuzz", "--out", str(twins["b"]), "--resume", "--workers", "3", "--iterations", "1", "--quiet"])
    assert rc == 2 and "--workers cannot change on --resume" in capsys.readouterr().err


# ---------------------------------------------------------------------------- kills (slow: real processes)
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "neurofuzz.fuzzer.cli", *args]


def _wait_for(pred, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.1)


def _epochs(camp: Path, k: int) -> int:
    d = shard_dir(camp, k) / SYNC_DIR
    return len(list(d.glob("e*.pt"))) if d.is_dir() else 0


@pytest.mark.slow
def test_sigkill_of_one_worker_loses_nothing_and_it_is_restarted(tmp_path):
    camp = tmp_path / "c"
    p = subprocess.Popen(_cli("fuzz", "--out", str(camp), "--workers", "2", "--time", "25", "--sync-every", "5",
                              "--seed", "0", "--quiet"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for(lambda: _epochs(camp, 1) >= 3)  # a fixed point: worker 1 has synced three times
    before = set(_shard_entries(camp, 1))
    os.kill(latest_publication(shard_dir(camp, 1))["pid"], signal.SIGKILL)
    out = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 0, out
    after = set(_shard_entries(camp, 1))
    assert before <= after and len(after) > len(before)  # what was saved is still there; it went on
    with CampaignStore.open(camp, readonly=True) as s:
        table = s.get_meta("workers")
    assert table["w1"]["restarts"] == 1 and table["w2"]["restarts"] == 0
    assert table["w1"]["exit"] == 0 and table["w2"]["exit"] == 0


@pytest.mark.slow
def test_sigkill_of_the_coordinator_then_resume(tmp_path):
    camp = tmp_path / "c"
    p = subprocess.Popen(_cli("fuzz", "--out", str(camp), "--workers", "2", "--time", "60", "--sync-every", "5",
                              "--seed", "0", "--quiet"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: _epochs(camp, 1) >= 2 and _epochs(camp, 2) >= 2)
    p.kill()
    p.wait()
    # the orphaned workers checkpoint and stop by themselves
    _wait_for(lambda: all((shard_dir(camp, k) / SYNC_DIR / FINAL).exists() for k in (1, 2)), timeout=60)
    before = {k: set(_shard_entries(camp, k)) for k in (1, 2)}
    r = subprocess.run(_cli("status", str(camp)), capture_output=True, text=True)
    assert "crashed" in r.stdout
    r = subprocess.run(_cli("fuzz", "--out", str(camp), "--resume", "--iterations", "20", "--quiet"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for k in (1, 2):
        assert before[k] <= set(_shard_entries(camp, k))
    # one worker alone, in the foreground
    r = subprocess.run(_cli("fuzz", "--out", str(camp), "--resume", "--worker", "2", "--iterations", "5", "--quiet"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "worker 2" in r.stdout, r.stdout + r.stderr
    assert json.loads(subprocess.run(_cli("status", str(camp), "--json"), capture_output=True,
                                     text=True).stdout)["status"] == "finished"


@pytest.mark.slow
def test_ray_backend_on_a_local_ray(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'neurofuzz[ray]'")
    camp = tmp_path / "c"
    r = subprocess.run(_cli("fuzz", "--out", str(camp), "--workers", "2", "--ray", "auto", "--iterations", "20",
                            "--sync-every", "4", "--seed", "0", "--quiet"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.read_stats()["iterations"] == 20
        assert {shard_of(e.id) for e in s.entries()} == {0, 1, 2}
