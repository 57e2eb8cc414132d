"""Fault-revealing measures counted in the loop (seeds broken, distinct (seed, class) pairs, class
confusions, time to first failure) agree with a recount from the store, survive a resume, and an
older campaign's plot_data header keeps its columns."""

from __future__ import annotations

from neurofuzz.corpus import CampaignStore
from neurofuzz.fuzzer.campaign import Campaign
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.stats import CampaignStats, Counters


def _campaign(tmp_path, digits_target, digits_test, iterations):
    x, y = digits_test
    cfg = FuzzConfig(seed=3, budget=Budget(iterations=iterations), save_all_failures=True)
    return Campaign.create(tmp_path / "c", digits_target, x[:40], y[:40], cfg, profile_data=x[40:])


def _recount(path):
    with CampaignStore.open(path, readonly=True) as s:
        fails = [e for e in s.entries("failure") if e.parent is not None]  # mutants, not failing seeds
    return ({e.root for e in fails}, {(e.root, e.pred) for e in fails},
            {(e.label, e.pred) for e in fails if e.pred != e.label}, min(e.time_found for e in fails))


def test_counters_agree_with_a_recount_from_the_store(tmp_path, digits_target, digits_test):
    fz = _campaign(tmp_path, digits_target, digits_test, 12)
    st = fz.run()
    c = fz.counters
    fz.close()
    roots, pairs, conf, first = _recount(tmp_path / "c")
    assert roots and c.failing_roots == roots and c.failing_pairs == pairs and c.confusions == conf
    assert abs(c.first_failure - first) < 1e-6
    assert st["failing_seeds"] == len(roots) and st["failing_pairs"] == len(pairs) and st["confusions"] == len(conf)
    with CampaignStore.open(tmp_path / "c", readonly=True) as s:
        last = s.read_plot()[-1]
    assert int(last["failing_seeds"]) == len(roots) and int(last["confusions"]) == len(conf)


def test_measures_survive_a_resume_and_only_grow(tmp_path, digits_target, digits_test):
    fz = _campaign(tmp_path, digits_target, digits_test, 6)
    fz.run()
    before = (set(fz.counters.failing_roots), set(fz.counters.failing_pairs), fz.counters.first_failure)
    fz.close()
    fz = Campaign.resume(tmp_path / "c", digits_target, budget=Budget(iterations=6))
    assert fz.counters.failing_roots == before[0] and fz.counters.failing_pairs == before[1]
    fz.run()
    assert fz.counters.failing_roots >= before[0] and fz.counters.first_failure == before[2]
    fz.close()
    roots, pairs, _, _ = _recount(tmp_path / "c")
    assert fz.counters.failing_roots == roots and fz.counters.failing_pairs == pairs


def test_counters_round_trip_and_stats_without_failures():
    c = Counters()
    assert CampaignStats().time_to_first_failure == -1.0 and c.first_failure == -1.0
    c.failure_seen(root=4, label=1, pred=7, at=2.5)
    c.failure_seen(root=4, label=1, pred=1, at=3.0)  # e.g. a disagreement failure: no class confusion
    d = Counters.from_dict(c.to_dict())
    assert d.failing_roots == {4} and d.failing_pairs == {(4, 7), (4, 1)} and d.confusions == {(1, 7)}
    assert d.first_failure == 2.5
    assert Counters.from_dict({"iterations": 2}).failing_pairs == set()  # counters saved by an older version


def test_an_older_plot_header_keeps_its_columns(tmp_path):
    with CampaignStore.create(tmp_path / "old", setup={}) as s:
        s.append_plot({"run_time": 0.0, "mutants": 0})
        s.append_plot({"run_time": 1.0, "mutants": 5, "failing_seeds": 2})  # a newer version's row
        rows = s.read_plot()
    assert rows[-1] == {"run_time": "1.0", "mutants": "5"}
