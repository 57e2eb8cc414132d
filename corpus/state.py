"""Named state blobs of a campaign (coverage map, scheduler, RNG, checkpoint): ``state/<name>.pt``.

A blob is written with ``torch.save`` through an atomic write (a kill mid-save leaves the previous
blob whole plus a temp file that the next writer's open deletes) and read back with
``torch.load(weights_only=True)``: only dicts, lists, tuples, tensors, numbers, strings and
``None``, checked before anything is written (:func:`check_state`), so a blob that could not be
read back never reaches the disk. :class:`DirStates` keeps blobs in a directory,
:class:`MemoryStates` in memory (serialised the same way, so both refuse the same objects).

Example::

    >>> import torch
    >>> s = MemoryStates()
    >>> s.save("rng", {"torch": torch.arange(3), "step": 7})
    >>> s.load("rng")["step"], s.names()
    (7, ['rng'])
    >>> s.save("bad", {"f": print})
    Traceback (most recent call last):
    ...
    TypeError: state 'bad': value at ['f'] is a builtins.builtin_function_or_method; store only dicts, lists, tuples, tensors, numbers, strings and None (convert arrays with torch.as_tensor)
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch

from neurofuzz.corpus.entry import check_name
from neurofuzz.corpus.fs import TMP_PREFIX, Unsynced, atomic_write, make_dir
from neurofuzz.ground.errors import UserError

_LEAVES = (torch.Tensor, int, float, bool, str, type(None))


def check_state(obj: object, name: str, where: str = "") -> None:
    """Refuse anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(obj, _LEAVES):
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


class StateBlobs(ABC):
    """Named blobs: :meth:`save` checks and serialises, the medium stores bytes."""

    def save(self, name: str, obj: object) -> None:
        """Save ``obj`` under ``name`` atomically (later changes to ``obj`` do not leak in)."""
        check_name(name, "state")
        check_state(obj, name)
        self._put(name, lambda f: torch.save(obj, f))

    def load(self, name: str) -> object:
        """The blob ``name``; ``KeyError`` if there is none, ``UserError`` if it is damaged."""
        check_name(name, "state")
        return self._get(name)

    @abstractmethod
    def _put(self, name: str, write: Callable[[BinaryIO], object]) -> None:
        """Store the bytes ``write(f)`` produces as blob ``name``, atomically."""

    @abstractmethod
    def _get(self, name: str) -> object:
        """Blob ``name`` deserialised; ``KeyError`` if absent."""

    @abstractmethod
    def names(self) -> list[str]:
        """Names of the saved blobs, sorted."""


class MemoryStates(StateBlobs):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def _put(self, name: str, write: Callable[[BinaryIO], object]) -> None:
        buf = io.BytesIO()
        write(buf)
        self._blobs[name] = buf.getvalue()

    def _get(self, name: str) -> object:
        if name not in self._blobs:
            raise KeyError(f"no state named {name!r}")
        return torch.load(io.BytesIO(self._blobs[name]), weights_only=True, map_location="cpu")

    def names(self) -> list[str]:
        return sorted(self._blobs)


class DirStates(StateBlobs):
    """Blobs as ``<campaign>/state/<name>.pt``; fsynced when ``fsync``, else noted in ``unsynced``."""

    def __init__(self, campaign: Path, *, fsync: bool = True, unsynced: Unsynced | None = None) -> None:
        self.campaign = Path(campaign)
        self.dir = self.campaign / "state"
        self.fsync = fsync
        self._unsynced = unsynced if unsynced is not None else Unsynced()

    def _put(self, name: str, write: Callable[[BinaryIO], object]) -> None:
        make_dir(self.dir)
        path = self.dir / f"{name}.pt"
        atomic_write(path, write, fsync=self.fsync)
        if not self.fsync:
            self._unsynced.add(path)

    def _get(self, name: str) -> object:
        try:
            return torch.load(self.dir / f"{name}.pt", weights_only=True, map_location="cpu")
        except FileNotFoundError:
            raise KeyError(f"no state named {name!r}") from None
        except Exception as e:  # unpickling / zip errors: the file is damaged
            raise UserError(
                f"campaign at {self.campaign} is corrupted: state/{name}.pt is unreadable ({type(e).__name__}); "
                "restore it from a backup or start anew with --force"
            ) from None

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(f.name[:-3] for f in self.dir.iterdir() if f.name.endswith(".pt") and not f.name.startswith(TMP_PREFIX))
