"""MemoryStore: the corpus-store interface without a disk, for tests and throw-away runs.

Same behaviour as :class:`~neurofuzz.corpus.CampaignStore` (same validation, ids from 1 that never
repeat, deduplication, lineage, stats / plot / state formats) but nothing survives the process.
State blobs go through ``torch.save`` / ``torch.load(weights_only=True)`` in memory, so a blob the
disk store would refuse is refused here too.

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> with MemoryStore(setup={"metric": "nc"}) as s:
    ...     e = s.add(torch.zeros(3, 4, 4), kind="failure", oracle="nonfinite", label=2, pred=-1)
    ...     s.count(kind="failure"), s.entries(oracle="nonfinite")[0].id, s.setup
    (1, 1, {'metric': 'nc'})
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.corpus.base import (
    BaseStore,
    check_plot_columns,
    check_state,
    format_csv_line,
    format_stats,
    parse_plot,
    parse_stats,
    plot_line,
)
from neurofuzz.corpus.entry import Entry, check_name, dump_json, make_entry


class MemoryStore(BaseStore):
    """An in-memory corpus store. ``setup`` is kept (JSON round-tripped) as ``store.setup``."""

    def __init__(self, setup: Mapping[str, Any] | None = None) -> None:
        self.path = None
        self.readonly = False
        self.recovered: dict[str, int] = {}
        self.setup: dict[str, Any] = json.loads(dump_json(dict(setup or {}), "setup"))
        self._rows: dict[int, dict[str, Any]] = {}
        self._arrays: dict[int, np.ndarray] = {}
        self._keys: dict[tuple[str, str | None, str], int] = {}
        self._next_id = 1
        self._stats_text = ""
        self._plot_text = ""
        self._plot_columns: list[str] | None = None
        self._states: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def create(cls, path: str | Path | None = None, *, setup: Mapping[str, Any] | None = None,
               mode: str = "new") -> "MemoryStore":
        """Interface parity with :meth:`CampaignStore.create`; ``path`` and ``mode`` are ignored."""
        if mode not in ("new", "force"):
            raise ValueError(f"mode must be 'new' or 'force', got {mode!r}")
        return cls(setup)

    # ------------------------------------------------------------------ primitives
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the corpus store is closed")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            yield

    def _entry(self, id: int, duplicate: bool = False) -> Entry:
        arr = self._arrays[id]
        return make_entry(self._rows[id], path=None, loader=lambda: torch.from_numpy(arr.copy()), duplicate=duplicate)

    def _find(self, kind: str, oracle: str | None, sha: str) -> Entry | None:
        id = self._keys.get((kind, oracle, sha))
        return None if id is None else self._entry(id)

    def _get(self, id: int) -> Entry | None:
        with self._lock:
            return self._entry(id) if id in self._rows else None

    def _insert(self, row: dict[str, Any], arr: np.ndarray) -> Entry:
        id = self._next_id
        self._next_id += 1
        row = {**row, "id": id, "root": id if row["root"] is None else row["root"]}
        self._rows[id] = row
        self._arrays[id] = arr
        self._keys[(row["kind"], row["oracle"], row["sha"])] = id
        return self._entry(id)

    def entries(self, kind: str | None = None, oracle: str | None = None) -> list[Entry]:
        """All entries (optionally of one kind / oracle) in id order."""
        self._check_open()
        kind, oracle = self._check_filter(kind, oracle)
        with self._lock:
            return [
                self._entry(i)
                for i, r in sorted(self._rows.items())
                if (kind is None or r["kind"] == kind) and (oracle is None or r["oracle"] == oracle)
            ]

    def count(self, kind: str | None = None, oracle: str | None = None) -> int:
        """Number of entries (optionally of one kind / oracle)."""
        self._check_open()
        kind, oracle = self._check_filter(kind, oracle)
        with self._lock:
            return sum(
                1
                for r in self._rows.values()
                if (kind is None or r["kind"] == kind) and (oracle is None or r["oracle"] == oracle)
            )

    def close(self) -> None:
        """Mark the store closed (entries already handed out stay loadable)."""
        self._closed = True

    # ------------------------------------------------------------------ monitor + state
    def write_stats(self, stats: Mapping[str, object]) -> None:
        """Replace the stats (same text format as ``fuzzer_stats``)."""
        self._check_writable()
        self._stats_text = format_stats(stats)

    def read_stats(self) -> dict[str, str]:
        """The last stats written, values as strings."""
        self._check_open()
        return parse_stats(self._stats_text)

    def append_plot(self, row: Mapping[str, object]) -> None:
        """Append one plot row; the first row fixes the columns."""
        self._check_writable()
        with self._lock:
            if self._plot_columns is None:
                columns = list(row)
                check_plot_columns(columns)
                line = plot_line(columns, row)
                self._plot_text += format_csv_line(columns) + line
                self._plot_columns = columns
            else:
                self._plot_text += plot_line(self._plot_columns, row)

    def read_plot(self) -> list[dict[str, str]]:
        """All plot rows as dicts of strings."""
        self._check_open()
        return parse_plot(self._plot_text)

    def save_state(self, name: str, obj: object) -> None:
        """Keep a serialised copy of ``obj`` under ``name`` (later changes to ``obj`` do not leak in)."""
        self._check_writable()
        check_name(name, "state")
        check_state(obj, name)
        buf = io.BytesIO()
        torch.save(obj, buf)
        self._states[name] = buf.getvalue()

    def _load_state(self, name: str) -> object:
        return torch.load(io.BytesIO(self._states[name]), weights_only=True, map_location="cpu")

    def state_names(self) -> list[str]:
        """Names of the saved state blobs, sorted."""
        self._check_open()
        return sorted(self._states)
