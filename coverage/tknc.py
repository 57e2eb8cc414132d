"""TKNC(k): top-k neuron coverage (Ma et al., DeepGauge, ASE 2018).

For each input and each layer, the neurons whose value is among the layer's k largest are
covered; ``value() = |union over inputs of top-k neurons| / all neurons``. Ties: a neuron is in
the top k when its value is >= the layer's k-th largest value, so tied neurons are all covered
(deterministic, independent of neuron order). ``k`` >= the layer size covers the whole layer.
NaN values never cover.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import TKNC
    >>> m = TKNC({"a": 4}, k=1)
    >>> m.measure({"a": torch.tensor([[1.0, 3.0, 3.0, 0.0]])}).int().tolist()
    [[0, 1, 1, 0]]
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.ground.errors import UserError


class TKNC(CoverageMetric):
    name = "tknc"

    def __init__(self, layers: dict[str, int], *, k: int = 2, device: str | torch.device = "cpu") -> None:
        if int(k) < 1:
            raise UserError(f"tknc: k must be >= 1, got {k}")
        super().__init__(layers, cells_per_neuron=1, device=device)
        self.k = int(k)

    def config(self) -> dict[str, Any]:
        return {"k": self.k}

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        v = torch.nan_to_num(v, nan=float("-inf"))
        out = []
        start = 0
        for n in self.layers.values():  # a loop over layers, not neurons
            seg = v[:, start : start + n]
            kk = min(self.k, n)
            kth = seg.topk(kk, dim=1).values[:, kk - 1 : kk]
            out.append((seg >= kth) & (seg > float("-inf")))
            start += n
        return torch.cat(out, 1)
