"""Hypothesis properties of the five coverage metrics on random small layouts.

Activations and profile bounds are drawn from a small grid of dyadic numbers (so values equal to a
profile bound, to a KMNC section boundary or to an NC threshold occur often) plus NaN. Each
property is checked for every metric:

* ``value()`` and ``per_layer()`` stay in [0, 1]; coverage only grows;
* the final covered map does not depend on the order of the inputs or on how they are batched;
* ``merge`` equals committing both batches into one metric;
* the per-input novelty of a batch sums to the increase of ``covered_count`` on commit;
* cells and novelty equal a brute-force reference written as a plain Python loop over inputs and
  neurons straight from the documented definitions (KMNC in its sparse and its dense form).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurofuzz.coverage import NeuronProfile, build_metric, cells_to_dense

NAN = float("nan")
GRID = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
METRIC_NAMES = ["nc", "tknc", "kmnc", "nbc", "snac"]

# The suite's Hypothesis profile (tests/conftest.py) applies; the brute-force reference check,
# the ground truth of the five definitions, draws more examples than the profile's default.
REFERENCE = settings(max_examples=80)


# ----------------------------------------------------------------------------- strategies
@st.composite
def layouts(draw):
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    return {f"l{i}": s for i, s in enumerate(sizes)}


@st.composite
def profiles(draw, layers):
    n = sum(layers.values())
    a = draw(hnp.arrays(np.float32, n, elements=st.sampled_from(GRID)))
    b = draw(hnp.arrays(np.float32, n, elements=st.sampled_from(GRID)))
    low, high = np.minimum(a, b), np.maximum(a, b)
    if not (high > low).any():  # KMNC needs one neuron with a non-empty range
        high[0] = low[0] + 0.5
    std = draw(hnp.arrays(np.float32, n, elements=st.sampled_from([0.0, 0.25, 0.5, 1.0])))
    t = lambda v: torch.from_numpy(np.ascontiguousarray(v))  # noqa: E731
    return NeuronProfile(layers=layers, low=t(low), high=t(high), mean=t((low + high) / 2), std=t(std))


def matrices(n, *, nan=True, min_rows=1, max_rows=6):
    elems = st.sampled_from(GRID + ([NAN] if nan else []))
    return hnp.arrays(np.float32, st.tuples(st.integers(min_rows, max_rows), st.just(n)), elements=elems)


def params_for(name):
    if name == "nc":
        return st.fixed_dictionaries({"threshold": st.sampled_from([-0.25, 0.0, 0.25, 0.5, 0.75, 1.0]),
                                      "scaled": st.booleans()})
    if name == "tknc":
        return st.fixed_dictionaries({"k": st.integers(1, 5)})
    if name == "kmnc":
        return st.fixed_dictionaries({"k": st.integers(1, 5)})
    return st.fixed_dictionaries({"std_widen": st.sampled_from([0.0, 0.5, 1.0])})


@st.composite
def setups(draw, name, *, nan=True, n_matrices=1, max_rows=6):
    layers = draw(layouts())
    prof = draw(profiles(layers))
    params = draw(params_for(name))
    n = sum(layers.values())
    mats = [draw(matrices(n, nan=nan, max_rows=max_rows)) for _ in range(n_matrices)]
    return layers, prof, params, mats


def build(name, layers, prof, params):
    return build_metric(name, layers=layers, profile=prof, **params)


def split(layers, mat):
    t = torch.from_numpy(np.ascontiguousarray(mat))
    out, start = {}, 0
    for k, n in layers.items():
        out[k] = t[:, start : start + n]
        start += n
    return out


def dense(metric, cells):
    return cells_to_dense(cells, metric.n_neurons * metric.m)


# ----------------------------------------------------------------------------- reference
def f32(x):
    return np.float32(x)


def reference_cells(name, layers, prof, params, row):
    """The set of cell ids one input covers, from the documented definitions, one neuron at a time."""
    low = [float(v) for v in prof.low]
    high = [float(v) for v in prof.high]
    std = [float(v) for v in prof.std]
    out = set()
    start = 0
    for n in layers.values():
        seg = [float(row[start + i]) for i in range(n)]
        if name == "nc":
            t = params["threshold"]
            vals = seg
            if params["scaled"]:
                finite = [v for v in seg if not math.isnan(v)]
                lo, hi = min(finite, default=0.0), max(finite, default=0.0)
                # min-max scaled per input and layer; a constant layer scales to 0
                vals = [v if math.isnan(v) else (float(f32(f32(v - lo) / f32(hi - lo))) if hi > lo else 0.0)
                        for v in seg]
            for i, v in enumerate(vals):
                if v > t:  # NaN compares False
                    out.add(start + i)
        elif name == "tknc":
            finite = sorted((v for v in seg if not math.isnan(v)), reverse=True)
            if finite:
                kth = finite[min(params["k"], len(finite)) - 1]
                for i, v in enumerate(seg):
                    if not math.isnan(v) and v >= kth:
                        out.add(start + i)
        elif name == "kmnc":
            k = params["k"]
            for i, v in enumerate(seg):
                j = start + i
                lo, hi = low[j], high[j]
                if hi > lo and lo <= v <= hi:  # NaN fails the comparison
                    # float32 arithmetic, as the definition is evaluated on float32 tensors
                    sec = int(math.floor(f32(f32(f32(v) - f32(lo)) / f32(hi - lo)) * f32(k)))
                    out.add(j * k + min(sec, k - 1))
        else:
            c = params["std_widen"]
            for i, v in enumerate(seg):
                j = start + i
                lower, upper = low[j] - c * std[j], high[j] + c * std[j]
                if name == "nbc":
                    if v < lower:
                        out.add(2 * j)
                    if v > upper:
                        out.add(2 * j + 1)
                elif v > upper:
                    out.add(j)
        start += n
    return out


def reference_run(name, layers, prof, params, mat, history=frozenset()):
    """Per-input novelty in batch order and the covered set afterwards."""
    covered = set(history)
    gains = []
    for row in mat:
        cells = reference_cells(name, layers, prof, params, row)
        new = cells - covered
        gains.append(len(new))
        covered |= new
    return gains, covered


def covered_set(metric):
    return set(torch.nonzero(metric.covered).view(-1).tolist())


def cells_set(metric, cells_row):
    row = dense(metric, cells_row.view(1, -1))[0]
    return set(torch.nonzero(row).view(-1).tolist())


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", METRIC_NAMES)
@given(data=st.data())
def test_value_in_unit_interval_and_monotone(name, data):
    layers, prof, params, mats = data.draw(setups(name, n_matrices=3))
    m = build(name, layers, prof, params)
    assert m.value() == 0.0
    prev_cov, prev_val = m.covered.clone(), 0.0
    for mat in mats:
        m.update(split(layers, mat))
        v = m.value()
        assert 0.0 <= v <= 1.0
        assert all(0.0 <= x <= 1.0 for x in m.per_layer().values())
        assert v >= prev_val
        assert bool((m.covered | prev_cov).eq(m.covered).all())  # nothing was uncovered
        assert m.covered_count() <= m.n_cells
        prev_cov, prev_val = m.covered.clone(), v


@pytest.mark.parametrize("name", METRIC_NAMES)
@given(data=st.data())
def test_order_and_batching_independent(name, data):
    layers, prof, params, (mat,) = data.draw(setups(name, max_rows=8))
    whole = build(name, layers, prof, params)
    whole.update(split(layers, mat))

    perm = data.draw(st.permutations(range(len(mat))))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(mat) - 1)), max_size=3)))
    shuffled = mat[list(perm)]
    pieces = np.split(shuffled, [c for c in cuts if c < len(mat)])
    other = build(name, layers, prof, params)
    for piece in pieces:
        if len(piece):
            other.update(split(layers, piece))
    assert torch.equal(whole.covered, other.covered)
    assert whole.value() == other.value()


@pytest.mark.parametrize("name", METRIC_NAMES)
@given(data=st.data())
def test_merge_equals_union(name, data):
    layers, prof, params, (m1, m2) = data.draw(setups(name, n_matrices=2))
    a, b, both = (build(name, layers, prof, params) for _ in range(3))
    a.update(split(layers, m1))
    b.update(split(layers, m2))
    both.update(split(layers, m1))
    both.update(split(layers, m2))
    a.merge(b)
    assert torch.equal(a.covered, both.covered)
    assert a.value() == both.value()
    # merge is symmetric in its result
    c = build(name, layers, prof, params)
    c.update(split(layers, m2))
    d = build(name, layers, prof, params)
    d.update(split(layers, m1))
    c.merge(d)
    assert torch.equal(c.covered, a.covered)


@pytest.mark.parametrize("name", METRIC_NAMES)
@given(data=st.data())
def test_novelty_sum_equals_commit_increase(name, data):
    layers, prof, params, (hist, mat) = data.draw(setups(name, n_matrices=2))
    m = build(name, layers, prof, params)
    m.update(split(layers, hist))
    cells = m.measure(split(layers, mat))
    gain = m.novelty(cells)
    assert gain.dtype == torch.int64 and gain.shape == (len(mat),)
    assert bool((gain >= 0).all())
    before = m.covered_count()
    m.commit(cells)
    assert int(gain.sum()) == m.covered_count() - before
    # committing the same batch again adds nothing and it is no longer novel
    assert int(m.novelty(cells).sum()) == 0


@pytest.mark.parametrize("name", METRIC_NAMES)
@REFERENCE
@given(data=st.data())
def test_matches_brute_force_reference(name, data):
    nc_scaled = data.draw(st.booleans()) if name == "nc" else False
    layers, prof, params, (hist, mat) = data.draw(setups(name, n_matrices=2, nan=True))
    if name == "nc":
        params = {**params, "scaled": nc_scaled}
    m = build(name, layers, prof, params)

    # history first, then a batch judged against it
    _, ref_hist = reference_run(name, layers, prof, params, hist)
    m.update(split(layers, hist))
    assert covered_set(m) == ref_hist

    cells = m.measure(split(layers, mat))
    for i, row in enumerate(mat):
        assert cells_set(m, cells[i]) == reference_cells(name, layers, prof, params, row), i
    ref_gain, ref_cov = reference_run(name, layers, prof, params, mat, ref_hist)
    assert m.novelty(cells).tolist() == ref_gain
    if m.sparse:
        assert cells.dtype == torch.int64
        assert m.novelty(dense(m, cells)).tolist() == ref_gain
    else:
        assert cells.dtype == torch.bool and cells.shape == (len(mat), m.n_neurons * m.m)
    m.commit(cells)
    assert covered_set(m) == ref_cov
    assert m.value() == pytest.approx(len(ref_cov) / m.n_cells)


@given(data=st.data())
def test_kmnc_sparse_and_dense_forms_agree(data):
    layers, prof, params, (mat,) = data.draw(setups("kmnc", max_rows=8))
    m = build("kmnc", layers, prof, params)
    cells = m.measure(split(layers, mat))
    d = dense(m, cells)
    assert d.shape == (len(mat), m.n_neurons * m.k)
    # at most one cell per neuron, and never a cell of an excluded neuron
    per_neuron = d.view(len(mat), m.n_neurons, m.k).sum(2)
    assert bool((per_neuron <= 1).all())
    assert not d.view(len(mat), m.n_neurons, m.k)[:, ~m.valid].any()
    assert torch.equal(m.novelty(cells), m.novelty(d))
    a, b = build("kmnc", layers, prof, params), build("kmnc", layers, prof, params)
    mask = torch.from_numpy(data.draw(hnp.arrays(np.bool_, len(mat))))
    a.commit(cells, mask)
    b.commit(d, mask)
    assert torch.equal(a.covered, b.covered)


@pytest.mark.parametrize("name", METRIC_NAMES)
@given(data=st.data())
def test_state_dict_round_trip(name, data):
    layers, prof, params, (mat,) = data.draw(setups(name))
    m = build(name, layers, prof, params)
    m.update(split(layers, mat))
    fresh = build(name, layers, prof, params)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.covered, m.covered)
    assert fresh.value() == m.value() and fresh.per_layer() == m.per_layer()


@pytest.mark.parametrize("name", ["kmnc", "nbc", "snac"])
@given(data=st.data())
def test_boundary_values_hit_documented_cells(name, data):
    # Every input sits exactly on the profile bounds: KMNC covers section 0 / k-1 of each
    # non-degenerate neuron, NBC/SNAC cover nothing (strict), with or without NaN around.
    layers, prof, params, _ = data.draw(setups(name))
    m = build(name, layers, prof, params)
    x = torch.stack([prof.low, prof.high])
    cells = m.measure(split(layers, x.numpy()))
    if name == "kmnc":
        k = m.k
        idx = torch.arange(m.n_neurons)
        expect_low = torch.where(m.valid, idx * k, torch.full_like(idx, -1))
        expect_high = torch.where(m.valid, idx * k + k - 1, torch.full_like(idx, -1))
        assert torch.equal(cells[0], expect_low) and torch.equal(cells[1], expect_high)
    else:
        assert not cells.any()
