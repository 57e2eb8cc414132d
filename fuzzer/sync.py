"""Worker sync: how the workers of one campaign share what they find (after AFL++'s ``-M/-S``).

Each worker fuzzes its own shard (:mod:`neurofuzz.corpus.shards`). Every ``every`` iterations
(a *sync point*; epoch ``e = iterations // every``) a worker

1. **publishes** ``workers/wK/sync/eNNNNNNNN.pt``: its largest entry id so far, its whole coverage
   state (every metric's map), its counters and sync figures; then
2. **imports** each peer's publication of the *previous* epoch ``e - 1``: the peer's new entries
   (id above the last one imported from that peer, up to the published id) go into its queue and
   scheduler as they are — read from the peer's shard, never copied — and the peer's coverage
   state is merged into its own (OR of the cell maps), so no worker re-explores what another found.

Determinism. What a worker imports at epoch ``e`` is fixed by its peers' state at epoch ``e - 1``,
not by timing, so for a fixed campaign seed, worker count and ``every``, each worker's sequence of
mutants is the same from run to run (as long as no worker is killed). A worker waits for a
peer's publication only while that peer is alive (holds its shard's lock) and at most ``wait_s``
seconds; a peer that finished left ``final.pt``, which is used once the wanted epoch can no longer
come; a peer that died is read as far as it got. Those two cases (and a timeout) break
determinism, not correctness. Because a publication is one epoch behind, a fast worker never
waits more than one sync interval for a slow one; after a restart, when a peer is more than one
epoch behind (or its wanted publication was already pruned because it ran ahead), nobody waits:
the newest (or oldest kept) publication is used.

Only metrics whose merge is idempotent can be shared this way (``CoverageSuite.not_shareable``):
a whole state is merged at every sync point.

Example (the file name of a publication)::

    >>> publication_name(12)
    'e00000012.pt'
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from neurofuzz.corpus.entry import Entry
from neurofuzz.corpus.lock import live_writer
from neurofuzz.corpus.shards import shard_dir, shard_of

SYNC_DIR = "sync"
FINAL = "final.pt"
KEEP = 6  # publications kept per worker (a peer is at most a few epochs behind)


def publication_name(epoch: int) -> str:
    return f"e{int(epoch):08d}.pt"


def _save(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_publication(path: Path) -> dict[str, Any] | None:
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None


def published_epochs(shard: Path) -> list[int]:
    """Epochs of the publications a worker has kept, ascending."""
    try:
        names = os.listdir(shard / SYNC_DIR)
    except FileNotFoundError:
        return []
    return sorted(int(n[1:-3]) for n in names if n.startswith("e") and n.endswith(".pt") and n[1:-3].isdigit())


def latest_publication(shard: Path) -> dict[str, Any] | None:
    """The newest publication of the worker whose shard is ``shard`` (its final one if it has
    one and it is the newest), or None."""
    d, have = shard / SYNC_DIR, published_epochs(shard)
    final = read_publication(d / FINAL)
    last = read_publication(d / publication_name(have[-1])) if have else None
    if final is not None and (last is None or final["epoch"] >= last["epoch"]):
        return final
    return last


class WorkerSync:
    """The sync of worker ``k`` of ``n`` in campaign ``campaign`` (see the module docstring).

    Args:
        every: iterations between sync points.
        wait_s: longest wait for a live peer's publication.
        parent_pid: the coordinator's pid; when it is gone the worker checkpoints and stops
            (None: no check, e.g. a worker run by hand or by Ray).
    """

    def __init__(self, campaign: str | Path, k: int, n: int, *, every: int, wait_s: float = 120.0,
                 parent_pid: int | None = None) -> None:
        self.campaign, self.k, self.n = Path(campaign), int(k), int(n)
        self.every, self.wait_s, self.parent_pid = max(1, int(every)), float(wait_s), parent_pid
        self.peers = [j for j in range(1, self.n + 1) if j != self.k]
        self.cursors = {j: 0 for j in [0, *self.peers]}  # largest id imported from each shard
        self.dir = shard_dir(self.campaign, self.k) / SYNC_DIR
        self._readers: dict[int, Any] = {}
        self.stop_file: Path | None = None  # its existence asks the worker to checkpoint and stop
        self.seconds = self.wait_seconds = 0.0
        self.imported = self.timeouts = self.syncs = 0

    # ------------------------------------------------------------------ peers' shards
    def _reader(self, j: int) -> Any:
        r = self._readers.get(j)
        if r is None:
            from neurofuzz.corpus import CampaignStore

            path = self.campaign if j == 0 else shard_dir(self.campaign, j)
            r = self._readers[j] = CampaignStore._reader(path, True)
        return r

    def foreign(self, id: int) -> Entry | None:
        """An entry of another shard by id (the store's ``foreign`` hook)."""
        j = shard_of(id)
        if j == self.k or (j != 0 and j not in self.peers):
            return None
        found = self._reader(j)._query(id=id)
        return found[0] if found else None

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()

    # ------------------------------------------------------------------ campaign hooks
    def attach(self, c: Any) -> None:
        c.store.foreign = self.foreign

    def start(self, c: Any) -> None:
        """A new worker: import the seeds and the seeds' coverage from the main store, publish epoch 0."""
        main = self._reader(0)
        self._import(c, 0, main.index.rows_between(0, 10**18), queue_only=False)
        st = main.load_state("fuzzer", None)
        if st is not None:
            c.suite.merge_state(st["coverage"])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.publish(c, 0)

    def restore(self, c: Any, state: dict[str, Any] | None) -> None:
        """A resumed worker: put back into the queue what it had imported by its checkpoint (the
        scheduler and coverage state already hold it); later finds are imported at the next sync."""
        if state:
            self.cursors.update({int(j): int(v) for j, v in state["cursors"].items()})
            f = state.get("figures", {})
            self.syncs, self.imported, self.timeouts = (int(f.get(k, 0)) for k in ("syncs", "imported", "timeouts"))
            self.seconds, self.wait_seconds = float(f.get("sync_seconds", 0)), float(f.get("wait_seconds", 0))
        for j, hi in sorted(self.cursors.items()):
            if hi:
                self._import(c, j, self._reader(j).index.rows_between(0, hi), queue_only=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / FINAL).unlink(missing_ok=True)  # running again: the old final publication is stale

    def state_dict(self) -> dict[str, Any]:
        return {"cursors": {str(j): v for j, v in self.cursors.items()}, "figures": self.figures()}

    def interrupted(self) -> bool:
        """The coordinator is gone, or asked every worker to stop (the stop file)."""
        orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
        return orphaned or (self.stop_file is not None and self.stop_file.exists())

    def after_step(self, c: Any) -> None:
        if self.interrupted():
            c.signal, c.loop.deadline = c.signal or signal.SIGTERM, 0.0  # checkpoint and stop
        elif c.counters.iterations % self.every == 0:
            self.exchange(c)  # (a wait inside it ends early when interrupted; the next step stops)

    def finish(self, c: Any) -> None:
        """At the end of a run: the final publication (peers stop waiting for this worker)."""
        self.publish(c, c.counters.iterations // self.every, final=True)
        self.close()

    # ------------------------------------------------------------------ the exchange
    def exchange(self, c: Any) -> None:
        t0 = time.perf_counter()
        e = c.counters.iterations // self.every
        self.publish(c, e)
        for j in self.peers:
            pub = self._wait_for(j, e - 1)
            if pub is not None:
                self._absorb(c, j, pub)
        for old in sorted(self.dir.glob("e*.pt"))[:-KEEP]:
            old.unlink(missing_ok=True)
        self.syncs += 1
        self.seconds += time.perf_counter() - t0

    def publish(self, c: Any, epoch: int, final: bool = False) -> None:
        obj = {"epoch": int(epoch), "worker": self.k, "last_id": int(c.loop.max_id), "final": final,
               "coverage": c.suite.state_dict(), "counters": c.counters.to_dict(), "queue_size": len(c.scheduler),
               "stop_reason": c.stop_reason if final else "", "pid": os.getpid(), "time": float(c.campaign_time()),
               "sync": self.figures()}
        _save(self.dir / (FINAL if final else publication_name(epoch)), obj)

    def figures(self) -> dict[str, float]:
        return {"syncs": self.syncs, "sync_seconds": round(self.seconds, 3), "wait_seconds": round(self.wait_seconds, 3),
                "imported": self.imported, "timeouts": self.timeouts}

    def _wait_for(self, j: int, epoch: int) -> dict[str, Any] | None:
        if epoch < 0:
            return None
        shard = shard_dir(self.campaign, j)
        want, t0, pause = shard / SYNC_DIR / publication_name(epoch), time.monotonic(), 0.002
        while True:
            pub = read_publication(want)
            if pub is not None:
                return pub
            final = read_publication(shard / SYNC_DIR / FINAL)
            if final is not None:
                return final  # that peer stopped before this epoch
            have = published_epochs(shard)  # in lock step a peer has one of epoch-1 .. epoch+4; not so
            if have and have[0] > epoch:  # after a restart (here or there): do not wait for what will not come
                return read_publication(shard / SYNC_DIR / publication_name(have[0])) or latest_publication(shard)
            if have and have[-1] < epoch - 1:
                return latest_publication(shard)
            started = (shard / "index.sqlite").is_file()
            if started and not live_writer(shard):  # died: read it as far as it got
                return read_publication(shard / SYNC_DIR / FINAL) or latest_publication(shard)
            waited = time.monotonic() - t0
            if waited >= self.wait_s or self.interrupted():
                self.timeouts += 1
                return latest_publication(shard) if started else None
            time.sleep(pause)
            self.wait_seconds += pause
            pause = min(pause * 2, 0.05)

    def _absorb(self, c: Any, j: int, pub: dict[str, Any]) -> None:
        hi = int(pub["last_id"])
        if hi > self.cursors[j]:
            self._import(c, j, self._reader(j).index.rows_between(self.cursors[j], hi), queue_only=False)
        c.suite.merge_state(pub["coverage"])

    def _import(self, c: Any, j: int, rows: list[dict[str, Any]], *, queue_only: bool) -> None:
        """Peer entries into the queue (and, unless ``queue_only``, the scheduler); failures mark
        their (root, oracle, class) as stored so that the worker does not store it again."""
        reader = self._reader(j)
        for row in rows:
            e = reader._entry(row)
            self.cursors[j] = max(self.cursors[j], e.id)
            if e.kind == "failure":
                c.loop.failure_keys.add((e.root, e.oracle, e.pred))
                continue
            if e.id in c.queue:
                continue
            c.queue.add(c.queue.record_of(e, c.store))
            if not queue_only:
                c.scheduler.add(e.id, gain=c.loop.priority(e.gains), root=e.root)
                self.imported += j != 0  # the seeds are not a peer's finds
