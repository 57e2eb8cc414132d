"""Seed schedulers: which queue entries to mutate next, and how many mutants each gets.

All schedulers keep per-entry statistics (``picks``: times selected, ``found``: children retained,
``gain``: the coverage gain the entry had when found) as tensors, draw from an injected
``torch.Generator`` and have a ``state_dict`` for resume. ``plan(n_seeds, n_mutants, rng)``
returns ``[(entry_id, mutants)]`` whose mutants sum to ``n_seeds * n_mutants``.

* ``uniform``: every entry equally likely; equal energy.
* ``decay``: DeepHunter's probability decay (Xie et al., ISSTA 2019): an entry picked ``f`` times
  has weight ``1 - f / gamma`` while that is above ``p_min``, then ``p_min``; equal energy.
* ``power``: an AFL-style power schedule: weight as ``gain``; energy proportional to
  ``(1 + found) * (1 + log1p(gain)) / sqrt(1 + picks)``, so productive, rarely-fuzzed entries
  get more mutants.
* ``gain``: coverage-gain weighted: weight ``(1 + gain + found) / (1 + picks)``; equal energy.

Root stratification (``stratify=True``, the default): the weights are normalised within each
root seed's lineage, so every root seed is picked equally often and the scheduler's preference
acts among the entries of one lineage. Without it, a queue of thousands of descendants of a few
productive seeds crowds out the other seeds: measured on the built-in model, that loses the seed
diversity an unguided fuzzer gets for free (``benchmarks/campaign.py``).

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.schedulers import build_scheduler
    >>> s = build_scheduler("power")
    >>> for i, g in [(1, 0), (2, 30)]:
    ...     s.add(i, gain=g)
    >>> plan = s.plan(2, 8, torch.Generator().manual_seed(0))
    >>> sum(n for _, n in plan)
    16
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.fuzzer.queue import SEGMENT, IdColumns
from neurofuzz.ground.registry import Registry


class Scheduler:
    name = ""

    def __init__(self, *, stratify: bool = True) -> None:
        self.stratify = bool(stratify)
        self._ids = array("i")  # entry id of each row (4 bytes per entry, no Python int objects)
        self._pos = IdColumns(1)  # entry id -> row (4 bytes per id)
        # lineages: rows with the same group (the row of their root); each row holds its lineage's
        # index and whether it is the root, ``_group_row`` maps a lineage to its group row
        self._group_row = np.zeros(16, dtype=np.int64)
        self._n_lin = 0
        self._s = torch.zeros(16, dtype=torch.float64)  # plan's per-lineage weight sums
        self._resize(16)

    def _resize(self, cap: int, keep: int | None = None) -> None:
        """Columns for ``cap`` rows (the first ``keep``, default ``len(self)``, kept): ``_f`` (picks, found, gain;
        float64), ``_lin`` (int32), ``_is_root`` (bool), and the work rows ``_w`` (plan's weights)
        and ``_t`` (scratch): ``plan`` allocates nothing of the queue's size but what
        ``torch.multinomial`` needs."""
        n = len(self._ids) if keep is None else keep
        f, lin = torch.zeros(3, cap, dtype=torch.float64), torch.zeros(cap, dtype=torch.int32)
        root = torch.zeros(cap, dtype=torch.bool)
        if n:
            f[:, :n], lin[:n], root[:n] = self._f[:, :n], self._lin[:n], self._is_root[:n]
        self._f, self._lin, self._is_root = f, lin, root
        self._w, self._t = torch.empty(cap, dtype=torch.float64), torch.empty(cap, dtype=torch.float64)

    @property
    def picks(self) -> torch.Tensor:
        return self._f[0, : len(self._ids)]

    @property
    def found(self) -> torch.Tensor:
        return self._f[1, : len(self._ids)]

    @property
    def gain(self) -> torch.Tensor:
        return self._f[2, : len(self._ids)]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def group(self) -> torch.Tensor:
        """Row of each entry's root (a new int64 tensor)."""
        return torch.from_numpy(self._group_row[self._lin[: len(self._ids)].numpy()])

    def _lineage(self, group_row: int) -> int:
        """Index of the lineage whose group row is ``group_row``; a new lineage if none has it."""
        if group_row < len(self._ids):
            if bool(self._is_root[group_row]):
                return int(self._lin[group_row])
            hit = np.flatnonzero(self._group_row[: self._n_lin] == group_row)  # a root that is not a root
            if len(hit):
                return int(hit[0])
        if self._n_lin == len(self._group_row):
            self._group_row = np.concatenate([self._group_row, np.zeros_like(self._group_row)])
            self._s = torch.zeros(len(self._group_row), dtype=torch.float64)
        self._group_row[self._n_lin] = group_row
        self._n_lin += 1
        return self._n_lin - 1

    def _set_groups(self, groups: np.ndarray) -> None:
        """Rebuild the lineage columns from each row's group row (after ``retain`` or a load)."""
        n = len(groups)
        rows, lin = np.unique(groups.astype(np.int64), return_inverse=True)
        self._n_lin = len(rows)
        self._group_row = np.zeros(max(16, len(rows)), dtype=np.int64)
        self._group_row[: len(rows)] = rows
        self._s = torch.zeros(len(self._group_row), dtype=torch.float64)
        self._lin[:n] = torch.from_numpy(lin.reshape(-1).astype(np.int32))
        self._is_root[:n] = torch.from_numpy(groups == np.arange(n))

    def add(self, entry_id: int, *, gain: float = 0.0, root: int | None = None) -> None:
        """Add a queue entry; ``root`` is its root seed's id (None or unknown: its own group)."""
        if entry_id in self._pos:
            return
        n = len(self._ids)
        if n == self._f.shape[1]:
            self._resize(n + max(16, n // 2))
        g = self._row(root) if root is not None and root in self._pos else n
        self._lin[n], self._is_root[n] = self._lineage(g), g == n
        self._f[:, n] = 0.0
        self._f[2, n] = float(gain)
        self._pos.set(entry_id, (n,))
        if self._ids.typecode == "i" and entry_id > 2**31 - 1:
            self._ids = array("q", self._ids)
        self._ids.append(entry_id)

    @property
    def ids(self) -> list[int]:
        """Entry ids in row order."""
        return list(self._ids)

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self._pos

    def _row(self, entry_id: int) -> int:
        return int(self._pos.get(entry_id)[0])

    def retain(self, keep: set[int]) -> int:
        """Drop the entries whose ids are not in ``keep`` (e.g. deleted from the store after the
        checkpoint was taken); an entry whose root was dropped becomes its own group. Returns
        how many were dropped."""
        ids = self._id_array()
        idx = np.flatnonzero(np.isin(ids, np.fromiter(keep, dtype=np.int64, count=len(keep))))
        dropped = len(ids) - len(idx)
        if dropped:
            new_row = np.full(len(ids), -1, dtype=np.int64)
            new_row[idx] = np.arange(len(idx))
            groups = new_row[self.group.numpy()[idx]]
            groups = np.where(groups < 0, np.arange(len(idx)), groups)  # root dropped: its own group
            f = self._f[:, torch.from_numpy(idx)]
            self._ids = array(self._ids.typecode, ids[idx].tolist())
            self._resize(max(16, len(idx) + len(idx) // 2), keep=0)
            self._f[:, : len(idx)] = f
            self._set_groups(groups)
            self._reindex()
        return dropped

    def credit(self, entry_id: int, n_found: int) -> None:
        """Record that mutants of ``entry_id`` were retained ``n_found`` times."""
        if entry_id in self._pos:
            self.found[self._row(entry_id)] += n_found

    def _out(self, out: torch.Tensor | None) -> torch.Tensor:
        return torch.empty(len(self._ids), dtype=torch.float64) if out is None else out

    def weights(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """Choice weight of each entry (float64), written into ``out`` when given."""
        return self._out(out).fill_(1.0)

    def energy(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(idx), dtype=torch.float64)

    def plan(self, n_seeds: int, n_mutants: int, rng: torch.Generator) -> list[tuple[int, int]]:
        if not self._ids:
            raise UserError("the queue is empty: no seed to fuzz")
        if int(n_seeds) < 1 or int(n_mutants) < 1:
            raise UserError(f"plan needs n_seeds >= 1 and n_mutants >= 1, got {n_seeds} and {n_mutants}")
        n = len(self._ids)
        w = self.weights(out=self._w[:n]).clamp_min_(1e-12)
        if self.stratify:  # every root's lineage gets the same total weight, half of it on the root
            root, lin = self._is_root[:n], self._lin[:n]
            w.masked_fill_(root, 0.0)
            s = self._s[: self._n_lin].zero_().index_add_(0, lin, w)
            w.div_(torch.index_select(s, 0, lin, out=self._t[:n]).clamp_min_(1e-300))
            w.masked_fill_(root, 1.0)
            lone = (s == 0).nonzero().flatten()  # lineages of a root alone (per lineage, not per row)
            if len(lone):
                rows = torch.from_numpy(self._group_row[lone.numpy()])
                w[rows[root[rows]]] = 2.0
        idx = torch.multinomial(w, n_seeds, replacement=n < n_seeds, generator=rng)
        e = self.energy(idx)
        total = n_seeds * n_mutants
        alloc = torch.floor(e / e.sum() * total).long().clamp_min(1)
        # hand out the remainder (or take back the excess) in order of largest energy
        order = torch.argsort(e, descending=True, stable=True).tolist()
        diff, j, counts = total - int(alloc.sum()), 0, alloc.tolist()
        while diff != 0:
            k = order[j % len(order)]
            if diff > 0:
                counts[k] += 1
                diff -= 1
            elif counts[k] > 1:
                counts[k] -= 1
                diff += 1
            j += 1
        self.picks.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
        return [(self._ids[i], a) for i, a in zip(idx.tolist(), counts)]

    def _reindex(self) -> None:
        ids = self._id_array()
        near = ids[ids < SEGMENT]  # ids of other shards get blocks of their own
        self._pos = IdColumns(1, capacity=int(near.max()) + 1 if len(near) else 1024)
        self._pos.set_many(ids, np.arange(len(ids)))

    def _id_array(self) -> np.ndarray:
        return np.frombuffer(self._ids, dtype=np.int32 if self._ids.typecode == "i" else np.int64).astype(np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes held per entry: the id and row columns, the float64 columns and work rows (with margin)."""
        return (self._ids.itemsize * len(self._ids) + self._pos.nbytes + sum(
            t.numel() * t.element_size() for t in (self._f, self._lin, self._is_root, self._w, self._t)))

    def config(self) -> dict[str, Any]:
        return {"stratify": self.stratify}

    def state_dict(self) -> dict[str, Any]:
        # ids as one int64 tensor: no Python int per entry at each checkpoint
        return {"name": self.name, "config": self.config(), "ids": torch.from_numpy(self._id_array()),
                "picks": self.picks.clone(), "found": self.found.clone(), "gain": self.gain.clone(),
                "group": self.group.double()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("name") != self.name:
            raise UserError(f"stored scheduler is {d.get('name')!r}, configured {self.name!r}; resume with the same config")
        ids = d["ids"].tolist() if isinstance(d["ids"], torch.Tensor) else [int(i) for i in d["ids"]]
        self._ids = array("q" if ids and max(ids) > 2**31 - 1 else "i", ids)
        self._reindex()
        n = len(self._ids)
        self._resize(max(16, n + n // 2), keep=0)
        self._f[0, :n], self._f[1, :n], self._f[2, :n] = d["picks"], d["found"], d["gain"]
        groups = d["group"].long().numpy() if "group" in d else np.arange(n)
        self._set_groups(groups)


class Uniform(Scheduler):
    name = "uniform"


class ProbabilityDecay(Scheduler):
    name = "decay"

    def __init__(self, gamma: float = 20.0, p_min: float = 0.01, *, stratify: bool = True) -> None:
        super().__init__(stratify=stratify)
        if gamma <= 0 or not 0 < p_min <= 1:
            raise UserError("decay scheduler: need gamma > 0 and 0 < p_min <= 1")
        self.gamma, self.p_min = float(gamma), float(p_min)

    def config(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "p_min": self.p_min, "stratify": self.stratify}

    def weights(self, out: torch.Tensor | None = None) -> torch.Tensor:
        w = torch.div(self.picks, self.gamma, out=self._out(out))
        return w.neg_().add_(1.0).clamp_min_(self.p_min)  # 1 - picks / gamma, floored


class GainWeighted(Scheduler):
    name = "gain"

    def weights(self, out: torch.Tensor | None = None) -> torch.Tensor:
        w = torch.add(self.gain, 1.0, out=self._out(out)).add_(self.found)  # (1 + gain + found) / (1 + picks)
        return w.div_(torch.add(self.picks, 1.0, out=self._t[: len(self._ids)]))


class Power(GainWeighted):
    name = "power"

    def energy(self, idx: torch.Tensor) -> torch.Tensor:
        return (1 + self.found[idx]) * (1 + torch.log1p(self.gain[idx])) / torch.sqrt(1 + self.picks[idx])


SCHEDULERS: Registry[Scheduler] = Registry("scheduler")
for _cls in (Uniform, ProbabilityDecay, Power, GainWeighted):
    SCHEDULERS.register(_cls)


def build_scheduler(name: str, **params: Any) -> Scheduler:
    return SCHEDULERS.build(name, **params)
