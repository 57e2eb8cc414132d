"""A campaign fuzzed by several workers: one main store and one shard per worker, read as one.

Layout (after AFL++'s sync directory, with one store per instance)::

    CAMP/                  the main store: fuzzer_setup, the seeds, the neuron profile, the
                           coordinator's checkpoint, and fuzzer_stats / plot_data for the whole
                           campaign (written by the coordinator)
    CAMP/workers/w1/       worker 1's shard: a complete campaign store (its own index.sqlite with
                           its own write-ahead log, its own queue/ and failures/, its own lock)
    CAMP/workers/w1/sync/  worker 1's sync publications (see neurofuzz.fuzzer.workers)

Ids never collide: shard ``k`` numbers its entries from ``k * SHARD_STRIDE + 1`` (the main store
from 1), so an id names its shard (:func:`shard_of`) and an entry's parent may live in another
shard (a worker mutates inputs its peers found). Content addressing (a duplicate image is stored
once) holds within a shard, not across shards.

:class:`ShardedStore` is the read view over all of them that ``CampaignStore.open(CAMP,
readonly=True)`` returns for such a campaign, so ``status``, ``export``, ``replay``, ``report``
and ``triage`` see one campaign: entries of every shard in id order, counts summed, lineage
followed across shards, the monitor files and state blobs of the main store.

Example::

    >>> shard_of(7), shard_of(2 * SHARD_STRIDE + 5), shard_dir(Path("camp"), 3).as_posix()
    (0, 2, 'camp/workers/w3')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from neurofuzz.corpus.base import BaseStore
from neurofuzz.corpus.entry import Entry
from neurofuzz.corpus.layout import SETUP, WORKERS

SHARD_STRIDE = 10**9  # ids per shard
_SHARD = re.compile(r"w([1-9]\d{0,3})\Z")


def shard_of(id: int) -> int:
    """The shard that issued entry id ``id`` (0: the main store)."""
    return int(id) // SHARD_STRIDE


def shard_dir(campaign: Path, k: int) -> Path:
    return Path(campaign) / WORKERS / f"w{int(k)}"


def shard_dirs(campaign: Path) -> dict[int, Path]:
    """``{k: path}`` of the worker shards under ``campaign`` whose creation is complete."""
    root = Path(campaign) / WORKERS
    if not root.is_dir():
        return {}
    out = {}
    for p in root.iterdir():
        m = _SHARD.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and (p / SETUP).is_file():  # written last: creation complete
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def with_shards(main: BaseStore, open_shard: Callable[[Path], BaseStore]) -> BaseStore:
    """``main`` itself, or a :class:`ShardedStore` over it and its shards (each opened with
    ``open_shard(dir)``) when it is the main store of a multi-worker campaign."""
    shards = shard_dirs(main.path) if main.path is not None and "workers" in main.setup else {}
    if not shards:
        return main
    parts: dict[int, BaseStore] = {0: main}
    try:
        for k, d in shards.items():
            parts[k] = open_shard(d)
    except BaseException:
        for s in parts.values():
            s.close()
        raise
    return ShardedStore(parts)


class ShardedStore(BaseStore):
    """Read access to a main store and its shards as one store (writes: see ``ReadOnlyStore``,
    which wraps this). ``shards``: ``{k: store}`` with ``0`` the main store. Closing closes all."""

    def __init__(self, shards: dict[int, BaseStore]) -> None:
        if 0 not in shards:
            raise ValueError("a sharded store needs the main store as shard 0")
        self.shards = dict(sorted(shards.items()))
        main = self.shards[0]
        self.path, self.setup = main.path, main.setup
        self.recovered = {k: sum(s.recovered.get(k, 0) for s in self.shards.values()) for k in main.recovered}

    @property
    def monitor(self) -> Any:  # type: ignore[override]
        return self.shards[0].monitor

    @property
    def states(self) -> Any:  # type: ignore[override]
        return self.shards[0].states

    def _query(self, **filters: Any) -> list[Entry]:
        if filters.get("id") is not None:
            s = self.shards.get(shard_of(filters["id"]))
            return [] if s is None else s._query(**filters)
        out: list[Entry] = []
        for s in self.shards.values():  # shard k's ids all lie above shard k-1's: id order holds
            out += s._query(**filters)
        return out

    def _count(self, kind: str | None, oracle: str | None) -> int:
        return sum(s._count(kind, oracle) for s in self.shards.values())

    def oracles(self) -> list[str]:
        return sorted({o for s in self.shards.values() for o in s.oracles()})

    def _read_meta(self, key: str) -> str | None:
        return self.shards[0]._read_meta(key)

    def _transaction(self) -> Any:
        raise ValueError(f"campaign at {self.path} is read through its shards; it cannot be written this way")

    _insert = _write_meta = _transaction  # type: ignore[assignment]

    def close(self) -> None:
        for s in self.shards.values():
            s.close()

    def __repr__(self) -> str:
        return f"ShardedStore({self.path}, shards {sorted(self.shards)})"
