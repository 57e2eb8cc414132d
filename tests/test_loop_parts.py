"""Unit tests of the fuzz loop's parts (plan, mutate, validate, judge, retain, mutator choice,
failure dedup, save_all_failures, the time budget inside an iteration), on a tiny model and an
in-memory store: no campaign directory, no profile from data."""

from __future__ import annotations

import dataclasses
import time

import pytest
import numpy as np
import torch
from torch import nn

from neurofuzz.corpus import MemoryStore
from neurofuzz.coverage import CoverageSuite, NeuronProfile
from neurofuzz.fuzzer.config import Budget, Constraint, FuzzConfig
from neurofuzz.fuzzer.loop import FuzzLoop
from neurofuzz.fuzzer.oracles import Oracle, build_oracles
from neurofuzz.fuzzer.queue import ImageCache, Queue, QueueEntry
from neurofuzz.fuzzer.schedulers import build_scheduler
from neurofuzz.fuzzer.stats import Counters
from neurofuzz.ground import Target
from neurofuzz.mutators import create


def _net() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # nn.Linear's initialisation draws from the global RNG
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net


class Always(Oracle):
    """Flags every input (to test failure handling without depending on the model)."""

    name = "always"

    def check(self, ctx):
        return torch.ones(len(ctx.x), dtype=torch.bool)


def _loop(mutators, *, oracles=("misclassified",), extra=(), n_seeds=4, **cfg_kw):
    target = Target(_net())
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n_seeds, 1, 4, 4, generator=g)
    preds = target.predict(x)
    profile = NeuronProfile.from_data(target, torch.rand(64, 1, 4, 4, generator=g))
    suite = CoverageSuite.default(target, profile, {"nbc": {}, "kmnc": {"k": 10}})
    cfg = FuzzConfig(seed=0, seeds_per_batch=2, mutants_per_seed=4, mutators=mutators, feedback=["kmnc"],
                     budget=Budget(iterations=1), **cfg_kw)
    store = MemoryStore()
    queue = Queue(lambda eid: store.get(eid).load(), cache_mb=1)
    sched = build_scheduler("uniform")
    loop = FuzzLoop(target=target, suite=suite, config=cfg, mutators=[create(m["name"], **{k: v for k, v in m.items() if k != "name"}) for m in mutators],
                    scheduler=sched, oracles=build_oracles(list(oracles)) + list(extra), queue=queue, store=store,
                    counters=Counters(), rng=torch.Generator().manual_seed(2))
    for i in range(n_seeds):  # seeds labelled with the model's own prediction: not failures
        e = store.add(x[i], kind="queue", label=int(preds[i]), pred=int(preds[i]))
        queue.add(QueueEntry(e.id, int(preds[i]), e.id, int(preds[i]), e.id, False), x[i])
        sched.add(e.id, root=e.id)
    return loop


def test_plan_gives_each_picked_seed_its_mutants_and_a_mutator():
    loop = _loop([{"name": "gaussian_noise"}, {"name": "contrast"}])
    plan = loop.plan()
    assert sum(n for seeds in plan.values() for _, n in seeds) == 2 * 4
    assert set(plan) <= {0, 1}
    assert all(eid in loop.queue for seeds in plan.values() for eid, _ in seeds)


def test_mutate_spreads_each_seed_over_its_rows():
    loop = _loop([{"name": "gaussian_noise", "std": [0.0, 0.0]}])  # identity noise: rows equal their seed
    plan = {0: [(1, 3), (2, 2)]}
    b = loop.mutate(plan)
    assert b.x.shape == (5, 1, 4, 4) and b.slot.tolist() == [0, 0, 0, 1, 1] and b.seed_ids == [1, 2]
    assert torch.equal(b.x[0], loop.queue.cache.get(1)) and torch.equal(b.x[4], loop.queue.cache.get(2))
    assert loop.counters.per_mutator["gaussian_noise"].mutants == 5


def test_validate_applies_the_pixel_rule_and_affine_once():
    loop = _loop([{"name": "gaussian_noise", "std": [0.5, 0.5]}, {"name": "translate"}])
    b = loop.mutate({0: [(1, 4)], 1: [(2, 4)]})
    ok = loop.validate(b)
    assert not ok[:4].any()  # heavy noise on every pixel: rejected by Linf and L0
    assert ok[4:].all()  # first affine mutation of the lineage: accepted without the pixel rule
    loop.queue.add(dataclasses.replace(loop.queue[2], affine_used=True))
    b = loop.mutate({1: [(2, 4)]})  # the lineage has used its affine mutation now
    assert not loop.validate(b).any()  # second affine mutation: rejected


def test_validate_rejects_non_finite_affine_mutants():
    loop = _loop([{"name": "translate"}])
    b = loop.mutate({0: [(1, 2)]})
    b.x[0, 0, 0, 0] = float("nan")
    assert loop.validate(b).tolist() == [False, True]


def test_judge_checks_oracles_before_feedback():
    loop = _loop([{"name": "gaussian_noise"}], extra=[Always()])
    b = loop.mutate({0: [(1, 4)]})
    rows = torch.arange(4)
    ev, ctx = loop.evaluate(b, rows)
    v = loop.judge(ev, ctx)
    assert v.failing.all() and not v.keep.any()  # a failing input never joins the queue


def test_retain_stores_failures_once_per_root_oracle_class():
    loop = _loop([{"name": "gaussian_noise", "std": [0.01, 0.01]}], oracles=(), extra=[Always()])
    for _ in range(3):
        loop.step()
    store = loop.store
    fails = store.entries(kind="failure")
    keys = {(e.root, e.oracle, e.pred) for e in fails}
    assert loop.counters.failures_total["always"] == loop.counters.failing == loop.counters.mutants
    assert len(keys) <= len(fails) < loop.counters.failing  # deduplicated by key (or new coverage)
    assert store.count("queue") == 4  # nothing retained: every mutant fails


def test_save_all_failures_keeps_every_distinct_one():
    loop = _loop([{"name": "gaussian_noise", "std": [0.01, 0.01]}], oracles=(), extra=[Always()],
                 save_all_failures=True)
    loop.step()
    assert loop.store.count("failure") == loop.counters.failing == 8


def test_adaptive_choice_prefers_the_mutator_that_yields():
    loop = _loop([{"name": "gaussian_noise"}, {"name": "contrast"}])
    loop.counters.mutator("gaussian_noise").mutants = 1000
    loop.counters.mutator("contrast").mutants = 1000
    loop.counters.mutator("contrast").retained = 500
    picks = [loop.pick_mutator(loop.queue[1]) for _ in range(400)]
    share = picks.count(1) / len(picks)
    # weights: 0.8 * yield share + 0.2 / 2 -> contrast ~ 0.1 + 0.8 * 0.998 = 0.90
    assert 0.85 < share < 0.95


def test_uniform_choice_and_affine_exclusion():
    loop = _loop([{"name": "translate"}, {"name": "contrast"}], mutator_choice="uniform")
    loop.queue.add(dataclasses.replace(loop.queue[1], affine_used=True))
    assert {loop.pick_mutator(loop.queue[1]) for _ in range(50)} == {1}
    assert {loop.pick_mutator(loop.queue[2]) for _ in range(200)} == {0, 1}


def test_retained_mutants_carry_their_lineage():
    loop = _loop([{"name": "translate"}], constraint=Constraint(enabled=True))
    for _ in range(4):
        loop.step()
    kids = [q for q in loop.queue.values() if q.depth]
    assert kids, "expected retained mutants"
    for q in kids:
        assert q.affine_used and q.ref == q.id  # an affine mutant is its descendants' reference
        e = loop.store.get(q.id)
        assert e.parent is not None and e.extra["ref"] == "self" and len(e.chain) == q.depth
        assert e.chain[:-1] == loop.store.get(e.parent).chain  # a child's chain extends its parent's


def test_time_budget_is_checked_between_attack_groups(monkeypatch):
    loop = _loop([{"name": "fgsm"}], constraint=Constraint(enabled=False))
    monkeypatch.setattr("neurofuzz.fuzzer.loop.ATTACK_GROUP", 2)
    loop.deadline = time.monotonic() - 1.0  # already past: only the first group runs
    b = loop.mutate({0: [(1, 4), (2, 4)]})
    assert len(b.x) == 2 and len(b.groups) == 1
    assert loop.counters.per_mutator["fgsm"].mutants == 2


def test_image_cache_is_bounded_in_bytes():
    loads = []
    cache = ImageCache(lambda i: loads.append(i) or torch.zeros(256, dtype=torch.float32), max_mb=4 * 1024 / 2**20)
    for i in range(10):
        cache.get(i)
    assert cache.nbytes <= 4 * 1024 and len(cache) == 4
    cache.get(9)
    assert loads == list(range(10))  # 9 was still cached
    cache.get(0)
    assert loads[-1] == 0  # 0 had been evicted


def test_registry_build_rejects_unknown_parameters():
    from neurofuzz.ground.errors import UserError

    with pytest.raises(UserError, match="does not take parameters bogus"):
        build_oracles([{"name": "misclassified", "bogus": 1}])
    with pytest.raises(UserError, match="unknown oracle 'nope'; choose from"):
        build_oracles(["nope"])


def test_scheduler_retain_drops_deleted_entries_and_regroups():
    s = build_scheduler("power")
    s.add(1, root=1, gain=1.0)
    s.add(2, root=1, gain=2.0)
    s.add(3, root=3, gain=3.0)
    s.add(4, root=3, gain=4.0)
    assert s.retain({2, 3, 4}) == 1
    assert s.ids == [2, 3, 4] and 1 not in s
    assert s.group.tolist() == [0, 1, 1]  # 2 lost its root: its own group; 4 still in 3's
    assert s.gain.tolist() == [2.0, 3.0, 4.0]
    assert all(eid in {2, 3, 4} for eid, _ in s.plan(3, 4, torch.Generator().manual_seed(0)))
    assert s.retain({2, 3, 4}) == 0


def test_queue_records_are_columns_not_objects():
    q = Queue(lambda eid: torch.zeros(1, 2, 2), cache_mb=1)
    for i in range(1, 20001):
        q.add(QueueEntry(i, i % 10, 1, 3, 1 if i % 2 else i, bool(i % 2), i % 5))
    assert len(q) == 20000 and 20001 not in q and 0 not in q
    assert q[7] == QueueEntry(7, 7, 1, 3, 1, True, 2) and q[8].ref == 8 and not q[8].affine_used
    assert q.nbytes / len(q) <= 6 * 4 * 1.5 + 0.1  # six int32 columns, at most half again as much capacity
    with pytest.raises(KeyError):
        q[20001]


def test_queue_columns_widen_to_int64_when_an_id_needs_it():
    q = Queue(lambda eid: torch.zeros(1, 2, 2), cache_mb=1)
    q.add(QueueEntry(5, 1, 5, 1, 5, False, 0))
    big = 2**31 + 7
    cols = q._cols
    cols.set(3, (big, 1, 1, big, 0, 0))  # a root id past int32: the columns widen, nothing wraps
    assert cols.data.dtype == np.int64 and int(cols.get(3)[0]) == big and q[5] == QueueEntry(5, 1, 5, 1, 5, False, 0)


def test_scheduler_holds_about_forty_bytes_per_entry_and_ids_survive_a_state_round_trip():
    from neurofuzz.fuzzer.schedulers import build_scheduler

    s = build_scheduler("uniform")
    for i in range(1, 20001):
        s.add(i, gain=float(i % 3), root=1 + (i - 1) // 100 * 100)
    # 4-byte id, 4-byte row, four float64 rows; at most half again as much capacity
    assert s.nbytes / len(s) <= (4 + 4 * 1.5 + 32 * 1.5) * 1.01
    d = s.state_dict()
    assert isinstance(d["ids"], torch.Tensor) and d["ids"].dtype == torch.int64
    t = build_scheduler("uniform")
    t.load_state_dict(d)
    assert t.ids == s.ids and torch.equal(t.group, s.group) and torch.equal(t.gain, s.gain)
    old_style = dict(d, ids=[int(i) for i in d["ids"]])  # checkpoints written before ids were a tensor
    u = build_scheduler("uniform")
    u.load_state_dict(old_style)
    assert u.ids == s.ids
