"""The single-writer lock of a campaign directory.

The lock is ``flock(LOCK_EX)`` on a file descriptor of the campaign *directory itself*: the
kernel drops it when the holding process exits, however it dies (SIGKILL included), and no file
can be deleted to get around it (deleting or renaming ``.lock`` changes nothing; only a second
open of the same directory inode competes). ``.lock`` merely records the writer's pid for
messages. Readers (``open(readonly=True)``, export, status) never take the lock;
:func:`live_writer` asks whether a writer holds it by trying a shared lock without waiting.

A writer that finds the lock held retries for a moment (:data:`RETRY_S`), so a concurrent
:func:`live_writer` probe cannot make it fail. Where ``fcntl`` is missing (Windows) a campaign is
not protected against two writers.

Example::

    >>> import tempfile, shutil, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> lock = WriterLock.acquire(d)
    >>> live_writer(d), recorded_pid(d) == os.getpid()
    (True, True)
    >>> WriterLock.acquire(d)
    Traceback (most recent call last):
    ...
    neurofuzz.ground.errors.UserError: campaign at ... is in use by another process (pid ...); stop it first, or open the campaign read-only
    >>> lock.release(); live_writer(d)
    False
    >>> shutil.rmtree(d)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from neurofuzz.corpus.fs import atomic_write_bytes
from neurofuzz.ground.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"  # holds the writer's pid (information only: the lock is on the directory)
RETRY_S = 0.2


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def recorded_pid(path: Path) -> int | None:
    """The pid written in ``path/.lock`` by the last writer, if readable."""
    try:
        text = (Path(path) / LOCK).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class WriterLock:
    """The held lock of one campaign directory; :meth:`release` (or process exit) drops it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, path: str | Path) -> "WriterLock":
        """Lock campaign directory ``path`` for writing, or raise ``UserError`` naming the holder."""
        p = Path(path)
        fd = _open_dir(p)
        if fcntl is not None:
            deadline = time.monotonic() + RETRY_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    os.close(fd)
                    pid = recorded_pid(p)
                    raise UserError(
                        f"campaign at {p} is in use by another process (pid {pid or '?'}); stop it first, "
                        "or open the campaign read-only"
                    ) from None
                except BaseException:
                    os.close(fd)
                    raise
        lock = cls(fd, p)
        try:
            lock.record_pid()
        except BaseException:
            lock.release()
            raise
        return lock

    def record_pid(self) -> None:
        """(Re)write ``.lock`` with this process's pid (after a wipe of the directory, say)."""
        atomic_write_bytes(self.path / LOCK, f"{os.getpid()}\n".encode(), fsync=False)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). ``.lock`` stays: the next writer overwrites it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def live_writer(path: str | Path) -> bool:
    """True if some process (this one included) holds the writer lock of campaign ``path``.

    Tries a shared lock without waiting and drops it at once; ``False`` for a missing directory
    and where locking is unsupported.
    """
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = _open_dir(Path(path))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken
    return False
