"""Hand-computed expectations for NC, TKNC, KMNC, NBC and SNAC on tiny layouts.

Every activation matrix and profile here is written out by hand, so each expected cell, gain
and value can be checked with pencil and paper. The edges pinned are the ones DESIGN.md lists:
KMNC's closed upper bound and ``low == high`` neurons, strict NBC/SNAC corners and widening that
never mutates the profile, NC's strict threshold and per-input per-layer scaling, TKNC's ties,
NaN, batch-order novelty, explicit commit, persistence and merge.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurofuzz.coverage import KMNC, METRICS, NBC, NC, SNAC, TKNC, NeuronProfile, build_metric, cells_to_dense
from neurofuzz.ground.errors import UserError

NAN = float("nan")
INF = float("inf")


def after(x: float) -> float:
    """The next float32 above ``x``."""
    return float(np.nextafter(np.float32(x), np.float32(np.inf)))


def before(x: float) -> float:
    """The next float32 below ``x``."""
    return float(np.nextafter(np.float32(x), np.float32(-np.inf)))


def profile(low, high, *, std=None, mean=None, layers=None) -> NeuronProfile:
    low = torch.tensor(low, dtype=torch.float32)
    high = torch.tensor(high, dtype=torch.float32)
    n = low.numel()
    return NeuronProfile(
        layers=layers or {"a": n},
        low=low,
        high=high,
        mean=torch.tensor(mean, dtype=torch.float32) if mean is not None else (low + high) / 2,
        std=torch.tensor(std, dtype=torch.float32) if std is not None else torch.zeros(n),
    )


def acts(layers: dict[str, int], rows: list[list[float]]) -> dict[str, torch.Tensor]:
    """Split full rows (concatenated neurons) into a per-layer activation dict."""
    t = torch.tensor(rows, dtype=torch.float32)
    out, start = {}, 0
    for name, n in layers.items():
        out[name] = t[:, start : start + n]
        start += n
    return out


def ints(t: torch.Tensor) -> list:
    return t.long().tolist()


# A shared two-layer layout and profile, used by the contract tests parametrised over metrics.
LAYOUT = {"a": 3, "b": 2}
PROF = profile([0.0, 0.0, -1.0, 0.0, 1.0], [1.0, 2.0, 1.0, 4.0, 3.0], std=[0.5, 0.5, 1.0, 0.0, 2.0], layers=LAYOUT)


def make(name: str, **params):
    defaults = {"nc": {"threshold": 0.5}, "tknc": {"k": 1}, "kmnc": {"k": 4}, "nbc": {}, "snac": {}}
    p = {**defaults[name], **params}
    return build_metric(name, layers=LAYOUT, profile=PROF, **p)


# One input that covers at least one cell of every metric on LAYOUT/PROF (NBC/SNAC: 5.0 > 4.0,
# NBC lower: -2.0 < -1.0; KMNC: in range; NC/TKNC: varied values).
RICH = [0.5, 1.0, -2.0, 5.0, 2.0]

ALL = ["kmnc", "nbc", "nc", "snac", "tknc"]  # the cell-map contract; newer criteria: tests/test_coverage_{nlc,surprise,tknp_bknc}.py


# ============================================================================ KMNC
class TestKMNC:
    def test_exact_section_boundaries(self):
        # low 0, high 1, k 4: sections [0,.25) [.25,.5) [.5,.75) [.75,1]
        m = KMNC(profile([0.0], [1.0]), k=4)
        vals = [0.0, before(0.25), 0.25, 0.5, before(0.75), 0.75, before(1.0), 1.0]
        cells = m.measure({"a": torch.tensor(vals).view(-1, 1)})
        assert ints(cells.view(-1)) == [0, 0, 1, 2, 2, 3, 3, 3]

    def test_high_in_last_section_low_in_first_and_neuron_offsets(self):
        # neuron 0: [-2, 2], neuron 1: [10, 18]; k = 4 -> cell ids neuron*4 + section
        m = KMNC(profile([-2.0, 10.0], [2.0, 18.0]), k=4)
        cells = m.measure({"a": torch.tensor([[-2.0, 10.0], [2.0, 18.0], [-1.0, 14.0], [0.0, 16.0]])})
        assert ints(cells) == [[0, 4], [3, 7], [1, 6], [2, 7]]

    def test_k_equal_one(self):
        m = KMNC(profile([0.0], [1.0]), k=1)
        cells = m.measure({"a": torch.tensor([[0.0], [0.5], [1.0], [after(1.0)]])})
        assert ints(cells.view(-1)) == [0, 0, 0, -1]

    def test_outside_and_nan_count_nowhere(self):
        m = KMNC(profile([0.0], [1.0]), k=4)
        vals = [before(0.0), after(1.0), -5.0, 7.0, NAN, INF, -INF]
        cells = m.measure({"a": torch.tensor(vals).view(-1, 1)})
        assert ints(cells.view(-1)) == [-1] * len(vals)
        gain = m.update({"a": torch.tensor(vals).view(-1, 1)})
        assert ints(gain) == [0] * len(vals)
        assert m.covered_count() == 0 and m.value() == 0.0

    def test_low_equal_high_excluded(self):
        # neuron 1 is constant (low == high == 0.5): no sections, not coverable
        m = KMNC(profile([0.0, 0.5, 0.0], [1.0, 0.5, 2.0]), k=2)
        assert m.n_cells == 4  # 2 valid neurons * k
        cells = m.measure({"a": torch.tensor([[0.0, 0.5, 2.0]])})
        assert ints(cells) == [[0, -1, 5]]
        m.commit(cells)
        assert m.value() == pytest.approx(2 / 4)
        m.update({"a": torch.tensor([[1.0, 0.5, 0.0]])})
        assert m.covered_count() == 4
        assert m.value() == 1.0  # the excluded neuron is not in the denominator

    def test_value_and_per_layer_by_hand(self):
        layers = {"a": 1, "b": 2}
        m = KMNC(profile([0.0, 0.0, 3.0], [1.0, 4.0, 3.0], layers=layers), k=4)
        assert m.n_cells == 8  # neuron 2 excluded
        m.update(acts(layers, [[0.1, 0.0, 3.0], [0.9, 3.5, 3.0], [0.2, 1.0, 3.0]]))
        # covered: n0 sections {0, 3}; n1 sections {0, 3, 1}
        assert m.covered_count() == 5
        assert m.value() == pytest.approx(5 / 8)
        assert m.per_layer() == {"a": pytest.approx(2 / 4), "b": pytest.approx(3 / 4)}

    def test_all_degenerate_raises(self):
        with pytest.raises(UserError, match="every profiled neuron has low == high; profile on varied data"):
            KMNC(profile([1.0, 2.0], [1.0, 2.0]), k=4)

    @pytest.mark.parametrize("k", [0, -3])
    def test_bad_k(self, k):
        with pytest.raises(UserError, match=f"kmnc: k must be >= 1, got {k}"):
            KMNC(profile([0.0], [1.0]), k=k)

    def test_sparse_form_and_cells_to_dense(self):
        m = KMNC(profile([0.0, 0.0], [1.0, 1.0]), k=4)
        assert m.sparse
        cells = m.measure({"a": torch.tensor([[1.0, 0.0], [0.3, 2.0], [0.3, 0.6]])})
        assert cells.dtype == torch.int64 and ints(cells) == [[3, 4], [1, -1], [1, 6]]
        dense = cells_to_dense(cells, m.n_neurons * m.m)
        expect = torch.zeros(3, 8, dtype=torch.bool)
        expect[0, 3] = expect[0, 4] = expect[1, 1] = expect[2, 1] = expect[2, 6] = True
        assert torch.equal(dense, expect)
        # novelty and commit agree between the two forms
        assert ints(m.novelty(cells)) == ints(m.novelty(dense)) == [2, 1, 1]
        other = KMNC(profile([0.0, 0.0], [1.0, 1.0]), k=4)
        m.commit(cells)
        other.commit(dense)
        assert torch.equal(m.covered, other.covered)
        assert m.covered_count() == 4

    def test_cells_to_dense_passes_bool_through(self):
        d = torch.tensor([[True, False], [False, False]])
        assert torch.equal(cells_to_dense(d, 2), d)

    def test_cells_to_dense_all_none(self):
        out = cells_to_dense(torch.full((2, 3), -1, dtype=torch.long), 9)
        assert out.shape == (2, 9) and not out.any()


# ============================================================================ NBC / SNAC
class TestBoundary:
    def test_strict_at_bounds(self):
        p = profile([0.0, 0.0], [1.0, 1.0])
        x = {"a": torch.tensor([[0.0, 1.0], [before(0.0), after(1.0)]])}
        # NBC cells per neuron: [lower, upper]
        assert ints(NBC(p).measure(x)) == [[0, 0, 0, 0], [1, 0, 0, 1]]
        assert ints(SNAC(p).measure(x)) == [[0, 0], [0, 1]]

    def test_widening_by_c_std(self):
        # bounds widen to [low - c*std, high + c*std] = [-1, 2] and [-0.25, 1.25] with c = 0.5
        p = profile([0.0, 0.0], [1.0, 1.0], std=[2.0, 0.5])
        nbc, snac = NBC(p, std_widen=0.5), SNAC(p, std_widen=0.5)
        x = {"a": torch.tensor([
            [2.0, 1.25],            # exactly on the widened upper bounds: nothing
            [-1.0, -0.25],          # exactly on the widened lower bounds: nothing
            [1.5, 1.0 + 0.125],     # beyond the raw bound, inside the widened one: nothing
            [after(2.0), after(1.25)],
            [before(-1.0), before(-0.25)],
        ])}
        assert ints(nbc.measure(x)) == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
        assert ints(snac.measure(x)) == [[0, 0], [0, 0], [0, 0], [1, 1], [0, 0]]
        # without widening the third row is an upper corner on both neurons
        assert ints(NBC(p).measure(x)[2]) == [0, 1, 0, 1]

    def test_widening_never_mutates_profile(self):
        p = profile([0.0, -1.0], [1.0, 2.0], std=[2.0, 0.5], mean=[0.5, 0.25])
        before_t = {k: getattr(p, k).clone() for k in ("low", "high", "mean", "std")}
        hash_before = p.hash()
        x = {"a": torch.tensor([[3.0, -5.0], [0.5, 0.5]])}
        first = None
        for _ in range(3):  # repeated construction and use must not compound the widening
            for cls in (NBC, SNAC):
                m = cls(p, std_widen=1.0)
                got = m.measure(x)
                m.update(x)
                if cls is NBC:
                    first = got if first is None else first
                    assert torch.equal(got, first)
        for k, t in before_t.items():
            assert torch.equal(getattr(p, k), t), k
        assert p.hash() == hash_before
        # the metric's bounds are its own tensors: writing to them leaves the profile alone
        m = NBC(p, std_widen=1.0)
        m.lower_bound.fill_(123.0)
        m.upper_bound.fill_(-123.0)
        assert torch.equal(p.low, before_t["low"]) and torch.equal(p.high, before_t["high"])

    def test_nbc_value_by_hand(self):
        layers = {"a": 2, "b": 1}
        p = profile([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], layers=layers)
        nbc, snac = NBC(p), SNAC(p)
        rows = [
            [2.0, 0.5, 0.5],    # upper of n0
            [-1.0, 0.5, 0.5],   # lower of n0
            [0.5, 1.0, -3.0],   # lower of n2 (n1 sits on its bound: nothing)
            [3.0, 0.0, NAN],    # upper of n0 again, NaN: nothing
        ]
        for m in (nbc, snac):
            m.update(acts(layers, rows))
        upper, lower = 1, 2
        assert nbc.covered_count() == upper + lower
        assert nbc.value() == pytest.approx((upper + lower) / (2 * 3))
        assert nbc.per_layer() == {"a": pytest.approx(2 / 4), "b": pytest.approx(1 / 2)}
        assert snac.value() == pytest.approx(upper / 3)
        assert snac.per_layer() == {"a": pytest.approx(1 / 2), "b": 0.0}
        assert ints(nbc.covered) == [1, 1, 0, 0, 1, 0]

    def test_nan_never_covers(self):
        p = profile([0.0], [1.0])
        x = {"a": torch.tensor([[NAN]])}
        assert not NBC(p).measure(x).any()
        assert not SNAC(p).measure(x).any()

    def test_infinities_are_corners(self):
        p = profile([0.0], [1.0])
        x = {"a": torch.tensor([[INF], [-INF]])}
        assert ints(NBC(p).measure(x)) == [[0, 1], [1, 0]]


# ============================================================================ NC
class TestNC:
    def test_raw_threshold_is_strict(self):
        m = NC({"a": 3}, threshold=0.5, scaled=False)
        cells = m.measure({"a": torch.tensor([[0.5, after(0.5), before(0.5)]])})
        assert ints(cells) == [[0, 1, 0]]

    def test_scaled_threshold_is_strict(self):
        # scaled values 0, 0.5, 1: the middle one equals t and is not covered
        m = NC({"a": 3}, threshold=0.5)
        assert m.scaled
        assert ints(m.measure({"a": torch.tensor([[1.0, 2.0, 3.0]])})) == [[0, 0, 1]]

    def test_scaled_vs_raw(self):
        x = {"a": torch.tensor([[1.0, 2.0, 3.0, 2.5]])}
        # raw: all four exceed 0.5; scaled: 0, .5, 1, .75
        assert ints(NC({"a": 4}, threshold=0.5, scaled=False).measure(x)) == [[1, 1, 1, 1]]
        assert ints(NC({"a": 4}, threshold=0.5, scaled=True).measure(x)) == [[0, 0, 1, 1]]

    def test_scaling_per_layer_and_per_input(self):
        layers = {"a": 2, "b": 2}
        x = acts(layers, [[0.0, 10.0, 100.0, 101.0], [4.0, 3.0, -1.0, -3.0]])
        scaled = NC(layers, threshold=0.5).measure(x)
        # per layer and input: a -> [0, 1], b -> [0, 1]; then a -> [1, 0], b -> [1, 0]
        assert ints(scaled) == [[0, 1, 0, 1], [1, 0, 1, 0]]
        raw = NC(layers, threshold=50.0, scaled=False).measure(x)
        assert ints(raw) == [[0, 0, 1, 1], [0, 0, 0, 0]]

    def test_constant_layer_under_scaling(self):
        layers = {"a": 3, "b": 2}
        x = acts(layers, [[3.0, 3.0, 3.0, 0.0, 1.0]])
        # the constant layer scales to zeros: covers nothing for t >= 0 ...
        assert ints(NC(layers, threshold=0.0).measure(x)) == [[0, 0, 0, 0, 1]]
        # ... and everything for a negative threshold (0 > t)
        assert ints(NC(layers, threshold=-0.5).measure(x)) == [[1, 1, 1, 1, 1]]

    def test_single_neuron_layer_scales_to_zero(self):
        m = NC({"a": 1, "b": 2}, threshold=0.0)
        assert ints(m.measure({"a": torch.tensor([[7.0]]), "b": torch.tensor([[1.0, 2.0]])})) == [[0, 0, 1]]

    def test_nan_never_covers(self):
        x = {"a": torch.tensor([[NAN, 1.0, 3.0]])}
        assert ints(NC({"a": 3}, threshold=0.5, scaled=False).measure(x)) == [[0, 1, 1]]
        assert ints(NC({"a": 3}, threshold=-1.0, scaled=True).measure(x))[0][0] == 0
        assert ints(NC({"a": 1}, threshold=-1.0, scaled=False).measure({"a": torch.tensor([[NAN]])})) == [[0]]

    def test_nan_does_not_change_the_scaling_of_other_neurons(self):
        m = NC({"a": 4}, threshold=0.5)
        # the non-NaN values are constant: the layer scales to zeros and covers nothing
        assert ints(m.measure({"a": torch.tensor([[NAN, 5.0, 5.0, 5.0]])})) == [[0, 0, 0, 0]]
        # the non-NaN values -2, -1.5, -1 scale to 0, .5, 1: only the last exceeds 0.5
        assert ints(m.measure({"a": torch.tensor([[NAN, -2.0, -1.5, -1.0]])})) == [[0, 0, 0, 1]]

    def test_nan_never_covers_in_a_constant_layer_with_negative_threshold(self):
        m = NC({"a": 1, "b": 3}, threshold=-0.25)
        x = {"a": torch.tensor([[NAN]]), "b": torch.tensor([[NAN, 0.0, 0.0]])}
        cells = ints(m.measure(x))
        assert cells[0][0] == 0 and cells[0][1] == 0

    def test_value_and_per_layer(self):
        layers = {"a": 3, "b": 1}
        m = NC(layers, threshold=0.0, scaled=False)
        m.update(acts(layers, [[1.0, -1.0, 0.0, 2.0]]))
        assert m.value() == pytest.approx(2 / 4)
        assert m.per_layer() == {"a": pytest.approx(1 / 3), "b": 1.0}


# ============================================================================ TKNC
class TestTKNC:
    def test_ties_all_covered(self):
        m = TKNC({"a": 4}, k=1)
        assert ints(m.measure({"a": torch.tensor([[1.0, 3.0, 3.0, 0.0]])})) == [[0, 1, 1, 0]]
        m2 = TKNC({"a": 5}, k=2)
        assert ints(m2.measure({"a": torch.tensor([[5.0, 4.0, 4.0, 4.0, 1.0]])})) == [[1, 1, 1, 1, 0]]

    def test_ties_independent_of_order(self):
        m = TKNC({"a": 4}, k=2)
        x = torch.tensor([[0.0, 2.0, 1.0, 2.0], [2.0, 0.0, 2.0, 1.0]])
        assert ints(m.measure({"a": x})) == [[0, 1, 0, 1], [1, 0, 1, 0]]

    def test_top_k_per_layer(self):
        layers = {"a": 2, "b": 3}
        m = TKNC(layers, k=1)
        x = acts(layers, [[-5.0, -4.0, 100.0, 50.0, 0.0]])
        # a's top-1 is -4 even though every value of b is larger
        assert ints(m.measure(x)) == [[0, 1, 1, 0, 0]]

    def test_k_at_least_layer_size(self):
        layers = {"a": 2, "b": 3}
        x = acts(layers, [[-5.0, -4.0, 3.0, 1.0, 2.0]])
        assert ints(TKNC(layers, k=2).measure(x)) == [[1, 1, 1, 0, 1]]
        assert ints(TKNC(layers, k=3).measure(x)) == [[1, 1, 1, 1, 1]]
        m = TKNC(layers, k=10)
        m.update(x)
        assert m.value() == 1.0

    def test_nan_never_covers(self):
        m = TKNC({"a": 3}, k=1)
        assert ints(m.measure({"a": torch.tensor([[NAN, 1.0, 2.0]])})) == [[0, 0, 1]]
        # even when k >= the layer size
        m3 = TKNC({"a": 3}, k=3)
        assert ints(m3.measure({"a": torch.tensor([[NAN, 1.0, 2.0]])})) == [[0, 1, 1]]
        assert ints(m3.measure({"a": torch.tensor([[NAN, NAN, NAN]])})) == [[0, 0, 0]]

    @pytest.mark.parametrize("k", [0, -1])
    def test_bad_k(self, k):
        with pytest.raises(UserError, match=f"tknc: k must be >= 1, got {k}"):
            TKNC({"a": 3}, k=k)

    def test_value_union_over_inputs(self):
        m = TKNC({"a": 4}, k=1)
        m.update({"a": torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])})
        assert m.value() == pytest.approx(2 / 4)


# ============================================================================ novelty / commit
class TestNoveltyAndCommit:
    @pytest.mark.parametrize("name", ALL)
    def test_identical_inputs_first_gets_credit(self, name):
        m = make(name)
        cells = m.measure(acts(LAYOUT, [RICH, RICH]))
        gain = m.novelty(cells)
        assert gain.dtype == torch.int64 and gain.shape == (2,)
        assert gain[0] > 0 and gain[1] == 0
        m.commit(cells)
        assert m.covered_count() == int(gain[0])
        # once committed, the same input is worth nothing
        assert ints(m.novelty(m.measure(acts(LAYOUT, [RICH])))) == [0]

    @pytest.mark.parametrize("name", ALL)
    def test_measure_and_novelty_are_pure(self, name):
        m = make(name)
        x = acts(LAYOUT, [RICH, [0.0, 0.0, 0.0, 0.0, 0.0]])
        c1 = m.measure(x)
        m.novelty(c1)
        assert m.covered_count() == 0
        assert torch.equal(m.measure(x), c1)
        assert torch.equal(m.novelty(c1), m.novelty(c1))

    def test_partial_overlap_in_batch_order(self):
        m = NC({"a": 4}, threshold=0.0, scaled=False)
        x = {"a": torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])}
        assert ints(m.novelty(m.measure(x))) == [2, 1, 1]
        # reversed order: the all-ones input comes first and takes all the credit
        assert ints(m.novelty(m.measure({"a": x["a"].flip(0)}))) == [4, 0, 0]

    def test_sparse_batch_order(self):
        m = KMNC(profile([0.0, 0.0], [1.0, 1.0]), k=2)
        x = {"a": torch.tensor([[0.1, 0.9], [0.2, 0.1], [0.8, 0.9], [0.1, 0.1]])}
        # cells: [0, 3], [0, 2], [1, 3], [0, 2]
        assert ints(m.novelty(m.measure(x))) == [2, 1, 1, 0]

    def test_novelty_against_history(self):
        m = NC({"a": 3}, threshold=0.0, scaled=False)
        m.update({"a": torch.tensor([[1.0, 0.0, 0.0]])})
        x = {"a": torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])}
        assert ints(m.novelty(m.measure(x))) == [1, 1]

    @pytest.mark.parametrize("name", ALL)
    def test_commit_with_mask(self, name):
        m = make(name)
        zero = [0.5, 0.5, 0.0, 1.0, 2.0]  # an unremarkable input
        cells = m.measure(acts(LAYOUT, [RICH, zero]))
        m.commit(cells, mask=torch.tensor([False, True]))
        only_zero = make(name)
        only_zero.commit(only_zero.measure(acts(LAYOUT, [zero])))
        assert torch.equal(m.covered, only_zero.covered)
        m.commit(cells, mask=torch.tensor([True, False]))
        both = make(name)
        both.commit(cells)
        assert torch.equal(m.covered, both.covered)
        assert m.covered_count() > only_zero.covered_count()

    @pytest.mark.parametrize("name", ALL)
    def test_commit_mask_all_false_and_empty_batch(self, name):
        m = make(name)
        cells = m.measure(acts(LAYOUT, [RICH]))
        m.commit(cells, mask=torch.tensor([False]))
        assert m.covered_count() == 0
        empty = cells[:0]
        assert m.novelty(empty).shape == (0,)
        m.commit(empty)
        assert m.covered_count() == 0

    @pytest.mark.parametrize("name", ALL)
    def test_update_returns_novelty_and_commits(self, name):
        m = make(name)
        ref = make(name)
        x = acts(LAYOUT, [RICH, [0.9, 1.9, 0.9, 3.9, 2.9], RICH])
        cells = ref.measure(x)
        expect = ref.novelty(cells)
        got = m.update(x)
        assert torch.equal(got, expect)
        assert m.covered_count() == int(expect.sum()) > 0

    def test_nc_rejects_wrong_layout(self):
        m = NC({"a": 3}, threshold=0.5)
        with pytest.raises(UserError, match=r"nc: no activations for layer 'a' \(have \['b'\]\)"):
            m.measure({"b": torch.zeros(1, 3)})
        with pytest.raises(UserError, match=r"nc: layer 'a' has shape \(1, 4\), expected \[B, 3\]"):
            m.measure({"a": torch.zeros(1, 4)})


# ============================================================================ value / state / merge
class TestStateAndMerge:
    @pytest.mark.parametrize("name", ALL)
    def test_fresh_metric(self, name):
        m = make(name)
        assert m.value() == 0.0
        assert m.covered_count() == 0
        assert m.per_layer() == {"a": 0.0, "b": 0.0}

    @pytest.mark.parametrize("name", ALL)
    def test_state_dict_round_trip(self, name):
        m = make(name)
        m.update(acts(LAYOUT, [RICH, [0.9, 1.9, 0.9, 3.9, 2.9]]))
        assert m.covered_count() > 0
        sd = m.state_dict()
        fresh = make(name)
        fresh.load_state_dict(sd)
        assert torch.equal(fresh.covered, m.covered)
        assert fresh.value() == m.value()
        assert fresh.per_layer() == m.per_layer()
        # the state dict is a copy: later updates do not change it, loading it does not alias it
        saved = sd["covered"].clone()
        m.update(acts(LAYOUT, [[-9.0, 9.0, 9.0, -9.0, 9.0]]))
        assert torch.equal(sd["covered"], saved)
        fresh.covered.zero_()
        assert torch.equal(sd["covered"], saved)

    def test_state_dict_survives_torch_save(self, tmp_path):
        m = make("kmnc")
        m.update(acts(LAYOUT, [RICH]))
        torch.save(m.state_dict(), tmp_path / "s.pt")
        fresh = make("kmnc")
        fresh.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
        assert torch.equal(fresh.covered, m.covered)

    @pytest.mark.parametrize(
        ("name", "a", "b"),
        [
            ("nc", {"threshold": 0.5}, {"threshold": 0.25}),
            ("nc", {"scaled": True}, {"scaled": False}),
            ("tknc", {"k": 1}, {"k": 2}),
            ("kmnc", {"k": 4}, {"k": 5}),
            ("nbc", {"std_widen": 0.0}, {"std_widen": 0.5}),
            ("snac", {"std_widen": 0.0}, {"std_widen": 1.0}),
        ],
    )
    def test_refuse_different_definition(self, name, a, b):
        ma, mb = make(name, **a), make(name, **b)
        mb.update(acts(LAYOUT, [RICH]))
        with pytest.raises(UserError, match="cannot load coverage of a different definition or layout"):
            ma.load_state_dict(mb.state_dict())
        with pytest.raises(UserError, match="cannot merge coverage of a different definition or layout"):
            ma.merge(mb)
        assert ma.covered_count() == 0

    @pytest.mark.parametrize("name", ALL)
    def test_refuse_different_layout(self, name):
        ma = make(name)
        for layers, low, high in [
            ({"a": 3, "c": 2}, PROF.low, PROF.high),  # another layer name
            ({"a": 2, "b": 3}, PROF.low, PROF.high),  # other sizes, same total
            ({"a": 3}, PROF.low[:3], PROF.high[:3]),  # fewer layers
        ]:
            p = NeuronProfile(layers=layers, low=low, high=high, mean=(low + high) / 2, std=torch.ones(len(low)))
            params = {"nc": {"threshold": 0.5}, "tknc": {"k": 1}, "kmnc": {"k": 4}, "nbc": {}, "snac": {}}[name]
            mb = build_metric(name, layers=layers, profile=p, **params)
            with pytest.raises(UserError, match="cannot load coverage of a different definition or layout"):
                ma.load_state_dict(mb.state_dict())
            with pytest.raises(UserError, match="cannot merge coverage of a different definition or layout"):
                ma.merge(mb)

    def test_refuse_other_profile(self):
        # same layout and k, different profile: KMNC/NBC cells mean something else
        other = NeuronProfile(layers=LAYOUT, low=PROF.low - 1, high=PROF.high, mean=PROF.mean, std=PROF.std)
        for name in ("kmnc", "nbc", "snac"):
            with pytest.raises(UserError, match="cannot merge coverage of a different definition or layout"):
                make(name).merge(build_metric(name, profile=other, **({"k": 4} if name == "kmnc" else {})))

    def test_refuse_other_metric(self):
        with pytest.raises(UserError, match="nc: " + "cannot load coverage of a different definition or layout"):
            make("nc").load_state_dict(make("snac").state_dict())
        with pytest.raises(UserError, match="snac: " + "cannot merge coverage of a different definition or layout"):
            make("snac").merge(make("nc"))

    def test_refuse_corrupt_covered_map(self):
        m = make("nc")
        sd = m.state_dict()
        sd["covered"] = torch.zeros(4, dtype=torch.bool)
        with pytest.raises(UserError, match=r"stored coverage map is bool of shape \(4,\), expected bool of shape \(5,\)"):
            m.load_state_dict(sd)
        # the wrong dtype is named (the message used to say "shape (5,), expected (5,)")
        sd["covered"] = torch.zeros(5, dtype=torch.uint8)
        with pytest.raises(UserError, match=r"stored coverage map is uint8 of shape \(5,\), expected bool"):
            m.load_state_dict(sd)
        for broken in ({k: v for k, v in sd.items() if k != "covered"}, {**sd, "covered": [False] * 5}):
            with pytest.raises(UserError, match="no coverage map"):
                m.load_state_dict(broken)
        assert m.covered_count() == 0

    @pytest.mark.parametrize("name", ALL)
    def test_merge_is_union(self, name):
        x1 = acts(LAYOUT, [RICH])
        x2 = acts(LAYOUT, [[0.9, 1.9, 0.9, 3.9, 2.9], [-9.0, 9.0, 9.0, -9.0, 9.0]])
        a, b, both = make(name), make(name), make(name)
        a.update(x1)
        b.update(x2)
        both.update(x1)
        both.update(x2)
        b_before = b.covered.clone()
        a.merge(b)
        assert torch.equal(a.covered, both.covered)
        assert torch.equal(b.covered, b_before)  # the other side is untouched

    def test_nc_merge_by_hand(self):
        a, b = NC({"a": 3}, threshold=0.0, scaled=False), NC({"a": 3}, threshold=0.0, scaled=False)
        a.update({"a": torch.tensor([[1.0, 0.0, 0.0]])})
        b.update({"a": torch.tensor([[1.0, 0.0, 1.0]])})
        a.merge(b)
        assert ints(a.covered) == [1, 0, 1]
        assert a.value() == pytest.approx(2 / 3)


# ============================================================================ build_metric
class TestBuildMetric:
    def test_unknown_name(self):
        with pytest.raises(UserError, match="unknown coverage metric"):
            build_metric("lsc", layers=LAYOUT)

    @pytest.mark.parametrize(("name", "param"), [("nc", "k"), ("tknc", "threshold"), ("kmnc", "std_widen"),
                                                  ("nbc", "k"), ("snac", "bogus")])
    def test_unknown_param(self, name, param):
        with pytest.raises(UserError, match="unknown parameter"):
            build_metric(name, layers=LAYOUT, profile=PROF, **{param: 1})

    @pytest.mark.parametrize("name", ["kmnc", "nbc", "snac"])
    def test_profile_required(self, name):
        with pytest.raises(UserError, match=f"{name} needs a neuron profile; create one with `neurofuzz profile`"):
            build_metric(name, layers=LAYOUT)

    def test_layers_required(self):
        with pytest.raises(UserError, match="nc: give the layer layout or a profile"):
            build_metric("nc")

    def test_builds_configured_metrics(self):
        nc = build_metric("nc", profile=PROF, threshold=0.25, scaled=False)
        assert isinstance(nc, NC) and nc.layers == LAYOUT and nc.threshold == 0.25 and not nc.scaled
        km = build_metric("kmnc", profile=PROF, k=7)
        assert isinstance(km, KMNC) and km.k == 7 and km.n_cells == 7 * 5
        assert isinstance(build_metric("tknc", layers={"x": 2}, k=3), TKNC)
        assert isinstance(build_metric("nbc", profile=PROF), NBC)
        s = build_metric("snac", profile=PROF, std_widen=2.0)
        assert isinstance(s, SNAC) and torch.equal(s.upper_bound, PROF.high + 2.0 * PROF.std)

    def test_empty_layout(self):
        with pytest.raises(UserError, match=r"nc: need at least one layer with neurons, got \{\}"):
            NC({}, threshold=0.5)
        with pytest.raises(UserError, match=r"tknc: need at least one layer with neurons, got \{'a': 0\}"):
            TKNC({"a": 0}, k=1)


def test_registry_is_complete():
    assert set(METRICS) == {"nc", "tknc", "kmnc", "nbc", "snac", "bknc", "tknp", "nlc", "lsa", "dsa"}
    assert all(math.isfinite(make(n).value()) for n in ALL)
