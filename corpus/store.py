"""CampaignStore: the on-disk campaign directory (after AFL++'s output directory).

Layout::

    <campaign>/
      fuzzer_setup     JSON, written once at create: {"format", "format_version", "created", "setup"}
      index.sqlite     SQLite (WAL) index of every entry: metadata, lineage, relative file path
      queue/           id_000012_<sha[:16]>.npy          retained inputs
      failures/<oracle>/id_000013_<sha[:16]>.npy         inputs an oracle flagged
      state/<name>.pt  named state blobs (coverage map, scheduler, RNG), torch.save
      fuzzer_stats     "key : value" lines, rewritten atomically (temp file + os.replace)
      plot_data        append-only CSV with a header line
      .lock            held (flock) by the one process that writes the campaign

Durability: an image file is written to a temp file, fsynced, renamed into place and its directory
fsynced *before* its index row is committed, so everything the index lists is on disk. The index
runs in WAL mode with ``synchronous=FULL``: each commit fsyncs the WAL, so an entry returned by
:meth:`add` survives a process kill and a power loss, which is what "nothing reported as saved is
ever lost" asks. (``NORMAL`` survives a kill but may lose the last commits on power loss, while the
image fsync before the commit is paid anyway; the WAL fsync costs about as much again, and adds
are rare next to model executions.) ``fuzzer_stats`` and ``plot_data`` are
monitoring output and are not fsynced: a kill leaves the previous stats file whole and at most a
torn last plot line, which :meth:`open` truncates.

Pass ``fsync=False`` to :meth:`create` / :meth:`open` to trade power-loss durability for speed
(no fsync, ``synchronous=NORMAL``): writes stay atomic and a killed process still loses nothing.

Ids come from ``INTEGER PRIMARY KEY AUTOINCREMENT``: SQLite never reissues a committed id, even
after rows are deleted or the process crashes. An id is chosen inside the write transaction; if the
process dies between the image write and the commit, that image is an *orphan* (on disk, not in the
index). An add interrupted by an exception deletes its image itself; after a hard kill,
:meth:`open` (for writing) deletes orphans and leftover temp files, so the id, never reported to
anyone, can be issued again to a later entry without two files sharing it. Files of other names
are left alone. :attr:`recovered` tells what was cleaned. Conversely, an image listed in the index
but missing from disk makes :meth:`open` refuse the campaign (``UserError``): that never happens by
a crash, only by outside damage.

Example::

    >>> import tempfile, shutil, torch
    >>> from neurofuzz.corpus import CampaignStore
    >>> d = tempfile.mkdtemp()
    >>> with CampaignStore.create(d, setup={"metric": "nc"}, mode="force") as s:
    ...     e = s.add(torch.zeros(1, 4, 4), kind="queue", label=7, pred=7)
    ...     e.path.relative_to(s.path).as_posix()
    'queue/id_000001_....npy'
    >>> with CampaignStore.open(d) as s:  # resume
    ...     s.get(1).label, s.setup
    (7, {'metric': 'nc'})
    >>> shutil.rmtree(d)
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.corpus._atomic import TMP_PREFIX, atomic_write, atomic_write_bytes, fsync_dir, make_dir
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
from neurofuzz.corpus.memory import MemoryStore  # noqa: F401  (also importable from here)
from neurofuzz.fuzzer.errors import UserError

try:  # POSIX advisory locking; on other platforms a campaign is not protected against 2 writers
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "neurofuzz-campaign"
FORMAT_VERSION = 1
SETUP, INDEX, STATS, PLOT, LOCK = "fuzzer_setup", "index.sqlite", "fuzzer_stats", "plot_data", ".lock"
_KNOWN = {SETUP, INDEX, STATS, PLOT, LOCK, "queue", "failures", "state",
          INDEX + "-wal", INDEX + "-shm", INDEX + "-journal"}
_ENTRY_FILE = re.compile(r"id_\d{6,}_[0-9a-f]{16}\.npy\Z")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('queue', 'failure')),
    oracle     TEXT    NOT NULL DEFAULT '',
    sha        TEXT    NOT NULL,
    path       TEXT    NOT NULL UNIQUE,
    shape      TEXT    NOT NULL,
    label      INTEGER NOT NULL,
    pred       INTEGER NOT NULL,
    root       INTEGER NOT NULL,
    parent     INTEGER REFERENCES entries(id),
    depth      INTEGER NOT NULL,
    chain      TEXT    NOT NULL,
    gains      TEXT    NOT NULL,
    iteration  INTEGER NOT NULL,
    time_found REAL    NOT NULL,
    extra      TEXT,
    UNIQUE (kind, oracle, sha)
);
CREATE INDEX entries_root ON entries(root);
"""
_COLS = ("id", "kind", "oracle", "sha", "path", "shape", "label", "pred", "root", "parent", "depth",
         "chain", "gains", "iteration", "time_found", "extra")


def _corrupt(path: Path, what: str) -> UserError:
    return UserError(f"campaign at {path} is corrupted: {what}; restore it from a backup or start anew with --force")


def _looks_like_campaign(path: Path) -> bool:
    names = [p.name for p in path.iterdir()]
    if SETUP in names or INDEX in names:
        return True
    return all(n in _KNOWN or n.startswith(TMP_PREFIX) for n in names)


def _load_npy(path: Path) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"input file {path} is missing; it was removed outside neurofuzz (restore it)") from None
    except ValueError as e:
        raise UserError(f"input file {path} is unreadable ({e}); restore it") from None
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _save_npy(arr: np.ndarray, f: Any) -> None:
    np.save(f, arr, allow_pickle=False)


class CampaignStore(BaseStore):
    """A campaign directory. Make one with :meth:`create`, resume one with :meth:`open`.

    Attributes:
        path: the campaign directory (absolute).
        setup: the ``setup`` dict passed to :meth:`create`.
        readonly: opened with ``readonly=True`` (no lock, no clean-up, writes refused).
        fsync: whether writes are fsynced (see :meth:`create`).
        recovered: what :meth:`open` cleaned up after a crash: ``{"temp_files": n, "orphans": n,
            "plot_bytes_truncated": n}``.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, fsync: bool = True) -> None:
        """Same as :meth:`open`."""
        self._open(Path(path).absolute(), readonly=readonly, lock_fd=None, fsync=fsync)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path, *, setup: Mapping[str, Any], mode: str = "new",
               fsync: bool = True) -> "CampaignStore":
        """Create a new campaign at ``path`` and open it for writing.

        Args:
            path: the campaign directory; created if missing.
            setup: the whole configuration plus anything worth recording (versions, model and
                profile hashes); must be JSON-serialisable. Saved in ``fuzzer_setup``.
            mode: ``"new"`` refuses a non-empty directory (``UserError``: pass --resume or
                --force); ``"force"`` deletes the previous campaign's contents first, but only if
                the directory is empty or looks like a campaign (has ``fuzzer_setup`` or
                ``index.sqlite``, or nothing but campaign files); any other directory is refused.
            fsync: ``True`` (default): every add, state save and the index commit are fsynced, so
                what is reported saved survives a power loss. ``False``: no fsync and
                ``synchronous=NORMAL``; writes stay atomic and survive a killed process (the OS
                still holds them), but a power loss may drop the last ones. About 10x faster adds
                on slow disks.

        Example::

            >>> import tempfile, shutil
            >>> d = tempfile.mkdtemp()
            >>> CampaignStore.create(d, setup={"seed": 0}).close()
            >>> CampaignStore.create(d, setup={"seed": 0})
            Traceback (most recent call last):
            ...
            neurofuzz.fuzzer.errors.UserError: campaign directory ... already holds a campaign; pass --resume to continue it or --force to delete it and start anew
            >>> CampaignStore.create(d, setup={"seed": 1}, mode="force").close()
            >>> shutil.rmtree(d)
        """
        if mode not in ("new", "force"):
            raise ValueError(f"mode must be 'new' or 'force', got {mode!r}")
        p = Path(path).absolute()
        if not isinstance(setup, Mapping):
            raise TypeError(f"setup must be a dict, got {type(setup).__name__}")
        setup_text = dump_json(
            {"format": FORMAT, "format_version": FORMAT_VERSION, "created": time.time(), "setup": dict(setup)},
            "setup",
        )
        if p.exists() and not p.is_dir():
            raise UserError(f"campaign path {p} is a file; pass a directory")
        nonempty = p.is_dir() and any(p.iterdir())
        if nonempty:
            campaign = _looks_like_campaign(p)
            if mode == "new" and campaign:
                raise UserError(
                    f"campaign directory {p} already holds a campaign; pass --resume to continue it "
                    "or --force to delete it and start anew"
                )
            if not campaign:
                raise UserError(
                    f"output directory {p} is not empty and does not look like a neurofuzz campaign "
                    f"(no {SETUP} or {INDEX}); refusing to {'overwrite' if mode == 'force' else 'use'} it "
                    "(--force only replaces campaigns): choose a new or empty directory"
                )
        make_dir(p)
        lock_fd = _lock(p)
        try:
            if nonempty:
                _wipe(p)
            _initialise(p, setup_text)
        except BaseException:
            _unlock(lock_fd)
            raise
        self = cls.__new__(cls)
        self._open(p, readonly=False, lock_fd=lock_fd, fsync=fsync)  # releases the lock if it fails
        return self

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, fsync: bool = True) -> "CampaignStore":
        """Open an existing campaign to resume it (or, ``readonly=True``, to read it while
        another process may be writing it: export, replay, status).

        Checks that ``path`` is a campaign (``fuzzer_setup`` valid JSON, ``index.sqlite`` a sound
        database) and raises a ``UserError`` naming the bad file otherwise. For writing, also takes
        the campaign's lock, deletes temp files and orphan images left by a crash, and truncates a
        torn last ``plot_data`` line (see :attr:`recovered`). ``fsync``: as in :meth:`create`.

        Example::

            >>> import tempfile, shutil
            >>> d = tempfile.mkdtemp()
            >>> CampaignStore.open(d)
            Traceback (most recent call last):
            ...
            neurofuzz.fuzzer.errors.UserError: ... is not a neurofuzz campaign (no fuzzer_setup); pass the directory of a campaign, or start a new one without --resume
            >>> shutil.rmtree(d)
        """
        return cls(path, readonly=readonly, fsync=fsync)

    def _open(self, p: Path, *, readonly: bool, lock_fd: int | None, fsync: bool) -> None:
        self.path = p
        self.readonly = readonly
        self.fsync = bool(fsync)
        self.recovered = {"temp_files": 0, "orphans": 0, "plot_bytes_truncated": 0}
        self._conn: sqlite3.Connection | None = None
        self._lock_fd = lock_fd
        self._mutex = threading.RLock()
        self._pending: list[Path] = []
        self._plot_columns: list[str] | None = None
        try:
            self.setup = _read_setup(p)
            if not (p / INDEX).is_file():
                raise _corrupt(p, f"{INDEX} is missing")
            if not readonly and self._lock_fd is None:
                self._lock_fd = _lock(p)
            self._conn = _connect(p, readonly, self.fsync)
            indexed = {r[0] for r in self._conn.execute("SELECT path FROM entries")}
            self._check_files(indexed)
            if not readonly:
                self._repair_plot()
            self._plot_columns = self._read_plot_header()
        except BaseException:
            self.close()
            raise

    def _check_files(self, indexed: set[str]) -> None:
        """Delete temp files and orphan images (writer only); refuse if indexed images are gone."""
        dirs = [self.path, self.path / "queue", self.path / "state"]
        fdir = self.path / "failures"
        if fdir.is_dir():
            dirs += sorted(d for d in fdir.iterdir() if d.is_dir())
        on_disk: set[str] = set()
        for d in dirs:
            if not d.is_dir():
                continue
            rel_dir = d.relative_to(self.path).as_posix()
            for f in d.iterdir():
                if not self.readonly and f.name.startswith(TMP_PREFIX) and f.is_file():
                    f.unlink(missing_ok=True)
                    self.recovered["temp_files"] += 1
                elif d != self.path and rel_dir != "state" and _ENTRY_FILE.match(f.name):
                    rel = f"{rel_dir}/{f.name}"
                    if rel in indexed:
                        on_disk.add(rel)
                    elif not self.readonly:  # written, but the process died before the commit
                        f.unlink(missing_ok=True)
                        self.recovered["orphans"] += 1
        missing = sorted(indexed - on_disk)
        if missing:
            raise UserError(
                f"campaign at {self.path} is damaged: {len(missing)} input(s) listed in {INDEX} are missing "
                f"from disk (first: {missing[0]}); restore them from a backup or start anew with --force"
            )

    # ------------------------------------------------------------------ primitives
    def _check_open(self) -> None:
        if self._conn is None:
            raise ValueError(f"the campaign store at {self.path} is closed")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._mutex:
            self._check_open()
            assert self._conn is not None
            if getattr(self, "_in_batch", False):  # inside batch(): it commits or rolls back
                yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._pending = []  # images written in this transaction
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                for f in self._pending:  # not committed: not part of the campaign
                    f.unlink(missing_ok=True)
                raise
            finally:
                self._pending = []

    def sync(self) -> None:
        """Make everything written so far durable against power loss: one ``syncfs`` of the
        campaign's filesystem (image files, directories and the index's WAL), or, where that
        call is missing, an fsync of the index files and directories. With ``fsync=False`` this
        is how a caller (the fuzz loop, before each ``fuzzer_stats`` rewrite) decides when data
        counts as saved; every write is atomic either way, so a killed process loses nothing."""
        with self._mutex:
            self._check_open()
            if _syncfs(self.path):
                return
            for name in (INDEX, INDEX + "-wal"):
                f = self.path / name
                if f.exists():
                    fd = os.open(f, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            for d in [self.path, self.path / "queue", self.path / "failures", *(self.path / "failures").glob("*")]:
                if d.is_dir():
                    fsync_dir(d)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several :meth:`add` calls into one transaction (all or nothing).

        The images are written atomically but not fsynced one by one; at the end one filesystem
        sync (``syncfs`` where available, else one fsync per file), one fsync per directory and
        one index commit make the whole group durable at once. Much faster than single adds when a
        fuzz iteration retains many inputs; the guarantees at exit are the same.

        Example::

            >>> import tempfile, torch
            >>> d = tempfile.mkdtemp()
            >>> with CampaignStore.create(d + "/c", setup={}) as s:
            ...     with s.batch():
            ...         ids = [s.add(torch.full((1, 2, 2), float(i)), kind="queue", label=0, pred=0).id for i in range(3)]
            ...     ids, s.count("queue")
            ([1, 2, 3], 3)
        """
        with self._mutex:
            self._check_writable()
            assert self._conn is not None
            if getattr(self, "_in_batch", False):
                yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._pending = []
            self._in_batch = True
            try:
                yield
                if self.fsync and self._pending:
                    _sync_files(self._pending)
                    for d in {f.parent for f in self._pending}:
                        fsync_dir(d)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                for f in self._pending:
                    f.unlink(missing_ok=True)
                raise
            finally:
                self._in_batch = False
                self._pending = []

    def _entry(self, row: tuple[Any, ...], duplicate: bool = False) -> Entry:
        d = dict(zip(_COLS, row))
        path = self.path / d["path"]
        return make_entry(d, path=path, loader=functools.partial(_load_npy, path), duplicate=duplicate)

    def _query(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Entry]:
        with self._mutex:
            self._check_open()
            assert self._conn is not None
            rows = self._conn.execute(f"SELECT {', '.join(_COLS)} FROM entries {where} ORDER BY id", args).fetchall()
        return [self._entry(r) for r in rows]

    def _find(self, kind: str, oracle: str | None, sha: str) -> Entry | None:
        found = self._query("WHERE kind = ? AND oracle = ? AND sha = ?", (kind, oracle or "", sha))
        return found[0] if found else None

    def _get(self, id: int) -> Entry | None:
        found = self._query("WHERE id = ?", (id,))
        return found[0] if found else None

    def _insert(self, row: dict[str, Any], arr: np.ndarray) -> Entry:
        assert self._conn is not None
        (seq,) = self._conn.execute(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0), "
            "COALESCE((SELECT max(id) FROM entries), 0))"
        ).fetchone()
        id = int(seq) + 1
        sub = "queue" if row["kind"] == "queue" else f"failures/{row['oracle']}"
        rel = f"{sub}/id_{id:06d}_{row['sha'][:16]}.npy"
        make_dir(self.path / sub)
        final = self.path / rel
        self._pending.append(final)
        # on disk before the commit (inside batch(), synced once for the whole group at its end)
        atomic_write(final, functools.partial(_save_npy, arr), fsync=self.fsync and not getattr(self, "_in_batch", False))
        values = {**row, "id": id, "path": rel, "oracle": row["oracle"] or "",
                  "root": id if row["root"] is None else row["root"]}
        self._conn.execute(
            f"INSERT INTO entries ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",
            tuple(values[c] for c in _COLS),
        )
        return self._entry(tuple(values[c] for c in _COLS))

    def entries(self, kind: str | None = None, oracle: str | None = None) -> list[Entry]:
        """All entries (optionally of one kind / oracle) in id order.

        Example: ``store.entries(kind="failure", oracle="misclassified")``.
        """
        kind, oracle = self._check_filter(kind, oracle)
        where, args = _where(kind, oracle)
        return self._query(where, args)

    def count(self, kind: str | None = None, oracle: str | None = None) -> int:
        """Number of entries (optionally of one kind / oracle). Example: ``store.count("queue")``."""
        kind, oracle = self._check_filter(kind, oracle)
        where, args = _where(kind, oracle)
        with self._mutex:
            self._check_open()
            assert self._conn is not None
            return int(self._conn.execute(f"SELECT count(*) FROM entries {where}", args).fetchone()[0])

    def oracles(self) -> list[str]:
        """Names of the oracles that have failures, sorted."""
        with self._mutex:
            self._check_open()
            assert self._conn is not None
            rows = self._conn.execute("SELECT DISTINCT oracle FROM entries WHERE kind = 'failure' ORDER BY oracle")
            return [r[0] for r in rows]

    def close(self) -> None:
        """Close the index and release the campaign lock (idempotent). Entries already handed out
        stay loadable."""
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lock_fd is not None:
                _unlock(self._lock_fd)
                self._lock_fd = None

    # ------------------------------------------------------------------ monitor
    def write_stats(self, stats: Mapping[str, object]) -> None:
        """Rewrite ``fuzzer_stats`` atomically (temp file + ``os.replace``); call every few seconds.

        Example: ``store.write_stats({"execs_done": 1200, "corpus_count": store.count("queue")})``.
        """
        self._check_writable()
        atomic_write_bytes(self.path / STATS, format_stats(stats).encode(), fsync=False)

    def read_stats(self) -> dict[str, str]:
        """The current ``fuzzer_stats`` as ``{key: value-string}`` (``{}`` if none yet)."""
        self._check_open()
        try:
            return parse_stats((self.path / STATS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def append_plot(self, row: Mapping[str, object]) -> None:
        """Append one CSV line to ``plot_data`` (the first call also writes the header line).

        Example: ``store.append_plot({"relative_time": 12.5, "execs_done": 1200, "coverage": 0.41})``.
        """
        self._check_writable()
        with self._mutex:
            text = ""
            columns = self._plot_columns
            if columns is None:
                columns = list(row)
                check_plot_columns(columns)
                text = format_csv_line(columns)
            text += plot_line(columns, row)
            with open(self.path / PLOT, "a", encoding="utf-8", newline="") as f:
                f.write(text)
            self._plot_columns = columns

    def read_plot(self) -> list[dict[str, str]]:
        """All complete ``plot_data`` rows as dicts of strings."""
        self._check_open()
        try:
            return parse_plot((self.path / PLOT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def _repair_plot(self) -> None:
        """Cut a torn (unterminated) last line left by a kill mid-write."""
        p = self.path / PLOT
        if not p.is_file():
            return
        with open(p, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                step = min(1 << 16, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                if pos == size and chunk.endswith(b"\n"):
                    return
                i = chunk.rfind(b"\n")
                if i >= 0:
                    pos = pos - step + i + 1
                    break
                pos -= step
            f.truncate(pos)
            self.recovered["plot_bytes_truncated"] = size - pos

    def _read_plot_header(self) -> list[str] | None:
        p = self.path / PLOT
        if not p.is_file():
            return None
        with open(p, encoding="utf-8", newline="") as f:
            line = f.readline()
        return line.rstrip("\n").split(",") if line.endswith("\n") else None

    # ------------------------------------------------------------------ state
    def save_state(self, name: str, obj: object) -> None:
        """Save ``obj`` atomically as ``state/<name>.pt`` (torch.save; read back with
        ``weights_only=True``, so only dicts, lists, tuples, tensors, numbers, strings, None).

        Example: ``store.save_state("scheduler", {"weights": torch.ones(5), "step": 10})``.
        """
        self._check_writable()
        check_name(name, "state")
        check_state(obj, name)
        make_dir(self.path / "state")
        atomic_write(self.path / "state" / f"{name}.pt", lambda f: torch.save(obj, f), fsync=self.fsync)

    def _load_state(self, name: str) -> object:
        p = self.path / "state" / f"{name}.pt"
        try:
            return torch.load(p, weights_only=True, map_location="cpu")
        except FileNotFoundError:
            raise KeyError(f"no state named {name!r}") from None
        except Exception as e:  # unpickling / zip errors: the file is damaged
            raise _corrupt(self.path, f"state/{name}.pt is unreadable ({type(e).__name__})") from None

    def state_names(self) -> list[str]:
        """Names of the saved state blobs, sorted."""
        self._check_open()
        d = self.path / "state"
        if not d.is_dir():
            return []
        return sorted(f.name[:-3] for f in d.iterdir() if f.name.endswith(".pt") and not f.name.startswith(TMP_PREFIX))


# ---------------------------------------------------------------------------------- helpers
def _where(kind: str | None, oracle: str | None) -> tuple[str, tuple[Any, ...]]:
    conds, args = [], []
    if kind is not None:
        conds.append("kind = ?")
        args.append(kind)
    if oracle is not None:
        conds.append("oracle = ?")
        args.append(oracle)
    return ("WHERE " + " AND ".join(conds)) if conds else "", tuple(args)


def _lock(p: Path) -> int:
    fd = os.open(p / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        raise UserError(
            f"campaign at {p} is in use by another process (pid {pid}); stop it first, "
            "or open the campaign read-only"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _wipe(p: Path) -> None:
    """Delete the contents of campaign directory ``p`` (except the lock we hold)."""
    for c in p.iterdir():
        if c.name == LOCK:
            continue
        if c.is_dir() and not c.is_symlink():
            shutil.rmtree(c)
        else:
            c.unlink()
    fsync_dir(p)


def _initialise(p: Path, setup_text: str) -> None:
    """Index first (marks the directory as a campaign), then folders, then ``fuzzer_setup`` last:
    a creation cut short leaves a directory that ``open`` reports and ``--force`` may replace."""
    conn = sqlite3.connect(p / INDEX, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(
            "BEGIN;" + _SCHEMA + f"INSERT INTO meta VALUES ('format_version', '{FORMAT_VERSION}');COMMIT;"
        )
    finally:
        conn.close()
    for sub in ("queue", "failures", "state"):
        make_dir(p / sub)
    atomic_write_bytes(p / SETUP, (setup_text + "\n").encode())


def _read_setup(p: Path) -> dict[str, Any]:
    if not p.is_dir():
        raise UserError(f"no campaign at {p}: it does not exist or is not a directory; start a new one without --resume")
    f = p / SETUP
    if not f.is_file():
        if (p / INDEX).exists():
            raise _corrupt(p, f"{SETUP} is missing (creation was cut short, or it was deleted)")
        raise UserError(
            f"{p} is not a neurofuzz campaign (no {SETUP}); pass the directory of a campaign, "
            "or start a new one without --resume"
        )
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(p, f"{SETUP} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("setup"), dict):
        raise _corrupt(p, f"{SETUP} is not a neurofuzz campaign setup (no \"format\": \"{FORMAT}\")")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"campaign at {p} has format version {doc.get('format_version')!r}, newer than this neurofuzz "
            f"supports ({FORMAT_VERSION}); upgrade neurofuzz"
        )
    return doc["setup"]


def _syncfs(path: Path) -> bool:
    """``syncfs(2)`` the filesystem holding ``path``: True if done, False where unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            return libc.syncfs(fd) == 0
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return False


def _sync_files(paths: list[Path]) -> None:
    """Flush ``paths`` to disk: one ``syncfs`` of their filesystem (Linux), else one fsync each."""
    if _syncfs(paths[0]):
        return
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _connect(p: Path, readonly: bool, fsync: bool = True) -> sqlite3.Connection:
    db = p / INDEX
    try:
        if readonly:
            conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise _corrupt(p, f"{INDEX} cannot be opened ({e})") from None
    try:
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=ON")
        check = conn.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise _corrupt(p, f"{INDEX} failed its integrity check ({check[0][0]})")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "entries"} <= tables:
            raise _corrupt(p, f"{INDEX} has no neurofuzz index tables")
        row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise _corrupt(p, f"{INDEX} has no format version")
        if int(row[0]) > FORMAT_VERSION:
            raise UserError(f"campaign index {db} is format {row[0]}, newer than this neurofuzz supports; upgrade neurofuzz")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise _corrupt(p, f"{INDEX} is not a readable SQLite database ({e})") from None
    except BaseException:
        conn.close()
        raise
    return conn
