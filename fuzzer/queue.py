"""The fuzz queue: one record per retained input, images on disk behind a bounded cache.

A :class:`QueueEntry` is the one record of a queue entry the loop keeps in memory: its lineage
(label, root seed and the root's prediction, depth; the mutation chain itself stays in the
store's index and is read when a child is stored), its validity reference (the id of
the entry whose image is the lineage's reference: the root, or the lineage's affine mutant) and
whether the lineage has used its affine mutation. The scheduler keeps its per-entry columns under
the same id. The image itself lives in the campaign store; :class:`ImageCache` keeps the most
recently used ones in memory up to a size in MB, so resident memory does not grow with the queue.

Example::

    >>> import torch
    >>> cache = ImageCache(lambda i: torch.full((1, 2, 2), float(i)), max_mb=1)
    >>> float(cache.get(3)[0, 0, 0]), cache.misses, float(cache.get(3)[0, 0, 0]), cache.hits
    (3.0, 1, 3.0, 1)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(slots=True)
class QueueEntry:
    """One queue entry's record (built on demand from the queue's columns)."""

    id: int
    label: int
    root: int
    root_pred: int
    ref: int  # entry whose image is this lineage's validity reference
    affine_used: bool
    depth: int = 0  # length of the mutation chain (0 for a seed)

    def child(self, eid: int, *, affine: bool) -> "QueueEntry":
        """Record of a retained mutant ``eid`` of this entry; an affine mutant is its own reference."""
        return QueueEntry(eid, self.label, self.root, self.root_pred, eid if affine else self.ref,
                          self.affine_used or affine, self.depth + 1)

    def extra(self) -> dict[str, Any]:
        """What the store keeps beside the lineage to rebuild this record on resume."""
        return {"ref": "self" if self.ref == self.id else self.ref, "affine_used": self.affine_used}


class ImageCache:
    """LRU cache of images by entry id, bounded in bytes; ``load(id)`` reads a miss from disk."""

    def __init__(self, load: Callable[[int], torch.Tensor], max_mb: float = 256.0) -> None:
        self._load = load
        self.max_bytes = int(max_mb * 2**20)
        self._items: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, eid: int, x: torch.Tensor) -> None:
        old = self._items.pop(eid, None)
        if old is not None:
            self.nbytes -= old.nbytes
        x = x.detach().cpu()
        if x.untyped_storage().nbytes() > x.nbytes:  # a view (a batch row): keep only its own bytes
            x = x.clone()
        self._items[eid] = x
        self.nbytes += x.nbytes
        while self.nbytes > self.max_bytes and len(self._items) > 1:
            _, y = self._items.popitem(last=False)
            self.nbytes -= y.nbytes

    def get(self, eid: int) -> torch.Tensor:
        x = self._items.get(eid)
        if x is not None:
            self.hits += 1
            self._items.move_to_end(eid)
            return x
        self.misses += 1
        x = self._load(eid)
        self.put(eid, x)
        return x


SEGMENT = 10**9  # ids per shard (neurofuzz.corpus.shards.SHARD_STRIDE): dense within one


class IdColumns:
    """Integer columns indexed by entry id (ids are SQLite's, dense and increasing within a shard),
    grown by half their size: 4 bytes per id and column (``int32``, widened to ``int64`` the first
    time a value needs it), no Python object per entry. ``-1`` marks an absent id in column 0.
    Ids of other shards (a worker's peers, ``id >= SEGMENT``) live in one such block per shard."""

    def __init__(self, n_cols: int, *, capacity: int = 1024) -> None:
        self.data = np.full((n_cols, max(1, min(capacity, SEGMENT))), -1, dtype=np.int32)  # shard 0
        self._far: dict[int, IdColumns] = {}  # shard -> its block (ids relative to the shard's base)

    def __contains__(self, eid: object) -> bool:
        if not isinstance(eid, (int, np.integer)) or eid < 0:
            return False
        if eid >= SEGMENT:
            far = self._far.get(int(eid) // SEGMENT)
            return far is not None and (eid % SEGMENT) in far
        return eid < self.data.shape[1] and self.data[0, eid] != -1

    def set(self, eid: int, values: tuple[int, ...]) -> None:
        if eid >= SEGMENT:
            far = self._far.get(eid // SEGMENT)
            if far is None:
                far = self._far[eid // SEGMENT] = IdColumns(self.data.shape[0], capacity=64)
            far.set(eid % SEGMENT, values)
            return
        if self.data.dtype == np.int32 and max(eid, *values) > np.iinfo(np.int32).max:
            self.data = self.data.astype(np.int64)
        if eid >= self.data.shape[1]:
            cols, n = self.data.shape
            grown = np.full((cols, max(n + n // 2, eid + 1)), -1, dtype=self.data.dtype)
            grown[:, :n] = self.data
            self.data = grown
        self.data[:, eid] = values

    def set_many(self, eids: np.ndarray, col0: np.ndarray) -> None:
        """Set column 0 of the ids ``eids`` (one vectorised write per shard)."""
        eids, col0 = np.asarray(eids), np.asarray(col0)
        near = eids < SEGMENT
        if not near.all():
            for e, v in zip(eids[~near].tolist(), col0[~near].tolist()):
                self.set(e, (v,) + (0,) * (self.data.shape[0] - 1))
            eids, col0 = eids[near], col0[near]
        if self.data.dtype == np.int32 and len(col0) and int(np.max(col0)) > np.iinfo(np.int32).max:
            self.data = self.data.astype(np.int64)
        if len(eids) and int(eids.max()) >= self.data.shape[1]:
            self.set(int(eids.max()), (-1,) + (0,) * (self.data.shape[0] - 1))  # grow
        self.data[0, eids] = col0

    def get(self, eid: int) -> np.ndarray:
        if eid not in self:
            raise KeyError(eid)
        if eid >= SEGMENT:
            return self._far[eid // SEGMENT].get(eid % SEGMENT)
        return self.data[:, eid]

    def ids(self) -> np.ndarray:
        near = np.flatnonzero(self.data[0] != -1)
        if not self._far:
            return near
        return np.concatenate([near] + [s * SEGMENT + f.ids() for s, f in sorted(self._far.items())])

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + sum(f.nbytes for f in self._far.values())


class Queue:
    """Queue entries by id: their records in :class:`IdColumns` (24 bytes per entry, up to 36 with the growth margin), their
    images behind an :class:`ImageCache`. ``queue[eid]`` builds the :class:`QueueEntry`."""

    FIELDS = ("root", "label", "root_pred", "ref", "affine_used", "depth")

    def __init__(self, load: Callable[[int], torch.Tensor], cache_mb: float = 256.0) -> None:
        self._cols = IdColumns(len(self.FIELDS))
        self._n = 0
        self.cache = ImageCache(load, cache_mb)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, eid: object) -> bool:
        return eid in self._cols

    def __getitem__(self, eid: int) -> QueueEntry:
        root, label, root_pred, ref, affine_used, depth = self._cols.get(eid).tolist()
        return QueueEntry(eid, label, root, root_pred, ref, bool(affine_used), depth)

    def record_of(self, e: Any, store: Any) -> QueueEntry:
        """The record of stored queue entry ``e`` (what :meth:`QueueEntry.extra` saved beside its
        lineage); its root's prediction comes from the queue, or from ``store`` for a root not in it."""
        ex = e.extra or {}
        r = ex.get("ref")
        ref = e.id if r == "self" else r if isinstance(r, int) else e.root
        root_pred = e.pred if e.root == e.id else self[e.root].root_pred if e.root in self else store.get(e.root).pred
        return QueueEntry(e.id, e.label, e.root, root_pred, ref, bool(ex.get("affine_used")), len(e.chain))

    def ids(self) -> list[int]:
        return [int(i) for i in self._cols.ids()]

    def values(self) -> Iterable[QueueEntry]:
        return (self[i] for i in self.ids())

    def add(self, entry: QueueEntry, x: torch.Tensor | None = None) -> None:
        if entry.id not in self._cols:
            self._n += 1
        self._cols.set(entry.id, (entry.root, entry.label, entry.root_pred, entry.ref, int(entry.affine_used),
                                  entry.depth))
        if x is not None:
            self.cache.put(entry.id, x)

    @property
    def nbytes(self) -> int:
        """Bytes held by the entries' records (the cache's images not included)."""
        return self._cols.nbytes

    def images(self, ids: list[int]) -> torch.Tensor:
        """The images of ``ids``, stacked ``[len(ids), C, H, W]`` (on the CPU)."""
        return torch.stack([self.cache.get(i) for i in ids])
