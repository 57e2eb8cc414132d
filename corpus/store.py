"""CampaignStore: the on-disk campaign directory (after AFL++'s output directory).

The directory's layout is in :mod:`neurofuzz.corpus.layout`. The store composes small pieces:
the writer lock (:mod:`~neurofuzz.corpus.lock`), the SQLite entry index
(:mod:`~neurofuzz.corpus.index`), the monitor files (:mod:`~neurofuzz.corpus.monitor`), the state
blobs (:mod:`~neurofuzz.corpus.state`) and the file-system helpers (:mod:`~neurofuzz.corpus.fs`).
Read-only access is the :class:`~neurofuzz.corpus.readonly.ReadOnlyStore` wrapper.

Durability. Every write of entries is a transaction (:meth:`CampaignStore.batch`; a lone
:meth:`~BaseStore.add` is a batch of one): the image files are written atomically (temp file +
``os.replace``), then each is fsynced, then their directories, and only then the index row is
committed, so everything the index lists is on disk. The index runs in WAL mode with
``synchronous=FULL``: an entry returned by ``add`` survives a process kill and a power loss
("nothing reported as saved is ever lost"). Only the files the campaign wrote are flushed, never
the whole file system. ``fuzzer_stats`` and ``plot_data`` are monitoring output and are not
fsynced as written: a kill leaves the previous stats file whole and at most a torn last plot line,
which a writer's :meth:`CampaignStore.open` truncates. ``fsync=False`` trades power-loss
durability for speed (no fsync, ``synchronous=NORMAL``): writes stay atomic and a killed process
still loses nothing; :meth:`CampaignStore.sync` then flushes exactly the files written since.

Crash recovery. Ids come from ``AUTOINCREMENT`` and are chosen inside the write transaction; if
the process dies between the image write and the commit, that image is an *orphan* (on disk, not
in the index). An add interrupted by an exception deletes its image itself; after a hard kill,
a writer's :meth:`CampaignStore.open` deletes orphans and temp files (a kill mid-``save_state``
leaves the previous blob whole), so the id, never reported to anyone, can be issued again.
Files of other names are left alone. :attr:`recovered` tells what was cleaned. An image listed in
the index but missing from disk makes ``open`` refuse the campaign; one that differs from its
record (another shape or dtype, NaN/Inf values, values outside the recorded range) makes a
writer's ``open`` refuse it naming the entries (``verify=False`` skips that check, e.g. to
:meth:`CampaignStore.delete` them), and :meth:`Entry.load` refuses it naming the entry.

Example::

    >>> import tempfile, shutil, torch
    >>> from neurofuzz.corpus import CampaignStore
    >>> d = tempfile.mkdtemp()
    >>> with CampaignStore.create(d, setup={"metric": "nc"}, mode="force") as s:
    ...     e = s.add(torch.zeros(1, 4, 4), kind="queue", label=7, pred=7)
    ...     with s.batch():  # several adds and the caller's counters: one transaction
    ...         _ = s.add(torch.ones(1, 4, 4), kind="queue", label=7, pred=7, parent=e.id)
    ...         s.set_meta("counters", {"iterations": 1})
    ...     e.path.relative_to(s.path).as_posix()
    'queue/id_000001_....npy'
    >>> with CampaignStore.open(d) as s:  # resume
    ...     s.get(1).label, s.setup, s.get_meta("counters")
    (7, {'metric': 'nc'}, {'iterations': 1})
    >>> with CampaignStore.open(d, readonly=True) as r:
    ...     r.count(), r.readonly
    (2, True)
    >>> shutil.rmtree(d)
"""

from __future__ import annotations

import functools
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from neurofuzz.corpus.base import BaseStore, Closed
from neurofuzz.corpus.entry import Entry, as_int, dump_json, make_entry
from neurofuzz.corpus.fs import TMP_PREFIX, Unsynced, atomic_write, atomic_write_bytes, fsync_dir, fsync_path, make_dir
from neurofuzz.corpus.index import INDEX, EntryIndex, corrupt
from neurofuzz.corpus.layout import (
    ENTRY_FILE,
    FORMAT,
    FORMAT_VERSION,
    SETUP,
    entry_relpath,
    load_entry,
    looks_like_campaign,
    read_setup,
    save_npy,
)
from neurofuzz.corpus.lock import LOCK, WriterLock
from neurofuzz.corpus.memory import MemoryStore  # noqa: F401  (also importable from here)
from neurofuzz.corpus.monitor import FileMonitor
from neurofuzz.corpus.readonly import ReadOnlyStore
from neurofuzz.corpus.shards import with_shards
from neurofuzz.corpus.state import DirStates
from neurofuzz.ground.errors import UserError

AUTO_SYNC_FILES = 4096  # with fsync=False, sync() by itself once this many files wait for a flush


class CampaignStore(BaseStore):
    """A campaign directory opened for writing. Make one with :meth:`create`, resume one with
    :meth:`open` (``readonly=True`` gives a :class:`ReadOnlyStore` instead).

    Attributes:
        path: the campaign directory (absolute).
        setup: the ``setup`` dict passed to :meth:`create`.
        fsync: whether writes are fsynced (see :meth:`create`).
        recovered: what :meth:`open` cleaned up after a crash (temp files, orphans, plot bytes).
        index, monitor, states: the components (entry index, monitor files, state blobs);
        foreign: ``id -> Entry | None`` for ids of other shards (:mod:`~neurofuzz.corpus.shards`).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True, verify: bool = True) -> None:
        """Open campaign ``path`` for writing: same as :meth:`open` without ``readonly``."""
        self._setup(Path(path).absolute(), writer=True, lock=None, fsync=fsync, verify=verify)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path, *, setup: Mapping[str, Any], mode: str = "new",
               fsync: bool = True, id_base: int = 0) -> "CampaignStore":
        """Create a new campaign at ``path`` and open it for writing.

        Args:
            path: the campaign directory; created if missing.
            setup: the whole configuration plus anything worth recording (versions, model and
                profile hashes); must be JSON-serialisable. Saved in ``fuzzer_setup``.
            mode: ``"new"`` refuses a non-empty directory (``UserError``: pass --resume or
                --force); ``"force"`` deletes the previous campaign's contents first, but only if
                the directory is empty or looks like a campaign (has ``fuzzer_setup`` or
                ``index.sqlite``, or nothing but campaign files); any other directory is refused.
            fsync: ``True`` (default): every batch of adds and every state save is fsynced, so
                what is reported saved survives a power loss. ``False``: no fsync and
                ``synchronous=NORMAL``; writes stay atomic and survive a killed process (the OS
                still holds them), but a power loss may drop the last ones until :meth:`sync`.

        Example::

            >>> import tempfile, shutil
            >>> d = tempfile.mkdtemp()
            >>> CampaignStore.create(d, setup={"seed": 0}).close()
            >>> CampaignStore.create(d, setup={"seed": 0})
            Traceback (most recent call last):
            ...
            neurofuzz.ground.errors.UserError: campaign directory ... already holds a campaign; pass --resume to continue it or --force to delete it and start anew
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
            campaign = looks_like_campaign(p)
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
        lock = WriterLock.acquire(p)
        try:
            if nonempty:
                _wipe(p)
            EntryIndex.initialise(p / INDEX, id_base)  # first: marks the directory as a campaign
            for sub in ("queue", "failures", "state"):
                make_dir(p / sub)
            atomic_write_bytes(p / SETUP, (setup_text + "\n").encode())  # last: creation complete
        except BaseException:
            lock.release()
            raise
        self = cls.__new__(cls)
        self._setup(p, writer=True, lock=lock, fsync=fsync, verify=False)  # releases the lock if it fails
        return self

    @overload
    @classmethod
    def open(cls, path: str | Path, *, readonly: Literal[False] = False, fsync: bool = True,
             verify: bool = True) -> "CampaignStore": ...

    @overload
    @classmethod
    def open(cls, path: str | Path, *, readonly: Literal[True], fsync: bool = True,
             verify: bool = True) -> ReadOnlyStore: ...

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, fsync: bool = True,
             verify: bool = True) -> "CampaignStore | ReadOnlyStore":
        """Open an existing campaign to resume it or, ``readonly=True``, to read it while another
        process may be writing it (export, replay, status): then a :class:`ReadOnlyStore`.

        Checks that ``path`` is a campaign (``fuzzer_setup`` valid JSON, ``index.sqlite`` a sound
        database, every indexed image present) and raises a ``UserError`` naming the bad file
        otherwise. For writing, also takes the campaign's lock, deletes temp files and orphan
        images left by a crash, truncates a torn last ``plot_data`` line (see :attr:`recovered`)
        and, with ``verify`` (default), checks every image against its record, refusing a
        campaign with damaged ones by id. ``fsync``: as in :meth:`create`.

        Example::

            >>> import tempfile, shutil
            >>> d = tempfile.mkdtemp()
            >>> CampaignStore.open(d)
            Traceback (most recent call last):
            ...
            neurofuzz.ground.errors.UserError: ... is not a neurofuzz campaign (no fuzzer_setup); give the directory `neurofuzz fuzz --out` made (to start a new campaign, run fuzz without --resume)
            >>> shutil.rmtree(d)
        """
        if readonly:
            core = cls._reader(Path(path).absolute(), fsync)
            return ReadOnlyStore(with_shards(core, lambda d: cls._reader(d, fsync)))
        return cls(path, fsync=fsync, verify=verify)

    @classmethod
    def _reader(cls, path: Path, fsync: bool) -> "CampaignStore":  # no lock, no clean-up
        (core := cls.__new__(cls))._setup(path, writer=False, lock=None, fsync=fsync, verify=False)
        return core

    def _setup(self, p: Path, *, writer: bool, lock: WriterLock | None, fsync: bool, verify: bool) -> None:
        self.path = p
        self.fsync = bool(fsync)
        self.recovered = {"temp_files": 0, "orphans": 0, "plot_bytes_truncated": 0}
        self._mutex = threading.RLock()
        self._written: list[Path] | None = None  # image files of the open transaction
        self._unsynced = Unsynced()
        self._lock = lock
        self._loader = functools.partial(load_entry, campaign=p)
        self.foreign: Callable[[int], Entry | None] | None = None  # entries of other shards, by id
        self.index = self.monitor = self.states = Closed(f"the campaign store at {p}")  # type: ignore[assignment]
        try:
            self.setup = read_setup(p)
            if not (p / INDEX).is_file():
                raise corrupt(p, f"{INDEX} is missing")
            if writer and self._lock is None:
                self._lock = WriterLock.acquire(p)
            self.index = EntryIndex.connect(p, readonly=not writer, fsync=self.fsync)
            self.monitor = FileMonitor(p, self._unsynced)
            self.states = DirStates(p, fsync=self.fsync, unsynced=self._unsynced)
            self._check_files(clean=writer)
            if writer:
                self.recovered["plot_bytes_truncated"] = self.monitor.repair()
                if verify:
                    self._refuse_damaged()
        except BaseException:
            self.close()
            raise

    def _check_files(self, *, clean: bool) -> None:
        """Delete temp files and orphan images (``clean``: writer only); refuse if indexed images are gone."""
        indexed = self.index.paths()
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
                if clean and f.name.startswith(TMP_PREFIX) and f.is_file():
                    f.unlink(missing_ok=True)
                    self.recovered["temp_files"] += 1
                elif d != self.path and rel_dir != "state" and ENTRY_FILE.match(f.name):
                    rel = f"{rel_dir}/{f.name}"
                    if rel in indexed:
                        on_disk.add(rel)
                    elif clean:  # written, but the process died before the commit
                        f.unlink(missing_ok=True)
                        self.recovered["orphans"] += 1
        missing = sorted(indexed - on_disk)
        if missing:
            raise UserError(
                f"campaign at {self.path} is damaged: {len(missing)} input(s) listed in {INDEX} are missing "
                f"from disk (first: {missing[0]}); restore them from a backup or start anew with --force"
            )

    def _refuse_damaged(self) -> None:
        bad = self.damaged()
        if not bad:
            return
        ids = sorted(bad)
        shown = "; ".join(f"entry {i}: {bad[i]}" for i in ids[:5]) + (f"; and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise UserError(
            f"campaign at {self.path} has {len(ids)} damaged input file(s) ({shown}); restore them from a backup, "
            f"or delete them with CampaignStore.open({str(self.path)!r}, verify=False).delete({ids}, descendants=True)"
        )

    # ------------------------------------------------------------------ the core
    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._mutex:
            index = self.index
            if self._written is not None:  # inside batch(): the outer one commits or rolls back
                yield
                return
            index.begin()
            self._written = []
            try:
                yield
                self._make_durable(self._written)
                index.commit()
            except BaseException:
                index.rollback()
                for f in self._written:  # not committed: not part of the campaign
                    f.unlink(missing_ok=True)
                    self._unsynced.discard(f)
                raise
            finally:
                self._written = None

    def batch(self) -> Any:
        """Group several adds and :meth:`set_meta` calls into one transaction (all or nothing).

        The images are written atomically but not fsynced one by one; at the end each file, then
        each directory is fsynced once and the index commits, which makes the whole group durable
        at once. A kill before the commit loses the whole group (its files are orphans, deleted on
        the next open), never part of it.
        """
        return self._transaction()

    def _make_durable(self, files: list[Path]) -> None:
        if not files:
            return
        if not self.fsync:
            for f in files:
                self._unsynced.add(f)
            if len(self._unsynced) >= AUTO_SYNC_FILES:
                self.sync()
            return
        for f in files:
            fsync_path(f, missing_ok=False)
        for d in sorted({f.parent for f in files}):
            fsync_dir(d)

    def _insert(self, row: dict[str, Any], arr: np.ndarray) -> Entry:
        assert self._written is not None, "_insert runs inside _transaction"
        id = self.index.next_id()
        rel = entry_relpath(row["kind"], row["oracle"], id, row["sha"])
        final = self.path / rel
        make_dir(final.parent)
        self._written.append(final)
        atomic_write(final, functools.partial(save_npy, arr), fsync=False)  # synced before the commit
        values = {**row, "id": id, "path": rel, "root": id if row["root"] is None else row["root"]}
        self.index.insert(values)
        return self._entry(values)

    def _entry(self, row: Mapping[str, Any]) -> Entry:
        return make_entry(row, path=self.path / row["path"], loader=self._loader)

    def _lineage_of(self, id: int) -> tuple[int, int] | None:
        with self._mutex:
            found = self.index.lineage(id)
        if found is None and self.foreign is not None:
            e = self.foreign(id)
            return None if e is None else (e.root, e.depth)
        return found

    def _get(self, id: int) -> Entry | None:
        """Entry ``id``; one this shard did not issue is asked of :attr:`foreign` (a worker's peers)."""
        found = self._query(id=id)
        if not found and self.foreign is not None:
            return self.foreign(id)
        return found[0] if found else None

    def _query(self, **filters: Any) -> list[Entry]:
        with self._mutex:
            rows = self.index.rows(**filters)
        return [self._entry(r) for r in rows]

    def _count(self, kind: str | None, oracle: str | None) -> int:
        with self._mutex:
            return self.index.count(kind=kind, oracle=oracle)

    def oracles(self) -> list[str]:
        with self._mutex:
            return self.index.oracles()

    def _read_meta(self, key: str) -> str | None:
        with self._mutex:
            return self.index.get_meta(key)

    def _write_meta(self, key: str, text: str) -> None:
        self.index.set_meta(key, text)

    def close(self) -> None:
        """Close the index and release the campaign lock (idempotent). Entries already handed out
        stay loadable."""
        with self._mutex:
            if isinstance(self.index, EntryIndex):
                self.index.close()
            self.index = self.monitor = self.states = Closed(f"the campaign store at {self.path}")  # type: ignore[assignment]
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # ------------------------------------------------------------------ writer extras
    def sync(self) -> None:
        """Make everything written so far durable against power loss: fsync exactly the files
        written since the last flush (images, state blobs, monitor files; with ``fsync=False`` the
        index and its WAL too), then their directories. With ``fsync=False`` this is how a caller
        (the fuzz loop, at each checkpoint) decides when data counts as saved."""
        with self._mutex:
            self.index.conn  # raises once closed
            if not self.fsync:
                for name in (INDEX, INDEX + "-wal"):
                    if (self.path / name).exists():
                        self._unsynced.add(self.path / name)
            self._unsynced.flush()

    def delete(self, ids: int | Iterable[int], *, descendants: bool = False) -> list[int]:
        """Delete entries (index rows and files), e.g. damaged ones; returns the deleted ids.

        Entries derived from them are refused (``UserError``) unless ``descendants=True``, which
        deletes them too. Ids are never reissued. Example: ``store.delete([12], descendants=True)``.
        """
        want = {as_int(i, "id") for i in ([ids] if isinstance(ids, int) else ids)}
        with self._transaction():
            for i in sorted(want):
                if not self.index.rows(id=i):
                    raise KeyError(f"no entry with id {i}")
            closure = self.index.descendants(want)
            if closure - want and not descendants:
                more = sorted(closure - want)
                raise UserError(f"entries {more[:10]}{' ...' if len(more) > 10 else ''} derive from {sorted(want)}; "
                                "pass descendants=True to delete them too")
            files = [self.path / r["path"] for i in sorted(closure) for r in self.index.rows(id=i)]
            self.index.delete(closure)
        for f in files:  # after the commit: a kill in between leaves orphans, deleted on open
            f.unlink(missing_ok=True)
        for d in {f.parent for f in files}:
            fsync_dir(d)
        return sorted(closure)


def _wipe(p: Path) -> None:
    """Delete the contents of campaign directory ``p`` (the lock is on the directory itself)."""
    for c in p.iterdir():
        if c.name == LOCK:
            continue
        if c.is_dir() and not c.is_symlink():
            shutil.rmtree(c)
        else:
            c.unlink()
    fsync_dir(p)
