"""Seed schedulers: plan contract, determinism, root stratification, decay / power / gain rules,
resume through state_dict, and error handling at the boundary."""

from __future__ import annotations

import contextlib
import io
import math
import signal
from collections import Counter

import numpy as np
import pytest
import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.fuzzer.schedulers import SCHEDULERS, build_scheduler

NAMES = sorted(SCHEDULERS)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def populated(name: str, *, stratify: bool = True, n_roots: int = 4, n_children: int = 12, seed: int = 0, **params):
    """A scheduler with ``n_roots`` roots (ids 100, 101, ...) and children (ids 1000, 1001, ...)
    spread over the roots, with varied gains."""
    s = build_scheduler(name, stratify=stratify, **params)
    rng = np.random.default_rng(seed)
    roots = [100 + r for r in range(n_roots)]
    for r in roots:
        s.add(r, gain=float(rng.uniform(0, 5)))
    for c in range(n_children):
        s.add(1000 + c, gain=float(rng.uniform(0, 50)), root=roots[int(rng.integers(n_roots))])
    return s


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds``."""

    def handler(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def captured_weights():
    """Record the weight vector every ``torch.multinomial`` call receives (the scheduler's final
    choice probabilities, after stratification)."""
    seen: list[torch.Tensor] = []
    original = torch.multinomial

    def spy(w, *args, **kwargs):
        seen.append(w.clone())
        return original(w, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(torch, "multinomial", spy)
    try:
        yield seen
    finally:
        mp.undo()


# ---------------------------------------------------------------------------- plan contract
@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_seeds,n_mutants", [(1, 1), (3, 7), (8, 1), (16, 5), (40, 3)])
def test_plan_contract(name, stratify, n_seeds, n_mutants):
    s = populated(name, stratify=stratify)
    known = set(s.ids)
    rng = gen(1)
    for _ in range(3):
        plan = s.plan(n_seeds, n_mutants, rng)
        assert len(plan) == n_seeds
        assert sum(n for _, n in plan) == n_seeds * n_mutants
        assert all(isinstance(i, int) and isinstance(n, int) for i, n in plan)
        assert all(n >= 1 for _, n in plan)
        assert {i for i, _ in plan} <= known
        if n_seeds <= len(s):  # sampled without replacement: every entry at most once
            assert len({i for i, _ in plan}) == n_seeds


@pytest.mark.parametrize("name", NAMES)
def test_plan_counts_picks(name):
    s = populated(name)
    before = s.picks.clone()
    plan = s.plan(5, 2, gen(3))
    delta = s.picks - before
    assert float(delta.sum()) == 5
    for i, _ in plan:
        assert float(delta[s.ids.index(i)]) == 1.0


def test_plan_with_replacement_counts_every_pick():
    s = build_scheduler("uniform")
    s.add(7)
    s.add(8)
    plan = s.plan(6, 2, gen(0))  # more seeds than entries: drawn with replacement
    counts = Counter(i for i, _ in plan)
    assert sum(counts.values()) == 6
    assert s.picks.tolist() == [float(counts[7]), float(counts[8])]


def test_power_extreme_energy_still_gives_every_pick_one_mutant():
    s = build_scheduler("power", stratify=False)
    s.add(1, gain=0.0)
    s.add(2, gain=1e6)
    s.credit(2, 10_000)
    plan = s.plan(2, 1, gen(0))
    assert sorted(plan) == [(1, 1), (2, 1)]


@pytest.mark.parametrize("name", NAMES)
def test_plan_is_deterministic_for_a_seeded_generator(name):
    a, b = populated(name), populated(name)
    ra, rb = gen(42), gen(42)
    plans_a = [a.plan(4, 6, ra) for _ in range(10)]
    plans_b = [b.plan(4, 6, rb) for _ in range(10)]
    assert plans_a == plans_b
    # and a different seed gives a different sequence (the generator is actually used)
    c = populated(name)
    rc = gen(43)
    assert [c.plan(4, 6, rc) for _ in range(10)] != plans_a


def test_plan_on_empty_queue_is_a_user_error():
    with pytest.raises(UserError, match="empty"):
        build_scheduler("uniform").plan(1, 1, gen())


def test_plan_with_zero_mutants_is_rejected_not_a_hang():
    s = build_scheduler("uniform")
    s.add(1)
    s.add(2)
    with time_limit(1.0):
        with pytest.raises(UserError):
            s.plan(2, 0, gen())


def test_plan_with_zero_seeds_is_a_user_error():
    s = build_scheduler("uniform")
    s.add(1)
    with pytest.raises(UserError):
        s.plan(0, 4, gen())


# ---------------------------------------------------------------------------- root stratification
def big_and_small_lineages(stratify: bool):
    """Root 0 has 100 descendants (ids 1000..1099); roots 1..9 have none."""
    s = build_scheduler("uniform", stratify=stratify)
    for r in range(10):
        s.add(r)
    for c in range(100):
        s.add(1000 + c, root=0)
    return s


def lineage_counts(s, n_plans: int, seed: int) -> tuple[list[int], Counter]:
    rng = gen(seed)
    lineage = [0] * 10
    within0: Counter = Counter()
    for _ in range(n_plans):
        ((i, n),) = s.plan(1, 4, rng)
        assert n == 4
        root = 0 if i >= 1000 else i
        lineage[root] += 1
        if root == 0:
            within0["root" if i == 0 else "child"] += 1
    return lineage, within0


def test_stratified_roots_are_picked_equally_often():
    n = 3000
    counts, within0 = lineage_counts(big_and_small_lineages(True), n, seed=5)
    expected = n / 10
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 27.88, counts  # 9 degrees of freedom, p = 0.001
    assert min(counts) > 0.7 * expected and max(counts) < 1.3 * expected, counts
    # within the big lineage the root gets half of the lineage's picks
    share = within0["root"] / counts[0]
    assert abs(share - 0.5) < 0.1, within0


def test_without_stratification_the_big_lineage_dominates():
    n = 1000
    counts, _ = lineage_counts(big_and_small_lineages(False), n, seed=5)
    assert counts[0] / n > 0.8, counts  # 101 of 110 entries
    assert max(counts[1:]) < 0.05 * n, counts


def test_stratified_weights_root_gets_half_of_its_lineage():
    s = build_scheduler("gain", stratify=True)
    s.add(10, gain=0.0)  # root with children
    s.add(11, gain=3.0, root=10)
    s.add(12, gain=1.0, root=10)
    s.add(20, gain=100.0)  # lone root
    s.add(30, gain=0.0)  # root with one child
    s.add(31, gain=7.0, root=30)
    with captured_weights() as seen:
        s.plan(1, 1, gen())
    (w,) = seen
    w = w / w.sum()
    # each of the 3 lineages gets 1/3; inside one, the root gets half and the children share the
    # other half in proportion to their own weight (1 + gain) / (1 + picks)
    expected = torch.tensor([1 / 6, 1 / 6 * 4 / 6, 1 / 6 * 2 / 6, 1 / 3, 1 / 6, 1 / 6], dtype=w.dtype)
    assert torch.allclose(w, expected, atol=1e-12), w


def test_stratified_preference_acts_within_a_lineage():
    s = build_scheduler("gain", stratify=True)
    s.add(0)
    s.add(1, gain=200.0, root=0)
    s.add(2, gain=0.0, root=0)
    rng = gen(9)
    picks = Counter(s.plan(1, 1, rng)[0][0] for _ in range(200))
    assert picks[1] > 2 * picks[2], picks


def test_unknown_root_makes_its_own_lineage():
    s = build_scheduler("uniform")
    s.add(1)
    s.add(2, root=99)  # 99 is not in the queue
    s.add(3, root=1)
    assert s.group.tolist() == [0, 1, 0]


# ---------------------------------------------------------------------------- per-scheduler rules
def test_decay_weights_follow_one_minus_picks_over_gamma_floored():
    s = build_scheduler("decay", gamma=10.0, p_min=0.05)
    for i in range(6):
        s.add(i)
    st = s.state_dict()
    st["picks"] = torch.tensor([0.0, 2.0, 5.0, 9.0, 10.0, 40.0], dtype=torch.float64)
    s.load_state_dict(st)
    expected = torch.tensor([1.0, 0.8, 0.5, 0.1, 0.05, 0.05], dtype=torch.float64)
    assert torch.allclose(s.weights(), expected)


def test_decay_weights_decrease_as_entries_are_picked():
    s = build_scheduler("decay", gamma=4.0, p_min=0.1, stratify=False)
    s.add(1)
    s.add(2)
    rng = gen(0)
    for _ in range(3):
        s.plan(1, 1, rng)
    w = s.weights()
    assert torch.allclose(w, (1 - s.picks / 4.0).clamp_min(0.1))
    assert float(s.picks.sum()) == 3


def test_decay_spreads_picks_over_the_queue():
    """With a short memory (gamma), a repeatedly picked entry soon loses to unpicked ones."""
    s = build_scheduler("decay", gamma=2.0, p_min=0.001, stratify=False)
    for i in range(5):
        s.add(i)
    rng = gen(4)
    for _ in range(10):
        s.plan(1, 1, rng)
    # once picked twice an entry has weight 0.001 against >= 0.5 for the others, so ten picks
    # go two to each entry (uniform choice would almost never be this even)
    assert s.picks.tolist() == [2.0] * 5


@pytest.mark.parametrize("kw", [{"gamma": 0}, {"gamma": -1.0}, {"p_min": 0}, {"p_min": 1.5}])
def test_decay_bad_params(kw):
    with pytest.raises(UserError, match="gamma"):
        build_scheduler("decay", **kw)


def test_power_energy_matches_formula():
    s = build_scheduler("power", stratify=False)
    s.add(1, gain=0.0)
    s.add(2, gain=30.0)
    plan = dict(s.plan(2, 8, gen(0)))  # both entries are picked (no replacement)
    e1, e2 = 1.0, 1 + math.log1p(30.0)
    a1, a2 = math.floor(e1 / (e1 + e2) * 16), math.floor(e2 / (e1 + e2) * 16)
    a2 += 16 - a1 - a2  # the remainder goes to the larger energy
    assert plan == {1: a1, 2: a2} == {1: 2, 2: 14}


def test_power_gives_more_mutants_to_larger_gain_and_found():
    s = build_scheduler("power", stratify=False)
    for i, g in enumerate([0.0, 1.0, 10.0, 100.0]):
        s.add(i, gain=g)
    plan = dict(s.plan(4, 25, gen(0)))
    alloc = [plan[i] for i in range(4)]
    assert alloc == sorted(alloc) and alloc[3] > alloc[0], alloc

    t = build_scheduler("power", stratify=False)
    for i in range(3):
        t.add(i)
    t.credit(1, 3)
    t.credit(2, 30)
    plan = dict(t.plan(3, 20, gen(0)))
    assert plan[0] < plan[1] < plan[2], plan


def test_power_energy_falls_with_picks():
    s = build_scheduler("power", stratify=False)
    s.add(1, gain=5.0)
    s.add(2, gain=5.0)
    st = s.state_dict()
    st["picks"] = torch.tensor([0.0, 24.0], dtype=torch.float64)
    s.load_state_dict(st)
    plan = dict(s.plan(2, 12, gen(0)))
    assert plan[1] > plan[2], plan  # same gain, entry 2 fuzzed 24 times already (energy / 5)


def test_power_weights_as_documented():
    """Power chooses like ``gain`` ((1 + gain + found) / (1 + picks)) and takes no decay knobs."""
    s = build_scheduler("power")
    s.add(1, gain=9.0)
    s.add(2)
    assert torch.allclose(s.weights(), torch.tensor([10.0, 1.0], dtype=torch.float64))
    with pytest.raises(UserError, match="does not take parameters"):
        build_scheduler("power", gamma=10.0, p_min=0.05)


def test_gain_weights_formula():
    s = build_scheduler("gain")
    s.add(1, gain=4.0)
    s.add(2, gain=0.0)
    s.credit(2, 3)
    st = s.state_dict()
    st["picks"] = torch.tensor([1.0, 0.0], dtype=torch.float64)
    s.load_state_dict(st)
    assert torch.allclose(s.weights(), torch.tensor([5 / 2, 4.0], dtype=torch.float64))


def test_gain_weighted_prefers_high_gain():
    def share(name):
        s = build_scheduler(name, stratify=False)
        for i in range(10):
            s.add(i, gain=50.0 if i == 0 else 0.0)
        rng = gen(2)
        picks = Counter(s.plan(1, 1, rng)[0][0] for _ in range(300))
        return picks[0] / 300

    # weights 51/(1+p) against 1/(1+q): pick rates give 1+p ~ sqrt(51)(1+q), about 45% of picks
    assert share("gain") > 0.3
    assert share("uniform") < 0.15


def test_credit_counts_found_and_ignores_unknown_ids():
    s = build_scheduler("power")
    s.add(5)
    s.credit(5, 2)
    s.credit(5, 1)
    s.credit(99, 7)  # not (or no longer) in the queue: ignored
    assert s.found.tolist() == [3.0]
    assert len(s) == 1 and 99 not in s


# ---------------------------------------------------------------------------- queue bookkeeping
def test_add_existing_id_is_a_noop():
    s = build_scheduler("gain")
    s.add(1, gain=5.0)
    s.add(2, gain=1.0)
    s.add(1, gain=99.0, root=2)
    assert s.ids == [1, 2]
    assert s.gain.tolist() == [5.0, 1.0]
    assert s.group.tolist() == [0, 1]


def test_buffer_grows_past_16_entries():
    s = build_scheduler("power")
    for r in range(10):
        s.add(7 * r, gain=float(r))
    for i in range(10, 1000):
        s.add(7 * i, gain=float(i), root=7 * (i % 10))
    assert len(s) == 1000
    assert s.ids == [7 * i for i in range(1000)]
    assert s.gain.tolist() == [float(i) for i in range(1000)]
    assert s.group.tolist() == [i if i < 10 else i % 10 for i in range(1000)]
    assert s.picks.shape == s.found.shape == (1000,)
    assert all(7 * i in s for i in (0, 15, 16, 17, 999)) and 8 not in s
    s.credit(7 * 999, 4)
    assert float(s.found[999]) == 4.0 and float(s.found[:999].sum()) == 0.0
    plan = s.plan(32, 4, gen(0))
    assert sum(n for _, n in plan) == 128 and {i for i, _ in plan} <= set(s.ids)
    assert float(s.picks.sum()) == 32


# ---------------------------------------------------------------------------- state_dict / resume
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_gives_identical_plans(name):
    s = populated(name, n_children=30)
    rng = gen(11)
    for _ in range(5):
        for i, _n in s.plan(3, 4, rng):
            s.credit(i, 1)
    state = s.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)  # what a campaign checkpoint does
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    t = build_scheduler(name)
    t.load_state_dict(state)
    assert t.ids == s.ids
    for attr in ("picks", "found", "gain", "group"):
        assert torch.equal(getattr(t, attr), getattr(s, attr)), attr
    r1, r2 = gen(12), gen(12)
    assert [s.plan(3, 4, r1) for _ in range(8)] == [t.plan(3, 4, r2) for _ in range(8)]
    # both keep working identically after further adds
    for x in (s, t):
        x.add(5000, gain=3.0, root=100)
    assert s.plan(6, 2, gen(13)) == t.plan(6, 2, gen(13))


def test_state_dict_is_a_snapshot():
    s = populated("decay")
    state = s.state_dict()
    picks = state["picks"].clone()
    s.plan(4, 1, gen())
    assert torch.equal(state["picks"], picks)


def test_load_state_of_another_scheduler_is_a_user_error():
    state = populated("decay").state_dict()
    with pytest.raises(UserError, match="'decay'.*'power'"):
        build_scheduler("power").load_state_dict(state)


def test_load_state_with_many_entries_then_add():
    s = build_scheduler("uniform")
    for i in range(40):
        s.add(i)
    t = build_scheduler("uniform")
    t.load_state_dict(s.state_dict())
    for i in range(40, 100):
        t.add(i, root=0)
    assert len(t) == 100 and t.group.tolist()[40:] == [0] * 60
    assert t.ids == list(range(100))


# ---------------------------------------------------------------------------- build_scheduler
def test_build_scheduler_unknown_name():
    with pytest.raises(UserError) as e:
        build_scheduler("fifo")
    msg = str(e.value)
    assert "fifo" in msg and all(n in msg for n in NAMES)


@pytest.mark.parametrize("name,params", [("uniform", {"gamma": 3}), ("gain", {"p_min": 0.1}),
                                         ("power", {"temperature": 1.0})])
def test_build_scheduler_bad_params(name, params):
    with pytest.raises(UserError, match=name):
        build_scheduler(name, **params)


def test_build_scheduler_passes_params():
    s = build_scheduler("decay", gamma=5, p_min=0.2, stratify=False)
    assert (s.gamma, s.p_min, s.stratify) == (5.0, 0.2, False)
    assert s.config() == {"gamma": 5.0, "p_min": 0.2, "stratify": False}
    assert build_scheduler("uniform").config() == {"stratify": True}
