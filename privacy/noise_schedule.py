"""Noise schedules of DP-SGD: constant Gaussian noise, and noise that decays over training.

The adaptive schedule follows MindArmour's adaptive Gaussian mechanism (``NoiseAdaGaussianRandom``)
and Yu, Liu, Pu, Gursoy and Truex, "Differentially Private Model Publishing for Deep Learning"
(IEEE S&P 2019), who decay the noise as training converges: early steps (large gradients) get
more noise, late steps less. Two decay policies, ``t`` = the step index from 0:

* ``"time"``: ``sigma_t = sigma_0 / (1 + decay * t)``;
* ``"exp"``:  ``sigma_t = sigma_0 * (1 - decay) ** t``;

never below ``min_sigma``. The privacy cost is accounted *per step with that step's sigma*
(:class:`~neurofuzz.privacy.accounting.PrivacyMonitor` opens a new run whenever sigma changes),
so a decaying schedule spends its budget faster towards the end; a stop at a target epsilon
(:class:`~neurofuzz.privacy.dp_training.DPTrainer`) is what keeps it bounded.

Example::

    >>> s = AdaptiveNoise(sigma=2.0, decay=0.5, policy="time", min_sigma=0.5)
    >>> [round(s(t), 3) for t in range(4)]
    [2.0, 1.333, 1.0, 0.8]
    >>> ConstantNoise(sigma=1.1)(1000)
    1.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurofuzz.ground.errors import UserError


def _positive(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise UserError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class ConstantNoise:
    """The same noise multiplier (noise std / clip norm) at every step."""

    sigma: float

    def __post_init__(self) -> None:
        _positive("noise multiplier sigma", self.sigma)

    def __call__(self, step: int) -> float:
        return float(self.sigma)


@dataclass(frozen=True)
class AdaptiveNoise:
    """A noise multiplier that decays with the step index (policy ``"time"`` or ``"exp"``)."""

    sigma: float
    decay: float = 1e-3
    policy: str = "time"
    min_sigma: float = 0.3

    def __post_init__(self) -> None:
        _positive("noise multiplier sigma", self.sigma)
        _positive("min_sigma", self.min_sigma)
        if self.policy not in ("time", "exp"):
            raise UserError(f"noise decay policy must be 'time' or 'exp', got {self.policy!r}")
        if not (isinstance(self.decay, (int, float)) and 0 <= self.decay < (1 if self.policy == "exp" else math.inf)):
            raise UserError(f"noise decay must be >= 0 (and < 1 for 'exp'), got {self.decay!r}")
        if self.min_sigma > self.sigma:
            raise UserError(f"min_sigma {self.min_sigma} exceeds the initial sigma {self.sigma}")

    def __call__(self, step: int) -> float:
        s = self.sigma / (1 + self.decay * step) if self.policy == "time" else self.sigma * (1 - self.decay) ** step
        return float(max(s, self.min_sigma))


def as_schedule(noise: float | ConstantNoise | AdaptiveNoise):
    """A number means constant noise; a schedule is returned as it is."""
    if isinstance(noise, (ConstantNoise, AdaptiveNoise)):
        return noise
    return ConstantNoise(_positive("noise multiplier", noise))
