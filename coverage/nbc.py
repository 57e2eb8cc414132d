"""NBC: neuron boundary coverage (and the shared boundary base of SNAC, see ``snac.py``)
(Ma et al., DeepGauge, ASE 2018).

With the profiled ``[low, high]`` of each neuron, optionally widened to
``[low - c*std, high + c*std]`` (the widening is computed once into new tensors; the profile is
never modified):

* a neuron's *upper corner* is covered when some input gives ``v > high (+ c*std)``;
* its *lower corner* when some input gives ``v < low (- c*std)``.

``NBC = (|upper-covered| + |lower-covered|) / (2 * |N|)`` (2 cells per neuron: lower, upper);
``SNAC = |upper-covered| / |N|`` (1 cell per neuron). Comparisons are strict, so values equal to a
bound cover nothing; NaN covers nothing.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import NBC, SNAC, NeuronProfile
    >>> p = NeuronProfile(layers={"a": 2}, low=torch.zeros(2), high=torch.ones(2),
    ...                   mean=torch.zeros(2), std=torch.ones(2))
    >>> x = {"a": torch.tensor([[1.5, -0.5]])}
    >>> NBC(p).measure(x).int().tolist(), SNAC(p).measure(x).int().tolist()
    ([[0, 1, 1, 0]], [[1, 0]])
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.coverage.profile import NeuronProfile


class _Boundary(CoverageMetric):
    def __init__(self, profile: NeuronProfile, *, cells: int, std_widen: float = 0.0,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(profile.layers, cells_per_neuron=cells, device=device)
        self.c = float(std_widen)
        self.profile_hash = profile.hash()
        std = profile.std.to(self.device)
        self.lower_bound = profile.low.to(self.device) - self.c * std  # new tensors
        self.upper_bound = profile.high.to(self.device) + self.c * std

    def config(self) -> dict[str, Any]:
        return {"std_widen": self.c, "profile": self.profile_hash}


class NBC(_Boundary):
    """Neuron boundary coverage: cells ``[lower, upper]`` per neuron."""

    name = "nbc"

    def __init__(self, profile: NeuronProfile, *, std_widen: float = 0.0, device: str | torch.device = "cpu") -> None:
        super().__init__(profile, cells=2, std_widen=std_widen, device=device)

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        return torch.stack((v < self.lower_bound, v > self.upper_bound), dim=2).flatten(1)

