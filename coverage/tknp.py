"""TKNP(k): top-k neuron patterns (Ma et al., DeepGauge, ASE 2018).

An input's *pattern* is, for every layer, the set of its top-k neurons (ties included, exactly
as :class:`~neurofuzz.coverage.TKNC` chooses them), concatenated over the layers. TKNP is the
number of distinct patterns seen. A pattern set is unbounded, so the cells are *hashed*
patterns, as in AFL's edge map: a pattern's indicator vector ``p`` (bool ``[n_neurons]``) maps
to cell ``(p . w) mod table`` with fixed integer weights ``w`` drawn once from a generator
seeded with ``hash_seed`` (same weights in every process, so cells are comparable across
workers and resumes). Two different patterns share a cell with probability about ``1/table``:
:meth:`patterns` (= covered cells) can undercount distinct patterns by such collisions, never
overcount. ``value() = covered cells / table`` (so it is small: read :meth:`patterns` for the
count). State is the bool map of ``table`` cells, so novelty (a new hashed pattern, counted in
batch order: the first input of a batch showing a pattern gets it), commit, and merge (OR)
are the base contract's and merging two workers gives exactly the one-worker map.

Args:
    layers: ordered ``{layer: n_neurons}``.
    k: top neurons per layer (>= 1).
    table: number of hash cells (>= 2; default 2**20).
    hash_seed: seed of the hash weights (part of the definition: merge refuses a different one).

Example::

    >>> import torch
    >>> from neurofuzz.coverage import TKNP
    >>> m = TKNP({"a": 3}, k=1)
    >>> acts = {"a": torch.tensor([[3., 1., 0.], [5., 2., 1.], [0., 4., 1.]])}
    >>> m.novelty(m.measure(acts)).tolist()   # the second input repeats the first one's pattern
    [1, 0, 1]
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.coverage.tknc import TKNC
from neurofuzz.ground.errors import UserError


class TKNP(CoverageMetric):
    name = "tknp"

    def __init__(self, layers: dict[str, int], *, k: int = 2, table: int = 2**20, hash_seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        if int(k) < 1:
            raise UserError(f"tknp: k must be >= 1, got {k}")
        if int(table) < 2:
            raise UserError(f"tknp: table must be >= 2, got {table}")
        self._top = TKNC(layers, k=k, device=device)  # the top-k rule, shared with TKNC
        super().__init__(layers, cells_per_neuron=1, device=device)
        self.k, self.table, self.hash_seed = int(k), int(table), int(hash_seed)
        # the cell map is the hash table, not one cell per neuron
        self.n_neurons, self.m = 1, self.table
        self.covered = torch.zeros(self.table, dtype=torch.bool, device=self.device)
        self.valid = torch.ones(1, dtype=torch.bool, device=self.device)
        g = torch.Generator().manual_seed(self.hash_seed)
        n = sum(self.layers.values())
        self._w = torch.randint(0, 2**31 - 1, (n,), generator=g, dtype=torch.int64).to(self.device)

    @property
    def sparse(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "table": self.table, "hash_seed": self.hash_seed}

    def pattern(self, v: torch.Tensor) -> torch.Tensor:
        """The top-k pattern of flat activations ``v`` ``[B, n]``: bool ``[B, n]``."""
        return self._top.measure_flat(v)

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        p = self.pattern(v).to(torch.int64)
        h = (p * self._w).sum(1) % self.table  # < n * 2**31: no int64 overflow below 2**32 neurons
        return h.unsqueeze(1)

    def patterns(self) -> int:
        """Distinct patterns seen (hashed: collisions can only lower it)."""
        return self.covered_count()

    def per_layer(self) -> dict[str, float]:
        """A pattern spans all layers: every layer reports the one value."""
        return {n: self.value() for n in self.layers}
