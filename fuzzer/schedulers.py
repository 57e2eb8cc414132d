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
from neurofuzz.fuzzer.queue import IdColumns
from neurofuzz.ground.registry import Registry


class Scheduler:
    name = ""

    def __init__(self, *, stratify: bool = True) -> None:
        self.stratify = bool(stratify)
        self._ids = array("i")  # entry id of each row (4 bytes per entry, no Python int objects)
        self._pos = IdColumns(1)  # entry id -> row (4 bytes per id)
        # rows: picks, found, gain, group (position of the entry's root); grown by half its size
        self._buf = torch.zeros(4, 16, dtype=torch.float64)

    @property
    def picks(self) -> torch.Tensor:
        return self._buf[0, : len(self._ids)]

    @property
    def found(self) -> torch.Tensor:
        return self._buf[1, : len(self._ids)]

    @property
    def gain(self) -> torch.Tensor:
        return self._buf[2, : len(self._ids)]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def group(self) -> torch.Tensor:
        return self._buf[3, : len(self._ids)].long()

    def add(self, entry_id: int, *, gain: float = 0.0, root: int | None = None) -> None:
        """Add a queue entry; ``root`` is its root seed's id (None or unknown: its own group)."""
        if entry_id in self._pos:
            return
        n = len(self._ids)
        if n == self._buf.shape[1]:
            self._buf = torch.cat([self._buf, self._buf.new_zeros(4, max(16, n // 2))], 1)
        self._pos.set(entry_id, (n,))
        if self._ids.typecode == "i" and entry_id > 2**31 - 1:
            self._ids = array("q", self._ids)
        self._ids.append(entry_id)
        g = self._row(root) if root is not None and root in self._pos else n
        self._buf[:, n] = torch.tensor([0.0, 0.0, float(gain), float(g)], dtype=torch.float64)

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
        idx = [k for k, i in enumerate(self._ids) if i in keep]
        dropped = len(self._ids) - len(idx)
        if dropped:
            new_pos = {k: j for j, k in enumerate(idx)}
            n = len(idx)
            buf = torch.zeros(4, max(16, n + n // 2), dtype=torch.float64)
            buf[:, :n] = self._buf[:, torch.tensor(idx, dtype=torch.long)]
            buf[3, :n] = torch.tensor([float(new_pos.get(int(self._buf[3, k]), j)) for j, k in enumerate(idx)],
                                      dtype=torch.float64)
            self._ids = array(self._ids.typecode, (self._ids[k] for k in idx))
            self._reindex()
            self._buf = buf
        return dropped

    def credit(self, entry_id: int, n_found: int) -> None:
        """Record that mutants of ``entry_id`` were retained ``n_found`` times."""
        if entry_id in self._pos:
            self.found[self._row(entry_id)] += n_found

    def weights(self) -> torch.Tensor:
        return torch.ones(len(self._ids), dtype=torch.float64)

    def energy(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(idx), dtype=torch.float64)

    def plan(self, n_seeds: int, n_mutants: int, rng: torch.Generator) -> list[tuple[int, int]]:
        if not self._ids:
            raise UserError("the queue is empty: no seed to fuzz")
        if int(n_seeds) < 1 or int(n_mutants) < 1:
            raise UserError(f"plan needs n_seeds >= 1 and n_mutants >= 1, got {n_seeds} and {n_mutants}")
        w = self.weights().clamp_min(1e-12)
        if self.stratify:  # every root's lineage gets the same total weight, half of it on the root
            g = self.group
            is_root = g == torch.arange(len(g))
            w = torch.where(is_root, torch.zeros_like(w), w)
            s = torch.zeros_like(w).index_add_(0, g, w)[g]
            w = torch.where(is_root, torch.ones_like(w), w / s.clamp_min(1e-300))
            w = torch.where(is_root & (s == 0), 2 * torch.ones_like(w), w)
        idx = torch.multinomial(w, n_seeds, replacement=len(self._ids) < n_seeds, generator=rng)
        e = self.energy(idx)
        total = n_seeds * n_mutants
        alloc = torch.floor(e / e.sum() * total).long().clamp_min(1)
        # hand out the remainder (or take back the excess) in order of largest energy
        order = torch.argsort(e, descending=True, stable=True)
        diff, j = total - int(alloc.sum()), 0
        while diff != 0:
            k = order[j % len(order)]
            if diff > 0:
                alloc[k] += 1
                diff -= 1
            elif alloc[k] > 1:
                alloc[k] -= 1
                diff += 1
            j += 1
        self.picks.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
        return [(self._ids[int(i)], int(a)) for i, a in zip(idx, alloc)]

    def _reindex(self) -> None:
        self._pos = IdColumns(1, capacity=(max(self._ids) + 1) if self._ids else 1024)
        for row, eid in enumerate(self._ids):
            self._pos.set(eid, (row,))

    def _id_tensor(self) -> torch.Tensor:
        ids = np.frombuffer(self._ids, dtype=np.int32 if self._ids.typecode == "i" else np.int64)
        return torch.from_numpy(ids.astype(np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes held per entry: the id and row columns and the four float64 rows (with margin)."""
        return self._ids.itemsize * len(self._ids) + self._pos.nbytes + self._buf.numel() * 8

    def config(self) -> dict[str, Any]:
        return {"stratify": self.stratify}

    def state_dict(self) -> dict[str, Any]:
        # ids as one int64 tensor: no Python int per entry at each checkpoint
        return {"name": self.name, "config": self.config(), "ids": self._id_tensor(),
                "picks": self.picks.clone(), "found": self.found.clone(), "gain": self.gain.clone(),
                "group": self._buf[3, : len(self._ids)].clone()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("name") != self.name:
            raise UserError(f"stored scheduler is {d.get('name')!r}, configured {self.name!r}; resume with the same config")
        ids = d["ids"].tolist() if isinstance(d["ids"], torch.Tensor) else [int(i) for i in d["ids"]]
        self._ids = array("q" if ids and max(ids) > 2**31 - 1 else "i", ids)
        self._reindex()
        n = len(self._ids)
        self._buf = torch.zeros(4, max(16, n + n // 2), dtype=torch.float64)
        self._buf[0, :n], self._buf[1, :n], self._buf[2, :n] = d["picks"], d["found"], d["gain"]
        self._buf[3, :n] = d["group"] if "group" in d else torch.arange(n, dtype=torch.float64)


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

    def weights(self) -> torch.Tensor:
        return (1.0 - self.picks / self.gamma).clamp_min(self.p_min)


class GainWeighted(Scheduler):
    name = "gain"

    def weights(self) -> torch.Tensor:
        return (1 + self.gain + self.found) / (1 + self.picks)


class Power(GainWeighted):
    name = "power"

    def energy(self, idx: torch.Tensor) -> torch.Tensor:
        return (1 + self.found[idx]) * (1 + torch.log1p(self.gain[idx])) / torch.sqrt(1 + self.picks[idx])


SCHEDULERS: Registry[Scheduler] = Registry("scheduler")
for _cls in (Uniform, ProbabilityDecay, Power, GainWeighted):
    SCHEDULERS.register(_cls)


def build_scheduler(name: str, **params: Any) -> Scheduler:
    return SCHEDULERS.build(name, **params)
