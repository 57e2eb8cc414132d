"""The monitor files of a campaign: ``fuzzer_stats`` and ``plot_data`` (after AFL++).

* ``fuzzer_stats``: one ``key : value`` line per item, keys padded to 18, rewritten whole and
  atomically on every :meth:`Monitor.write_stats`. :meth:`Monitor.read_stats` gives the values
  back *typed*: integers as ``int``, other numbers (``1.5``, ``1e-05``, ``nan``, ``inf``) as
  ``float``, anything else as the string; an empty value (``None`` written) is ``""``.
* ``plot_data``: CSV with a header line, appended one row at a time; the first row fixes the
  columns. A kill mid-append leaves at most a torn last line: readers skip it and
  :meth:`Monitor.repair` (run by a writer's open) cuts it off. Rows are read back as strings.

The formats live once, in :class:`Monitor`; :class:`FileMonitor` (a campaign directory) and
:class:`MemoryMonitor` only store text.

Example::

    >>> print(format_stats({"execs_done": 1200, "corpus_count": 17}), end="")
    execs_done        : 1200
    corpus_count      : 17
    >>> parse_stats(format_stats({"a": 1.5, "n": 3, "status": "running", "none": None}))
    {'a': 1.5, 'n': 3, 'status': 'running', 'none': ''}
    >>> m = MemoryMonitor(); m.append_plot({"t": 1, "cov": 0.5}); m.read_plot()
    [{'t': '1', 'cov': '0.5'}]
"""

from __future__ import annotations

import csv
import io
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch

from neurofuzz.corpus.fs import Unsynced, atomic_write_bytes

STATS, PLOT = "fuzzer_stats", "plot_data"
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf|nan)\Z", re.IGNORECASE)


def _format_value(v: object, what: str) -> str:
    if v is None:
        return ""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    s = repr(v) if isinstance(v, float) else str(v)
    if "\n" in s or "\r" in s:
        raise ValueError(f"{what} must be a single line, got {s!r}")
    return s


def parse_value(s: str) -> int | float | str:
    """``"12"`` -> 12, ``"1.5"`` / ``"nan"`` -> float, anything else unchanged."""
    if _INT_RE.match(s):
        return int(s)
    if _FLOAT_RE.match(s):
        return float(s)
    return s


def format_stats(stats: Mapping[str, object]) -> str:
    """``fuzzer_stats`` text: one ``key : value`` line per item, keys padded to 18 (AFL++)."""
    lines = []
    width = max([18, *(len(k) for k in stats if isinstance(k, str))]) if stats else 18
    for k, v in stats.items():
        if not isinstance(k, str) or not _KEY_RE.match(k):
            raise ValueError(f"stats key {k!r} must be an identifier (letters, digits, '_')")
        lines.append(f"{k:<{width}}: {_format_value(v, f'stats[{k!r}]')}\n")
    return "".join(lines)


def parse_stats(text: str) -> dict[str, int | float | str]:
    """Inverse of :func:`format_stats`, values typed by :func:`parse_value`."""
    out: dict[str, int | float | str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = parse_value(value.strip())
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


class Monitor(ABC):
    """``fuzzer_stats`` and ``plot_data`` over a medium that stores two texts."""

    _columns: list[str] | None = None

    @abstractmethod
    def _read(self, name: str) -> str:
        """The text of ``name`` (``""`` if it does not exist)."""

    @abstractmethod
    def _replace(self, name: str, text: str) -> None:
        """Replace ``name`` by ``text`` atomically."""

    @abstractmethod
    def _append(self, name: str, text: str) -> None:
        """Append ``text`` to ``name``."""

    def _header(self) -> str | None:
        """The complete first line of ``plot_data`` (without its newline), if there is one."""
        text = self._read(PLOT)
        return text.split("\n", 1)[0] if "\n" in text else None

    def write_stats(self, stats: Mapping[str, object]) -> None:
        """Replace ``fuzzer_stats`` (atomically). Example: ``write_stats({"execs_done": 1200})``."""
        self._replace(STATS, format_stats(stats))

    def read_stats(self) -> dict[str, int | float | str]:
        """The last ``fuzzer_stats`` written, values typed (``{}`` if none yet)."""
        return parse_stats(self._read(STATS))

    def append_plot(self, row: Mapping[str, object]) -> None:
        """Append one row to ``plot_data`` (the first call also writes the header line)."""
        if self._columns is None:
            header = self._header()
            if header is not None:
                self._columns = header.split(",")
        columns, text = self._columns, ""
        if columns is not None and set(row) > set(columns):
            # a campaign started by an older version: its header has fewer columns; keep to them
            row = {c: row[c] for c in columns}
        if columns is None:
            columns = list(row)
            check_plot_columns(columns)
            text = format_csv_line(columns)
        text += plot_line(columns, row)
        self._append(PLOT, text)
        self._columns = columns

    def read_plot(self) -> list[dict[str, str]]:
        """All complete ``plot_data`` rows as dicts of strings."""
        return parse_plot(self._read(PLOT))


class MemoryMonitor(Monitor):
    """The monitor texts in memory (:class:`~neurofuzz.corpus.MemoryStore`)."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def _read(self, name: str) -> str:
        return self._texts.get(name, "")

    def _replace(self, name: str, text: str) -> None:
        self._texts[name] = text

    def _append(self, name: str, text: str) -> None:
        self._texts[name] = self._texts.get(name, "") + text


class FileMonitor(Monitor):
    """The monitor files of campaign directory ``path``. Neither is fsynced as it is written (it is
    monitoring output); both are noted in ``unsynced`` for the store's ``sync()``."""

    def __init__(self, path: Path, unsynced: Unsynced | None = None) -> None:
        self.path = Path(path)
        self._unsynced = unsynced if unsynced is not None else Unsynced()

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def _replace(self, name: str, text: str) -> None:
        atomic_write_bytes(self.path / name, text.encode(), fsync=False)
        self._unsynced.add(self.path / name)

    def _append(self, name: str, text: str) -> None:
        with open(self.path / name, "a", encoding="utf-8", newline="") as f:
            f.write(text)
        self._unsynced.add(self.path / name)

    def _header(self) -> str | None:
        try:
            with open(self.path / PLOT, encoding="utf-8", newline="") as f:
                line = f.readline()
        except FileNotFoundError:
            return None
        return line[:-1] if line.endswith("\n") else None

    def repair(self) -> int:
        """Cut a torn (unterminated) last ``plot_data`` line left by a kill; the bytes cut."""
        p = self.path / PLOT
        if not p.is_file():
            return 0
        with open(p, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                step = min(1 << 16, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                if pos == size and chunk.endswith(b"\n"):
                    return 0
                i = chunk.rfind(b"\n")
                if i >= 0:
                    pos = pos - step + i + 1
                    break
                pos -= step
            f.truncate(pos)
        self._columns = None
        return size - pos
