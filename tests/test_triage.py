"""Triage (issue 12, item 2) and the fault-revealing measures (item 3): groups, near-duplicate
merging, ranking, `neurofuzz triage`, and the measures against an independent recount from the
campaign's SQLite index."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import torch

from neurofuzz.corpus import CampaignStore, MemoryStore
from neurofuzz.evaluators.faults_found import FLAT_KEYS, fault_measures, pairs_over_time
from neurofuzz.fuzzer.campaign import Campaign
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.reports.triage import triage

STEP = [{"mutator": "gaussian_noise", "params": {"std": 0.1, "seed": 1}, "config": {}}]
ROT = [{"mutator": "rotate", "params": {"angle": 5.0}, "config": {}}]


def fail(s, parent, value, pred, *, chain=STEP, oracle="misclassified", t=0.0, label=None):
    return s.add(torch.full((1, 4, 4), float(value)), kind="failure", oracle=oracle, label=label, pred=pred,
                 parent=parent.id, chain=chain, time_found=t, iteration=int(t))


@pytest.fixture
def store():
    s = MemoryStore()
    a = s.add(torch.zeros(1, 4, 4), kind="queue", label=1, pred=1)
    b = s.add(torch.ones(1, 4, 4), kind="queue", label=2, pred=2)
    child = s.add(torch.full((1, 4, 4), 0.05), kind="queue", label=1, pred=1, parent=a.id, chain=STEP)
    fail(s, a, 0.30, 7, label=1, t=3.0)
    fail(s, a, 0.32, 7, label=1, t=4.0)                            # near-duplicate of the one above
    fail(s, child, 0.90, 7, label=1, chain=STEP + ROT, t=5.0)      # same seed and class, far away
    fail(s, a, 0.40, 3, label=1, chain=ROT, t=6.0)
    fail(s, b, 0.50, 7, label=2, t=1.5)
    fail(s, a, 0.30, 7, label=1, oracle="prediction_changed", t=3.0)  # same image, second oracle: counted once
    s.add(torch.full((1, 4, 4), 0.7), kind="failure", oracle="misclassified", label=2, pred=4)  # a seed failure
    s.write_stats({"mutants": 200, "invalid_mutants": 50})
    return s


def test_groups_clusters_and_ranking(store):
    t = triage(store, merge_linf=0.05)
    assert len(t.failures) == 5  # distinct found failures; the seed failure and the second oracle are not new
    assert t.by_root == {1: [4, 5, 6, 7], 2: [8]}
    assert t.by_confusion == {(1, 3): [7], (1, 7): [4, 5, 6], (2, 7): [8]}
    assert t.by_mutator == {"gaussian_noise": [4, 5, 8], "rotate": [6, 7]}
    assert sorted(c.members for c in t.clusters) == [[4, 5], [6], [7], [8]]
    reps = [f.id for f in t.failures[: len(t.clusters)]]
    assert reps[:2] == [7, 8] or reps[:2] == [8, 7]  # confusions seen in one cluster only come first
    assert t.failures[-1].id == 5  # a merged near-duplicate comes after every representative
    assert next(f for f in t.failures if f.id == 4).oracles == ("misclassified", "prediction_changed")
    assert [sorted(c.members) for c in triage(store, merge_linf=0.0).clusters if len(c.members) > 1] == []
    assert len(triage(store, merge_linf=1.0).clusters) == 4 - 1  # (1, 7) all in one cluster
    d = t.to_dict()
    assert json.loads(json.dumps(d))["by_confusion"]["1->7"] == [4, 5, 6]


def test_measures_of_a_hand_made_store(store):
    m = fault_measures(store)
    assert (m.failures, m.seed_failures, m.seeds) == (5, 1, 2)
    assert m.failing_pairs == 3  # (1, 7), (1, 3), (2, 7)
    assert m.failing_seeds == 2 and m.confusions == 3
    assert (m.time_to_first_failure, m.first_failure_iteration) == (1.5, 1)
    assert m.linf_max == pytest.approx(0.9) and m.invalid_share == 0.25
    assert -1 <= m.ssim_min <= m.ssim_median <= 1
    assert pairs_over_time(store) == [(1.5, 1), (3.0, 2), (6.0, 3)]
    assert list(m.to_dict()) == list(FLAT_KEYS)


def test_measures_without_failures():
    s = MemoryStore()
    s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    m = fault_measures(s)
    assert (m.failures, m.failing_pairs, m.failing_seeds, m.confusions) == (0, 0, 0, 0)
    assert m.time_to_first_failure is None and math.isnan(m.ssim_mean) and m.invalid_share is None
    assert "first failure       none" in m.format()
    assert triage(s).format() .startswith("0 distinct failures in 0 clusters")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, digits_target, digits_test):
    x, y = digits_test
    cfg = FuzzConfig(seed=5, mutators=[{"name": "translate"}, {"name": "rotate"}], budget=Budget(iterations=4),
                     seeds_per_batch=8, mutants_per_seed=16, fsync_every_write=False)
    path = tmp_path_factory.mktemp("tri") / "camp"
    fz = Campaign.create(path, digits_target, x[:40], y[:40], cfg, profile_data=x[:64])
    fz.run()
    fz.close()
    return path


def test_measures_agree_with_a_recount_from_the_index(campaign):
    con = sqlite3.connect(f"file:{campaign / 'index.sqlite'}?mode=ro", uri=True)
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    found = "FROM entries WHERE kind = 'failure' AND depth > 0"
    pairs = q(f"SELECT COUNT(*) FROM (SELECT DISTINCT root, pred {found})")
    failing_seeds = q(f"SELECT COUNT(DISTINCT root) {found}")
    confusions = q(f"SELECT COUNT(*) FROM (SELECT DISTINCT label, pred {found} AND label != pred)")
    distinct = q(f"SELECT COUNT(DISTINCT sha) {found}")
    first = q(f"SELECT MIN(time_found) {found}")
    seeds = q("SELECT COUNT(*) FROM entries WHERE kind = 'queue' AND depth = 0")
    con.close()
    assert pairs > 0, "the fixture campaign must have failures"
    with CampaignStore.open(campaign, readonly=True) as s:
        m = fault_measures(s)
        stats = s.read_stats()
    assert (m.failing_pairs, m.failing_seeds, m.confusions, m.failures, m.seeds) == \
        (pairs, failing_seeds, confusions, distinct, seeds)
    assert m.time_to_first_failure == pytest.approx(first)
    assert m.invalid_share == pytest.approx(stats["invalid_mutants"] / stats["mutants"])
    assert 0 < m.linf_max <= 1
    if "failing_pairs" in stats:  # the loop's own counters, where it keeps them, agree with the recount
        assert (stats["failing_pairs"], stats["failing_seeds"], stats["confusions"]) == \
            (m.failing_pairs, m.failing_seeds, m.confusions)


def test_triage_command_text_and_json(campaign, capsys):
    assert main(["triage", str(campaign), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("failures found") and "by confusion (true -> predicted)" in out
    assert "most interesting" in out and "clusters" in out
    assert main(["triage", str(campaign), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with CampaignStore.open(campaign, readonly=True) as s:
        assert doc["measures"] == json.loads(json.dumps(fault_measures(s).to_dict()))
    assert sum(len(v) for v in doc["triage"]["by_root"].values()) == len(doc["triage"]["failures"])
    assert doc["minimised"] == []
    assert not (campaign / "minimised").exists()  # triage without --minimise writes nothing


@pytest.mark.parametrize("argv,needle", [
    (["--minimise", "-1"], "--minimise"), (["--merge-linf", "-1"], "--merge-linf"), (["--top", "0"], "--top"),
])
def test_triage_errors_are_one_line(campaign, capsys, argv, needle):
    assert main(["triage", str(campaign), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurofuzz: error: ") and err.count("\n") == 1 and needle in err


def test_triage_of_a_directory_that_is_no_campaign(tmp_path, capsys):
    assert main(["triage", str(tmp_path)]) == 2
    assert "not a neurofuzz campaign" in capsys.readouterr().err
