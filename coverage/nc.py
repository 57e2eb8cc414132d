"""NC(t): neuron coverage (Pei et al., DeepXplore, SOSP 2017).

A neuron is covered once its value exceeds the threshold ``t`` (strictly: ``value > t``) for
some input. One cell per neuron; ``value() = covered neurons / all neurons``.

Scaling (``scaled=True``, the default, as DeepXplore and DeepHunter): for each input and each
layer, the layer's values are min-max scaled to [0, 1] before the comparison; a layer whose
values are all equal for that input scales to all zeros (so it covers nothing for t >= 0);
NaN values are left out of a layer's min and max.
``scaled=False`` compares raw values (as MindArmour does). NaN never covers.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import NC
    >>> nc = NC({"fc": 3}, threshold=0.5, scaled=False)
    >>> nc.update({"fc": torch.tensor([[0.2, 0.5, 0.9]])}).tolist(), nc.value()
    ([1], 0.3333333333333333)
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage.base import CoverageMetric


class NC(CoverageMetric):
    name = "nc"

    def __init__(self, layers: dict[str, int], *, threshold: float = 0.5, scaled: bool = True,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(layers, cells_per_neuron=1, device=device)
        self.threshold = float(threshold)
        self.scaled = bool(scaled)
        self._layer_idx = torch.repeat_interleave(
            torch.arange(len(self.layers), device=self.device),
            torch.tensor(list(self.layers.values()), device=self.device),
        )

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "scaled": self.scaled}

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        if self.scaled:
            b, n_layers = v.shape[0], len(self.layers)
            idx = self._layer_idx.expand(b, -1)
            nan = torch.isnan(v)
            # min / max over the non-NaN values of each input's layer
            lo = torch.full((b, n_layers), float("inf"), device=v.device).scatter_reduce(
                1, idx, torch.where(nan, torch.full_like(v, float("inf")), v), "amin")
            hi = torch.full((b, n_layers), float("-inf"), device=v.device).scatter_reduce(
                1, idx, torch.where(nan, torch.full_like(v, float("-inf")), v), "amax")
            lo, hi = lo.gather(1, idx), hi.gather(1, idx)
            span = hi - lo
            spread = torch.isfinite(span) & (span > 0)
            v = torch.where(spread, (v - lo) / torch.where(spread, span, torch.ones_like(span)), torch.zeros_like(v))
            v = torch.where(nan, torch.full_like(v, float("nan")), v)  # NaN never covers
        return v > self.threshold
