"""The coverage-metric contract, shared by NC, TKNC, KMNC, NBC and SNAC.

Every metric observes neurons laid out as ``layers = {name: n_neurons}`` (in order; the flat
neuron index ``j`` runs over the layers' concatenation) and owns ``m`` *cells* per neuron (NC,
TKNC, SNAC: 1; NBC: 2; KMNC: k). Cell ``neuron * m + i`` is the i-th cell of a neuron. The
history map ``covered`` (bool ``[n_neurons * m]``, on the metric's device) is the only state.

The contract (DESIGN.md; LibAFL's map feedback):

* ``measure(acts) -> cells`` is pure: ``acts`` is ``{layer: float [B, n]}`` (e.g. from an
  :class:`~neurofuzz.coverage.ActivationRecorder`, or built by hand). ``cells`` is either a dense
  bool ``[B, n_neurons * m]`` or, for metrics with many cells per neuron (KMNC), an int64
  ``[B, n_neurons]`` of the one cell id each neuron hits, ``-1`` for none. :func:`cells_to_dense`
  converts the latter.
* ``novelty(cells) -> int64 [B]``: the number of cells each input covers that neither the history
  nor an *earlier input of the same batch* covers (batch order). Its sum is exactly the increase of
  covered cells that ``commit(cells)`` will make.
* ``commit(cells, mask=None)``: OR the cells of the inputs selected by ``mask`` into the history.
* ``value()`` in [0, 1]: covered cells / coverable cells; ``per_layer()`` the same per layer.
* ``state_dict()`` / ``load_state_dict()``; ``merge(other)``: union of two histories (parallel
  workers), refused if the metrics differ in definition or layout.

No Python loop runs over neurons or inputs: novelty is one argmax (dense) or one sort (sparse).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from neurofuzz.ground.errors import UserError


def cells_to_dense(cells: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Convert int64 ``[B, n]`` cell ids (``-1`` = none) to a dense bool ``[B, n_cells]``, where
    ``n_cells`` is the size of the whole cell map, ``metric.n_neurons * metric.m`` (not
    ``metric.n_cells``, which leaves out KMNC's excluded neurons)."""
    if cells.dtype == torch.bool:
        return cells
    out = torch.zeros(cells.shape[0], n_cells + 1, dtype=torch.bool, device=cells.device)
    idx = torch.where(cells >= 0, cells, torch.full_like(cells, n_cells))
    out.scatter_(1, idx, True)
    return out[:, :n_cells]


class CoverageMetric(ABC):
    """Base class; subclasses set ``name``, ``cells_per_neuron`` and implement :meth:`_measure`.

    Args:
        layers: ordered ``{layer: n_neurons}`` (e.g. ``profile.layers``).
        device: where the history map lives (use the model's device).
    """

    idempotent_merge = True  # merging the same state twice changes nothing (OR of maps)

    name: str = ""

    def __init__(self, layers: dict[str, int], *, cells_per_neuron: int, device: str | torch.device = "cpu") -> None:
        if not layers or any(int(n) <= 0 for n in layers.values()):
            raise UserError(f"{self.name}: need at least one layer with neurons, got {layers!r}")
        self.layers = {k: int(v) for k, v in layers.items()}
        self.n_neurons = sum(self.layers.values())
        self.m = int(cells_per_neuron)
        self.device = torch.device(device)
        self.covered = torch.zeros(self.n_neurons * self.m, dtype=torch.bool, device=self.device)
        # coverable cells per neuron (KMNC excludes neurons whose profiled range is empty)
        self.valid = torch.ones(self.n_neurons, dtype=torch.bool, device=self.device)

    # ------------------------------------------------------------------ definition
    def config(self) -> dict[str, Any]:
        """The parameters that define the metric (compared by ``merge`` / ``load_state_dict``)."""
        return {}

    @abstractmethod
    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        """Cells of a flat activation matrix ``v`` float ``[B, n_neurons]``."""

    @property
    def sparse(self) -> bool:
        """True if ``measure`` returns int64 cell ids rather than a dense bool map."""
        return False

    @property
    def n_cells(self) -> int:
        return int(self.valid.sum().item()) * self.m

    # ------------------------------------------------------------------ contract
    def flatten(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate ``acts`` in layer order into float ``[B, n_neurons]`` on the device."""
        parts = []
        for name, n in self.layers.items():
            a = acts.get(name)
            if a is None:
                raise UserError(f"{self.name}: no activations for layer {name!r} (have {sorted(acts)})")
            if a.dim() != 2 or a.shape[1] != n:
                raise UserError(f"{self.name}: layer {name!r} has shape {tuple(a.shape)}, expected [B, {n}]")
            parts.append(a)
        return torch.cat(parts, 1).to(self.device, torch.float32)

    def measure(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pure: the cells each input covers (see module docstring for the two forms)."""
        return self._measure(self.flatten(acts))

    def measure_flat(self, v: torch.Tensor) -> torch.Tensor:
        """:meth:`measure` of activations already flattened by :meth:`flatten` (same layers)."""
        return self._measure(v)

    def novelty(self, cells: torch.Tensor) -> torch.Tensor:
        """New cells per input, counted in batch order: int64 ``[B]``."""
        b = cells.shape[0]
        if b == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        if cells.dtype == torch.bool:
            new = cells & ~self.covered
            hit = new.any(0)
            first = new.to(torch.uint8).argmax(0)  # index of the first input hitting each cell
            return torch.bincount(first[hit], minlength=b)
        # sparse: cell ids, -1 for none. Only the (usually few) uncovered hits are looked at: each
        # distinct new cell is credited to the first row (in batch order) that hits it.
        new = (cells >= 0) & ~self.covered[cells.clamp(min=0)]
        rows, cols = new.nonzero(as_tuple=True)
        if not len(rows):
            return torch.zeros(b, dtype=torch.long, device=self.device)
        _, inverse = torch.unique(cells[rows, cols], return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), b, dtype=torch.long, device=self.device)
        first.scatter_reduce_(0, inverse, rows, reduce="amin")
        return torch.bincount(first, minlength=b)

    def commit(self, cells: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """OR the cells of the selected inputs (all if ``mask`` is None) into the history."""
        if mask is not None:
            cells = cells[mask.to(cells.device)]
        if cells.shape[0] == 0:
            return
        if cells.dtype == torch.bool:
            self.covered |= cells.any(0)
        else:
            ids = cells[cells >= 0]
            self.covered[ids] = True

    def update(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Measure, count novelty, commit everything; return the per-input novelty."""
        cells = self.measure(acts)
        gain = self.novelty(cells)
        self.commit(cells)
        return gain

    def covered_count(self) -> int:
        return int(self.covered.sum().item())

    def value(self) -> float:
        """Covered cells / coverable cells, in [0, 1]."""
        n = self.n_cells
        return self.covered_count() / n if n else 0.0

    def per_layer(self) -> dict[str, float]:
        cov = self.covered.view(self.n_neurons, self.m).sum(1)
        out, start = {}, 0
        for name, n in self.layers.items():
            total = int(self.valid[start : start + n].sum().item()) * self.m
            out[name] = int(cov[start : start + n].sum().item()) / total if total else 0.0
            start += n
        return out

    def reset(self) -> None:
        self.covered.zero_()

    # ------------------------------------------------------------------ persistence / merge
    def _signature(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config(), "layers": list(self.layers.items())}

    def _check_same(self, sig: dict[str, Any], what: str) -> None:
        mine = self._signature()
        if sig != mine:
            raise UserError(f"{self.name}: cannot {what} coverage of a different definition or layout ({sig} vs {mine})")

    def state_dict(self) -> dict[str, Any]:
        sig = self._signature()
        return {"name": sig["name"], "config": sig["config"], "layer_names": list(self.layers),
                "layer_sizes": list(self.layers.values()), "covered": self.covered.cpu().clone()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        sig = {"name": d.get("name"), "config": d.get("config"),
               "layers": list(zip(d.get("layer_names", []), d.get("layer_sizes", [])))}
        self._check_same(sig, "load")
        cov = d.get("covered")
        if not isinstance(cov, torch.Tensor):
            raise UserError(f"{self.name}: the stored coverage state has no coverage map (covered); it is corrupted")
        if cov.shape != self.covered.shape or cov.dtype != torch.bool:
            raise UserError(f"{self.name}: stored coverage map is {str(cov.dtype).replace('torch.', '')} of shape "
                            f"{tuple(cov.shape)}, expected bool of shape {tuple(self.covered.shape)}")
        self.covered.copy_(cov.to(self.device) & self._valid_cells())

    def merge(self, other: "CoverageMetric") -> None:
        """In place: this history becomes the union of both."""
        self._check_same(other._signature(), "merge")
        self.covered |= other.covered.to(self.device)

    def _valid_cells(self) -> torch.Tensor:
        return self.valid.repeat_interleave(self.m)

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg}; {self.covered_count()}/{self.n_cells} cells)"
