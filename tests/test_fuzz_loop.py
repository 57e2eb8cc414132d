"""The fuzz loop: retention, failures, determinism, resume, validity, replayable lineage."""

from __future__ import annotations

import torch

from neurofuzz.corpus import CampaignStore
from neurofuzz.fuzzer.config import Budget, Constraint, FuzzConfig
from neurofuzz.fuzzer.campaign import Campaign as Fuzzer
from neurofuzz.fuzzer.zoo import load_digits32
from neurofuzz.mutators import create

NOISE = [{"name": "gaussian_noise"}, {"name": "salt_and_pepper_noise"}, {"name": "uniform_noise"}]
TIME_KEYS = {"run_time", "mutants_per_sec", "seconds_since_last_find", "pid"}


def _cfg(**kw) -> FuzzConfig:
    base = dict(seed=3, seeds_per_batch=4, mutants_per_seed=16, mutators=NOISE, budget=Budget(iterations=6),
                stats_interval=0.0, checkpoint_interval=1e9)
    base.update(kw)
    return FuzzConfig(**base)


def _make(tmp_path, name, target, cfg, n_seeds=40):
    x, y = load_digits32("test")
    return Fuzzer.create(tmp_path / name, target, x[:n_seeds], y[:n_seeds], cfg,
                         profile_data=load_digits32("train")[0][:512])


def _snapshot(path):
    with CampaignStore.open(path, readonly=True) as s:
        rows = [(e.id, e.kind, e.oracle, e.sha, e.parent, e.root, e.chain, e.gains, e.iteration) for e in s.entries()]
        stats = {k: v for k, v in s.read_stats().items() if k not in TIME_KEYS}
    return rows, stats


def test_campaign_grows_queue_and_coverage(tmp_path, digits_target):
    fz = _make(tmp_path, "c", digits_target, _cfg())
    before = fz.suite.values()
    n_seeds = len(fz.scheduler)
    summary = fz.run()
    fz.close()
    assert summary["iterations"] == 6 and summary["mutants"] == 6 * 4 * 16
    assert summary["queue_size"] > n_seeds
    after = {k[4:]: v for k, v in summary.items() if k.startswith("cov_")}
    assert all(after[k] >= round(before[k], 6) for k in before)  # the summary rounds to 6 digits
    assert sum(after.values()) > sum(before.values())
    with CampaignStore.open(tmp_path / "c", readonly=True) as s:
        assert s.read_stats()["status"] == "finished"
        assert len(s.read_plot()) >= 2
        children = [e for e in s.entries("queue") if e.parent is not None]
        assert children and all(e.gains and sum(e.gains.values()) > 0 for e in children)


def test_same_seed_same_campaign(tmp_path, digits_target):
    for name in ("a", "b"):
        fz = _make(tmp_path, name, digits_target, _cfg())
        fz.run()
        fz.close()
    rows_a, stats_a = _snapshot(tmp_path / "a")
    rows_b, stats_b = _snapshot(tmp_path / "b")
    assert len(rows_a) > 40
    assert rows_a == rows_b
    assert stats_a == stats_b
    fz = _make(tmp_path, "c", digits_target, _cfg(seed=4))
    fz.run()
    fz.close()
    assert _snapshot(tmp_path / "c")[0] != rows_a


def test_failures_are_stored_and_never_queued(tmp_path, digits_target):
    cfg = _cfg(mutators=[{"name": "fgsm", "eps": [0.3, 0.3]}], constraint=Constraint(enabled=False),
               budget=Budget(iterations=3))
    fz = _make(tmp_path, "f", digits_target, cfg)
    summary = fz.run()
    fz.close()
    assert summary["failures_misclassified"] > 0
    with CampaignStore.open(tmp_path / "f", readonly=True) as s:
        fails = s.entries(kind="failure")
        queue_sha = {e.sha for e in s.entries("queue")}
        assert fails and all(e.oracle == "misclassified" for e in fails)
        assert not queue_sha & {e.sha for e in fails}
        for e in fails[:10]:
            pred = int(digits_target(e.load()[None]).argmax(1))
            assert pred == e.pred != e.label


def test_resume_continues_counters_and_ids(tmp_path, digits_target):
    fz = _make(tmp_path, "r", digits_target, _cfg(budget=Budget(iterations=3)))
    fz.run()
    fz.close()
    rows_before, _ = _snapshot(tmp_path / "r")
    fz = Fuzzer.resume(tmp_path / "r", digits_target, budget=Budget(iterations=3))  # 3 more
    summary = fz.run()
    fz.close()
    assert summary["iterations"] == 6
    rows_after, _ = _snapshot(tmp_path / "r")
    assert rows_after[: len(rows_before)] == rows_before
    new_ids = [r[0] for r in rows_after[len(rows_before):]]
    assert new_ids and min(new_ids) > max(r[0] for r in rows_before)


def test_resume_matches_uninterrupted_run(tmp_path, digits_target):
    """Stopping at a checkpoint and resuming gives exactly the uninterrupted campaign."""
    fz = _make(tmp_path, "whole", digits_target, _cfg())
    fz.run()
    fz.close()
    fz = _make(tmp_path, "split", digits_target, _cfg(budget=Budget(iterations=2)))
    fz.run()
    fz.close()
    fz = Fuzzer.resume(tmp_path / "split", digits_target, budget=Budget(iterations=4))  # 4 more: 6 in all
    fz.run()
    fz.close()
    assert _snapshot(tmp_path / "whole")[0] == _snapshot(tmp_path / "split")[0]


def test_lineage_replays_exactly_and_affine_once(tmp_path, digits_target):
    muts = [{"name": "translate"}, {"name": "rotate"}, {"name": "gaussian_noise"}, {"name": "contrast"}]
    fz = _make(tmp_path, "l", digits_target, _cfg(mutators=muts, budget=Budget(iterations=8)))
    fz.run()
    fz.close()
    affine = {m["name"] for m in muts if create(m["name"]).kind == "affine"}
    with CampaignStore.open(tmp_path / "l", readonly=True) as s:
        deep = [e for e in s.entries("queue") if e.depth >= 2]
        assert deep, "expected lineages of depth >= 2"
        for e in s.entries():
            assert sum(step["mutator"] in affine for step in e.chain) <= 1
        for e in deep[:20]:
            x = s.get(e.root).load()[None]
            for step in e.chain:
                m = create(step["mutator"], **step["config"])
                x = m.replay(x, step["params"])
            assert torch.equal(x[0], e.load())


def test_validity_rule_rejects_heavy_noise(tmp_path, digits_target):
    cfg = _cfg(mutators=[{"name": "gaussian_noise", "std": [0.5, 0.5]}], budget=Budget(iterations=2))
    fz = _make(tmp_path, "v", digits_target, cfg)
    n_seeds = len(fz.scheduler)
    summary = fz.run()
    fz.close()
    assert summary["invalid_mutants"] == summary["mutants"] > 0
    assert summary["queue_size"] == n_seeds  # no mutant retained: only the seeds


def test_ready_built_oracles_join_the_loop(tmp_path, digits_target):
    """Extra oracles (e.g. neurofuzz.defenses.DetectorMiss(detector)) judge mutants like built-ins."""
    from neurofuzz.fuzzer.oracles import Oracle

    class Bright(Oracle):
        name = "bright"

        def check(self, ctx):
            return ctx.x.flatten(1).mean(1) > 0.3

    x, y = load_digits32("test")
    cfg = _cfg(mutators=[{"name": "contrast", "beta": [0.2, 0.3]}], budget=Budget(iterations=3),
               constraint=Constraint(enabled=False))
    fz = Fuzzer.create(tmp_path / "o", digits_target, x[:40], y[:40], cfg,
                       profile_data=load_digits32("train")[0][:512], extra_oracles=[Bright()])
    summary = fz.run()
    fz.close()
    assert summary["failures_bright"] > 0
    with CampaignStore.open(tmp_path / "o", readonly=True) as s:
        fails = s.entries(kind="failure", oracle="bright")
        assert fails and all(float(e.load().mean()) > 0.3 for e in fails)
        assert all(float(e.load().mean()) <= 0.3 for e in s.entries("queue") if e.parent is not None)


def test_detector_miss_oracle_in_a_campaign(tmp_path, digits_target):
    """A detector that misses a misclassified mutant makes it a failure of its own oracle."""
    from neurofuzz.defenses import DetectorMiss, SpatialSmoothing

    x, y = load_digits32("test")
    x_train = load_digits32("train")[0]
    detector = SpatialSmoothing(digits_target).fit(x_train[:512])
    cfg = _cfg(mutators=[{"name": "fgsm", "eps": [0.1, 0.3]}], oracles=["misclassified"],
               constraint=Constraint(enabled=False), budget=Budget(iterations=3))
    fz = Fuzzer.create(tmp_path / "d", digits_target, x[:40], y[:40], cfg, profile_data=x_train[:512],
                       extra_oracles=[DetectorMiss(detector)])
    summary = fz.run()
    fz.close()
    assert summary["failures_misclassified"] > 0
    assert 0 < summary["failures_detector_miss"] <= summary["failures_misclassified"]
    with CampaignStore.open(tmp_path / "d", readonly=True) as s:
        missed = s.entries(kind="failure", oracle="detector_miss")
        xs = torch.stack([e.load() for e in missed])
        assert not detector.detect(xs).any()  # stored misses really are undetected
        assert (digits_target.predict(xs) != torch.tensor([e.label for e in missed])).all()
