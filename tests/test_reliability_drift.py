"""Drift check: quiet on a clean stream, fires (when, which neurons) on a shifted one."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import neurofuzz.reliability.drift as drift_mod
from neurofuzz.coverage import NeuronProfile
from neurofuzz.fuzzer.zoo import load_digits32
from neurofuzz.ground.errors import UserError
from neurofuzz.reliability.drift import DriftMonitor, check_stream


@pytest.fixture(scope="module")
def profile(digits_target):
    return NeuronProfile.from_data(digits_target, load_digits32("train")[0])


def test_docstring_example():
    assert doctest.testmod(drift_mod, optionflags=doctest.ELLIPSIS).failed == 0


def test_quiet_on_clean_streams(digits_target, digits_test, profile):
    x, _ = digits_test
    # alpha bounds the false-alarm chance per window (Bonferroni over the neurons): at 0.001 and
    # 6 + 3 windows, below 1% for the two streams together (windows >= 60 for the normal approximation)
    for window in (60, 120):
        assert check_stream(digits_target, x.split(50), profile, window=window, alpha=0.001) == []
    train = load_digits32("train")[0]
    assert check_stream(digits_target, train.split(100), profile, window=100, alpha=0.001) == []


def test_fires_when_the_stream_shifts_and_names_the_neurons(digits_target, digits_test, profile):
    x, _ = digits_test
    stream = torch.cat([x[:180], x[180:] * 0.7 + 0.3])  # brightness shift from input 180 on
    events = check_stream(digits_target, stream.split(45), profile, window=60, alpha=0.001)
    assert [e.window for e in events] == [3, 4, 5] and events[0].start == 180 and events[-1].end == 360
    layer, index, z, shift = events[0].neurons[0]
    assert layer in profile.layers and 0 <= index < profile.layers[layer] and abs(z) > events[0].z_threshold
    assert abs(z) == max(abs(n[2]) for n in events[0].neurons)
    rotated = check_stream(digits_target, torch.rot90(x, 1, (2, 3)).split(60), profile, window=120)
    assert len(rotated) == 3


def test_bonferroni_threshold_and_feeding(profile):
    mon = DriftMonitor(profile, window=10, alpha=0.05)
    p_two_sided = math.erfc(mon.z_threshold / math.sqrt(2))  # P(|Z| > z*)
    assert p_two_sided == pytest.approx(0.05 / profile.n_neurons, rel=1e-6)
    mean = profile.mean.expand(7, -1)
    assert mon.update(mean) == [] and mon.seen == 0  # not a full window yet
    assert mon.update(mean) == [] and (mon.seen, mon.windows) == (10, 1)
    with pytest.raises(UserError, match="drift values must be"):
        mon.update(torch.zeros(3, 5))
    with pytest.raises(UserError, match="at least 2"):
        DriftMonitor(profile, window=1)
    with pytest.raises(UserError, match="alpha"):
        DriftMonitor(profile, alpha=0)
