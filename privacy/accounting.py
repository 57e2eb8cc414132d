"""Privacy monitor of DP-SGD: epsilon at a given delta under RDP and under zCDP, step by step.

Each training step releases one noisy gradient sum: the subsampled Gaussian mechanism with noise
multiplier ``sigma_t`` (noise std / clip norm) and sampling rate ``q`` (Poisson sampling). The
monitor keeps the history as runs ``(sigma, q, steps)`` (opacus' ``RDPAccountant`` layout: a
change of sigma opens a new run), so a noise schedule composes with each step's own sigma.

* **RDP** (Mironov, CSF 2017; Mironov, Talwar and Zhang 2019 for the subsampled Gaussian): the
  RDP of each run at orders ``alpha`` comes from opacus' ``compute_rdp`` (exact for integer
  orders, the numerically stable bound for fractional ones); runs add up; the conversion to
  (epsilon, delta) is opacus' ``get_privacy_spent`` (Balle et al. 2020, the tighter conversion).
* **zCDP** (Bun and Steinke, TCC 2016): one Gaussian release of sensitivity 1 is
  ``rho = 1 / (2 sigma^2)``-zCDP and rhos add up; ``epsilon = rho + 2 sqrt(rho ln(1/delta))``
  (their Proposition 1.3). Subsampling has no tight closed form under zCDP; what is reported is
  the bound *without* amplification by subsampling (the subsampled mechanism is a mixture of
  the full one, and Renyi divergence is quasi-convex, so this is a valid upper bound). It is far
  looser than RDP for ``q << 1``: it is a conservative second opinion, never the one that stops
  training (MindArmour's ``ZCDPMonitor`` likewise does not model subsampling).

The state (:meth:`state_dict`) is the history: a checkpoint that carries it resumes with the
right budget.

Example::

    >>> m = PrivacyMonitor(delta=1e-5)
    >>> for _ in range(100):
    ...     m.step(noise_multiplier=1.0, sample_rate=0.01)
    >>> round(m.epsilon("rdp"), 2) < round(m.epsilon("zcdp"), 2)
    True
    >>> m.steps, len(m.history)
    (100, 1)
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any

import numpy as np

from neurofuzz.ground.errors import UserError

#: RDP orders: a few fractional ones below 8 (opacus' series for fractional orders is slow), then integers.
ORDERS = [1.25, 1.5, 1.75, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5] + list(range(2, 65)) + [80, 96, 128, 192, 256]


@lru_cache(maxsize=4096)
def _rdp_per_step(sigma: float, q: float, orders: tuple[float, ...]) -> np.ndarray:
    from opacus.accountants.analysis import rdp as analysis

    return np.asarray(analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=list(orders)), dtype=float)


def check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < float(delta) < 1.0:
        raise UserError(f"delta must lie in (0, 1) (e.g. 1e-5, below 1/len(data)), got {delta!r}")
    return float(delta)


def rdp_epsilon(history: list[tuple[float, float, int]], delta: float, orders: list[float] | None = None) -> float:
    """Epsilon at ``delta`` of the composed runs ``(sigma, q, steps)`` under RDP (through opacus)."""
    from opacus.accountants.analysis import rdp as analysis

    if not history:
        return 0.0
    orders = tuple(orders or ORDERS)
    rdp = sum(n * _rdp_per_step(float(s), float(q), orders) for s, q, n in history)  # RDP composes additively
    with warnings.catch_warnings():  # "optimal order is the largest / smallest alpha": the bound stays valid
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(eps)


def zcdp_rho(history: list[tuple[float, float, int]]) -> float:
    """Total rho: ``sum steps / (2 sigma^2)`` (no amplification by subsampling: an upper bound)."""
    return float(sum(n / (2.0 * s * s) for s, _q, n in history))


def zcdp_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    rho = zcdp_rho(history)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta)) if rho > 0 else 0.0


class PrivacyMonitor:
    """Accountant of one training run: :meth:`step` per released gradient, :meth:`epsilon` any time.

    Args:
        delta: the delta of the reported (epsilon, delta), in (0, 1).
    """

    def __init__(self, *, delta: float = 1e-5) -> None:
        self.delta = check_delta(delta)
        self.history: list[tuple[float, float, int]] = []

    @property
    def steps(self) -> int:
        return sum(n for _s, _q, n in self.history)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        s, q = float(noise_multiplier), float(sample_rate)
        if not (s > 0 and math.isfinite(s)):
            raise UserError(f"noise_multiplier must be a finite number > 0 for DP accounting, got {noise_multiplier!r}")
        if not 0.0 < q <= 1.0:
            raise UserError(f"sample_rate must lie in (0, 1], got {sample_rate!r}")
        if self.history and self.history[-1][:2] == (s, q):
            self.history[-1] = (s, q, self.history[-1][2] + steps)
        else:
            self.history.append((s, q, int(steps)))

    def epsilon(self, method: str = "rdp", *, delta: float | None = None,
                extra: tuple[float, float, int] | None = None) -> float:
        """Epsilon spent so far (plus the hypothetical run ``extra``) at ``delta`` (default: the monitor's)."""
        d = self.delta if delta is None else check_delta(delta)
        hist = self.history + ([extra] if extra else [])
        if method == "rdp":
            return rdp_epsilon(hist, d)
        if method == "zcdp":
            return zcdp_epsilon(hist, d)
        raise UserError(f"accounting method must be 'rdp' or 'zcdp', got {method!r}")

    def report(self) -> dict[str, float]:
        return {"steps": self.steps, "delta": self.delta, "epsilon_rdp": self.epsilon("rdp"),
                "epsilon_zcdp": self.epsilon("zcdp"), "rho_zcdp": zcdp_rho(self.history)}

    def state_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "history": [[s, q, n] for s, q, n in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            hist = [(float(s), float(q), int(n)) for s, q, n in state["history"]]
            delta = check_delta(float(state["delta"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"the privacy accountant state is damaged ({type(e).__name__}: {e}); "
                            "resume from another checkpoint or start training anew") from None
        if any(not (s > 0 and 0 < q <= 1 and n >= 0) for s, q, n in hist):
            raise UserError("the privacy accountant state holds invalid runs (sigma <= 0, q outside (0, 1] "
                            "or negative steps); resume from another checkpoint")
        self.history, self.delta = hist, delta
