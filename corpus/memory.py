"""MemoryStore: the corpus-store interface without a disk, for tests and throw-away runs.

Same behaviour as :class:`~neurofuzz.corpus.CampaignStore` (same validation, ids from 1 that never
repeat, deduplication, lineage, stats / plot / state formats, meta values) but nothing survives
the process. State blobs go through ``torch.save`` / ``torch.load(weights_only=True)`` in memory,
so a blob the disk store would refuse is refused here too. A batch that raises is not rolled back.

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> with MemoryStore(setup={"metric": "nc"}) as s:
    ...     e = s.add(torch.zeros(3, 4, 4), kind="failure", oracle="nonfinite", label=2, pred=-1)
    ...     s.count(kind="failure"), s.entries(oracle="nonfinite")[0].id, s.setup
    (1, 1, {'metric': 'nc'})
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.corpus.base import BaseStore, Closed
from neurofuzz.corpus.entry import Entry, dump_json, make_entry
from neurofuzz.corpus.monitor import MemoryMonitor
from neurofuzz.corpus.state import MemoryStates


class MemoryStore(BaseStore):
    """An in-memory corpus store. ``setup`` is kept (JSON round-tripped) as ``store.setup``."""

    def __init__(self, setup: Mapping[str, Any] | None = None) -> None:
        self.path = None
        self.recovered: dict[str, int] = {}
        self.setup: dict[str, Any] = json.loads(dump_json(dict(setup or {}), "setup"))
        self.monitor = MemoryMonitor()  # type: ignore[assignment]
        self.states = MemoryStates()  # type: ignore[assignment]
        self._rows: Any = {}  # id -> stored row
        self._arrays: dict[int, np.ndarray] = {}
        self._meta: Any = {}
        self._next_id = 1
        self._lock = threading.RLock()

    @classmethod
    def create(cls, path: str | Path | None = None, *, setup: Mapping[str, Any] | None = None,
               mode: str = "new") -> "MemoryStore":
        """Interface parity with :meth:`CampaignStore.create`; ``path`` and ``mode`` are ignored."""
        if mode not in ("new", "force"):
            raise ValueError(f"mode must be 'new' or 'force', got {mode!r}")
        return cls(setup)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._rows.keys()  # raises once closed
            yield

    def _entry(self, id: int) -> Entry:
        arr = self._arrays[id]
        return make_entry(self._rows[id], path=None, loader=lambda e, sha: torch.from_numpy(arr.copy()))

    def _query(self, *, kind: str | None = None, oracle: str | None = None, id: int | None = None,
               sha: str | None = None) -> list[Entry]:
        want = {k: v for k, v in (("kind", kind), ("oracle", oracle), ("sha", sha)) if v is not None}
        with self._lock:
            if id is not None:
                row = self._rows.get(id)
                rows = [] if row is None else [row]
            else:
                rows = [self._rows.get(i) for i in sorted(self._rows.keys())]
            return [self._entry(r["id"]) for r in rows if all(r[k] == v for k, v in want.items())]

    def _insert(self, row: dict[str, Any], arr: np.ndarray) -> Entry:
        id = self._next_id
        self._next_id += 1
        self._rows[id] = {**row, "id": id, "path": None, "root": id if row["root"] is None else row["root"]}
        self._arrays[id] = arr
        return self._entry(id)

    def _read_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def _write_meta(self, key: str, text: str) -> None:
        self._meta[key] = text

    def close(self) -> None:
        """Mark the store closed (entries already handed out stay loadable)."""
        self._rows = self._meta = self.monitor = self.states = Closed("the corpus store")  # type: ignore[assignment]
