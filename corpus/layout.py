"""The campaign directory: its file names, ``fuzzer_setup``, entry files, and questions about a
directory (is it a campaign? is it inside one? does a process write it?).

Layout::

    <campaign>/
      fuzzer_setup     JSON, written once at create: {"format", "format_version", "created", "setup"}
      index.sqlite     SQLite (WAL) index of every entry (neurofuzz.corpus.index)
      queue/           id_000012_<sha[:16]>.npy          retained inputs
      failures/<oracle>/id_000013_<sha[:16]>.npy         inputs an oracle flagged
      state/<name>.pt  named state blobs (neurofuzz.corpus.state)
      fuzzer_stats     "key : value" lines; plot_data: CSV (neurofuzz.corpus.monitor)
      .lock            the writer's pid (the lock itself: neurofuzz.corpus.lock)

Example::

    >>> import tempfile, shutil, pathlib, torch
    >>> from neurofuzz.corpus import CampaignStore
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with CampaignStore.create(d / "c", setup={}) as s:
    ...     s.write_stats({"status": "running", "pid": 99999999})
    ...     campaign_status(s)
    'running'
    >>> campaign_status(d / "c"), enclosing_campaign(d / "c" / "queue" / "x.npz") == d / "c"
    ('crashed (pid 99999999 not running)', True)
    >>> shutil.rmtree(d)
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.corpus.entry import DamagedEntry, Entry, image_problem
from neurofuzz.corpus.fs import TMP_PREFIX, pid_alive
from neurofuzz.corpus.index import FORMAT_VERSION, INDEX, corrupt
from neurofuzz.corpus.lock import LOCK, live_writer, recorded_pid
from neurofuzz.corpus.monitor import PLOT, STATS, FileMonitor
from neurofuzz.ground.errors import UserError

FORMAT = "neurofuzz-campaign"
SETUP = "fuzzer_setup"
WORKERS = "workers"  # shards of a campaign fuzzed by several workers (see neurofuzz.corpus.shards)
KNOWN = {SETUP, INDEX, STATS, PLOT, LOCK, "queue", "failures", "state", WORKERS,
         INDEX + "-wal", INDEX + "-shm", INDEX + "-journal"}
ENTRY_FILE = re.compile(r"id_\d{6,}_[0-9a-f]{16}\.npy\Z")


# ---------------------------------------------------------------------------------- setup
def read_setup(p: Path) -> dict[str, Any]:
    """The ``setup`` dict of campaign ``p``; ``UserError`` naming the problem otherwise."""
    if not p.is_dir():
        raise UserError(f"no campaign at {p}: it does not exist or is not a directory; give the directory "
                        "`neurofuzz fuzz --out` made (to start a new campaign, run fuzz without --resume)")
    f = p / SETUP
    if not f.is_file():
        if (p / INDEX).exists():
            raise corrupt(p, f"{SETUP} is missing (creation was cut short, or it was deleted)")
        raise UserError(
            f"{p} is not a neurofuzz campaign (no {SETUP}); give the directory `neurofuzz fuzz --out` made "
            "(to start a new campaign, run fuzz without --resume)"
        )
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise corrupt(p, f"{SETUP} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("setup"), dict):
        raise corrupt(p, f"{SETUP} is not a neurofuzz campaign setup (no \"format\": \"{FORMAT}\")")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"campaign at {p} has format version {doc.get('format_version')!r}, newer than this neurofuzz "
            f"supports ({FORMAT_VERSION}); upgrade neurofuzz"
        )
    return doc["setup"]


# ---------------------------------------------------------------------------------- directories
def is_campaign(path: Path) -> bool:
    """True if directory ``path`` holds ``fuzzer_setup`` or ``index.sqlite``."""
    return path.is_dir() and ((path / SETUP).exists() or (path / INDEX).exists())


def looks_like_campaign(path: Path) -> bool:
    """A campaign, or a directory of nothing but campaign files (one whose creation was cut short)."""
    if is_campaign(path):
        return True
    return all(c.name in KNOWN or c.name.startswith(TMP_PREFIX) for c in path.iterdir())


def enclosing_campaign(path: str | Path) -> Path | None:
    """The campaign directory that ``path`` is or lies in (itself or its nearest ancestor holding
    ``fuzzer_setup`` / ``index.sqlite``), following symlinks; ``None`` if there is none."""
    p = Path(path).absolute()
    for cand in (p, p.resolve()):
        for a in (cand, *cand.parents):
            if is_campaign(a):
                return a
    return None


def contained_campaign(path: str | Path) -> Path | None:
    """A campaign directory at or below directory ``path`` (symlinks not followed), if any."""
    p = Path(path)
    if not p.is_dir() or p.is_symlink():
        return None
    for top, dirs, names in os.walk(p):
        if SETUP in names or INDEX in names:
            return Path(top)
    return None


def check_replaceable(path: str | Path) -> None:
    """Refuse (``UserError``) to delete directory ``path`` unless it looks like a campaign and no
    process is writing it (``--force``)."""
    p = Path(path).absolute()
    if p.is_dir() and any(p.iterdir()) and not looks_like_campaign(p):
        raise UserError(
            f"output directory {p} is not empty and does not look like a neurofuzz campaign "
            f"(no {SETUP} or {INDEX}); refusing to overwrite it (--force only replaces campaigns): "
            "choose a new or empty directory"
        )
    if live_writer(p):
        raise UserError(f"campaign at {p} is in use by another process (pid {recorded_pid(p) or '?'}); stop it first")


def campaign_status(store_or_path: Any) -> str:
    """The state of a campaign for ``neurofuzz status``: ``"running"`` while a process holds its
    writer lock; ``"crashed (pid N not running)"`` when ``fuzzer_stats`` says ``running`` but no
    process holds the lock (the writer was killed); else the recorded status (``"finished"``,
    ``"stopped"``, ...), or ``"not started"`` when there are no stats yet.

    Takes a campaign directory or an open store (a MemoryStore: its recorded status).
    """
    path = store_or_path if isinstance(store_or_path, (str, Path)) else getattr(store_or_path, "path", None)
    if path is None:
        status = store_or_path.read_stats().get("status")
        return str(status) if status not in (None, "") else "not started"
    path = Path(path)
    stats = FileMonitor(path).read_stats()
    if live_writer(path):
        return "running"
    status = stats.get("status")
    if status == "running":
        pid = stats.get("pid")
        pid = pid if isinstance(pid, int) else recorded_pid(path)
        if pid is None:
            return "crashed (writer not running)"
        if pid_alive(pid):  # alive (or its pid reused) but not writing the campaign
            return f"crashed (pid {pid} no longer holds the campaign lock)"
        return f"crashed (pid {pid} not running)"
    return str(status) if status not in (None, "") else "not started"


# ---------------------------------------------------------------------------------- entry files
def entry_relpath(kind: str, oracle: str | None, id: int, sha: str) -> str:
    sub = "queue" if kind == "queue" else f"failures/{oracle}"
    return f"{sub}/id_{id:06d}_{sha[:16]}.npy"


def save_npy(arr: np.ndarray, f: Any) -> None:
    np.save(f, arr, allow_pickle=False)


@functools.lru_cache(maxsize=64)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The exact header ``np.save`` writes for an array of ``dtype`` and ``shape``."""
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, dtype=dtype), allow_pickle=False)
    data = buf.getvalue()
    return data[: len(data) - int(np.prod(shape)) * np.dtype(dtype).itemsize]


def read_entry_file(e: Entry, *, sha: bool = False, campaign: Path | None = None) -> np.ndarray:
    """The array in entry ``e``'s file, checked against its record (:func:`image_problem`);
    :class:`DamagedEntry` if the file is missing, unreadable or differs. A file with exactly the
    header ``np.save`` wrote is decoded directly (the common case, about 3x faster than np.load)."""
    assert e.path is not None
    try:
        data = e.path.read_bytes()
        head = _npy_header(e.dtype, tuple(e.shape))
        if data.startswith(head) and len(data) - len(head) == int(np.prod(e.shape)) * np.dtype(e.dtype).itemsize:
            arr = np.frombuffer(data, dtype=e.dtype, offset=len(head)).reshape(e.shape)
        else:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError:
        raise DamagedEntry(e.id, e.path, "is missing (removed outside neurofuzz)", campaign) from None
    except (ValueError, OSError, EOFError) as err:
        raise DamagedEntry(e.id, e.path, f"is unreadable ({err})", campaign) from None
    problem = image_problem(e, arr, sha=sha)
    if problem is not None:
        raise DamagedEntry(e.id, e.path, problem, campaign)
    return arr


def load_entry(e: Entry, sha: bool = False, *, campaign: Path | None = None) -> torch.Tensor:
    """``Entry.load`` of a campaign entry: the checked file as a float32 tensor."""
    arr = read_entry_file(e, sha=sha, campaign=campaign)
    return torch.from_numpy(np.array(arr, dtype=np.float32))  # a private, writable copy
