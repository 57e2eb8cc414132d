"""Several workers fuzzing one campaign: the worker side and the coordinator.

A campaign made with ``neurofuzz fuzz --workers N`` is a main store (the seeds, the profile, the
setup; :mod:`neurofuzz.corpus.shards`) and one shard per worker. The **coordinator** takes in the
seeds, starts the N workers through a *launcher* (worker processes on this machine, or Ray actors:
:mod:`neurofuzz.fuzzer.commands.workers`), restarts a worker that dies, and writes the campaign's
``fuzzer_stats`` and ``plot_data`` from the workers' sync publications (coverage: the union of
their maps; counters: summed, the fault-revealing sets united). Each **worker** is a
:class:`~neurofuzz.fuzzer.campaign.Campaign` over its shard with a
:class:`~neurofuzz.fuzzer.sync.WorkerSync`: its own RNG stream (:func:`worker_seed`), its own
entries, its own transaction log and checkpoints, so it resumes on its own.

Budgets: ``seconds`` and ``plateau`` hold for every worker; ``iterations`` and ``mutants`` are the
campaign's total, split evenly (:func:`split_budget`).

Example::

    >>> split_budget(Budget(mutants=1000, seconds=60), 3)
    Budget(seconds=60.0, iterations=0, mutants=334, plateau_seconds=0.0)
    >>> worker_seed(0, 1) != worker_seed(0, 2), worker_seed(0, 1) == worker_seed(0, 1)
    (True, True)
    >>> worker_device("cuda", 3, gpus=2), worker_device("auto", 1, gpus=0), threads_per_worker(4, cores=2)
    ('cuda:0', 'cpu', 1)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from neurofuzz.corpus.shards import SHARD_STRIDE, shard_dir
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.stats import CampaignStats, Counters, MutatorStats
from neurofuzz.fuzzer.sync import latest_publication
from neurofuzz.ground.errors import UserError

MAX_WORKERS = 256


def worker_seed(seed: int, k: int) -> int:
    """Worker ``k``'s RNG seed, derived from the campaign seed (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(2, dtype=np.uint64)[0] >> 1)


def split_budget(b: Budget, n: int) -> Budget:
    return dataclasses.replace(b, iterations=math.ceil(b.iterations / n) if b.iterations else 0,
                               mutants=math.ceil(b.mutants / n) if b.mutants else 0)


def threads_per_worker(n: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``n`` workers do not oversubscribe the cores."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, n))


def worker_device(spec: str, k: int, *, gpus: int) -> str:
    """Device of worker ``k`` (1-based): ``cuda`` / ``auto`` spread the workers over the GPUs
    (``auto`` is the CPU without one); an explicit ``cuda:N`` or ``cpu`` holds for all."""
    s = (spec or "cpu").strip().lower()
    if s in ("cuda", "auto"):
        if gpus > 0:
            return f"cuda:{(k - 1) % gpus}"
        if s == "auto":
            return "cpu"
    return s


def check_workers(n: int, config: FuzzConfig) -> None:
    """Refuse (one line) a worker count out of range or a metric workers cannot share."""
    from neurofuzz.coverage.suite import METRICS, metric_kind

    if not 1 <= n <= MAX_WORKERS:
        raise UserError(f"--workers must lie in [1, {MAX_WORKERS}], got {n}")
    kinds = {m: metric_kind(m, p) for m, p in config.metrics.items()}
    bad = [m for m, k in kinds.items() if k in METRICS and not getattr(METRICS[k], "idempotent_merge", True)]
    if bad:
        raise UserError(f"metric(s) {', '.join(bad)} cannot be shared between workers (their merge adds "
                        "populations, so exchanging whole states counts inputs twice); leave them out of [metrics]")


# ---------------------------------------------------------------------------- the worker side
def open_worker(campaign: str | Path, k: int, target: Any, *, budget: Budget | None, parent_pid: int | None = None,
                resources: dict[str, Any] | None = None, monitor: Any = None, wait_s: float = 120.0) -> Any:
    """Worker ``k``'s campaign over its shard: resumed if the shard has a checkpoint, else created
    (the seeds and their coverage come from the main store). Call ``run()`` on it."""
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.coverage import CoverageSuite, NeuronProfile
    from neurofuzz.fuzzer.campaign import STATE, Campaign
    from neurofuzz.fuzzer.sync import WorkerSync

    campaign = Path(campaign).absolute()
    main = CampaignStore._reader(campaign, True)  # the main store alone (not its shards)
    try:
        setup, profile_state = main.setup, main.load_state("profile")
    finally:
        main.close()
    w = setup.get("workers")
    if not w:
        raise UserError(f"campaign {campaign} was not made with --workers; resume it without --worker")
    n = int(w["count"])
    if not 1 <= k <= n:
        raise UserError(f"campaign {campaign} has workers 1..{n}; --worker {k} is not one of them")
    sync = WorkerSync(campaign, k, n, every=int(w["sync_every"]), parent_pid=parent_pid, wait_s=wait_s)
    d = shard_dir(campaign, k)
    if (d / "state" / f"{STATE}.pt").is_file():
        return Campaign.resume(d, target, resources=resources, monitor=monitor, budget=budget, sync=sync)
    config = FuzzConfig.from_dict(setup["config"])
    config = dataclasses.replace(config, seed=worker_seed(config.seed, k),
                                 budget=budget if budget is not None else split_budget(config.budget, n))
    profile = NeuronProfile.from_state_dict(profile_state)
    suite = CoverageSuite.default(target, profile, config.metrics)
    shard_setup = {**setup, "config": config.to_dict(), "worker": k, "workers": w}
    store = CampaignStore.create(d, setup=shard_setup, mode="force", fsync=config.fsync_every_write,
                                 id_base=k * SHARD_STRIDE)
    try:
        store.save_state("profile", profile_state)
        fz = Campaign(target, suite, config, store, resources=resources, monitor=monitor, sync=sync)
        sync.start(fz)
        fz.checkpoint()
    except BaseException:
        store.close()
        raise
    return fz


# ---------------------------------------------------------------------------- the coordinator
class Launcher(Protocol):
    def start(self, k: int, budget: Budget) -> None: ...
    def poll(self) -> dict[int, int | None]: ...  # worker -> exit status (None: running)
    def stop(self) -> None: ...  # ask every worker to checkpoint and stop
    def close(self) -> None: ...


def merge_counters(parts: list[Counters]) -> Counters:
    """The campaign's counters from the workers': numbers summed, times maxed, sets united.
    (Per-mutator ``new_pairs`` are summed too, so a pair two workers both found counts twice there;
    the campaign's ``failing_pairs`` is the union and counts it once.)"""
    out = Counters()
    first = [c.first_failure for c in parts if c.first_failure >= 0]
    for c in parts:
        for f in ("iterations", "mutants", "valid", "invalid", "retained", "failing"):
            setattr(out, f, getattr(out, f) + getattr(c, f))
        for f in ("failures_total", "failures_stored"):
            d = getattr(out, f)
            for o, v in getattr(c, f).items():
                d[o] = d.get(o, 0) + v
        for name, m in c.per_mutator.items():
            acc = out.mutator(name)
            for f in dataclasses.fields(MutatorStats):
                setattr(acc, f.name, getattr(acc, f.name) + getattr(m, f.name))
        out.failing_pairs |= c.failing_pairs
        out.confusions |= c.confusions
        out.elapsed, out.last_find = max(out.elapsed, c.elapsed), max(out.last_find, c.last_find)
        out.seed_failures = max(out.seed_failures, c.seed_failures)  # the seeds are the campaign's, not a worker's
    out.first_failure = min(first) if first else -1.0
    return out


class Coordinator:
    """Runs ``n`` workers of the campaign ``main`` (a :class:`Campaign` over the main store, seeds
    taken in) with ``launcher`` until they finish; restarts a worker that dies (at most
    ``max_restarts`` times each); writes the campaign's stats every ``stats_interval`` seconds."""

    def __init__(self, main: Any, n: int, launcher: Launcher, *, budget: Budget, max_restarts: int = 3,
                 poll_s: float = 0.2) -> None:
        self.main, self.n, self.launcher, self.budget = main, n, launcher, budget
        self.max_restarts, self.poll_s = max_restarts, poll_s
        self.restarts = {k: 0 for k in range(1, n + 1)}
        self.exit = {k: None for k in range(1, n + 1)}  # final exit status of each worker
        self.signal = 0  # the signal that stopped the run
        self.stopping = False  # asked the workers to stop (a signal, or one worker's user error)
        self.stop_reason = ""
        self._start: dict[int, tuple[int, int, float]] = {}  # worker -> (mutants, iterations, time) at start
        self._t0 = time.monotonic()

    def _progress(self, k: int) -> tuple[Counters, float]:
        pub = latest_publication(shard_dir(self.main.store.path, k))
        return (Counters.from_dict(pub["counters"]), float(pub["time"])) if pub else (Counters(), 0.0)

    def _budget_left(self, k: int, t0: float) -> Budget:
        """What is left of worker ``k``'s share of this run's budget (after a restart)."""
        share, done = split_budget(self.budget, self.n), self._progress(k)[0]
        m0, it0, _ = self._start.get(k, (0, 0, 0.0))
        return dataclasses.replace(
            share, seconds=max(1e-3, share.seconds - (time.monotonic() - t0)) if share.seconds else 0,
            mutants=max(1, share.mutants - (done.mutants - m0)) if share.mutants else 0,
            iterations=max(1, share.iterations - (done.iterations - it0)) if share.iterations else 0)

    def run(self) -> dict[str, Any]:
        import signal as sig

        t0 = self._t0 = time.monotonic()
        for k in range(1, self.n + 1):
            c, t = self._progress(k)
            self._start[k] = (c.mutants, c.iterations, t)
        old = {}

        def _stop(signum: int, _frame: Any) -> None:
            if not self.signal:
                self.signal, self.stopping = signum, True
                self.launcher.stop()

        for s in (sig.SIGTERM, sig.SIGINT):
            try:
                old[s] = sig.signal(s, _stop)
            except ValueError:
                pass
        status = "crashed"
        try:
            for k in range(1, self.n + 1):
                self.launcher.start(k, split_budget(self.budget, self.n))
            last = -math.inf
            while any(v is None for v in self.exit.values()):
                time.sleep(self.poll_s)
                for k, rc in self.launcher.poll().items():
                    if rc is None or self.exit[k] is not None:
                        continue
                    if rc == 2 and not self.stopping:  # a user error: the same for every worker
                        self.stopping = True
                        self.launcher.stop()
                    if rc in (0, 2) or self.stopping or self.restarts[k] >= self.max_restarts or \
                            getattr(self.launcher, "restarts_itself", False):
                        self.exit[k] = rc  # done, a user error (restarting will not help), or given up
                    else:
                        self.restarts[k] += 1
                        self.launcher.start(k, self._budget_left(k, t0))
                if time.monotonic() - last >= self.main.config.stats_interval:
                    last = time.monotonic()
                    self.report("running")
            status = "interrupted" if self.stopping else "finished"
        finally:
            for s, h in old.items():
                sig.signal(s, h)
            if status == "crashed":
                self.launcher.stop()
            self.launcher.close()
            stats = self.report(status)
            self.main.checkpoint()
        reasons = [p.get("stop_reason", "") for p in self._pubs().values() if p.get("final")]
        self.stop_reason = "signal" if self.signal else next((r for r in reasons if r), "")
        return {**stats.to_flat(), "stop_reason": self.stop_reason, "path": str(self.main.store.path),
                "workers": self.worker_table()}

    def _pubs(self) -> dict[int, dict[str, Any]]:
        out = {}
        for k in range(1, self.n + 1):
            p = latest_publication(shard_dir(self.main.store.path, k))
            if p is not None:
                out[k] = p
        return out

    def worker_table(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k, p in self._pubs().items():
            c = Counters.from_dict(p["counters"])
            out[f"w{k}"] = {"pid": p["pid"], "final": bool(p["final"]), "exit": self.exit.get(k),
                            "restarts": self.restarts.get(k, 0), "iterations": c.iterations, "mutants": c.mutants,
                            "retained": c.retained, "failing_pairs": len(c.failing_pairs), **p.get("sync", {})}
        return out

    def report(self, status: str) -> CampaignStats:
        """Write the campaign's ``fuzzer_stats`` / ``plot_data`` from the workers' latest publications."""
        from neurofuzz.fuzzer import __version__

        pubs = self._pubs()
        for p in pubs.values():
            self.main.suite.merge_state(p["coverage"])
        own = self.main.counters
        c = merge_counters([own] + [Counters.from_dict(p["counters"]) for p in pubs.values()])
        t = max([own.elapsed] + [float(p["time"]) for p in pubs.values()])
        rate = 0.0  # each worker's mutants per second of its own fuzzing time in this run, summed
        for k, p in pubs.items():
            m0, _, t0 = self._start.get(k, (0, 0, 0.0))
            dt = float(p["time"]) - t0
            rate += (Counters.from_dict(p["counters"]).mutants - m0) / dt if dt > 0 else 0.0
        st = CampaignStats(
            status=status, pid=os.getpid(), neurofuzz_version=__version__, run_time=round(t, 3),
            iterations=c.iterations, mutants=c.mutants, valid_mutants=c.valid, invalid_mutants=c.invalid,
            mutants_per_sec=round(rate, 2), queue_size=self.main.store.count("queue") + c.retained,
            retained=c.retained, failing_mutants=c.failing, failures_total=sum(c.failures_total.values()),
            failures_stored=sum(c.failures_stored.values()), seed_failures=c.seed_failures, seconds_since_last_find=round(t - c.last_find, 1),
            failing_seeds=len(c.failing_roots), failing_pairs=len(c.failing_pairs), confusions=len(c.confusions),
            time_to_first_failure=round(c.first_failure, 3),
            failures={o.name: c.failures_total.get(o.name, 0) for o in self.main.oracles},
            coverage={n: round(v, 6) for n, v in self.main.suite.values().items()}, per_mutator=dict(c.per_mutator))
        store = self.main.store
        store.write_stats(st.to_flat())
        store.append_plot(st.plot_row())
        store.set_meta("workers", self.worker_table())
        if self.main.monitor is not None:
            self.main.monitor.update(st.to_flat(), status)
        return st
