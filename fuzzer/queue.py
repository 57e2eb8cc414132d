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

import torch


@dataclass(slots=True)
class QueueEntry:
    """About 100 bytes per entry: nothing that grows with the lineage is kept in memory."""

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


class Queue:
    """Queue entries by id, with their images behind an :class:`ImageCache`."""

    def __init__(self, load: Callable[[int], torch.Tensor], cache_mb: float = 256.0) -> None:
        self.entries: dict[int, QueueEntry] = {}
        self.cache = ImageCache(load, cache_mb)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, eid: object) -> bool:
        return eid in self.entries

    def __getitem__(self, eid: int) -> QueueEntry:
        return self.entries[eid]

    def values(self) -> Iterable[QueueEntry]:
        return self.entries.values()

    def add(self, entry: QueueEntry, x: torch.Tensor | None = None) -> None:
        self.entries[entry.id] = entry
        if x is not None:
            self.cache.put(entry.id, x)

    def images(self, ids: list[int]) -> torch.Tensor:
        """The images of ``ids``, stacked ``[len(ids), C, H, W]`` (on the CPU)."""
        return torch.stack([self.cache.get(i) for i in ids])
