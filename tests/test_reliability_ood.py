"""OOD detection: feature clusters separate the digits from noise and from rotated digits."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import neurofuzz.reliability.ood as ood_mod
from neurofuzz.fuzzer.zoo import load_digits32
from neurofuzz.ground.errors import UserError
from neurofuzz.reliability.ood import FeatureClusterOOD, ood_filter


@pytest.fixture(scope="module")
def detector(digits_target):
    x, _ = load_digits32("train")
    return FeatureClusterOOD(digits_target, layer="pool1", n_clusters=10).fit(x[:1100], calibration=x[1100:], fpr=0.05, seed=0)


def noise(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.allow_global_rng  # the example builds layers with torch's default (global) init
def test_docstring_example():
    assert doctest.testmod(ood_mod, optionflags=doctest.ELLIPSIS).failed == 0


def test_separates_digits_from_noise_and_rotated_digits(detector, digits_test):
    x, _ = digits_test
    fpr = float(detector(x).float().mean())
    assert fpr <= 0.10  # threshold set at 5% on held-out training digits; the test split is new data
    assert float(detector(noise(360)).float().mean()) >= 0.95
    assert float(detector(torch.rot90(x, 1, (2, 3))).float().mean()) >= 0.95  # rotated by 90 degrees


def test_threshold_is_the_calibration_quantile(digits_target):
    x, _ = load_digits32("train")
    det = FeatureClusterOOD(digits_target, layer="fc2", n_clusters=5).fit(x[:400], calibration=x[400:600], fpr=0.2, seed=1)
    assert float(det(x[400:600]).float().mean()) <= 0.2
    assert float((det.score(x[400:600]) >= det.threshold).float().mean()) >= 0.2


def test_silent_failures_oracle(detector, digits_target, digits_test):
    x, y = digits_test
    rotated = torch.rot90(x[:60], 2, (2, 3))  # 180 degrees: some are accepted and misread
    batch = torch.cat([x[:60], rotated])
    labels = torch.cat([y[:60], y[:60]])
    logits = digits_target(batch)
    silent = detector.silent_failures(batch, labels=labels, logits=logits)
    expected = ~detector(batch) & (logits.argmax(1) != labels)
    assert torch.equal(silent, expected) and silent.any()
    assert torch.equal(detector.silent_failures(batch, labels=labels), silent)  # the forward pass gives the same
    nan_logits = torch.full_like(logits, float("nan"))
    assert torch.equal(detector.silent_failures(batch, labels=labels, logits=nan_logits), ~detector(batch))


def test_filter_for_a_corpus_export(detector, digits_test):
    x = np.concatenate([digits_test[0][:50].numpy(), noise(50).numpy()])
    y = np.arange(100)
    kept_x, kept_y, mask = ood_filter(detector, x, y, keep="in")
    assert mask.dtype == bool and mask.shape == (100,) and np.array_equal(kept_x, x[mask]) and np.array_equal(kept_y, y[mask])
    assert mask[:50].mean() >= 0.85 and not mask[50:].any()
    out_x, out_y, out_mask = ood_filter(detector, x, None, keep="out")
    assert np.array_equal(out_mask, ~mask) and out_y is None and len(out_x) == (~mask).sum()
    with pytest.raises(UserError, match="keep must be"):
        ood_filter(detector, x, keep="both")


def test_bad_use(digits_target):
    det = FeatureClusterOOD(digits_target, layer="fc2")
    with pytest.raises(UserError, match="not fitted"):
        det(noise(2))
    with pytest.raises(UserError, match="fpr must lie"):
        det.fit(noise(20), calibration=noise(5), fpr=1.5)
    with pytest.raises(UserError, match="no layer matched"):
        FeatureClusterOOD(digits_target, layer="fc9")
