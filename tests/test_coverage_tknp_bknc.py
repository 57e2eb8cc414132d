"""TKNP and BKNC: hand-computed cases, batch-order novelty, merge equals one worker, registry."""

from __future__ import annotations

import pytest
import torch

from neurofuzz.coverage import BKNC, METRICS, TKNC, TKNP, build_metric
from neurofuzz.ground.errors import UserError

LAYERS = {"a": 3, "b": 2}


def acts(rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return {"a": t[:, :3], "b": t[:, 3:]}


def test_bknc_hand_computed_with_ties_and_nan():
    m = BKNC(LAYERS, k=1)
    x = acts([[2.0, 0.0, 0.0, 5.0, 1.0],      # a: tie at the bottom -> neurons 1 and 2; b: neuron 4
              [float("nan"), 3.0, 1.0, -1.0, -1.0]])  # NaN never covers; b: tie -> both
    assert m.measure(x).int().tolist() == [[0, 1, 1, 0, 1], [0, 0, 1, 1, 1]]
    assert m.update(x).tolist() == [3, 1]     # batch order: the second input adds only neuron 3
    assert m.value() == pytest.approx(4 / 5)
    assert m.per_layer() == {"a": pytest.approx(2 / 3), "b": 1.0}


def test_bknc_is_tknc_of_the_negated_values():
    g = torch.Generator().manual_seed(0)
    x = acts(torch.randn(16, 5, generator=g).tolist())
    neg = {k: -v for k, v in x.items()}
    assert torch.equal(BKNC(LAYERS, k=2).measure(x), TKNC(LAYERS, k=2).measure(neg))


def test_tknp_counts_distinct_patterns_in_batch_order():
    m = TKNP(LAYERS, k=1)
    x = acts([[3, 1, 0, 1, 0],     # pattern ({0}, {3})
              [9, 2, 1, 5, 4],     # same pattern: not novel
              [0, 4, 1, 1, 0],     # ({1}, {3}): new
              [3, 1, 0, 0, 1]])    # ({0}, {4}): new
    cells = m.measure(x)
    assert cells.shape == (4, 1)
    assert cells[0, 0] == cells[1, 0] and len({int(c) for c in cells[:, 0]}) == 3
    assert m.novelty(cells).tolist() == [1, 0, 1, 1]
    m.commit(cells)
    assert m.patterns() == 3 and m.value() == pytest.approx(3 / m.table)
    assert m.novelty(m.measure(acts([[0, 0, 5, 0, 7]]))).tolist() == [1]   # ({2}, {4})
    assert m.novelty(m.measure(acts([[5, 0, 0, 3, 0]]))).tolist() == [0]   # seen


def test_tknp_ties_make_one_pattern_with_both_neurons():
    m = TKNP({"a": 3}, k=1)
    tie, single = m.measure({"a": torch.tensor([[2.0, 2.0, 0.0], [2.0, 1.0, 0.0]])})[:, 0]
    assert tie != single


def test_merge_equals_one_worker_and_state_round_trip():
    g = torch.Generator().manual_seed(1)
    b1, b2 = (acts(torch.randn(12, 5, generator=g).tolist()) for _ in range(2))
    for make in (lambda: TKNP(LAYERS, k=2, table=64), lambda: BKNC(LAYERS, k=2)):
        one, w1, w2 = make(), make(), make()
        one.update(b1), one.update(b2), w1.update(b1), w2.update(b2)
        w1.merge(w2)
        assert torch.equal(w1.covered, one.covered)
        fresh = make()
        fresh.load_state_dict(one.state_dict())
        assert torch.equal(fresh.covered, one.covered)
    with pytest.raises(UserError, match="different definition"):
        TKNP(LAYERS, k=2).merge(TKNP(LAYERS, k=2, hash_seed=1))


def test_registered_and_validated():
    assert {"tknp", "bknc"} <= set(METRICS)
    assert build_metric("bknc", layers=LAYERS, k=3).k == 3
    assert build_metric("tknp", layers=LAYERS, table=128).table == 128
    for name in ("bknc", "tknp"):
        with pytest.raises(UserError, match=f"{name}: k must be >= 1"):
            build_metric(name, layers=LAYERS, k=0)
    with pytest.raises(UserError, match="table"):
        build_metric("tknp", layers=LAYERS, table=1)
    with pytest.raises(UserError, match="unknown parameter"):
        build_metric("bknc", layers=LAYERS, table=4)


@pytest.mark.parametrize("name,params", [("tknp", {"k": 2}), ("bknc", {"k": 2}), ("nlc", {})])
def test_campaign_runs_with_the_criterion_as_feedback(tmp_path, name, params):
    from neurofuzz.fuzzer.campaign import Campaign
    from neurofuzz.fuzzer.config import Budget, FuzzConfig
    from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

    x, y = load_digits32("test")
    cfg = FuzzConfig(seed=1, mutators=[{"name": "gaussian_noise"}], budget=Budget(iterations=3),
                     metrics={name: params, "nbc": {}}, feedback=[name])
    fz = Campaign.create(tmp_path / "c", builtin_target(), x[:8], y[:8], cfg, profile_data=load_digits32("train")[0][:200])
    try:
        summary = fz.run()
        assert summary["iterations"] == 3 and name in fz.stats().coverage
        assert fz.suite.metrics[name].value() > 0
    finally:
        fz.close()
    again = Campaign.resume(tmp_path / "c", builtin_target())  # the state written by a checkpoint loads
    try:
        assert again.suite.metrics[name].value() == pytest.approx(fz.suite.metrics[name].value())
    finally:
        again.close()
