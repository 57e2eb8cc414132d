"""The corpus-store contract, shared by :class:`CampaignStore` (disk), :class:`MemoryStore` and
the :class:`~neurofuzz.corpus.readonly.ReadOnlyStore` wrapper.

A store is a small core plus two components (Hypothesis ``database.py`` style):

* the core, what a medium implements: ``_transaction`` (the one batch/transaction context),
  ``_query``, ``_insert``, ``_read_meta``, ``_write_meta`` and ``close``;
* ``monitor`` (:mod:`neurofuzz.corpus.monitor`: ``fuzzer_stats``, ``plot_data``) and ``states``
  (:mod:`neurofuzz.corpus.state`: named blobs).

Everything else is written once, here: the template method :meth:`BaseStore.add` (validate the
input and metadata, describe and hash the image, resolve the lineage, deduplicate, and only then
call the medium's ``_insert``), queries, lineage, verification and meta values. Both stores
therefore accept and refuse exactly the same calls (tests/test_corpus_stateful.py). Behaviour
such as read-only access is a wrapper, not a flag checked in every method.

Meta values (:meth:`BaseStore.set_meta` / :meth:`BaseStore.get_meta`) are small JSON values kept
in the index. Called inside :meth:`BaseStore.batch`, ``set_meta`` is part of that transaction: the
fuzz loop commits its counters atomically with each batch of entries, so after a kill the counters
on disk match the entries on disk exactly.

Also here: :func:`select_entries` (``which=`` of export and replay).
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from neurofuzz.corpus.entry import (
    DamagedEntry,
    Entry,
    as_image_array,
    as_int,
    as_time,
    check_kind,
    check_name,
    describe_image,
    dump_json,
    normalise_chain,
    normalise_extra,
    normalise_gains,
)
from neurofuzz.corpus.monitor import Monitor
from neurofuzz.corpus.state import StateBlobs
from neurofuzz.ground.errors import UserError

_MISSING = object()
_META_PREFIX = "user:"  # the index's own meta keys (format_version) cannot collide with a caller's


class Closed:
    """Stands in for a closed store's components: any use raises ``ValueError``."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise ValueError(f"{self._what} is closed")


def select_entries(store: "BaseStore", which: str = "all", oracle: str | None = None) -> list[Entry]:
    """Entries for ``which`` = ``"queue"``, ``"failures"`` (or ``"failure"``) or ``"all"``, in id
    order; ``oracle`` narrows failures to one oracle (and implies ``which="failures"`` when
    ``which="all"``)."""
    if which not in ("queue", "failures", "failure", "all"):
        raise UserError(f"which must be 'queue', 'failures' or 'all', got {which!r}")
    if oracle is not None:
        if which == "queue":
            raise UserError("an oracle filter selects failures; use which='failures' or 'all'")
        return store.entries(kind="failure", oracle=oracle)
    if which == "all":
        return store.entries()
    return store.entries(kind="queue" if which == "queue" else "failure")


class BaseStore(ABC):
    """What every corpus store offers. Subclasses implement the core (see the module docstring)."""

    path: Path | None = None
    readonly: bool = False  # True only on the read-only wrapper (never checked by the methods)
    setup: dict[str, Any]
    recovered: dict[str, int]
    monitor: Monitor
    states: StateBlobs

    # ------------------------------------------------------------------ the core
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Exclusive write section: reads inside see a consistent state, writes commit at exit
        (all or nothing); nested calls join the outer one."""

    @abstractmethod
    def _query(self, *, kind: str | None = None, oracle: str | None = None, id: int | None = None,
               sha: str | None = None) -> list[Entry]:
        """Entries matching every filter given (``None``: any), in id order."""

    @abstractmethod
    def _insert(self, row: dict[str, Any], arr: Any) -> Entry:
        """Store ``arr`` and ``row`` (``root`` None = the new id); return the new entry."""

    @abstractmethod
    def _read_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def _write_meta(self, key: str, text: str) -> None:
        """Set meta ``key`` (called inside :meth:`_transaction`)."""

    @abstractmethod
    def close(self) -> None: ...

    # ------------------------------------------------------------------ overridable defaults
    def _count(self, kind: str | None, oracle: str | None) -> int:
        return len(self._query(kind=kind, oracle=oracle))

    def oracles(self) -> list[str]:
        """Names of the oracles that have failures, sorted."""
        return sorted({e.oracle for e in self._query(kind="failure") if e.oracle})

    def sync(self) -> None:
        """Make everything written so far durable (no-op for stores without a disk)."""

    def batch(self) -> AbstractContextManager[None]:
        """Group several adds (and :meth:`set_meta` calls) into one all-or-nothing transaction.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore()
            >>> with s.batch():
            ...     ids = [s.add(torch.full((1, 2, 2), float(i)), kind="queue", label=0, pred=0).id for i in range(3)]
            ...     s.set_meta("counters", {"iterations": 3})
            >>> ids, s.count("queue"), s.get_meta("counters")
            ([1, 2, 3], 3, {'iterations': 3})
        """
        return self._transaction()

    # ------------------------------------------------------------------ entries
    @staticmethod
    def _check_filter(kind: str | None, oracle: str | None) -> tuple[str | None, str | None]:
        if kind is not None and kind not in ("queue", "failure"):
            raise ValueError(f"kind must be None, 'queue' or 'failure', got {kind!r}")
        if oracle is not None:
            if kind == "queue":
                raise ValueError("queue entries have no oracle; filter with kind='failure'")
            kind = "failure"
        return kind, oracle

    def add(
        self,
        x: torch.Tensor,
        *,
        kind: str,
        oracle: str | None = None,
        label: int,
        pred: int,
        root: int | None = None,
        parent: int | None = None,
        chain: list[dict[str, Any]] | None = None,
        gains: dict[str, int] | None = None,
        iteration: int = 0,
        time_found: float = 0.0,
        extra: dict[str, Any] | None = None,
    ) -> Entry:
        """Store image ``x`` (float32 ``[C, H, W]``) with its metadata; return its :class:`Entry`.

        Lineage: ``root=None, parent=None`` makes the entry a seed (its own root, depth 0);
        ``root=None`` with a parent inherits the parent's root; a root without a parent means the
        root is the parent. ``root`` must be a seed and the parent's root must be ``root``.

        If the same image (same :func:`content_hash`) is already stored with the same kind and
        oracle, nothing is written and the existing entry is returned with ``duplicate=True``.
        When ``add`` returns (outside a batch; else when the batch ends) the entry is durable.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore()
            >>> seed = s.add(torch.zeros(1, 2, 2), kind="queue", label=1, pred=1)
            >>> child = s.add(torch.ones(1, 2, 2), kind="queue", label=1, pred=1, parent=seed.id,
            ...               chain=[{"op": "brightness", "delta": 1.0}], gains={"nc": 3})
            >>> child.root, child.depth, s.add(torch.zeros(1, 2, 2), kind="queue", label=1, pred=1).duplicate
            (1, 1, True)
        """
        arr = as_image_array(x)
        kind, oracle = check_kind(kind, oracle)
        row: dict[str, Any] = {
            "kind": kind,
            "oracle": oracle or "",
            **describe_image(arr),
            "label": as_int(label, "label"),
            "pred": as_int(pred, "pred"),
            "chain": normalise_chain(chain),
            "gains": normalise_gains(gains),
            "iteration": as_int(iteration, "iteration"),
            "time_found": as_time(time_found),
            "extra": normalise_extra(extra),
        }
        root = None if root is None else as_int(root, "root")
        parent = None if parent is None else as_int(parent, "parent")
        with self._transaction():
            row["root"], row["parent"], row["depth"] = self._resolve_lineage(root, parent)
            existing = self._query(kind=kind, oracle=oracle, sha=row["sha"])
            if existing:
                return dataclasses.replace(existing[0], duplicate=True)
            return self._insert(row, arr)

    def _resolve_lineage(self, root: int | None, parent: int | None) -> tuple[int | None, int | None, int]:
        p_root = p_depth = None
        if parent is not None:
            found = self._lineage_of(parent)
            if found is None:
                raise ValueError(f"parent {parent} is not in the corpus")
            p_root, p_depth = found
            if root is None:
                root = p_root
            elif root != p_root:
                raise ValueError(f"parent {parent} descends from root {p_root}, not from root {root}")
        if root is None:
            return None, None, 0
        r = self._lineage_of(root) if root != parent else (p_root, p_depth)
        if r is None:
            raise ValueError(f"root {root} is not in the corpus")
        if r[0] != root:
            raise ValueError(f"root {root} is not a seed (its own root is {r[0]}); pass that id")
        if parent is None:
            return root, root, r[1] + 1
        return root, parent, p_depth + 1

    def _lineage_of(self, id: int) -> tuple[int, int] | None:
        """``(root, depth)`` of entry ``id``, or None; a store may answer it without building the
        whole :class:`Entry` (the campaign store reads two columns)."""
        e = self._get(id)
        return None if e is None else (e.root, e.depth)

    def _get(self, id: int) -> Entry | None:
        found = self._query(id=id)
        return found[0] if found else None

    def entries(self, kind: str | None = None, oracle: str | None = None) -> list[Entry]:
        """All entries (optionally of one kind / oracle) in id order.

        Example: ``store.entries(kind="failure", oracle="misclassified")``.
        """
        kind, oracle = self._check_filter(kind, oracle)
        return self._query(kind=kind, oracle=oracle)

    def count(self, kind: str | None = None, oracle: str | None = None) -> int:
        """Number of entries (optionally of one kind / oracle). Example: ``store.count("queue")``."""
        return self._count(*self._check_filter(kind, oracle))

    def get(self, id: int) -> Entry:
        """The entry with this id; ``KeyError`` if there is none.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore(); e = s.add(torch.zeros(1, 1, 1), kind="queue", label=0, pred=0)
            >>> s.get(e.id) == e
            True
        """
        e = self._get(as_int(id, "id"))
        if e is None:
            raise KeyError(f"no entry with id {id}")
        return e

    def lineage(self, id: int) -> list[Entry]:
        """The chain of entries from the root seed to entry ``id`` (both included).

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore()
            >>> a = s.add(torch.zeros(1, 1, 1), kind="queue", label=0, pred=0)
            >>> b = s.add(torch.ones(1, 1, 1), kind="queue", label=0, pred=0, parent=a.id)
            >>> c = s.add(torch.ones(1, 1, 1), kind="failure", oracle="misclassified", label=0, pred=1, parent=b.id)
            >>> [e.id for e in s.lineage(c.id)]
            [1, 2, 3]
        """
        out = [self.get(id)]
        while out[-1].parent is not None:
            out.append(self.get(out[-1].parent))
        return out[::-1]

    def damaged(self, *, sha: bool = False) -> dict[int, str]:
        """``{id: problem}`` for every entry whose stored image is missing, unreadable or differs
        from its record (shape, dtype, finite values, value range; the hash too with ``sha``)."""
        out = {}
        for e in self.entries():
            try:
                e.load(sha=sha)
            except DamagedEntry as err:
                out[e.id] = err.problem
        return out

    def verify(self, sha: bool = False) -> list[int]:
        """Ids of the damaged entries (see :meth:`damaged`), sorted.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore(); _ = s.add(torch.zeros(1, 1, 1), kind="queue", label=0, pred=0)
            >>> s.verify(), s.verify(sha=True)
            ([], [])
        """
        return sorted(self.damaged(sha=sha))

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ meta values
    def set_meta(self, key: str, value: object) -> None:
        """Record a small JSON value under ``key`` in the store's index. Inside :meth:`batch` it
        commits (or rolls back) with that batch's entries; outside, at once."""
        text = dump_json(value, f"meta value {key!r}")
        with self._transaction():
            self._write_meta(_META_PREFIX + check_name(key, "meta"), text)

    def get_meta(self, key: str, default: object = _MISSING) -> object:
        """The value last recorded with :meth:`set_meta`; ``default`` if given and there is none,
        else ``KeyError``."""
        text = self._read_meta(_META_PREFIX + check_name(key, "meta"))
        if text is None:
            if default is _MISSING:
                raise KeyError(f"no meta value named {key!r}")
            return default
        return json.loads(text)

    # ------------------------------------------------------------------ monitor + state
    def write_stats(self, stats: Mapping[str, object]) -> None:
        """Replace ``fuzzer_stats`` with ``stats`` atomically; call every few seconds.

        Example: ``store.write_stats({"execs_done": 1200, "corpus_count": store.count("queue")})``.
        """
        self.monitor.write_stats(stats)

    def read_stats(self) -> dict[str, int | float | str]:
        """The last ``fuzzer_stats`` written, numbers as ``int``/``float`` (``{}`` if none)."""
        return self.monitor.read_stats()

    def append_plot(self, row: Mapping[str, object]) -> None:
        """Append one row to ``plot_data``; the first row fixes the columns.

        Example: ``store.append_plot({"relative_time": 12.5, "execs_done": 1200, "coverage": 0.41})``.
        """
        self.monitor.append_plot(row)

    def read_plot(self) -> list[dict[str, str]]:
        """All complete ``plot_data`` rows as dicts of strings."""
        return self.monitor.read_plot()

    def save_state(self, name: str, obj: object) -> None:
        """Save ``obj`` atomically as state blob ``name`` (read back with ``weights_only=True``:
        dicts, lists, tuples, tensors, numbers, strings, None).

        Example: ``store.save_state("scheduler", {"weights": torch.ones(5), "step": 10})``.
        """
        self.states.save(name, obj)

    def load_state(self, name: str, default: object = _MISSING) -> object:
        """The state blob saved under ``name``; ``default`` if given and there is none, else
        ``KeyError``.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore()
            >>> s.save_state("rng", {"torch": torch.arange(3), "step": 7})
            >>> s.load_state("rng")["step"], s.load_state("nothing", None)
            (7, None)
        """
        try:
            return self.states.load(name)
        except KeyError:
            if default is _MISSING:
                raise
            return default

    def has_state(self, name: str) -> bool:
        """True if a state blob ``name`` was saved."""
        return name in self.states.names()

    def state_names(self) -> list[str]:
        """Names of the saved state blobs, sorted."""
        return self.states.names()
