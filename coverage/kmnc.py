"""KMNC(k): k-multisection neuron coverage (Ma et al., DeepGauge, ASE 2018).

Each neuron's profiled range ``[low, high]`` is cut into ``k`` sections of equal width; an input
covers section ``floor((v - low) / (high - low) * k)`` of a neuron when ``low <= v <= high``.
A value equal to ``high`` falls in the last section (index k-1). Values outside ``[low, high]``
cover no section here (they are NBC's business). A neuron with ``low == high`` (constant over
the profiling data, e.g. a dead unit) has no sections: it is excluded from both the covered and
the coverable count, so ``value() = covered sections / (k * neurons with high > low)``.
Construction fails if no neuron has ``high > low``.

``measure`` returns the sparse form: int64 ``[B, n_neurons]`` cell ids ``neuron * k + section``,
``-1`` where the value is outside the range or the neuron is excluded. State: one bool per cell.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import KMNC, NeuronProfile
    >>> p = NeuronProfile(layers={"a": 2}, low=torch.tensor([0., 1.]), high=torch.tensor([1., 1.]),
    ...                   mean=torch.zeros(2), std=torch.zeros(2))
    >>> m = KMNC(p, k=4)
    >>> m.measure({"a": torch.tensor([[1.0, 1.0], [0.3, 2.0]])}).tolist(), m.n_cells
    ([[3, -1], [1, -1]], 4)
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.coverage.profile import NeuronProfile
from neurofuzz.ground.errors import UserError


class KMNC(CoverageMetric):
    name = "kmnc"

    def __init__(self, profile: NeuronProfile, *, k: int = 100, device: str | torch.device = "cpu") -> None:
        if int(k) < 1:
            raise UserError(f"kmnc: k must be >= 1, got {k}")
        super().__init__(profile.layers, cells_per_neuron=int(k), device=device)
        self.k = int(k)
        self.profile_hash = profile.hash()
        self.low = profile.low.to(self.device)
        self.high = profile.high.to(self.device)
        self.valid = self.high > self.low
        if not self.valid.any():
            raise UserError("kmnc: every profiled neuron has low == high; profile on varied data")
        self._width = torch.where(self.valid, self.high - self.low, torch.ones_like(self.low))
        self._base = torch.arange(self.n_neurons, device=self.device) * self.k

    @property
    def sparse(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "profile": self.profile_hash}

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        inside = (v >= self.low) & (v <= self.high) & self.valid
        sec = ((v - self.low) / self._width * self.k).floor_().clamp_(0, self.k - 1).long()
        return torch.where(inside, self._base + sec, torch.full_like(sec, -1))
