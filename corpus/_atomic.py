"""Atomic file writes: temp file in the destination's directory, fsync, ``os.replace``.

A reader (or a process resuming after a crash) sees either the old file or the complete new one,
never a torn one (Hypothesis ``database.py``; AFL++ rewrites ``fuzzer_stats`` the same way).
Temp files are named ``.tmp-<pid>-<random>-<name>`` so that a campaign opened after a crash can
recognise and delete the ones left behind (:data:`TMP_PREFIX`).

Example::

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(d / "hello.txt", b"hi\\n")
    >>> (d / "hello.txt").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'hi\\n', ['hello.txt'])
    >>> import shutil; shutil.rmtree(d)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".tmp-"


def temp_name(final: Path) -> Path:
    """A fresh temp path next to ``final`` (same directory, hence same file system)."""
    return final.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}-{final.name}"


def fsync_dir(path: Path) -> None:
    """Make a rename / creation inside directory ``path`` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> None:
    """Write ``path`` atomically: ``write(f)`` fills a temp file, which then replaces ``path``.

    With ``fsync`` the data is flushed to disk before the rename and the directory after it, so the
    new content survives a power loss once this returns. On any error the temp file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """:func:`atomic_write` of a bytes object."""
    atomic_write(path, lambda f: f.write(data), fsync=fsync)


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
