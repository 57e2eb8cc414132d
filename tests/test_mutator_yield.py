"""Adaptive mutator choice by yield per unit of cost (issue 11, item 4): hand-computed yields and
weights, what counts as a find (new failing pairs, not repeated ones), what a mutant costs (its
model queries), old ``per_mutator`` records, determinism, and the config / CLI contract."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from neurofuzz.corpus import MemoryStore
from neurofuzz.coverage import CoverageSuite, NeuronProfile
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.config import Budget, Constraint, FuzzConfig
from neurofuzz.fuzzer.loop import FuzzLoop
from neurofuzz.fuzzer.mutator_choice import GRAD_COST, QueryMeter, choice_weights, yields
from neurofuzz.fuzzer.oracles import Oracle
from neurofuzz.fuzzer.queue import Queue, QueueEntry
from neurofuzz.fuzzer.schedulers import build_scheduler
from neurofuzz.fuzzer.stats import CampaignStats, Counters, MutatorStats
from neurofuzz.ground import Target
from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import create

P = MutatorStats


class Always(Oracle):
    """Flags every input: every mutant fails, so only the (root, predicted class) pairs differ."""

    name = "always"

    def check(self, ctx):
        return torch.ones(len(ctx.x), dtype=torch.bool)


def _loop(mutators, *, choice="adaptive", oracles=(), n_seeds=4):
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # nn.Linear's initialisation draws from the global RNG
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    target = Target(net)
    x = torch.rand(n_seeds, 1, 4, 4, generator=g)
    preds = target.predict(x)
    suite = CoverageSuite.default(target, NeuronProfile.from_data(target, torch.rand(64, 1, 4, 4, generator=g)),
                                  {"nbc": {}, "kmnc": {"k": 10}})
    cfg = FuzzConfig(seed=0, seeds_per_batch=2, mutants_per_seed=4, mutators=mutators, feedback=["kmnc"],
                     budget=Budget(iterations=1), mutator_choice=choice, constraint=Constraint(enabled=False))
    store = MemoryStore()
    queue = Queue(lambda eid: store.get(eid).load(), cache_mb=1)
    sched = build_scheduler("uniform")
    loop = FuzzLoop(target=target, suite=suite, config=cfg, mutators=[create(**m) for m in mutators],
                    scheduler=sched, oracles=list(oracles), queue=queue, store=store, counters=Counters(),
                    rng=torch.Generator().manual_seed(2))
    for i in range(n_seeds):
        e = store.add(x[i], kind="queue", label=int(preds[i]), pred=int(preds[i]))
        queue.add(QueueEntry(e.id, int(preds[i]), e.id, int(preds[i]), e.id, False), x[i])
        sched.add(e.id, root=e.id)
    return loop


# ---------------------------------------------------------------------------- the rule, by hand
def test_yields_and_weights_by_hand():
    a = P(mutants=10, retained=2, new_pairs=1, cost=10)  # 3 finds for 10 forward passes
    b = P(mutants=10, failures=10, cost=40)  # 10 failing mutants, none new; 4 forward passes each
    assert yields([a, b]).tolist() == pytest.approx([(3 + 1) / (10 + 2), (0 + 1) / (40 + 2)])
    # budget shares 0.8 * (14/15, 1/15) + 0.1; per-mutant costs 11/11 and 41/11
    wa, wb = 0.8 * 14 / 15 + 0.1, (0.8 / 15 + 0.1) * 11 / 41
    assert choice_weights([a, b]).tolist() == pytest.approx([wa / (wa + wb), wb / (wa + wb)])
    assert choice_weights([a, b]).tolist() == pytest.approx([0.95366, 0.04634], abs=1e-5)
    # the old rule counts every failing mutant, per mutant: it prefers b
    ya, yb = 3 / 12, 11 / 12
    old = [0.8 * ya / (ya + yb) + 0.1, 0.8 * yb / (ya + yb) + 0.1]
    assert choice_weights([a, b], rule="adaptive-per-mutant").tolist() == pytest.approx(old)
    assert choice_weights([a, b], rule="uniform").tolist() == [0.5, 0.5]


def test_a_mutator_without_data_is_neither_starved_nor_trusted_beyond_one_try():
    assert yields([P()]).tolist() == [0.5]  # the Gamma(1, 2) prior: 1 find per 2 forward passes
    assert choice_weights([P(), P(), P()]).tolist() == pytest.approx([1 / 3] * 3)
    known = P(mutants=320, retained=32, cost=320)
    untried = choice_weights([known, P()])[1]
    assert 0.5 < untried < 0.95  # optimistic: tried before the known one
    after_one_attack_group = choice_weights([known, P(mutants=32, failures=32, new_pairs=2, cost=32 * 241)])[1]
    assert after_one_attack_group < 0.001  # one group of an 80-step attack, 2 finds: nearly only the floor
    k = [P(mutants=320, retained=32, cost=320) for _ in range(13)] + [P(mutants=32, cost=32 * 241)]
    w = choice_weights(k)
    per_mutant = (32 * 241 + 1) / (32 + 1)
    budget_share = w[-1] * per_mutant / (w[-1] * per_mutant + w[:-1].sum())  # picks times cost per mutant
    assert budget_share == pytest.approx(0.2 / 14, rel=0.05)  # the exploration floor is a share of the cost


def test_repeated_failing_pairs_weigh_less_than_new_pairs_at_the_same_cost():
    seen = P(mutants=100, failures=100, new_pairs=0, cost=400)
    new = P(mutants=100, failures=100, new_pairs=20, cost=400)
    w = choice_weights([seen, new])
    assert w[1] > 3 * w[0]
    assert choice_weights([seen, new], rule="adaptive-per-mutant").tolist() == [0.5, 0.5]  # cannot tell them apart


def test_a_slow_mutator_with_the_same_finds_weighs_less():
    fast = P(mutants=100, retained=10, cost=100, seconds=0.1)
    slow = P(mutants=100, retained=10, cost=8100, seconds=40.0)  # 80 gradient steps per mutant
    w = choice_weights([fast, slow])
    assert w[0] > 100 * w[1]
    assert choice_weights([fast, slow], rule="adaptive-per-mutant").tolist() == [0.5, 0.5]
    costs = [100, 200, 400, 1600, 6400]
    weights = [float(choice_weights([fast, P(mutants=100, retained=10, cost=c)])[1]) for c in costs]
    assert weights == sorted(weights, reverse=True) and weights[0] == pytest.approx(0.5)


def test_seconds_do_not_change_the_choice():
    a, b = P(100, 10, 5, 3, 400, seconds=1.0), P(50, 2, 0, 0, 50, seconds=0.01)
    a2, b2 = P(100, 10, 5, 3, 400, seconds=1e6), P(50, 2, 0, 0, 50, seconds=0.0)
    assert torch.equal(choice_weights([a, b]), choice_weights([a2, b2]))


def test_choice_weights_refuses_an_unknown_rule_or_no_mutator():
    with pytest.raises(ValueError, match="unknown mutator choice rule 'bandit'"):
        choice_weights([P()], rule="bandit")
    with pytest.raises(ValueError, match="no mutator"):
        choice_weights([])


# ---------------------------------------------------------------------------- cost and finds in the loop
def test_query_meter_counts_rows_and_gradient_rows_and_always_detaches():
    with torch.random.fork_rng():  # nn.Linear's initialisation draws from the global RNG
        net = nn.Linear(3, 2)
    with QueryMeter(net) as m:
        net(torch.zeros(5, 3))
        with torch.no_grad():
            net(torch.zeros(2, 3, requires_grad=True))  # no gradient can be taken: a forward pass
        net(torch.zeros(4, 3, requires_grad=True))
    assert m.cost == 5 + 2 + 4 * GRAD_COST
    net(torch.zeros(9, 3))
    assert m.cost == 5 + 2 + 4 * GRAD_COST and not net._forward_pre_hooks  # counted only while active
    with pytest.raises(RuntimeError), QueryMeter(net):
        raise RuntimeError("a mutator failed")
    assert not net._forward_pre_hooks
    with QueryMeter(None) as m:
        net(torch.zeros(3, 3))
    assert m.cost == 0


def test_the_loop_charges_model_queries_and_credits_each_new_pair_once():
    loop = _loop([{"name": "gaussian_noise", "std": [0.0, 0.0]}, {"name": "fgsm", "eps": [0.3, 0.3]}],
                 oracles=[Always()])
    for _ in range(6):
        loop.step()
    c = loop.counters
    noise, fgsm = c.per_mutator["gaussian_noise"], c.per_mutator["fgsm"]
    assert noise.mutants and fgsm.mutants
    assert noise.cost == noise.mutants  # no model query: its evaluation only
    assert fgsm.cost == fgsm.mutants * (1 + GRAD_COST)  # FGSM: one gradient per input
    assert noise.seconds > 0 and fgsm.seconds > 0
    assert noise.failures == noise.mutants and fgsm.failures == fgsm.mutants  # every mutant fails
    assert noise.new_pairs + fgsm.new_pairs == len(c.failing_pairs)  # each pair credited once
    assert noise.new_pairs <= 4 < noise.failures  # identity noise: one pair per seed, repeated
    assert c.mutants == noise.mutants + fgsm.mutants


def test_pick_mutator_uses_the_cost_aware_rule():
    def share(choice):
        loop = _loop([{"name": "gaussian_noise"}, {"name": "fgsm"}], choice=choice)
        loop.counters.per_mutator = {"gaussian_noise": P(1000, retained=100, cost=1000),
                                     "fgsm": P(1000, failures=1000, new_pairs=100, cost=4000)}  # same finds, 4x cost
        picks = [loop.pick_mutator(loop.queue[1]) for _ in range(1000)]
        return picks.count(0) / len(picks)

    # expected: 0.919 (finds per forward pass) and 0.173 (every failing mutant, per mutant)
    assert share("adaptive") == pytest.approx(0.919, abs=0.03)
    assert share("adaptive-per-mutant") == pytest.approx(0.173, abs=0.03)


def test_same_seed_same_picks_and_counts():
    def run():
        loop = _loop([{"name": "gaussian_noise"}, {"name": "contrast"}, {"name": "fgsm"}], oracles=[Always()])
        picks = []
        for _ in range(5):
            picks.append(loop.plan())
            loop.step()
        counts = {k: m.to_list(seconds=False) for k, m in loop.counters.per_mutator.items()}
        return picks, counts, sorted(e.sha for e in loop.store.entries())

    first, second = run(), run()
    assert first == second and len(first[2]) > 4
    assert len({k for plan in first[0] for k in plan}) > 1  # more than one mutator was picked


def test_picks_do_not_depend_on_the_recorded_seconds():
    picks = []
    for seconds in (0.0, 1e4):
        loop = _loop([{"name": "gaussian_noise"}, {"name": "contrast"}, {"name": "fgsm"}])
        loop.counters.per_mutator = {"gaussian_noise": P(64, 3, 0, 0, 64, seconds), "contrast": P(64, 1, 0, 0, 64),
                                     "fgsm": P(64, 0, 64, 5, 256, seconds / 3)}
        picks.append([loop.pick_mutator(loop.queue[1]) for _ in range(300)])
    assert picks[0] == picks[1] and len(set(picks[0])) == 3


# ---------------------------------------------------------------------------- records
def test_old_per_mutator_lists_read_and_new_fields_round_trip():
    old = Counters.from_dict({"iterations": 2, "per_mutator": {"blur": [96, 4, 1]}})
    assert old.per_mutator["blur"] == P(96, 4, 1, 0, 0, 0.0) and old.per_mutator["blur"].spent == 96
    flat_old = CampaignStats.from_flat({"per_mutator": '{"blur": [96, 4, 1]}'})
    assert flat_old.per_mutator["blur"] == P(96, 4, 1)
    # an old campaign's record weighs as if each mutant cost one forward pass
    assert torch.equal(choice_weights([P(100, 10, 0), P(100, 0, 0)]),
                       choice_weights([P(100, 10, 0, cost=100), P(100, 0, 0, cost=100)]))

    c = Counters()
    c.per_mutator = {"pgd": P(32, 0, 32, 3, 3904, 1.25), "blur": P(64, 5, 0, 0, 64, 0.0625)}
    back = Counters.from_dict(json.loads(json.dumps(c.to_dict())))  # as checkpointed
    assert back.per_mutator == c.per_mutator
    flat = CampaignStats(per_mutator=c.per_mutator).to_flat()
    assert json.loads(flat["per_mutator"]) == {"pgd": [32, 0, 32, 3, 3904], "blur": [64, 5, 0, 0, 64]}
    again = CampaignStats.from_flat(flat).per_mutator
    assert again == {k: P(*m.to_list(seconds=False)) for k, m in c.per_mutator.items()}  # seconds: not in the file


@pytest.mark.parametrize("line", ['{"blur": [1]}', '[1, 2, 3]', '{"blur": [1, 2, 3, 4, 5, 6, 7]}', '{"b": "x"}', "{"])
def test_a_damaged_per_mutator_line_reads_as_none(line):
    assert CampaignStats.from_flat({"mutants": "5", "per_mutator": line}).per_mutator == {}


# ---------------------------------------------------------------------------- config and CLI
def test_config_takes_the_three_rules_and_refuses_others_in_one_line(tmp_path, capsys):
    for rule in ("adaptive", "adaptive-per-mutant", "uniform"):
        assert FuzzConfig(mutator_choice=rule).mutator_choice == rule
    assert FuzzConfig().mutator_choice == "adaptive"
    with pytest.raises(UserError, match="mutator_choice must be 'adaptive' or 'uniform', got 'bandit'"):
        FuzzConfig(mutator_choice="bandit")
    toml = tmp_path / "c.toml"
    toml.write_text('mutator_choice = "per-second"\n')
    rc = main(["fuzz", "--out", str(tmp_path / "c"), "--config", str(toml), "--iterations", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("neurofuzz: error: mutator_choice must be 'adaptive' or 'uniform', got 'per-second'")
    assert "adaptive-per-mutant" in err and not (tmp_path / "c").exists()
