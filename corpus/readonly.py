"""Read-only access to a store, as a wrapper (Hypothesis ``ReadOnlyDatabase`` style).

:class:`ReadOnlyStore` passes every read to the store it wraps and refuses every write with a
``ValueError`` before anything is validated or touched; the wrapped store needs no flag.
``CampaignStore.open(path, readonly=True)`` returns one around a campaign opened without the
writer lock, without crash clean-up and on a read-only SQLite connection (so export, replay and
status can read a campaign while a fuzzer writes it, and see its commits).

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore(); _ = s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    >>> r = ReadOnlyStore(s)
    >>> r.count(), r.get(1).load().shape
    (1, torch.Size([1, 2, 2]))
    >>> r.add(torch.ones(1, 2, 2), kind="queue", label=0, pred=0)
    Traceback (most recent call last):
    ...
    ValueError: this store was opened read-only; open it without readonly=True to write
"""

from __future__ import annotations

from typing import Any, NoReturn

from neurofuzz.corpus.base import BaseStore
from neurofuzz.corpus.entry import Entry


class ReadOnlyStore(BaseStore):
    """``store`` with every write refused. Closing the wrapper closes ``store``."""

    readonly = True

    def __init__(self, store: BaseStore) -> None:
        self._store = store
        self.path = store.path
        self.setup = store.setup
        self.recovered = store.recovered

    @property
    def fsync(self) -> bool:
        return bool(getattr(self._store, "fsync", False))

    @property
    def monitor(self) -> Any:  # type: ignore[override]
        return self._store.monitor

    @property
    def states(self) -> Any:  # type: ignore[override]
        return self._store.states

    # ------------------------------------------------------------------ reads pass through
    def _query(self, **filters: Any) -> list[Entry]:
        return self._store._query(**filters)

    def _count(self, kind: str | None, oracle: str | None) -> int:
        return self._store._count(kind, oracle)

    def oracles(self) -> list[str]:
        return self._store.oracles()

    def _read_meta(self, key: str) -> str | None:
        return self._store._read_meta(key)

    def close(self) -> None:
        self._store.close()

    def __repr__(self) -> str:
        return f"ReadOnlyStore({self._store!r})"

    # ------------------------------------------------------------------ writes refused
    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        where = f"campaign at {self.path}" if self.path is not None else "this store"
        raise ValueError(f"{where} was opened read-only; open it without readonly=True to write")

    add = batch = set_meta = write_stats = append_plot = save_state = delete = sync = _refuse  # type: ignore[assignment]
    _transaction = _insert = _write_meta = _refuse  # type: ignore[assignment]
