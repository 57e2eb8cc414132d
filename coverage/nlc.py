"""NLC: neural coverage, layer-wise and distribution-aware (Yuan et al., "Revisiting Neuron
Coverage for DNN Testing: A Layer-Wise and Distribution-Aware Criterion", ICSE 2023).

Each layer's neurons are treated as a random vector; NLC summarises the covariance ``C_l`` of
everything committed so far: ``NLC = sum over layers l of sum_ij |C_l[i, j]| / n_l`` (the mean
row L1 norm of the covariance, summed over layers; population covariance). It is not a ratio:
``value()`` is this raw NLC (>= 0, not bounded by 1), 0 before two inputs are committed.

State, merge and order-independence. The state is not a set of cells but the running moments of
each layer: count ``N``, mean ``mu_l`` and co-moment ``M_l = sum (a - mu_l)(a - mu_l)^T``, in
float64. ``commit`` adds the selected inputs and ``merge`` adds another worker's moments with
the exact pairwise combination of Chan et al. (1979): ``M = M_a + M_b + d d^T N_a N_b / N``,
``d = mu_b - mu_a``. So the state after committing a set of inputs does not depend on their
order or on how they were split over workers (up to float64 rounding). Unlike the OR of cell
maps, merge *adds populations*: it is not idempotent, and inputs committed by both workers
(e.g. the shared seeds) count twice; merge each worker's own inputs once.

Novelty (so NLC can serve as feedback). ``measure`` returns the flat activations themselves
(float ``[B, n_neurons]``: the "cells" of NLC). ``novelty`` gives input ``i`` of a batch 1 if
committing it after the history *and the batch's earlier inputs* raises NLC by more than
``tol * max(NLC_before, 1e-12)``, else 0 (batch order: every prefix is evaluated exactly, in
one vectorised pass per layer, costing ``B * n_l**2`` memory, chunked). Unlike cell metrics the
novelties do not sum to the change of ``value()``: NLC can also fall. ``n_cells`` is 1.
Use it on channel-mean layers (``n_l`` in the hundreds); element-level layers are slow.

Args:
    layers: ordered ``{layer: n_neurons}``.
    tol: relative rise of NLC that counts as novel (>= 0).

Example::

    >>> import torch
    >>> from neurofuzz.coverage import NLC
    >>> m = NLC({"a": 2})
    >>> m.update({"a": torch.tensor([[0., 0.], [2., 2.], [1., 1.]])}).tolist(), m.value()
    ([0, 1, 0], 1.3333333333333333)
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.ground.errors import UserError

_BUDGET = 2**24  # float64 elements per chunk of prefix co-moments


class NLC(CoverageMetric):
    name = "nlc"
    idempotent_merge = False  # merge adds populations (see the module docstring)

    def __init__(self, layers: dict[str, int], *, tol: float = 0.0, device: str | torch.device = "cpu") -> None:
        super().__init__(layers, cells_per_neuron=1, device=device)
        if not float(tol) >= 0:
            raise UserError(f"nlc: tol must be >= 0, got {tol}")
        self.tol = float(tol)
        self.covered = torch.zeros(1, dtype=torch.bool, device=self.device)  # unused by NLC
        self.valid = torch.ones(1, dtype=torch.bool, device=self.device)
        self.n_neurons, self.m = 1, 1
        self.reset()

    def config(self) -> dict[str, Any]:
        return {"tol": self.tol}

    def reset(self) -> None:
        self.count = 0
        self.mean = {n: torch.zeros(k, dtype=torch.float64, device=self.device) for n, k in self.layers.items()}
        self.m2 = {n: torch.zeros(k, k, dtype=torch.float64, device=self.device) for n, k in self.layers.items()}

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(v.clone(), nan=0.0, posinf=0.0, neginf=0.0)  # NaN / Inf add nothing

    def _split(self, cells: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for n, k in self.layers.items():
            out[n] = cells[:, start : start + k].to(self.device, torch.float64)
            start += k
        return out

    @staticmethod
    def _level(m2: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """NLC term of a layer from co-moments ``[..., n, n]`` and counts ``[...]``."""
        n = m2.shape[-1]
        return m2.abs().sum((-1, -2)) / count.clamp(min=1) / n

    def _prefix_levels(self, cells: torch.Tensor) -> torch.Tensor:
        """NLC after the history plus inputs ``0..i`` of the batch, for each ``i``: float64 ``[B]``."""
        b = cells.shape[0]
        total = torch.zeros(b, dtype=torch.float64, device=self.device)
        cnt = self.count + torch.arange(1, b + 1, dtype=torch.float64, device=self.device)
        for name, a in self._split(cells).items():
            d = a - self.mean[name]  # deviations from the history's mean
            dsum = d.cumsum(0)
            n = a.shape[1]
            step = max(1, _BUDGET // (n * n))
            outer_sum = torch.zeros(n, n, dtype=torch.float64, device=self.device)
            for i in range(0, b, step):  # chunks bound the [chunk, n, n] prefix tensors
                p = (d[i : i + step, :, None] * d[i : i + step, None, :]).cumsum(0) + outer_sum
                outer_sum = p[-1]
                ds = dsum[i : i + step]
                m2 = self.m2[name] + p - ds[:, :, None] * ds[:, None, :] / cnt[i : i + step, None, None]
                total[i : i + step] += self._level(m2, cnt[i : i + step])
        return total

    def value(self) -> float:
        if self.count < 2:
            return 0.0
        c = torch.tensor(float(self.count), dtype=torch.float64)
        return float(sum(self._level(m2, c) for m2 in self.m2.values()))

    def novelty(self, cells: torch.Tensor) -> torch.Tensor:
        b = cells.shape[0]
        if b == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        after = self._prefix_levels(cells)
        before = torch.cat([torch.tensor([self.value()], dtype=torch.float64, device=self.device), after[:-1]])
        return (after - before > self.tol * before.clamp(min=1e-12)).long()

    def _combine(self, count: int, mean: dict[str, torch.Tensor], m2: dict[str, torch.Tensor]) -> None:
        """Chan et al.'s exact combination of the history with another population's moments."""
        if count == 0:
            return
        na, nb = self.count, count
        tot = na + nb
        for name in self.layers:
            d = mean[name] - self.mean[name]
            self.m2[name] = self.m2[name] + m2[name] + torch.outer(d, d) * (na * nb / tot)
            self.mean[name] = self.mean[name] + d * (nb / tot)
        self.count = tot

    def commit(self, cells: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if mask is not None:
            cells = cells[mask.to(cells.device)]
        if cells.shape[0] == 0:
            return
        parts = self._split(cells)
        mean = {n: a.mean(0) for n, a in parts.items()}
        m2 = {n: (a - mean[n]).T @ (a - mean[n]) for n, a in parts.items()}
        self._combine(cells.shape[0], mean, m2)

    def covered_count(self) -> int:
        return self.count  # inputs committed (NLC has no cells)

    def per_layer(self) -> dict[str, float]:
        c = torch.tensor(float(self.count), dtype=torch.float64)
        return {n: float(self._level(m2, c)) if self.count >= 2 else 0.0 for n, m2 in self.m2.items()}

    def state_dict(self) -> dict[str, Any]:
        sig = self._signature()
        return {"name": sig["name"], "config": sig["config"], "layer_names": list(self.layers),
                "layer_sizes": list(self.layers.values()), "count": self.count,
                "mean": [self.mean[n].cpu().clone() for n in self.layers],
                "m2": [self.m2[n].cpu().clone() for n in self.layers]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        sig = {"name": d.get("name"), "config": d.get("config"),
               "layers": list(zip(d.get("layer_names", []), d.get("layer_sizes", [])))}
        self._check_same(sig, "load")
        count, mean, m2 = d.get("count"), d.get("mean"), d.get("m2")
        sizes = list(self.layers.values())
        ok = (isinstance(count, int) and count >= 0 and isinstance(mean, list) and isinstance(m2, list)
              and len(mean) == len(m2) == len(sizes)
              and all(isinstance(t, torch.Tensor) and t.shape == (k,) and t.dtype == torch.float64
                      for t, k in zip(mean, sizes))
              and all(isinstance(t, torch.Tensor) and t.shape == (k, k) and t.dtype == torch.float64
                      for t, k in zip(m2, sizes)))
        if not ok:
            raise UserError(f"{self.name}: the stored NLC state (count, mean, m2 per layer) is missing or has "
                            "the wrong shapes; it is corrupted")
        self.count = count
        self.mean = {n: t.to(self.device) for n, t in zip(self.layers, mean)}
        self.m2 = {n: t.to(self.device) for n, t in zip(self.layers, m2)}

    def merge(self, other: "CoverageMetric") -> None:
        """In place: add the other worker's moments (Chan et al.; see the module docstring)."""
        self._check_same(other._signature(), "merge")
        assert isinstance(other, NLC)
        self._combine(other.count, {n: t.to(self.device) for n, t in other.mean.items()},
                      {n: t.to(self.device) for n, t in other.m2.items()})

    def __repr__(self) -> str:
        return f"NLC(tol={self.tol}; {self.count} inputs, value {self.value():.4g})"
