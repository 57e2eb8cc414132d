"""The fuzz loop.

Each iteration the scheduler picks ``seeds_per_batch`` queue entries and how many mutants each
gets (``seeds_per_batch * mutants_per_seed`` in all); each picked seed gets one mutator, drawn
by the mutators' yield so far (inputs retained plus failures found per mutant; 20% uniform) or
uniformly (``mutator_choice``), an affine one only if its lineage has not used one yet; all
mutants are checked against DeepHunter's validity rule, then evaluated in **one** batched
forward pass that also measures every coverage metric. Oracles are checked first: failing inputs go to
``failures/<oracle>/`` and never into the queue; the others are retained when they raise coverage
(per-input novelty, batch order) on a feedback metric. Coverage of every valid mutant is then
committed. Everything random comes from one ``torch.Generator`` whose state is checkpointed.

Failures: every failure is counted; by default one is *stored* when it is the first for its
(root seed, oracle, predicted class) or when it raises coverage, so a strong attack cannot flood
the disk; ``save_all_failures=True`` stores every distinct one.

Example::

    >>> import tempfile
    >>> from neurofuzz.fuzzer.loop import Fuzzer
    >>> from neurofuzz.fuzzer.config import FuzzConfig, Budget
    >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
    >>> x, y = load_digits32("test")
    >>> cfg = FuzzConfig(seed=1, mutators=[{"name": "gaussian_noise"}], budget=Budget(iterations=3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     fz = Fuzzer.create(d + "/camp", builtin_target(), x[:16], y[:16], cfg, profile_data=load_digits32("train")[0])
    ...     summary = fz.run()
    ...     summary["iterations"]
    3
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from neurofuzz.corpus import CampaignStore
from neurofuzz.coverage import CoverageSuite, NeuronProfile
from neurofuzz.fuzzer import __version__
from neurofuzz.fuzzer.config import FuzzConfig
from neurofuzz.fuzzer.errors import UserError
from neurofuzz.fuzzer.oracles import OracleContext, build_oracle
from neurofuzz.fuzzer.schedulers import build_scheduler
from neurofuzz.fuzzer.target import Target
from neurofuzz.mutators import Mutator, create
from neurofuzz.mutators.constraints import check as validity_check

STATE = "fuzzer"


@dataclass
class QueueInfo:
    """What the loop keeps in memory per queue entry."""

    x: torch.Tensor  # [C, H, W]
    label: int
    root: int
    root_pred: int
    ref: int  # id of the entry whose image is the validity reference (root, or last affine mutant)
    affine_used: bool
    chain: list[dict[str, Any]]


@dataclass
class Counters:
    iterations: int = 0
    mutants: int = 0
    valid: int = 0
    invalid: int = 0
    retained: int = 0
    failing: int = 0  # distinct failing mutants (a mutant flagged by two oracles counts once)
    failures_total: dict[str, int] = field(default_factory=dict)
    failures_stored: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0  # run time of earlier sessions of this campaign
    last_find: float = 0.0  # campaign time of the last retained input
    per_mutator: dict[str, list[int]] = field(default_factory=dict)  # name -> [mutants, retained, failures]


def validate_seeds(x: Any, y: Any, bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Check seed images and labels at the boundary; return float32 [N,C,H,W], int64 [N]."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise UserError(f"seeds must be an array [N, C, H, W], got shape {tuple(getattr(x, 'shape', ()))}; "
                        "add a channel axis for grayscale images")
    if not (x.dtype.is_floating_point or x.dtype == torch.uint8):
        raise UserError(f"seeds must be float (or uint8) images, got dtype {x.dtype}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0 * (bounds[1] - bounds[0]) + bounds[0]
    x = x.float().contiguous()
    if len(x) == 0:
        raise UserError("the seed set is empty; give at least one seed image")
    if not torch.isfinite(x).all():
        raise UserError("seeds contain NaN or Inf values; clean the seed file")
    lo, hi = float(x.min()), float(x.max())
    if lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6:
        raise UserError(f"seed values lie in [{lo:g}, {hi:g}], outside the bounds {list(bounds)}; "
                        "rescale the seeds or pass --bounds")
    if y is None:
        raise UserError("seed labels are missing; give labels (e.g. an .npz with arrays x and y)")
    y = torch.as_tensor(y)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise UserError(f"labels must be a 1-D integer array, got shape {tuple(y.shape)} dtype {y.dtype}")
    if len(y) != len(x):
        raise UserError(f"{len(x)} seeds but {len(y)} labels; give one label per seed")
    return x, y.long()


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere). Batches of
    varying size fragment the C heap; trimming at each checkpoint keeps a long campaign's resident
    memory flat once its corpus stops growing (measured in ``benchmarks/campaign.py``)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _remove_campaign(path: Path, *, keep_dir: bool) -> None:
    import shutil

    if keep_dir:
        for p in path.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


class Fuzzer:
    """A campaign: target, coverage suite, mutators, scheduler, oracles and an on-disk store.

    Build one with :meth:`create` (new campaign) or :meth:`resume` (continue a stopped one), then
    call :meth:`run`.
    """

    def __init__(self, target: Target, suite: CoverageSuite, config: FuzzConfig, store: CampaignStore,
                 *, reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 monitor: Any = None, extra_oracles: list[Any] | None = None) -> None:
        self.target = target
        self.suite = suite
        self.config = config
        self.store = store
        self.bounds = target.bounds
        self.mutators: list[Mutator] = [
            create(m["name"], **{k: v for k, v in m.items() if k != "name"}) for m in config.mutators
        ]
        self._non_affine = [i for i, m in enumerate(self.mutators) if m.kind != "affine"]
        self.scheduler = build_scheduler(**config.scheduler)
        self.oracles = [build_oracle(o, reference=reference) if o == "disagreement" else build_oracle(o)
                        for o in config.oracles]
        self.oracles += list(extra_oracles or [])  # ready-built oracles, e.g. DetectorMiss(detector)
        self.rng = torch.Generator().manual_seed(int(config.seed))
        self.queue: dict[int, QueueInfo] = {}
        self.failure_keys: set[tuple[int, str, int]] = set()
        self.counters = Counters()
        self.monitor = monitor
        self._t0 = time.monotonic()
        self._last_stats = -math.inf
        self._last_ckpt = time.monotonic()
        _release_free_memory()
        self._stop_reason = ""
        self._stop_requested = False
        self._max_id = 0  # largest entry id stored so far

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _setup_dict(target: Target, config: FuzzConfig, profile: NeuronProfile, extra: dict[str, Any]) -> dict[str, Any]:
        import cv2
        import scipy

        return {
            "config": config.to_dict(),
            "versions": {"neurofuzz": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__, "opencv": cv2.__version__, "python": platform.python_version()},
            "model_hash": target.hash(),
            "profile_hash": profile.hash(),
            "bounds": list(target.bounds),
            **extra,
        }

    @classmethod
    def create(cls, path: str | Path, target: Target, seeds_x: Any, seeds_y: Any, config: FuzzConfig, *,
               profile: NeuronProfile | None = None, profile_data: Any = None, force: bool = False,
               reference: Callable[[torch.Tensor], torch.Tensor] | None = None, monitor: Any = None,
               setup_extra: dict[str, Any] | None = None, extra_oracles: list[Any] | None = None) -> "Fuzzer":
        """Start a new campaign in ``path`` (refused if it is a non-empty directory, unless ``force``)."""
        config.validate()
        x, y = validate_seeds(seeds_x, seeds_y, target.bounds)
        target.probe(x[:2])
        if profile is None:
            profile = NeuronProfile.from_data(target, profile_data if profile_data is not None else x)
        suite = CoverageSuite.default(target, profile, config.metrics)
        path = Path(path)
        existed = path.exists()
        store = CampaignStore.create(path, setup=cls._setup_dict(target, config, profile, setup_extra or {}),
                                     mode="force" if force else "new", fsync=config.fsync_every_write)
        try:
            store.save_state("profile", profile.state_dict())
            fz = cls(target, suite, config, store, reference=reference, monitor=monitor, extra_oracles=extra_oracles)
            fz._add_seeds(x, y)
            fz.checkpoint()
        except BaseException:
            # nothing of the user's was saved yet: leave no half-made campaign behind
            store.close()
            _remove_campaign(path, keep_dir=existed)
            raise
        return fz

    @classmethod
    def resume(cls, path: str | Path, target: Target, *, reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
               monitor: Any = None, budget: Any = None, extra_oracles: list[Any] | None = None) -> "Fuzzer":
        """Continue the campaign in ``path`` where its last checkpoint left it; entries stored after
        that checkpoint are re-read from disk, so nothing that was saved is lost."""
        store = CampaignStore.open(path)
        try:
            setup = store.setup
            config = FuzzConfig.from_dict(setup["config"])
            if not config.fsync_every_write:
                store.close()
                store = CampaignStore.open(path, fsync=False)
            if budget is not None:
                config.budget = budget
            if setup.get("model_hash") and setup["model_hash"] != target.hash():
                raise UserError(f"campaign {path} was run with another model (hash {setup['model_hash']}); "
                                "resume it with the same model or start a new campaign")
            profile = NeuronProfile.from_state_dict(store.load_state("profile"))
            suite = CoverageSuite.default(target, profile, config.metrics)
            fz = cls(target, suite, config, store, reference=reference, monitor=monitor, extra_oracles=extra_oracles)
            fz._restore()
        except BaseException:
            store.close()
            raise
        return fz

    # ------------------------------------------------------------------ seeds and state
    def _campaign_time(self) -> float:
        return self.counters.elapsed + (time.monotonic() - self._t0)

    def _add_seeds(self, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> None:
        misclassified = "misclassified" in self.config.oracles
        kept = 0
        with self.suite:
            for i in range(0, len(x), batch):
                xb, yb = x[i : i + batch].to(self.target.device), y[i : i + batch]
                ev = self.suite.evaluate(xb)
                preds = ev.logits.argmax(1).cpu()
                self.suite.commit(ev)
                for j in range(len(xb)):
                    gains = {n: int(g[j]) for n, g in ev.gains.items()}
                    if misclassified and int(preds[j]) != int(yb[j]):
                        self._add(xb[j].cpu(), kind="failure", oracle="misclassified", label=int(yb[j]),
                                       pred=int(preds[j]), gains=gains, extra={"seed_index": i + j})
                        continue
                    e = self._add(xb[j].cpu(), kind="queue", label=int(yb[j]), pred=int(preds[j]), gains=gains,
                                       extra={"seed_index": i + j, "ref": None, "affine_used": False})
                    if e.duplicate:
                        continue
                    self._enqueue(e.id, xb[j].cpu(), int(yb[j]), e.id, int(preds[j]), e.id, False, [],
                                  self._priority(gains))
                    kept += 1
        if kept == 0:
            raise UserError("no usable seed: every seed is misclassified by the model (or a duplicate); "
                            "check the labels and the model's input normalisation")

    def _priority(self, gains: dict[str, int]) -> float:
        """Scheduler weight of an entry: its coverage gain on each feedback metric as a share of
        that metric's map (per mille), summed, so that a new boundary cell of NBC (2 per neuron)
        counts for more than a new KMNC section (k per neuron)."""
        return sum(1000.0 * gains.get(f, 0) / max(1, self.suite.metrics[f].n_cells) for f in self.config.feedback)

    def _add(self, x: torch.Tensor, **kw: Any) -> Any:
        e = self.store.add(x, **kw)
        self._max_id = max(self._max_id, e.id)
        return e

    def _enqueue(self, eid: int, x: torch.Tensor, label: int, root: int, root_pred: int, ref: int,
                 affine_used: bool, chain: list[dict[str, Any]], gain: float) -> None:
        self.queue[eid] = QueueInfo(x, label, root, root_pred, ref, affine_used, chain)
        self.scheduler.add(eid, gain=gain, root=root)

    def checkpoint(self) -> None:
        """Save coverage, scheduler, RNG and counters atomically."""
        self.store.sync()
        c = dataclasses.replace(self.counters, elapsed=self._campaign_time())
        self.store.save_state(STATE, {
            "last_id": self._max_id,
            "rng": self.rng.get_state(),
            "scheduler": self.scheduler.state_dict(),
            "coverage": self.suite.state_dict(),
            "counters": dataclasses.asdict(c),
        })
        self._last_ckpt = time.monotonic()

    def _restore(self) -> None:
        st = self.store.load_state(STATE, None)
        if st is None:
            raise UserError(f"campaign {self.store.path} has no checkpoint (state/{STATE}); start anew with --force")
        self.rng.set_state(st["rng"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.suite.load_state_dict(st["coverage"])
        self.counters = Counters(**st["counters"])
        last_id = int(st["last_id"])
        later: list[Any] = []
        for e in self.store.entries():
            self._max_id = max(self._max_id, e.id)
            if e.kind == "failure":
                self.failure_keys.add((e.root, e.oracle, e.pred))
                if e.id > last_id:
                    later.append(e)
                continue
            ex = e.extra or {}
            x = e.load()
            ref = e.id if ex.get("ref") == "self" else int(ex["ref"]) if isinstance(ex.get("ref"), int) else e.root
            self.queue[e.id] = QueueInfo(x, e.label, e.root, self._root_pred(e), ref, bool(ex.get("affine_used")), e.chain)
            if e.id > last_id:
                later.append(e)
                self.scheduler.add(e.id, gain=self._priority(e.gains), root=e.root)
                if e.parent is not None:
                    self.scheduler.credit(e.parent, 1)
        # coverage reached by entries saved after the checkpoint
        with self.suite:
            for i in range(0, len(later), 256):
                xb = torch.stack([e.load() for e in later[i : i + 256]]).to(self.target.device)
                self.suite.commit(self.suite.evaluate(xb))
        self.counters.retained = self.store.count("queue") - sum(1 for q in self.queue.values() if not q.chain)
        self.counters.failures_stored = {}
        for e in self.store.entries(kind="failure"):
            if e.chain:
                self.counters.failures_stored[e.oracle] = self.counters.failures_stored.get(e.oracle, 0) + 1

    def _root_pred(self, e: Any) -> int:
        if e.root == e.id:
            return e.pred
        root = self.queue.get(e.root)
        return root.root_pred if root is not None else self.store.get(e.root).pred

    # ------------------------------------------------------------------ one iteration
    def _pick_mutator(self, info: QueueInfo) -> int:
        allowed = self._non_affine if info.affine_used else range(len(self.mutators))
        allowed = list(allowed)
        if not allowed:
            return -1
        if not self.config.guided or self.config.mutator_choice == "uniform":
            return allowed[int(torch.randint(len(allowed), (1,), generator=self.rng))]
        # adaptive: yield-weighted (inputs retained + failures found per mutant, +1/+2 prior),
        # mixed with 20% uniform so that no mutator starves
        stats = [self.counters.per_mutator.get(self.mutators[k].name, [0, 0, 0]) for k in allowed]
        y = torch.tensor([(r + f + 1) / (m + 2) for m, r, f in stats], dtype=torch.float64)
        w = 0.8 * y / y.sum() + 0.2 / len(allowed)
        return allowed[int(torch.multinomial(w, 1, generator=self.rng))]

    def step(self) -> dict[str, int]:
        """One iteration: plan, mutate, validate, evaluate, judge, retain, commit.

        Per-input work is done per *seed* (at most ``seeds_per_batch`` images stacked and moved to
        the device once) and spread over its mutants with ``repeat_interleave``; Python touches
        single mutants only when they are stored."""
        cfg = self.config
        dev = self.target.device
        plan = self.scheduler.plan(cfg.seeds_per_batch, cfg.mutants_per_seed, self.rng)
        by_mut: dict[int, list[tuple[int, int]]] = {}
        for eid, n in plan:
            k = self._pick_mutator(self.queue[eid])
            if k >= 0:
                by_mut.setdefault(k, []).append((eid, n))
        xs, seeds, counts, groups = [], [], [], []  # groups: (mutator index, result, first row)
        rows = 0
        for k in sorted(by_mut):
            m = self.mutators[k]
            eids = [eid for eid, _ in by_mut[k]]
            n = torch.tensor([c for _, c in by_mut[k]], device=dev)
            xb = torch.stack([self.queue[e].x for e in eids]).to(dev).repeat_interleave(n, 0)
            yb = torch.tensor([self.queue[e].label for e in eids], device=dev).repeat_interleave(n)
            res = m.mutate(xb, self.rng, bounds=self.bounds, target=self.target if m.needs_model else None,
                           y=yb if m.needs_model else None)
            xs.append(res.x)
            groups.append((k, res, rows))
            seeds += eids
            counts.append(n)
            rows += len(xb)
            self.counters.per_mutator.setdefault(m.name, [0, 0, 0])[0] += len(xb)
        x = torch.cat(xs)
        n_rows = torch.cat(counts)
        row_seed = torch.arange(len(seeds), device=dev).repeat_interleave(n_rows)  # seed slot of each row
        row_group = torch.arange(len(groups), device=dev).repeat_interleave(
            torch.tensor([len(g[1].x) for g in groups], device=dev))
        affine = torch.tensor([self.mutators[k].kind == "affine" for k, _, _ in groups], device=dev)[row_group]
        # validity against each lineage's reference image (affine mutants become their own reference)
        if cfg.constraint.enabled:
            refs = torch.stack([self.queue[self.queue[e].ref].x for e in seeds]).to(dev)[row_seed]
            ok = validity_check(refs, x, alpha=cfg.constraint.alpha, beta=cfg.constraint.beta, bounds=self.bounds,
                                ssim_min=cfg.constraint.ssim or None) | affine
        else:
            ok = torch.ones(len(x), dtype=torch.bool, device=dev)
        self.counters.iterations += 1
        self.counters.mutants += len(x)
        n_valid = int(ok.sum())
        self.counters.valid += n_valid
        self.counters.invalid += len(x) - n_valid
        if n_valid == 0:
            return {"mutants": len(x), "valid": 0, "retained": 0, "failures": 0}
        xv = x[ok]
        slot = row_seed[ok]  # seed slot of each valid row
        ev = self.suite.evaluate(xv)
        labels = torch.tensor([self.queue[e].label for e in seeds], device=dev)[slot]
        root_preds = torch.tensor([self.queue[e].root_pred for e in seeds], device=dev)[slot]
        ctx = OracleContext(x=xv, logits=ev.logits, labels=labels, root_preds=root_preds)
        flags = {o.name: o.check(ctx) for o in self.oracles}
        failing = torch.zeros(len(xv), dtype=torch.bool, device=dev)
        for f in flags.values():
            failing |= f
        gain = ev.total_gain(cfg.feedback)
        keep = (~failing) & (gain > 0) & cfg.guided
        self.suite.commit(ev)
        stored = (keep | failing).nonzero().flatten()
        retained = n_fail = 0
        if len(stored):
            rows_ok = ok.nonzero().flatten()[stored]  # row index of each stored input in the batch
            with self.store.batch():  # one transaction and one sync for the whole iteration
                retained, n_fail = self._store_results(
                    x=xv[stored].cpu(), rows=rows_ok.tolist(), seeds=[seeds[i] for i in slot[stored].tolist()],
                    groups=[groups[g] for g in row_group[rows_ok].tolist()], keep=keep[stored].tolist(),
                    flags={o: f[stored].tolist() for o, f in flags.items()}, preds=ctx.preds[stored].tolist(),
                    gains={n: g[stored].tolist() for n, g in ev.gains.items()}, gain=gain[stored].tolist())
        self.counters.retained += retained
        self.counters.failing += n_fail
        return {"mutants": len(x), "valid": n_valid, "retained": retained, "failures": n_fail}

    def _store_results(self, *, x, rows, seeds, groups, keep, flags, preds, gains, gain) -> tuple[int, int]:
        """Store the retained and failing inputs of one iteration (lists, one item per input)."""
        cfg = self.config
        now = self._campaign_time()
        retained = n_fail = 0
        for j, (row, parent, (k, res, first)) in enumerate(zip(rows, seeds, groups)):
            q, m = self.queue[parent], self.mutators[k]
            chain = q.chain + [{"mutator": m.name, "params": res.params_of(row - first), "config": m.config}]
            g = {n: v[j] for n, v in gains.items()}
            if keep[j]:
                is_aff = m.kind == "affine"
                e = self._add(x[j], kind="queue", label=q.label, pred=preds[j], parent=parent, chain=chain, gains=g,
                              iteration=self.counters.iterations, time_found=now,
                              extra={"ref": "self" if is_aff else q.ref, "affine_used": q.affine_used or is_aff})
                if e.duplicate:
                    continue
                ref = e.id if is_aff else q.ref  # an affine mutant is its descendants' reference
                self._enqueue(e.id, x[j], q.label, q.root, q.root_pred, ref, q.affine_used or is_aff, chain,
                              self._priority(g))
                self.scheduler.credit(parent, 1)
                self.counters.per_mutator[m.name][1] += 1
                retained += 1
                self.counters.last_find = now
                continue
            self.counters.per_mutator[m.name][2] += 1
            n_fail += 1
            for oname, f in flags.items():
                if not f[j]:
                    continue
                self.counters.failures_total[oname] = self.counters.failures_total.get(oname, 0) + 1
                key = (q.root, oname, preds[j])
                if cfg.save_all_failures or key not in self.failure_keys or gain[j] > 0:
                    e = self._add(x[j], kind="failure", oracle=oname, label=q.label, pred=preds[j], parent=parent,
                                  chain=chain, gains=g, iteration=self.counters.iterations, time_found=now)
                    if not e.duplicate:
                        self.failure_keys.add(key)
                        self.counters.failures_stored[oname] = self.counters.failures_stored.get(oname, 0) + 1
        return retained, n_fail

    # ------------------------------------------------------------------ run
    def stats(self) -> dict[str, Any]:
        c = self.counters
        t = self._campaign_time()
        run_t = time.monotonic() - self._t0
        out: dict[str, Any] = {
            "run_time": round(t, 3),
            "iterations": c.iterations,
            "mutants": c.mutants,
            "valid_mutants": c.valid,
            "invalid_mutants": c.invalid,
            "mutants_per_sec": round(self._session_mutants / run_t, 2) if run_t > 0 else 0.0,
            "queue_size": len(self.scheduler),
            "retained": c.retained,
            "failing_mutants": c.failing,
            "failures_total": sum(c.failures_total.values()),
            "failures_stored": sum(c.failures_stored.values()),
            "seconds_since_last_find": round(t - c.last_find, 1),
        }
        for o in self.oracles:
            out[f"failures_{o.name}"] = c.failures_total.get(o.name, 0)
        for n, v in self.suite.values().items():
            out[f"cov_{n}"] = round(v, 6)
        return out

    def _report(self, status: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_stats < self.config.stats_interval:
            return
        self._last_stats = now
        self.store.sync()  # what fuzzer_stats reports as found is on disk before it says so
        st = self.stats()
        self.store.write_stats({**st, "status": status, "pid": os.getpid(), "neurofuzz_version": __version__})
        self.store.append_plot({k: st[k] for k in ("run_time", "iterations", "mutants", "queue_size",
                                                   "failures_total", "failures_stored")}
                               | {k: v for k, v in st.items() if k.startswith("cov_")})
        if self.monitor is not None:
            self.monitor.update(st, status)

    def _should_stop(self) -> bool:
        b, c = self.config.budget, self.counters
        if self._stop_requested:
            self._stop_reason = "signal"
        elif b.iterations and c.iterations >= b.iterations:
            self._stop_reason = "iterations"
        elif b.mutants and c.mutants >= b.mutants:
            self._stop_reason = "mutants"
        elif b.seconds and time.monotonic() - self._t0 >= b.seconds:
            self._stop_reason = "time"
        elif b.plateau_seconds and self._campaign_time() - c.last_find >= b.plateau_seconds:
            self._stop_reason = "plateau"
        return bool(self._stop_reason)

    def run(self) -> dict[str, Any]:
        """Run until a budget is reached (or SIGINT / SIGTERM); checkpoint and return a summary."""
        self.counters.elapsed = self._campaign_time()  # fold earlier run() calls of this object in
        self._t0 = time.monotonic()
        self._stop_reason, self._stop_requested = "", False
        self._session_mutants_start = self.counters.mutants
        old = {}

        def _request_stop(signum: int, _frame: Any) -> None:
            self._stop_requested = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, _request_stop)
            except ValueError:  # not in the main thread
                pass
        status = "running"
        try:
            with self.suite:
                self._report(status, force=True)
                while not self._should_stop():
                    self.step()
                    self._report(status)
                    if time.monotonic() - self._last_ckpt >= self.config.checkpoint_interval:
                        self.checkpoint()
            status = "finished" if self._stop_reason != "signal" else "interrupted"
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self.checkpoint()
            self._report(status if status != "running" else "crashed", force=True)
        return {**self.stats(), "stop_reason": self._stop_reason, "path": str(self.store.path)}

    @property
    def _session_mutants(self) -> int:
        return self.counters.mutants - getattr(self, "_session_mutants_start", 0)

    def close(self) -> None:
        self.store.close()
