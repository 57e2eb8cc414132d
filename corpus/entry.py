"""Corpus entries: one stored input with its lineage, and the content hash that names it.

An input is a float32 image ``[C, H, W]``. Its identity is :func:`content_hash`: SHA-256 over
``b"<f4|C,H,W|"`` followed by the little-endian bytes of the C-contiguous array, so equal images
(bit for bit, including the sign of zero) have equal hashes whatever device or layout they came
from.

Lineage: every entry has a ``root`` (the seed it descends from; a seed is its own root), a
``parent`` (the entry it was mutated from; ``None`` for a seed), and ``depth`` (0 for a seed,
parent's depth + 1 otherwise). ``chain`` is the list of mutation records (JSON dicts) that the
caller attached, ``gains`` the coverage gain per metric that made it interesting.

Example::

    >>> import torch
    >>> x = torch.zeros(1, 2, 2)
    >>> content_hash(x)[:16]
    '...'
    >>> content_hash(x) == content_hash(x.clone()) != content_hash(x + 1)
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.ground.errors import UserError

KINDS = ("queue", "failure")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")


# ---------------------------------------------------------------------------------- images
def as_image_array(x: torch.Tensor) -> np.ndarray:
    """Validate ``x`` (float32 tensor ``[C, H, W]``) and return a private little-endian copy."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a float32 torch.Tensor [C, H, W], got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise TypeError(f"x must be float32, got {x.dtype}; convert with x.float()")
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"x must have shape [C, H, W] with no empty dimension, got {list(x.shape)}")
    arr = x.detach().to("cpu").contiguous().numpy()
    return np.array(arr, dtype="<f4", order="C", copy=True)


def hash_array(arr: np.ndarray) -> str:
    """SHA-256 (hex) of a float32 ``[C, H, W]`` array: dtype and shape, then the bytes."""
    a = np.ascontiguousarray(arr, dtype="<f4")
    h = hashlib.sha256()
    h.update(f"<f4|{','.join(str(int(s)) for s in a.shape)}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def content_hash(x: torch.Tensor) -> str:
    """The content address of image ``x`` (float32 ``[C, H, W]``), as stored in ``Entry.sha``."""
    return hash_array(as_image_array(x))


# ---------------------------------------------------------------------------------- metadata
def check_name(name: object, what: str) -> str:
    """A name used as a file or directory name (oracle, state blob): letters, digits, ``_.+-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(
            f"{what} name {name!r} cannot be used as a file name; use 1-64 letters, digits, "
            "'_', '.', '+' or '-', starting with a letter or digit"
        )
    return name


def check_kind(kind: object, oracle: object) -> tuple[str, str | None]:
    """Validate ``kind`` and ``oracle``: failures name their oracle, queue entries have none."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'queue' or 'failure', got {kind!r}")
    if kind == "failure":
        if oracle is None:
            raise ValueError("a failure needs the name of the oracle that flagged it (oracle=...)")
        return kind, check_name(oracle, "oracle")
    if oracle is not None:
        raise ValueError(f"queue entries have no oracle (got oracle={oracle!r}); use kind='failure'")
    return kind, None


def as_int(v: object, what: str) -> int:
    """``int(v)`` for Python / numpy integers and one-element integer tensors; bools refused."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
        v = v.item()
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got {v!r}")
    try:
        return operator.index(v)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(v).__name__} {v!r}") from None


def _json_default(o: object) -> object:
    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def dump_json(value: object, what: str) -> str:
    """Compact JSON text of ``value``; tensors, numpy arrays and scalars become lists / numbers."""
    try:
        return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable (dicts, lists, str, numbers, bools, None): {e}") from None


def normalise_chain(chain: object) -> str:
    """JSON text of a mutation chain: a list (or tuple) of dicts."""
    if chain is None:
        chain = []
    if not isinstance(chain, (list, tuple)) or not all(isinstance(c, Mapping) for c in chain):
        raise TypeError(f"chain must be a list of dicts (one per mutation), got {chain!r}")
    return dump_json([dict(c) for c in chain], "chain")


def normalise_gains(gains: object) -> str:
    """JSON text of ``{metric: gain}`` with str keys and int values."""
    if gains is None:
        gains = {}
    if not isinstance(gains, Mapping):
        raise TypeError(f"gains must be a dict {{metric: int}}, got {gains!r}")
    out = {}
    for k, v in gains.items():
        if not isinstance(k, str):
            raise TypeError(f"gains keys must be metric names (str), got {k!r}")
        out[k] = as_int(v, f"gains[{k!r}]")
    return dump_json(out, "gains")


def normalise_extra(extra: object) -> str | None:
    """JSON text of the free-form ``extra`` dict, or ``None``."""
    if extra is None:
        return None
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    return dump_json(dict(extra), "extra")


def as_time(v: object) -> float:
    t = float(v)  # type: ignore[arg-type]
    if not math.isfinite(t):
        raise ValueError(f"time_found must be a finite number, got {v!r}")
    return t


# ---------------------------------------------------------------------------------- Entry
def _col(sql: str, decode: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field that is also an index column: its SQL type and its decoder."""
    return field(metadata={"sql": sql, "decode": decode})


def _opt(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else f(v)


def _shape(v: str) -> tuple[int, ...]:
    return tuple(int(s) for s in str(v).split(","))


@dataclass(frozen=True)
class Entry:
    """One stored input and its metadata (see the module docstring for the lineage fields).

    This class is the one definition of an entry: every field declared with a SQL type is a
    column of the campaign index (``index.sqlite``), in this order, and is decoded from it by
    :func:`make_entry` (:data:`COLUMNS`). ``path`` is the ``.npy`` file of a
    :class:`~neurofuzz.corpus.CampaignStore` entry (stored relative to the campaign; ``None`` in a
    :class:`~neurofuzz.corpus.MemoryStore`). ``shape``, ``dtype``, ``finite`` and ``vmin``/``vmax``
    (the smallest and largest finite value; ``None`` if none) describe the image as written, and
    :meth:`load` checks the file against them. ``duplicate`` is True only on the value returned by
    ``add`` when the image was already stored with the same kind and oracle.

    Example::

        >>> import torch
        >>> from neurofuzz.corpus import MemoryStore
        >>> s = MemoryStore()
        >>> e = s.add(torch.full((1, 2, 2), 0.5), kind="queue", label=3, pred=3)
        >>> (e.id, e.root, e.parent, e.depth, e.is_root), e.load().shape, (e.vmin, e.vmax)
        ((1, 1, None, 0, True), torch.Size([1, 2, 2]), (0.5, 0.5))
    """

    id: int = _col("INTEGER PRIMARY KEY AUTOINCREMENT", int)
    kind: str = _col("TEXT NOT NULL CHECK (kind IN ('queue', 'failure'))")
    oracle: str | None = _col("TEXT NOT NULL DEFAULT ''", lambda v: v or None)
    sha: str = _col("TEXT NOT NULL")
    path: Path | None = _col("TEXT NOT NULL UNIQUE")  # decoded by make_entry (relative to the store)
    shape: tuple[int, ...] = _col("TEXT NOT NULL", _shape)
    dtype: str = _col("TEXT NOT NULL DEFAULT '<f4'", lambda v: v or "<f4")
    finite: bool | None = _col("INTEGER", _opt(bool))  # None: written before it was recorded
    vmin: float | None = _col("REAL", _opt(float))
    vmax: float | None = _col("REAL", _opt(float))
    label: int = _col("INTEGER NOT NULL", int)
    pred: int = _col("INTEGER NOT NULL", int)
    root: int = _col("INTEGER NOT NULL", int)
    parent: int | None = _col("INTEGER REFERENCES entries(id)", _opt(int))
    depth: int = _col("INTEGER NOT NULL", int)
    chain: list[dict[str, Any]] = _col("TEXT NOT NULL", json.loads)
    gains: dict[str, int] = _col("TEXT NOT NULL", json.loads)
    iteration: int = _col("INTEGER NOT NULL", int)
    time_found: float = _col("REAL NOT NULL", float)
    extra: dict[str, Any] | None = _col("TEXT", _opt(json.loads))
    duplicate: bool = False
    _loader: Callable[["Entry", bool], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def is_root(self) -> bool:
        """True for a seed (an entry that is its own root)."""
        return self.root == self.id

    def load(self, *, sha: bool = False) -> torch.Tensor:
        """The stored image: a new float32 CPU tensor ``[C, H, W]``.

        The file is checked against the index (shape, dtype, finite values, value range; with
        ``sha=True`` the content hash too); a damaged file raises :class:`DamagedEntry` (a
        ``UserError``) naming the entry, its file and what to do.
        """
        if self._loader is None:
            raise ValueError(f"entry {self.id} has no stored image attached")
        return self._loader(self, sha)

    def record(self) -> dict[str, Any]:
        """The metadata as a JSON-able dict (every column but ``path``).

        Two stores that hold the same corpus give equal records, whatever their medium.
        """
        rec = {c.name: getattr(self, c.name) for c in COLUMNS if c.name != "path"}
        rec["shape"] = list(self.shape)
        return rec


COLUMNS = tuple(f for f in dataclasses.fields(Entry) if "sql" in f.metadata)
"""The index columns, in order: dataclass fields with ``.name`` and ``.metadata["sql"]``."""


def make_entry(row: Mapping[str, Any], *, path: Path | None,
               loader: Callable[[Entry, bool], torch.Tensor] | None, duplicate: bool = False) -> Entry:
    """Build an :class:`Entry` from a stored row (column values as stored; JSON decoded afresh)."""
    values: dict[str, Any] = {}
    for c in COLUMNS:
        v = row.get(c.name)
        dec = c.metadata["decode"]
        values[c.name] = dec(v) if dec is not None else v
    return Entry(**{**values, "path": path}, duplicate=duplicate, _loader=loader)


def shape_text(arr: np.ndarray) -> str:
    return ",".join(str(int(s)) for s in arr.shape)


def describe_image(arr: np.ndarray) -> dict[str, Any]:
    """The recorded description of image ``arr``: sha, shape, dtype, finite, vmin, vmax."""
    fin = np.isfinite(arr)
    ok = bool(fin.all())
    vals = arr if ok else arr[fin]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (None, None)
    return {"sha": hash_array(arr), "shape": shape_text(arr), "dtype": arr.dtype.str, "finite": int(ok),
            "vmin": lo, "vmax": hi}


def image_problem(e: Entry, arr: np.ndarray, *, sha: bool = False) -> str | None:
    """What is wrong with ``arr`` as the image of entry ``e`` (``None``: nothing)."""
    if arr.dtype != np.dtype(e.dtype):
        return f"holds {arr.dtype} values, recorded {np.dtype(e.dtype)}"
    if tuple(arr.shape) != tuple(e.shape):
        return f"holds an array of shape {list(arr.shape)}, recorded {list(e.shape)}"
    fin = np.isfinite(arr)
    if e.finite and not fin.all():
        return f"holds {int((~fin).sum())} NaN/Inf value(s), recorded all finite"
    vals = arr[fin]
    if vals.size and e.vmin is not None and e.vmax is not None:
        lo, hi = float(vals.min()), float(vals.max())
        if lo < e.vmin or hi > e.vmax:
            return f"holds values in [{lo:.6g}, {hi:.6g}], outside the recorded range [{e.vmin:.6g}, {e.vmax:.6g}]"
    if sha and hash_array(arr) != e.sha:
        return "has other content than recorded (its SHA-256 differs)"
    return None


class DamagedEntry(UserError):
    """The stored image of an entry is missing, unreadable or differs from its index record.

    Attributes: ``entry_id``, ``file`` (its path), ``problem`` (what is wrong, one phrase).
    """

    def __init__(self, entry_id: int, file: Path | str, problem: str, campaign: Path | None = None) -> None:
        self.entry_id, self.file, self.problem = entry_id, Path(file), problem
        where = f"CampaignStore.open({str(campaign)!r}, verify=False)" if campaign else "the store"
        super().__init__(
            f"entry {entry_id} is damaged: its file {file} {problem}; restore the file from a backup, "
            f"or delete entry {entry_id} (and the entries derived from it) with "
            f"{where}.delete([{entry_id}], descendants=True)"
        )
