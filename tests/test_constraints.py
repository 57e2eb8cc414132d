"""DeepHunter's validity rule, the affine-once rule and SSIM: properties and edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators.constraints import Constraint, LineageState, check, distances, ssim

SHAPES = st.sampled_from([(1, 8, 8), (1, 10, 10), (3, 8, 8), (1, 32, 32), (3, 16, 12)])


def _image(seed: int, shape: tuple[int, ...], lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _reference_rule(ref: np.ndarray, new: np.ndarray, alpha: float, beta: float, rng: float) -> list[bool]:
    """The rule written out per image in numpy (float64), independent of the implementation."""
    out = []
    for r, n in zip(ref, new):
        d = n.astype(np.float64) - r.astype(np.float64)
        out.append(bool(np.count_nonzero(d) < alpha * r.size or np.abs(d).max() < beta * rng))
    return out


# ---------------------------------------------------------------------------- the pixel rule
@given(shape=SHAPES, seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4))
def test_identical_images_are_valid(shape, seed, batch):
    x = _image(seed, (batch, *shape))
    assert check(x, x.clone()).all()
    assert check(x[0], x.clone()).shape == (batch,)


@given(
    shape=SHAPES,
    seed=st.integers(0, 2**31 - 1),
    frac=st.floats(0.0, 1.0),
    delta=st.floats(0.21, 0.7),
    alpha=st.sampled_from([0.0, 0.01, 0.02, 0.1]),
)
def test_many_pixels_changed_a_lot_is_rejected(shape, seed, frac, delta, alpha):
    ref = _image(seed, shape, 0.0, 0.3)
    size = ref.numel()
    k = min(size, math.ceil(alpha * size) + int(frac * (size - math.ceil(alpha * size))))
    assume(k > 0)  # alpha == 0 and frac ~ 0 leave nothing to change
    new = ref.clone().flatten()
    idx = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:k]
    new[idx] += delta  # L0 = k >= alpha * size, Linf = delta >= 0.2
    assert not bool(check(ref, new.view(shape), alpha=alpha)[0])


@given(shape=SHAPES, seed=st.integers(0, 2**31 - 1), frac=st.floats(0.0, 0.999), value=st.floats(0.0, 1.0))
def test_few_pixels_changed_arbitrarily_is_accepted(shape, seed, frac, value):
    ref = _image(seed, shape)
    size = ref.numel()
    k = math.ceil(0.02 * size) - 1  # the largest L0 strictly below alpha * size
    k = int(frac * (k + 1))
    new = ref.clone().flatten()
    new[torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:k]] = value
    assert bool(check(ref, new.view(shape))[0])


@given(shape=SHAPES, seed=st.integers(0, 2**31 - 1), scale=st.floats(0.0, 0.199))
def test_small_linf_change_everywhere_is_accepted(shape, seed, scale):
    ref = _image(seed, shape, 0.3, 0.7)
    noise = _image(seed + 1, shape, -1.0, 1.0) * scale  # every pixel moves, by < 0.2 * range
    assert bool(check(ref, ref + noise)[0])


@given(
    shape=SHAPES,
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 5),
    p_change=st.floats(0.0, 0.2),
    scale=st.floats(0.0, 0.5),
    alpha=st.floats(0.0, 0.2),
    beta=st.floats(0.0, 0.5),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]),
)
def test_check_agrees_with_the_rule_written_out(shape, seed, batch, p_change, scale, alpha, beta, bounds):
    lo, hi = bounds
    g = torch.Generator().manual_seed(seed)
    ref = lo + (hi - lo) * torch.rand((batch, *shape), generator=g)
    mask = torch.rand(ref.shape, generator=g) < p_change
    new = ref + mask * (torch.rand(ref.shape, generator=g) - 0.5) * 2 * scale * (hi - lo)
    got = check(ref, new, alpha=alpha, beta=beta, bounds=bounds).tolist()
    assert got == _reference_rule(ref.numpy(), new.numpy(), alpha, beta, hi - lo)


def test_thresholds_are_strict():
    ref = torch.zeros(1, 10, 10)  # size 100: alpha 0.02 -> L0 must be < 2
    one, two = ref.clone(), ref.clone()
    one[0, 0, 0] = 1.0
    two[0, 0, :2] = 1.0
    assert check(ref, torch.stack([one, two])).tolist() == [True, False]
    # Linf exactly beta * range is not < beta * range; a hair below is
    at = torch.full((1, 10, 10), 0.25)
    below = torch.full((1, 10, 10), float(np.nextafter(np.float32(0.25), np.float32(0))))
    assert check(ref, torch.stack([at, below]), beta=0.25).tolist() == [False, True]
    # with range 2 (bounds -1..1) the Linf budget doubles
    assert bool(check(ref, at, beta=0.25, bounds=(-1.0, 1.0))[0])


def test_rejects_what_mindarmour_would_accept():
    """A mutant that changes every pixel by half the range violates both budgets: rejected."""
    ref = torch.zeros(2, 1, 28, 28)
    new = ref + 0.5
    assert not check(ref, new).any()
    l0, linf = distances(ref, new)
    assert l0.tolist() == [784, 784] and linf.tolist() == [0.5, 0.5]


def test_non_finite_mutants_are_rejected():
    ref = torch.zeros(2, 1, 10, 10)
    new = ref.clone()
    new[0, 0, 0, 0] = float("nan")  # one pixel: the L0 rule alone would accept it
    new[1, 0, 0, 0] = float("inf")
    assert check(ref, new).tolist() == [False, False]


# ---------------------------------------------------------------------------- affine once
def test_affine_once_per_lineage_and_reference_update():
    c = Constraint()
    root = _image(0, (1, 16, 16))
    state = LineageState.root(root)
    shifted = torch.roll(root, 3, dims=-1).unsqueeze(0)  # an "affine" mutant: many big changes
    assert not bool(c.check(root, shifted)[0])  # the pixel rule alone would reject it
    ok, states = c.admit(state, shifted, kind="affine")
    assert ok.tolist() == [True]
    after = states[0]
    assert after.affine_used and torch.equal(after.reference, shifted[0])
    assert not state.affine_used  # the parent's state is not modified
    # a second affine mutation in the same lineage is rejected, whatever it does
    ok2, states2 = c.admit(after, shifted.clone(), kind="affine")
    assert ok2.tolist() == [False] and states2[0] is after
    # pixel mutations are now measured against the post-affine reference
    tweak = shifted.clone()
    tweak[0, 0, :2, :2] += 0.01
    assert c.admit(after, tweak, kind="natural")[0].tolist() == [True]
    assert c.admit(state, tweak, kind="natural")[0].tolist() == [False]
    # and the state of an accepted pixel mutant is its parent's (same reference, flag kept)
    assert c.admit(after, tweak, kind="natural")[1][0] is after


@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(st.sampled_from(["natural", "affine", "attack"]), min_size=1, max_size=6))
def test_admit_batch_matches_one_by_one(seed, kinds):
    c = Constraint()
    n = len(kinds)
    roots = [LineageState.root(_image(seed + i, (1, 8, 8))) for i in range(n)]
    states = [s if i % 2 else LineageState(s.reference, True) for i, s in enumerate(roots)]
    g = torch.Generator().manual_seed(seed)
    x_new = torch.stack([s.reference for s in states]) + (torch.rand(n, 1, 8, 8, generator=g) < 0.03) * 0.5
    ok, out = c.admit(states, x_new, kinds)
    for i in range(n):
        ok_i, out_i = c.admit(states[i], x_new[i : i + 1], kinds[i])
        assert bool(ok[i]) == bool(ok_i[0])
        if kinds[i] == "affine":
            assert bool(ok[i]) == (not states[i].affine_used)
        else:
            assert bool(ok[i]) == bool(c.check(states[i].reference, x_new[i : i + 1])[0])
        if bool(ok[i]) and kinds[i] == "affine":
            assert out[i].affine_used and torch.equal(out[i].reference, x_new[i])
        else:
            assert out[i] is states[i]


# ---------------------------------------------------------------------------- SSIM
@given(shape=SHAPES, seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3))
def test_ssim_of_identical_images_is_exactly_one(shape, seed, batch):
    x = _image(seed, (batch, *shape))
    assert ssim(x, x.clone()).tolist() == [1.0] * batch


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_decreases_with_noise(channels, digits_test):
    x = digits_test[0][:8].repeat(1, channels, 1, 1) * 0.6 + 0.2
    noise = _image(1, tuple(x.shape), -1.0, 1.0)
    values = [ssim(x, x + s * noise) for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
    for a, b in zip(values, values[1:]):
        assert bool((b < a).all())
    assert bool((values[-1] < 0.5).all())


def test_ssim_matches_an_independent_scipy_computation():
    x = _image(0, (2, 3, 20, 24))
    y = (x + 0.1 * _image(1, (2, 3, 20, 24), -1.0, 1.0)).clamp(0, 1)
    xn, yn = x.double().numpy(), y.double().numpy()
    r = 5  # window 11, sigma 1.5: truncate so the kernel radius is 5, then keep the valid part

    def blur(a):
        return gaussian_filter(a, sigma=1.5, truncate=r / 1.5)[r:-r, r:-r]

    expected = []
    for b in range(2):
        maps = []
        for c in range(3):
            u, v = xn[b, c], yn[b, c]
            mu_u, mu_v = blur(u), blur(v)
            suu, svv, suv = blur(u * u) - mu_u**2, blur(v * v) - mu_v**2, blur(u * v) - mu_u * mu_v
            c1, c2 = 0.01**2, 0.03**2
            maps.append(((2 * mu_u * mu_v + c1) * (2 * suv + c2)) / ((mu_u**2 + mu_v**2 + c1) * (suu + svv + c2)))
        expected.append(np.mean(maps))
    assert np.allclose(ssim(x, y).numpy(), expected, rtol=0, atol=1e-10)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-12)


def test_ssim_floor_rejects_noisy_mutants_the_pixel_rule_accepts():
    ref = torch.full((1, 1, 32, 32), 0.5)
    ref[..., 8:24, 8:24] = 0.2
    noisy = ref + 0.19 * _image(3, (1, 1, 32, 32), -1.0, 1.0)  # Linf < 0.2: pixel-valid
    assert bool(check(ref, noisy)[0])
    assert not bool(check(ref, noisy, ssim_min=0.9)[0])
    assert bool(check(ref, ref + 0.01, ssim_min=0.9)[0])
    # affine mutants are not held to the floor (they become the reference)
    ok, _ = Constraint(ssim_min=0.9).admit(LineageState.root(ref[0]), torch.roll(ref, 5, -1), "affine")
    assert ok.tolist() == [True]


# ---------------------------------------------------------------------------- validation
def test_bad_configuration_and_shapes_raise_user_errors():
    with pytest.raises(UserError, match="alpha"):
        Constraint(alpha=1.5)
    with pytest.raises(UserError, match="bounds"):
        Constraint(bounds=(1.0, 0.0))
    with pytest.raises(UserError, match="ssim_min"):
        Constraint(ssim_min=2.0)
    with pytest.raises(UserError, match="same image shape"):
        check(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 9))
    with pytest.raises(UserError, match="states"):
        Constraint().admit([LineageState.root(torch.zeros(1, 8, 8))] * 2, torch.zeros(3, 1, 8, 8), "natural")


# --- the fast exact paths of the batched rule (float32 maximum, sum-based finiteness) ---------

@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 6), d=st.integers(1, 40),
       mag=st.sampled_from([1e-40, 1e-30, 1e-3, 1.0, 1e30, 3e38]), offset=st.integers(-3, 3))
def test_linf_below_decides_as_the_float64_rule(seed, rows, d, mag, offset):
    from neurofuzz.mutators.constraints import _linf64, linf_below

    g = torch.Generator().manual_seed(seed)
    ref = ((torch.rand(rows, d, generator=g) * 2 - 1) * mag).float()
    new = ((torch.rand(rows, d, generator=g) * 2 - 1) * mag).float()
    exact = _linf64(ref, new)
    # bounds at, and a few float64 ulps around, a row's exact maximum: the borderline cases
    for b in (float(exact[0]), float(exact[-1]), 0.0, float("inf")):
        bound = b
        for _ in range(abs(offset)):
            bound = math.nextafter(bound, math.inf if offset > 0 else -math.inf)
        assert linf_below(ref, new, bound).tolist() == (exact < bound).tolist()


@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 6),
       special=st.sampled_from([float("nan"), float("inf"), -float("inf"), 3e38, None]))
def test_finite_rows_is_isfinite_all(seed, rows, special):
    from neurofuzz.mutators.constraints import finite_rows

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, 1, 4, 4, generator=g)
    if special is not None:
        x[0] = special  # 3e38 everywhere: the row sum overflows, yet every value is finite
        x[-1, 0, 0, 0] = special
    assert finite_rows(x).tolist() == torch.isfinite(x.flatten(1)).all(dim=1).tolist()
