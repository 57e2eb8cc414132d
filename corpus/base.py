"""The corpus-store contract, shared by :class:`CampaignStore` (disk) and :class:`MemoryStore`.

Cross-cutting checks live once, here, in the final template method :meth:`BaseStore.add`:
validate the input and metadata, hash the image, resolve the lineage, deduplicate, and only then
call the medium's ``_insert``. Both stores therefore accept and refuse exactly the same calls,
which the stateful test (tests/test_corpus_stateful.py) checks.

Also shared: the text formats of ``fuzzer_stats`` (``key : value`` lines, AFL++ style) and
``plot_data`` (CSV with a header line), the check that a state blob holds only what
``torch.load(weights_only=True)`` can read, and :func:`select_entries` (``which=`` of export and
replay).

Example::

    >>> print(format_stats({"execs_done": 1200, "corpus_count": 17}), end="")
    execs_done        : 1200
    corpus_count      : 17
    >>> parse_stats(format_stats({"a": 1.5}))
    {'a': '1.5'}
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from neurofuzz.corpus.entry import (
    Entry,
    as_image_array,
    as_int,
    as_time,
    check_kind,
    check_name,
    hash_array,
    normalise_chain,
    normalise_extra,
    normalise_gains,
    shape_text,
)
from neurofuzz.fuzzer.errors import UserError

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MISSING = object()


# ---------------------------------------------------------------------------------- formats
def _format_value(v: object, what: str) -> str:
    if v is None:
        return ""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    s = repr(v) if isinstance(v, float) else str(v)
    if "\n" in s or "\r" in s:
        raise ValueError(f"{what} must be a single line, got {s!r}")
    return s


def format_stats(stats: Mapping[str, object]) -> str:
    """``fuzzer_stats`` text: one ``key : value`` line per item, keys padded to 18 (AFL++)."""
    lines = []
    width = max([18, *(len(k) for k in stats)]) if stats else 18
    for k, v in stats.items():
        if not isinstance(k, str) or not _KEY_RE.match(k):
            raise ValueError(f"stats key {k!r} must be an identifier (letters, digits, '_')")
        lines.append(f"{k:<{width}}: {_format_value(v, f'stats[{k!r}]')}\n")
    return "".join(lines)


def parse_stats(text: str) -> dict[str, str]:
    """Inverse of :func:`format_stats` (values come back as strings)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def check_plot_columns(columns: list[str]) -> None:
    for c in columns:
        if not isinstance(c, str) or not _KEY_RE.match(c):
            raise ValueError(f"plot_data column {c!r} must be an identifier (letters, digits, '_')")


def format_csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def plot_line(columns: list[str], row: Mapping[str, object]) -> str:
    """One CSV line of ``row``'s values in header order; the keys must match the header's."""
    if set(row) != set(columns) or len(row) != len(columns):
        raise ValueError(
            f"plot_data columns are fixed by its header {columns}; got keys {list(row)} "
            "(pass the same keys on every call)"
        )
    return format_csv_line([_format_value(row[c], f"plot value {c!r}") for c in columns])


def parse_plot(text: str) -> list[dict[str, str]]:
    """Rows of ``plot_data`` text as dicts of strings; an unterminated last line is skipped."""
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


_STATE_LEAVES = (torch.Tensor, int, float, bool, str, type(None))


def check_state(obj: object, name: str, where: str = "") -> None:
    """Refuse anything ``torch.load(weights_only=True)`` could not read back (checked before
    writing, so a bad blob never reaches the disk)."""
    if isinstance(obj, _STATE_LEAVES):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"state {name!r}: key {k!r} at {where or 'top level'} must be str or int")
            check_state(v, name, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_state(v, name, f"{where}[{i}]")
        return
    raise TypeError(
        f"state {name!r}: value at {where or 'top level'} is a {type(obj).__module__}.{type(obj).__name__}; "
        "store only dicts, lists, tuples, tensors, numbers, strings and None (convert arrays with torch.as_tensor)"
    )


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


# ---------------------------------------------------------------------------------- base
class BaseStore(ABC):
    """What every corpus store offers. Subclasses implement the ``_``-prefixed primitives."""

    path: Path | None = None
    readonly: bool = False

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Exclusive write section: reads inside see a consistent state, writes commit at exit."""

    def sync(self) -> None:
        """Make everything written so far durable (no-op for stores without a disk)."""

    def batch(self) -> AbstractContextManager[None]:
        """Group several adds into one all-or-nothing transaction (see ``CampaignStore.batch``)."""
        return self._transaction()

    @abstractmethod
    def _find(self, kind: str, oracle: str | None, sha: str) -> Entry | None: ...

    @abstractmethod
    def _get(self, id: int) -> Entry | None: ...

    @abstractmethod
    def _insert(self, row: dict[str, Any], arr: Any) -> Entry:
        """Store ``arr`` and ``row`` (``root`` None = the new id); return the new entry."""

    @abstractmethod
    def entries(self, kind: str | None = None, oracle: str | None = None) -> list[Entry]:
        """All entries (optionally of one kind / oracle) in id order."""

    @abstractmethod
    def count(self, kind: str | None = None, oracle: str | None = None) -> int:
        """Number of entries (optionally of one kind / oracle)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _check_open(self) -> None: ...

    # ------------------------------------------------------------------ entries
    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ValueError(f"campaign at {self.path} was opened read-only; open it without readonly=True to write")

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
        When ``add`` returns, the entry is durable (see the store's docs).

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
        self._check_writable()
        arr = as_image_array(x)
        kind, oracle = check_kind(kind, oracle)
        row: dict[str, Any] = {
            "kind": kind,
            "oracle": oracle,
            "sha": hash_array(arr),
            "shape": shape_text(arr),
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
            existing = self._find(kind, oracle, row["sha"])
            if existing is not None:
                return dataclasses.replace(existing, duplicate=True)
            return self._insert(row, arr)

    def _resolve_lineage(self, root: int | None, parent: int | None) -> tuple[int | None, int | None, int]:
        p = None
        if parent is not None:
            p = self._get(parent)
            if p is None:
                raise ValueError(f"parent {parent} is not in the corpus")
            if root is None:
                root = p.root
            elif root != p.root:
                raise ValueError(f"parent {parent} descends from root {p.root}, not from root {root}")
        if root is None:
            return None, None, 0
        r = self._get(root)
        if r is None:
            raise ValueError(f"root {root} is not in the corpus")
        if not r.is_root:
            raise ValueError(f"root {root} is not a seed (its own root is {r.root}); pass that id")
        if p is None:
            p = r
        return root, p.id, p.depth + 1

    def get(self, id: int) -> Entry:
        """The entry with this id; ``KeyError`` if there is none.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore(); e = s.add(torch.zeros(1, 1, 1), kind="queue", label=0, pred=0)
            >>> s.get(e.id) == e
            True
        """
        self._check_open()
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

    def verify(self) -> list[int]:
        """Ids whose stored image is missing, unreadable or no longer matches its hash.

        Example::

            >>> import torch
            >>> from neurofuzz.corpus import MemoryStore
            >>> s = MemoryStore(); _ = s.add(torch.zeros(1, 1, 1), kind="queue", label=0, pred=0)
            >>> s.verify()
            []
        """
        bad = []
        for e in self.entries():
            try:
                ok = hash_array(e.load().numpy()) == e.sha
            except (OSError, ValueError, UserError):
                ok = False
            if not ok:
                bad.append(e.id)
        return bad

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ monitor + state
    @abstractmethod
    def write_stats(self, stats: Mapping[str, object]) -> None:
        """Replace ``fuzzer_stats`` with ``stats`` (``key : value`` lines)."""

    @abstractmethod
    def read_stats(self) -> dict[str, str]:
        """The last ``fuzzer_stats`` written (values as strings; ``{}`` if none)."""

    @abstractmethod
    def append_plot(self, row: Mapping[str, object]) -> None:
        """Append one row to ``plot_data``; the first row fixes the columns."""

    @abstractmethod
    def read_plot(self) -> list[dict[str, str]]:
        """All complete ``plot_data`` rows as dicts of strings."""

    @abstractmethod
    def save_state(self, name: str, obj: object) -> None:
        """Save a named state blob (dict of tensors / numbers / strings / lists)."""

    @abstractmethod
    def _load_state(self, name: str) -> object: ...

    @abstractmethod
    def state_names(self) -> list[str]:
        """Names of the saved state blobs, sorted."""

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
        self._check_open()
        check_name(name, "state")
        if name not in self.state_names():
            if default is not _MISSING:
                return default
            raise KeyError(f"no state named {name!r}")
        return self._load_state(name)

    def has_state(self, name: str) -> bool:
        """True if a state blob ``name`` was saved."""
        return name in self.state_names()
