"""NLC: hand-computed values, exact prefix novelty, order independence, merge (Chan et al.)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofuzz.coverage import METRICS, NLC, build_metric
from neurofuzz.ground.errors import UserError

LAYERS = {"a": 2, "b": 3}


def reference(rows: np.ndarray) -> float:
    """NLC straight from the definition: per layer, population covariance, sum |C| / n."""
    if len(rows) < 2:
        return 0.0
    a, b = rows[:, :2], rows[:, 2:]
    return sum(np.abs(np.cov(p, rowvar=False, bias=True)).sum() / p.shape[1] for p in (a, b))


def split(t: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"a": t[:, :2], "b": t[:, 2:]}


def test_hand_computed_single_layer():
    m = NLC({"a": 2})
    # (0,0) (2,2) (1,1): mean (1,1), covariance [[2/3, 2/3], [2/3, 2/3]] -> sum 8/3, / 2 neurons
    assert m.update({"a": torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0]])}).tolist() == [0, 1, 0]
    assert m.value() == pytest.approx(4 / 3)
    # adding (1, -1): mean (1, 0.5), var 0.5 and 1.25, cov 0.5 -> (0.5 + 1.25 + 2 * 0.5) / 2 = 1.375
    assert m.novelty(m.measure({"a": torch.tensor([[1.0, -1.0]])})).tolist() == [1]
    # adding the mean (1, 1) shrinks the covariance by 3/4 -> 1.0: not novel; then (1, -1) -> novel
    assert m.novelty(m.measure({"a": torch.tensor([[1.0, 1.0], [1.0, -1.0]])})).tolist() == [0, 1]


def test_value_and_prefix_novelty_match_the_reference():
    g = np.random.default_rng(0)
    hist, batch = g.normal(size=(7, 5)), g.normal(size=(9, 5)) * 2
    m = NLC(LAYERS)
    m.commit(m.measure(split(torch.tensor(hist, dtype=torch.float32))))
    h32 = torch.tensor(hist, dtype=torch.float32).double().numpy()
    b32 = torch.tensor(batch, dtype=torch.float32).double().numpy()
    assert m.value() == pytest.approx(reference(h32), rel=1e-9)
    cells = m.measure(split(torch.tensor(batch, dtype=torch.float32)))
    levels = [reference(np.vstack([h32, b32[: i + 1]])) for i in range(len(b32))]
    before = [reference(h32)] + levels[:-1]
    assert m.novelty(cells).tolist() == [int(a - b > 0) for a, b in zip(levels, before)]
    assert m._prefix_levels(cells).tolist() == pytest.approx(levels, rel=1e-9)
    m.commit(cells, mask=torch.tensor([True, False] * 4 + [True]))
    assert m.value() == pytest.approx(reference(np.vstack([h32, b32[::2]])), rel=1e-9)
    assert m.per_layer()["a"] + m.per_layer()["b"] == pytest.approx(m.value())


def test_tol_raises_the_bar():
    hist = {"a": torch.tensor([[0.0, 0.0], [2.0, 2.0]])}  # NLC 2
    # + (2.5, 2.5): variance 7/6 in both, covariance too -> NLC 7/3, a rise of 1/6
    # + (3, 3): 14/9 -> NLC 28/9, a rise of 5/9
    x = {"a": torch.tensor([[2.5, 2.5], [3.0, 3.0]])}
    for tol, want in ((0.0, [1, 1]), (0.5, [0, 1]), (0.6, [0, 0])):
        m = NLC({"a": 2}, tol=tol)
        m.update(hist)
        assert m.novelty(m.measure({"a": x["a"][:1]})).tolist() + \
            m.novelty(m.measure({"a": x["a"][1:]})).tolist() == want


def test_order_independent_and_merge_equals_one_worker():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 5, generator=g)
    one = NLC(LAYERS)
    one.commit(one.measure(split(x)))
    shuffled = NLC(LAYERS)
    perm = torch.randperm(30, generator=g)
    for chunk in perm.split(7):
        shuffled.commit(shuffled.measure(split(x[chunk])))
    assert shuffled.value() == pytest.approx(one.value(), rel=1e-12)
    w1, w2 = NLC(LAYERS), NLC(LAYERS)
    w1.commit(w1.measure(split(x[:11])))
    w2.commit(w2.measure(split(x[11:])))
    w1.merge(w2)
    assert w1.count == 30 and w1.value() == pytest.approx(one.value(), rel=1e-12)
    for n in LAYERS:
        assert torch.allclose(w1.m2[n], one.m2[n]) and torch.allclose(w1.mean[n], one.mean[n])


def test_state_round_trip_and_corrupt_state():
    m = NLC(LAYERS)
    m.update(split(torch.arange(20.0).reshape(4, 5) ** 1.5))
    fresh = NLC(LAYERS)
    fresh.load_state_dict(m.state_dict())
    assert fresh.value() == m.value() and fresh.count == 4
    bad = m.state_dict()
    bad["m2"] = bad["m2"][:1]
    with pytest.raises(UserError, match="corrupted"):
        fresh.load_state_dict(bad)
    with pytest.raises(UserError, match="different definition"):
        NLC(LAYERS, tol=0.1).merge(m)


def test_nan_adds_nothing_and_registry():
    m = NLC({"a": 2})
    m.update({"a": torch.tensor([[0.0, 0.0], [2.0, 2.0]])})
    v = m.value()
    assert m.novelty(m.measure({"a": torch.tensor([[float("nan"), 1.0]])})).tolist() == [0]
    assert "nlc" in METRICS and build_metric("nlc", layers=LAYERS, tol=0.2).tol == 0.2
    with pytest.raises(UserError, match="tol"):
        build_metric("nlc", layers=LAYERS, tol=-1.0)
    assert m.value() == v
