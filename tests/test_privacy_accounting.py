"""The privacy monitor against closed forms and an independent RDP computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import comb, logsumexp

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy.accounting import PrivacyMonitor, rdp_epsilon, zcdp_epsilon, zcdp_rho
from neurofuzz.privacy.noise_schedule import AdaptiveNoise, ConstantNoise

INT_ORDERS = list(range(2, 64))


def balle_conversion(rdp: np.ndarray, orders: list[float], delta: float) -> float:
    """Balle et al. 2020, Theorem 21: eps = rdp + log((a-1)/a) - (log delta + log a) / (a - 1)."""
    a = np.asarray(orders, dtype=float)
    eps = rdp + np.log1p(-1 / a) - (np.log(delta) + np.log(a)) / (a - 1)
    return float(np.nanmin(eps))


def subsampled_gaussian_rdp(q: float, sigma: float, alpha: int) -> float:
    """Integer-order RDP of the Poisson-subsampled Gaussian (Mironov, Talwar, Zhang 2019, sec. 3.3):
    log(sum_k C(a,k) (1-q)^(a-k) q^k exp((k^2-k) / (2 sigma^2))) / (a - 1)."""
    k = np.arange(alpha + 1)
    terms = np.log(comb(alpha, k)) + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma ** 2)
    return float(logsumexp(terms) / (alpha - 1))


@pytest.mark.parametrize("sigma,steps", [(1.0, 1), (2.0, 10), (5.0, 1000)])
def test_full_batch_gaussian_matches_the_closed_form(sigma, steps):
    m = PrivacyMonitor(delta=1e-5)
    m.step(noise_multiplier=sigma, sample_rate=1.0, steps=steps)
    closed = balle_conversion(np.array([steps * a / (2 * sigma ** 2) for a in INT_ORDERS]), INT_ORDERS, 1e-5)
    assert rdp_epsilon(m.history, 1e-5, orders=INT_ORDERS) == pytest.approx(closed, rel=1e-9)
    assert m.epsilon("rdp") <= closed + 1e-9  # the default orders include fractional ones: never worse


@pytest.mark.parametrize("q,sigma,steps", [(0.01, 1.1, 1000), (256 / 60000, 1.1, 14063), (0.1, 4.0, 100)])
def test_subsampled_gaussian_matches_an_independent_computation(q, sigma, steps):
    rdp = np.array([steps * subsampled_gaussian_rdp(q, sigma, a) for a in INT_ORDERS])
    ours = rdp_epsilon([(sigma, q, steps)], 1e-5, orders=INT_ORDERS)
    assert ours == pytest.approx(balle_conversion(rdp, INT_ORDERS, 1e-5), rel=1e-6)


def test_a_varying_sigma_composes_each_step_with_its_own_sigma():
    sched = AdaptiveNoise(sigma=2.0, decay=0.01, policy="exp", min_sigma=1.0)
    m = PrivacyMonitor(delta=1e-5)
    for t in range(20):
        m.step(noise_multiplier=sched(t), sample_rate=0.05)
    assert len(m.history) == 20 and m.steps == 20  # a new run per distinct sigma
    rdp = sum(np.array([subsampled_gaussian_rdp(0.05, sched(t), a) for a in INT_ORDERS]) for t in range(20))
    ours = rdp_epsilon(m.history, 1e-5, orders=INT_ORDERS)
    assert ours == pytest.approx(balle_conversion(rdp, INT_ORDERS, 1e-5), rel=1e-6)
    # less noise later costs more budget than a constant sigma 2
    assert rdp_epsilon([(2.0, 0.05, 20)], 1e-5, orders=INT_ORDERS) < ours


def test_zcdp_closed_form_and_upper_bound():
    m = PrivacyMonitor(delta=1e-5)
    m.step(noise_multiplier=2.0, sample_rate=0.01, steps=400)
    rho = 400 / (2 * 4.0)
    assert zcdp_rho(m.history) == pytest.approx(rho)
    assert m.epsilon("zcdp") == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1e5)))
    assert m.epsilon("zcdp") > m.epsilon("rdp")  # no amplification by subsampling: an upper bound
    full = [(2.0, 1.0, 10)]
    assert zcdp_epsilon(full, 1e-5) >= rdp_epsilon(full, 1e-5) - 1e-9


def test_state_round_trip_and_damaged_state():
    m = PrivacyMonitor(delta=1e-6)
    m.step(noise_multiplier=1.0, sample_rate=0.1, steps=5)
    m.step(noise_multiplier=0.9, sample_rate=0.1)
    m2 = PrivacyMonitor()
    m2.load_state_dict(m.state_dict())
    assert m2.history == m.history and m2.delta == 1e-6 and m2.epsilon() == m.epsilon()
    with pytest.raises(UserError, match="damaged"):
        m2.load_state_dict({"history": [[1.0, 0.1]], "delta": 1e-5})
    with pytest.raises(UserError, match="invalid runs"):
        m2.load_state_dict({"history": [[-1.0, 0.1, 3]], "delta": 1e-5})


@pytest.mark.parametrize("delta", [0, 1, -0.1, 1.5, float("nan"), True])
def test_delta_outside_the_open_unit_interval_is_refused(delta):
    with pytest.raises(UserError, match=r"delta must lie in \(0, 1\)"):
        PrivacyMonitor(delta=delta)


def test_schedules_validate_and_decay():
    assert ConstantNoise(1.5)(10 ** 6) == 1.5
    s = AdaptiveNoise(sigma=2.0, decay=0.5, policy="exp", min_sigma=0.6)
    assert [s(t) for t in range(3)] == [2.0, 1.0, 0.6]
    for bad in (dict(sigma=0.0), dict(sigma=1.0, policy="linear"), dict(sigma=1.0, min_sigma=2.0),
                dict(sigma=1.0, decay=1.0, policy="exp")):
        with pytest.raises(UserError):
            AdaptiveNoise(**bad)


@pytest.mark.allow_global_rng  # examples may use torch.rand for brevity; library code may not
@pytest.mark.parametrize("name", ["accounting", "noise_schedule", "metrics", "dp_training", "membership",
                                  "membership_threshold", "membership_calibrated", "inversion", "gradient_inversion",
                                  "table"])
def test_privacy_docstring_examples(name):
    import doctest
    import importlib
    import warnings

    mod = importlib.import_module(f"neurofuzz.privacy.{name}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook")
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} example(s) failed in {name}"
