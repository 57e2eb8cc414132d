"""SNAC: strong neuron activation coverage (Ma et al., DeepGauge, ASE 2018).

A neuron's upper corner is covered when some input gives ``v > high (+ c*std)`` (strict; the
widening by ``c * std`` is optional and never modifies the profile). ``SNAC = |upper-covered| / |N|``,
one cell per neuron. See :mod:`neurofuzz.coverage.nbc` for the shared definitions.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import SNAC, NeuronProfile
    >>> p = NeuronProfile(layers={"a": 2}, low=torch.zeros(2), high=torch.ones(2),
    ...                   mean=torch.zeros(2), std=torch.ones(2))
    >>> m = SNAC(p, std_widen=0.5)
    >>> m.measure({"a": torch.tensor([[1.5, 1.6]])}).int().tolist(), p.high.tolist()
    ([[0, 1]], [1.0, 1.0])
"""

from __future__ import annotations

import torch

from neurofuzz.coverage.nbc import _Boundary
from neurofuzz.coverage.profile import NeuronProfile


class SNAC(_Boundary):
    """Strong neuron activation coverage: the upper corner only."""

    name = "snac"

    def __init__(self, profile: NeuronProfile, *, std_widen: float = 0.0, device: str | torch.device = "cpu") -> None:
        super().__init__(profile, cells=1, std_widen=std_widen, device=device)

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        return v > self.upper_bound
