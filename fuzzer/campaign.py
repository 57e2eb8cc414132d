"""A fuzz campaign: create / resume / checkpoint / restore, seed intake, the setup record, run.

The campaign owns the store (:mod:`neurofuzz.corpus`), the setup record and the checkpoints; it
builds the components from the config and hands them to the :class:`~neurofuzz.fuzzer.loop.FuzzLoop`,
which runs one iteration at a time.

Resume contract. ``fuzzer_setup`` records everything a resume must match: the model (its spec as
given, the hash of its weights), the normalisation (mean, std), the bounds, the input shape, the
number of classes, the device kind, the whole config and the hash of the neuron profile.
:meth:`Campaign.resume` refuses a target that contradicts the record, with one line naming the
recorded value; :func:`resume_options` fills what the user left out from the record.

Budgets count from the start of each :meth:`Campaign.run` (a resumed run with ``--time 60``
fuzzes 60 more seconds, ``--iterations 10`` ten more iterations); budgets given on resume replace
the old ones, whatever their kind. The time budget is checked between mutation groups (at most
``ATTACK_GROUP`` mutants of an attack), so ``--time T`` overshoots by at most one group's time
plus one forward pass of the batch.

Counters are recorded in the store's index (one transaction) before every stats report and at
every checkpoint, and a resume starts from them, so ``fuzzer_stats`` and ``plot_data`` never run
backwards after a kill.

Example::

    >>> import tempfile
    >>> from neurofuzz.fuzzer.campaign import Campaign
    >>> from neurofuzz.fuzzer.config import FuzzConfig, Budget
    >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
    >>> x, y = load_digits32("test")
    >>> cfg = FuzzConfig(seed=1, mutators=[{"name": "gaussian_noise"}], budget=Budget(iterations=3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     fz = Campaign.create(d + "/camp", builtin_target(), x[:16], y[:16], cfg, profile_data=load_digits32("train")[0])
    ...     summary = fz.run()
    ...     fz.close()
    ...     summary["iterations"]
    3
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from neurofuzz.corpus import CampaignStore, check_replaceable
from neurofuzz.coverage import CoverageSuite, NeuronProfile
from neurofuzz.fuzzer import __version__
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.loop import FuzzLoop
from neurofuzz.fuzzer.oracles import build_oracles
from neurofuzz.fuzzer.queue import Queue, QueueEntry
from neurofuzz.fuzzer.schedulers import build_scheduler
from neurofuzz.fuzzer.seeds import check_model_outputs, setup_record, validate_seeds
from neurofuzz.fuzzer.stats import CampaignStats, Counters
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target
from neurofuzz.mutators import create

STATE = "fuzzer"  # the checkpoint blob: rng, scheduler, coverage, counters, last id
COUNTERS_META = "counters"  # counters recorded with each batch commit


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere). Called at
    each checkpoint: batches of varying size fragment the C heap."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Campaign:
    """Build one with :meth:`create` (new campaign) or :meth:`resume`, then call :meth:`run`."""

    def __init__(self, target: Target, suite: CoverageSuite, config: FuzzConfig, store: CampaignStore, *,
                 resources: dict[str, Any] | None = None, monitor: Any = None,
                 extra_oracles: list[Any] | None = None, sync: Any = None) -> None:
        self.target, self.suite, self.config, self.store, self.monitor = target, suite, config, store, monitor
        self.sync = sync  # a worker's WorkerSync (neurofuzz.fuzzer.sync), None for a lone campaign
        self.counters = Counters()
        self.queue = Queue(lambda eid: self.store.get(eid).load(), cache_mb=config.cache_mb)
        self.scheduler = build_scheduler(**config.scheduler)
        oracles = build_oracles(config.oracles, resources) + list(extra_oracles or [])
        mutators = [create(m["name"], **{k: v for k, v in m.items() if k != "name"}) for m in config.mutators]
        self.rng = torch.Generator().manual_seed(int(config.seed))
        self.loop = FuzzLoop(target=target, suite=suite, config=config, mutators=mutators, scheduler=self.scheduler,
                             oracles=oracles, queue=self.queue, store=store, counters=self.counters, rng=self.rng,
                             clock=self.campaign_time)
        self._t0 = time.monotonic()
        self._session_start = (0, 0, self._t0)  # iterations, mutants, monotonic time at run() start
        self._last_stats = -math.inf
        self._last_ckpt = time.monotonic()
        self.stop_reason = ""
        self.signal = 0
        if sync is not None:
            sync.attach(self)

    @property
    def oracles(self) -> list[Any]:
        return self.loop.oracles

    # ------------------------------------------------------------------ create / resume
    @classmethod
    def create(cls, path: str | Path, target: Target, seeds_x: Any, seeds_y: Any, config: FuzzConfig, *,
               profile: NeuronProfile | None = None, profile_data: Any = None, force: bool = False,
               resources: dict[str, Any] | None = None, reference: Callable | None = None, monitor: Any = None,
               setup_extra: dict[str, Any] | None = None, extra_oracles: list[Any] | None = None) -> "Campaign":
        """Start a new campaign in ``path`` (refused if it holds one, unless ``force``). With
        ``force`` the new campaign is built beside the old one, which is replaced only once the
        new one has started: a refused or failed start leaves the old campaign untouched."""
        resources = {"reference": reference, **(resources or {})}
        x, y = validate_seeds(seeds_x, seeds_y, target.bounds)
        n_classes = check_model_outputs(target, x, y)
        if profile is None:
            profile = NeuronProfile.from_data(target, profile_data if profile_data is not None else x)
        suite = CoverageSuite.default(target, profile, config.metrics)
        path = Path(path).absolute()
        setup = setup_record(target, config, profile, x, n_classes, setup_extra or {})
        build_at, existed = path, path.exists()
        if force and existed and path.is_dir() and any(path.iterdir()):
            check_replaceable(path)  # refuses a directory that is not a campaign, or one being fuzzed
            build_at = path.with_name(f".{path.name}.new-{os.getpid()}")
            shutil.rmtree(build_at, ignore_errors=True)
        store = CampaignStore.create(build_at, setup=setup, mode="new", fsync=config.fsync_every_write)
        try:
            store.save_state("profile", profile.state_dict())
            fz = cls(target, suite, config, store, resources=resources, monitor=monitor, extra_oracles=extra_oracles)
            fz._add_seeds(x, y)
            fz.checkpoint()
        except BaseException:
            store.close()  # nothing of the user's was saved yet: leave no half-made campaign behind
            if build_at != path or not existed:
                shutil.rmtree(build_at, ignore_errors=True)
            else:  # the user's empty directory stays
                for p in path.iterdir():
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            raise
        if build_at != path:
            store.close()
            _swap_in(build_at, path)
            fz.store = fz.loop.store = CampaignStore.open(path, fsync=config.fsync_every_write)
        return fz

    @classmethod
    def resume(cls, path: str | Path, target: Target, *, resources: dict[str, Any] | None = None,
               reference: Callable | None = None, monitor: Any = None, budget: Budget | None = None,
               extra_oracles: list[Any] | None = None, sync: Any = None) -> "Campaign":
        """Continue the campaign in ``path`` where it stopped; entries stored after the last
        checkpoint are re-read from disk, so nothing that was saved is lost. ``budget`` (if given)
        replaces the recorded budget."""
        resources = {"reference": reference, **(resources or {})}
        with CampaignStore.open(path, readonly=True) as ro:  # a refused resume touches nothing
            setup, has_profile = ro.setup, ro.has_state("profile")
        if not has_profile:
            raise UserError(f"campaign {path} has no neuron profile (state/profile.pt is missing); "
                            "restore it from a backup or start anew with --force")
        check_resume_target(setup, target, path)
        if setup.get("input_shape"):
            logits = target.probe(torch.zeros(1, *setup["input_shape"]))
            if setup.get("n_classes") not in (None, logits.shape[1]):
                raise UserError(f"campaign {path} was run with a model of {setup['n_classes']} classes; "
                                f"this model has {logits.shape[1]}: resume it with the recorded model")
        config = FuzzConfig.from_dict(setup["config"])
        if budget is not None:
            config.budget = budget
        store = CampaignStore.open(path)
        try:
            profile = NeuronProfile.from_state_dict(store.load_state("profile"))
            suite = CoverageSuite.default(target, profile, config.metrics)
            fz = cls(target, suite, config, store, resources=resources, monitor=monitor, extra_oracles=extra_oracles,
                     sync=sync)
            fz._restore()
        except BaseException:
            store.close()
            raise
        return fz

    # ------------------------------------------------------------------ seeds, checkpoint, restore
    def campaign_time(self) -> float:
        return self.counters.elapsed + (time.monotonic() - self._t0)

    def _add_seeds(self, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> None:
        misclassified = "misclassified" in self.config.oracle_names()
        kept = 0
        with self.suite:
            for i in range(0, len(x), batch):
                xb, yb = x[i : i + batch].to(self.target.device), y[i : i + batch]
                ev = self.suite.evaluate(xb)
                preds = ev.logits.argmax(1).cpu().tolist()
                self.suite.commit(ev)
                with self.store.batch():
                    for j, (xi, label, pred) in enumerate(zip(xb.cpu(), yb.tolist(), preds)):
                        gains = {n: int(g[j]) for n, g in ev.gains.items()}
                        if misclassified and pred != label:
                            e = self.store.add(xi, kind="failure", oracle="misclassified", label=label, pred=pred,
                                               gains=gains, extra={"seed_index": i + j})
                            self.loop.max_id = max(self.loop.max_id, e.id)
                            if not e.duplicate:
                                self.counters.failures_stored["misclassified"] = \
                                    self.counters.failures_stored.get("misclassified", 0) + 1
                                self.counters.seed_failures += 1
                            continue
                        e = self.store.add(xi, kind="queue", label=label, pred=pred, gains=gains,
                                           extra={"seed_index": i + j, "ref": "self", "affine_used": False})
                        if e.duplicate:
                            continue
                        self.queue.add(QueueEntry(e.id, label, e.id, pred, e.id, False), xi)
                        self.scheduler.add(e.id, gain=self.loop.priority(gains), root=e.id)
                        self.loop.max_id = max(self.loop.max_id, e.id)
                        kept += 1
        if kept == 0:
            raise UserError("no usable seed: every seed is misclassified by the model (or a duplicate); "
                            "check the labels and the model's input normalisation (--mean/--std)")

    def _record_counters(self) -> None:
        self.counters.elapsed = self.campaign_time()
        self._t0 = time.monotonic()
        self.store.set_meta(COUNTERS_META, self.counters.to_dict())

    def checkpoint(self) -> None:
        """Save coverage, scheduler, RNG and counters atomically; trim freed memory."""
        self.store.sync()
        last_id = self.loop.max_id
        with self.store.batch():
            self._record_counters()
        self.store.save_state(STATE, {"last_id": last_id, "rng": self.rng.get_state(),
                                      "scheduler": self.scheduler.state_dict(), "coverage": self.suite.state_dict(),
                                      "counters": self.counters.to_dict(),
                                      **({"sync": self.sync.state_dict()} if self.sync is not None else {}),
                                      **({"feedback": self.loop.adaptive.state_dict()} if self.loop.adaptive else {})})
        self._last_ckpt = time.monotonic()
        release_free_memory()

    def _restore(self) -> None:
        st = self.store.load_state(STATE, None)
        if st is None:
            raise UserError(f"campaign {self.store.path} has no checkpoint (state/{STATE}.pt); start anew with --force")
        self.rng.set_state(st["rng"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.suite.load_state_dict(st["coverage"])
        if self.loop.adaptive is not None and "feedback" in st:
            self.loop.adaptive.load_state_dict(st["feedback"])
        recorded = self.store.get_meta(COUNTERS_META, None)  # newer than the checkpoint after a kill
        c = Counters.from_dict(recorded if recorded is not None else st["counters"])
        self.counters.__dict__.update(c.__dict__)
        last_id = int(st["last_id"])
        if self.sync is not None:  # the peers' entries it had imported (seeds included)
            self.sync.restore(self, st.get("sync"))
        later = []
        for e in self.store.entries():
            self.loop.max_id = max(self.loop.max_id, e.id)
            if e.kind == "failure":
                self.loop.failure_keys.add((e.root, e.oracle, e.pred))
                continue
            self.queue.add(self.queue.record_of(e, self.store))
            if e.id > last_id:  # retained after the checkpoint: the scheduler and coverage learn it now
                later.append(e.id)
                self.scheduler.add(e.id, gain=self.loop.priority(e.gains), root=e.root)
                if e.parent is not None and e.parent in self.scheduler:
                    self.scheduler.credit(e.parent, 1)
        self.scheduler.retain(set(self.queue.ids()))  # entries deleted since the checkpoint
        with self.suite:
            for i in range(0, len(later), 256):
                self.suite.commit(self.suite.evaluate(self.queue.images(later[i : i + 256]).to(self.target.device)))
        self.counters.failures_stored = {o: self.store.count("failure", o) for o in self.store.oracles()}

    # ------------------------------------------------------------------ run
    def stats(self, status: str = "running") -> CampaignStats:
        c, t = self.counters, self.campaign_time()
        it0, m0, t0 = self._session_start
        run_t = time.monotonic() - t0
        return CampaignStats(
            status=status, pid=os.getpid(), neurofuzz_version=__version__, run_time=round(t, 3),
            iterations=c.iterations, mutants=c.mutants, valid_mutants=c.valid, invalid_mutants=c.invalid,
            mutants_per_sec=round((c.mutants - m0) / run_t, 2) if run_t > 0 else 0.0, queue_size=len(self.scheduler),
            retained=c.retained, failing_mutants=c.failing, failures_total=sum(c.failures_total.values()),
            failures_stored=sum(c.failures_stored.values()), seed_failures=c.seed_failures, seconds_since_last_find=round(t - c.last_find, 1),
            failing_seeds=len(c.failing_roots), failing_pairs=len(c.failing_pairs), confusions=len(c.confusions),
            time_to_first_failure=round(c.first_failure, 3),
            failures={o.name: c.failures_total.get(o.name, 0) for o in self.oracles},
            coverage={n: round(v, 6) for n, v in self.suite.values().items()}, per_mutator=dict(c.per_mutator))

    def report(self, status: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_stats < self.config.stats_interval:
            return
        self._last_stats = now
        self.store.sync()  # what fuzzer_stats reports as found is on disk before it says so
        with self.store.batch():  # counters on disk first: the plot can never run ahead of them
            self._record_counters()
        st = self.stats(status)
        self.store.write_stats(st.to_flat())
        self.store.append_plot(st.plot_row())
        if self.monitor is not None:
            self.monitor.update(st.to_flat(), status)

    def _should_stop(self) -> bool:
        b, c = self.config.budget, self.counters
        it0, m0, t0 = self._session_start
        if self.signal:
            self.stop_reason = "signal"
        elif b.iterations and c.iterations - it0 >= b.iterations:
            self.stop_reason = "iterations"
        elif b.mutants and c.mutants - m0 >= b.mutants:
            self.stop_reason = "mutants"
        elif b.seconds and time.monotonic() - t0 >= b.seconds:
            self.stop_reason = "time"
        elif b.plateau_seconds and self.campaign_time() - c.last_find >= b.plateau_seconds:
            self.stop_reason = "plateau"
        return bool(self.stop_reason)

    def run(self) -> dict[str, Any]:
        """Run until a budget is reached (or SIGINT / SIGTERM: :attr:`signal` tells which);
        checkpoint and return a summary (the flat stats plus ``stop_reason`` and ``path``)."""
        now = time.monotonic()
        self._session_start = (self.counters.iterations, self.counters.mutants, now)
        self.stop_reason, self.signal = "", 0
        b = self.config.budget
        self.loop.deadline = now + b.seconds if b.seconds else math.inf
        old = {}

        def _request_stop(signum: int, _frame: Any) -> None:
            self.signal = signum
            self.loop.deadline = 0.0

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, _request_stop)
            except ValueError:  # not in the main thread
                pass
        status = "crashed"
        try:
            with self.suite:
                self.report("running", force=True)
                while not self._should_stop():
                    self.loop.step()
                    if self.sync is not None:
                        self.sync.after_step(self)
                    self.report("running")
                    if time.monotonic() - self._last_ckpt >= self.config.checkpoint_interval:
                        self.checkpoint()
            status = "finished" if self.stop_reason != "signal" else "interrupted"
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self.checkpoint()
            self.report(status, force=True)
            if self.sync is not None:
                self.sync.finish(self)
        return {**self.stats(status).to_flat(), "stop_reason": self.stop_reason, "path": str(self.store.path)}

    def close(self) -> None:
        self.store.close()


def check_resume_target(setup: dict[str, Any], target: Target, path: Any) -> None:
    """Refuse a target that contradicts the campaign's record (one line naming the recorded value)."""
    from neurofuzz.fuzzer.seeds import target_record

    now = target_record(target)
    names = {"model_hash": "model weights (hash)", "mean": "--mean", "std": "--std", "bounds": "--bounds"}
    for key, what in names.items():
        if key in setup and setup[key] != now[key]:
            model = f" (model {setup['model']!r})" if setup.get("model") else ""
            rec = "none" if setup[key] is None else repr(setup[key])
            raise UserError(f"campaign {path} was run with {what} {rec}{model}, not {now[key]!r}; "
                            "resume it with the recorded value (or leave the option out) or start a new campaign")


def resume_options(setup: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Target options for a resume: each one the user left out (``None``) comes from the record."""
    out = dict(given)
    for key in ("model", "weights", "key_file", "mean", "std", "bounds"):
        if out.get(key) is None and setup.get(key) is not None:
            out[key] = setup[key]
    return out


def _swap_in(new: Path, path: Path) -> None:
    """Replace the campaign at ``path`` by the one built at ``new`` (two renames, then delete)."""
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


Fuzzer = Campaign  # the name used before the loop / campaign split
