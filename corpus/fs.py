"""File-system helpers of the corpus: atomic writes, targeted fsync, left-over temp files.

* :func:`atomic_write`: a temp file in the destination's directory, filled, then ``os.replace``'d
  over the destination, so a reader (or a process resuming after a crash) sees the old file or
  the whole new one, never a torn one (Hypothesis ``database.py``; AFL++ rewrites
  ``fuzzer_stats`` the same way).
* :class:`Unsynced`: the files and directories written without fsync; :meth:`Unsynced.flush`
  fsyncs exactly those (never ``syncfs``, which would flush the whole file system, other
  people's writes included).
* Temp files are named ``.tmp-<pid>-<12 hex>-<name>`` (:data:`TMP_PREFIX`), so left-overs of a
  killed process can be recognised and removed (:func:`remove_stale_temps`).

Example::

    >>> import tempfile, pathlib, shutil
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(d / "hello.txt", b"hi\\n")
    >>> (d / "hello.txt").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'hi\\n', ['hello.txt'])
    >>> _ = (d / ".tmp-999999999-0123456789ab-x.npz").write_bytes(b"left by a killed export")
    >>> remove_stale_temps(d), sorted(p.name for p in d.iterdir())
    (1, ['hello.txt'])
    >>> shutil.rmtree(d)
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".tmp-"
_TMP_RE = re.compile(r"\.tmp-(\d+)-[0-9a-f]{12}-")


def temp_name(final: Path) -> Path:
    """A fresh temp path next to ``final`` (same directory, hence same file system)."""
    final = Path(final)
    return final.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}-{final.name}"


def fsync_path(path: Path, *, missing_ok: bool = True) -> None:
    """fsync one file or directory (directories: where the platform allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    except (IsADirectoryError, PermissionError):  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        if not Path(path).is_dir():  # a file that cannot be flushed is an error; a directory may be
            raise
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename / creation / deletion inside directory ``path`` durable."""
    fsync_path(path)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> None:
    """Write ``path`` atomically: ``write(f)`` fills a temp file, which then replaces ``path``.

    With ``fsync`` the data is flushed before the rename and the directory after it, so the new
    content survives a power loss once this returns. On any error the temp file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """:func:`atomic_write` of a bytes object."""
    atomic_write(path, lambda f: f.write(data), fsync=fsync)


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished directory ``tmp`` to ``out``, replacing a previous ``out`` (renamed aside
    first, deleted last: a kill in between leaves only ``.tmp-`` names, cleaned up later)."""
    if out.exists():
        old = temp_name(out)
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)  # put the previous one back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    fsync_dir(out.parent)


def make_dir(path: Path) -> None:
    """Create directory ``path`` (and parents) durably; no-op if it exists."""
    path = Path(path)
    if path.is_dir():
        return
    make_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    fsync_dir(path.parent)


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temps(directory: Path) -> int:
    """Delete the ``.tmp-<pid>-<hex>-*`` files and folders in ``directory`` whose process is gone
    (a killed export or write); a live process's temp files are left alone. Returns the count."""
    n = 0
    try:
        children = list(Path(directory).iterdir())
    except OSError:
        return 0
    for c in children:
        m = _TMP_RE.match(c.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        if c.is_dir() and not c.is_symlink():
            shutil.rmtree(c, ignore_errors=True)
        else:
            c.unlink(missing_ok=True)
        n += 1
    return n


class Unsynced:
    """Files (and their directories) written without fsync, to be flushed later, each exactly once.

    With ``background=True`` a daemon thread fsyncs each noted file soon after it is noted, while
    the caller goes on computing (fsync waits on the disk, not the CPU, and releases the GIL);
    :meth:`flush` waits for those fsyncs to finish, then fsyncs the directories, so the guarantee
    is the same: once ``flush`` returns, every noted file and directory entry is durable.

    Example::

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> u = Unsynced()
        >>> atomic_write_bytes(d / "a", b"1", fsync=False); u.add(d / "a")
        >>> len(u), u.flush(), len(u)
        (1, 1, 0)
    """

    def __init__(self, *, background: bool = True) -> None:
        self.files: set[Path] = set()
        self.dirs: set[Path] = set()
        self.background = background
        self._queue: queue.Queue[Path] | None = None
        self._pid = 0  # the process whose thread serves the queue (a forked child starts its own)
        self._errors: list[BaseException] = []

    def __len__(self) -> int:
        return len(self.files)

    def _worker(self, q: "queue.Queue[Path]") -> None:
        while True:
            path = q.get()
            try:
                fsync_path(path)  # a file deleted since (rolled back, replaced) needs no flush
            except BaseException as e:  # noqa: BLE001 - raised to the caller at flush
                self._errors.append(e)
            finally:
                q.task_done()

    def _submit(self, path: Path) -> None:
        if not self.background:
            return
        if self._queue is None or self._pid != os.getpid():
            self._queue, self._pid = queue.Queue(), os.getpid()
            threading.Thread(target=self._worker, args=(self._queue,), name="neurofuzz-fsync", daemon=True).start()
        self._queue.put(path)

    def add(self, path: Path) -> None:
        """Note that ``path`` was written (or renamed into place) and not fsynced."""
        path = Path(path)
        self.files.add(path)
        self.dirs.add(path.parent)
        self._submit(path)

    def add_dir(self, path: Path) -> None:
        """Note a change of ``path``'s entries (a creation, deletion or rename)."""
        self.dirs.add(Path(path))

    def discard(self, path: Path) -> None:
        self.files.discard(Path(path))

    def flush(self) -> int:
        """fsync the noted files (waiting for the background fsyncs), then their directories;
        returns the number of files."""
        files, dirs = sorted(self.files), sorted(self.dirs)
        if self._queue is not None and self._pid == os.getpid():
            self._queue.join()
        else:
            for f in files:
                fsync_path(f)  # a file deleted since (rolled back, replaced) needs no flush
        if self._errors:
            err, self._errors = self._errors[0], []
            raise err
        for d in dirs:
            fsync_dir(d)
        self.files.clear()
        self.dirs.clear()
        return len(files)
