"""The fuzz loop: one iteration, read top to bottom.

``FuzzLoop.step()`` runs: **plan** (the scheduler picks ``seeds_per_batch`` queue entries and
how many mutants each gets; each picked seed gets one mutator, drawn by the mutators' yield so far
— inputs retained plus new failing (root, class) pairs per forward-pass equivalent spent, 20% of
the budget uniform (:mod:`neurofuzz.fuzzer.mutator_choice`) — or uniformly, an affine one only if
its lineage has not used one yet), **mutate** (one batch per mutator, large attack batches split
in groups with the time budget checked between groups), **validate** (DeepHunter's rule and the
affine-once rule, :meth:`neurofuzz.mutators.constraints.Constraint.judge`), **evaluate** (one
batched forward pass that also measures every coverage metric), **judge** (oracles first: a
failing input goes to ``failures/<oracle>/`` and never into the queue; the others are retained
when they raise coverage, per input in batch order, on a feedback metric), then the coverage of
every valid mutant is committed and **retain** stores the results in one store transaction.

The loop holds no I/O choices of its own: the campaign (:mod:`neurofuzz.fuzzer.campaign`) builds
it, gives it its store, queue and counters, checkpoints and restores it. Everything random comes
from one ``torch.Generator``.

Failures: every failure is counted; by default one is *stored* when it is the first for its
(root seed, oracle, predicted class) or when it raises coverage, so a strong attack cannot flood
the disk; ``save_all_failures=True`` stores every distinct one.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from neurofuzz.coverage import CoverageSuite
from neurofuzz.fuzzer.batch import Batch, Group, Verdict
from neurofuzz.fuzzer.config import FuzzConfig
from neurofuzz.fuzzer.feedback import AdaptiveFeedback, refinement_order
from neurofuzz.fuzzer.mutator_choice import QueryMeter, choice_weights
from neurofuzz.fuzzer.oracles import Oracle, OracleContext
from neurofuzz.fuzzer.queue import Queue, QueueEntry
from neurofuzz.fuzzer.schedulers import Scheduler
from neurofuzz.fuzzer.stats import Counters
from neurofuzz.ground.target import Target
from neurofuzz.mutators import Mutator
from neurofuzz.mutators.constraints import Constraint

CHAIN_CACHE = 1024  # mutation chains of recent parents kept in memory
ATTACK_GROUP = 64  # rows per group of a model-querying mutator (the time budget is checked between groups)


class FuzzLoop:
    def __init__(self, *, target: Target, suite: CoverageSuite, config: FuzzConfig, mutators: list[Mutator],
                 scheduler: Scheduler, oracles: list[Oracle], queue: Queue, store: Any, counters: Counters,
                 rng: torch.Generator, clock: Any = None) -> None:
        self.target, self.suite, self.config = target, suite, config
        self.mutators, self.scheduler, self.oracles = mutators, scheduler, oracles
        self.queue, self.store, self.counters, self.rng = queue, store, counters, rng
        self.clock = clock or (lambda: 0.0)  # campaign time, for time_found
        c = config.constraint
        self.constraint = (Constraint(alpha=c.alpha, beta=c.beta, bounds=target.bounds, ssim_min=c.ssim or None)
                           if c.enabled else None)
        self.failure_keys: set[tuple[int, str, int]] = set()
        self._non_affine = [i for i, m in enumerate(mutators) if m.kind != "affine"]
        self.max_id = 0  # largest entry id stored so far
        self._chains: dict[int, list] = {}  # entry id -> chain, see chain_of
        self.deadline = float("inf")  # time.monotonic() after which no further group is mutated
        self.adaptive = (AdaptiveFeedback(config.feedback, list(suite.metrics), patience=config.feedback_patience,
                                          requires=refinement_order(suite.metrics))
                         if config.feedback_patience and config.guided else None)

    # ------------------------------------------------------------------ the iteration
    def step(self) -> dict[str, int]:
        """One iteration: plan, mutate, validate, evaluate, judge, commit, retain."""
        batch = self.mutate(self.plan())
        self.counters.iterations += 1
        if batch is None:
            return {"mutants": 0, "valid": 0, "retained": 0, "failures": 0}
        ok = self.validate(batch)
        n_valid = int(ok.sum())
        c = self.counters
        c.mutants += len(batch.x)
        c.valid += n_valid
        c.invalid += len(batch.x) - n_valid
        retained = failures = 0
        if n_valid:
            rows = ok.nonzero().flatten()
            ev, ctx = self.evaluate(batch, rows)
            verdict = self.judge(ev, ctx)
            self.suite.commit(ev)
            retained, failures = self.retain(batch, rows, ev, ctx, verdict)
            if self.adaptive is not None:  # saturated feedback widens (fuzzer/feedback.py)
                self.adaptive.observe(ev.gains, eligible=~verdict.failing, retained=retained, iteration=c.iterations)
        return {"mutants": len(batch.x), "valid": n_valid, "retained": retained, "failures": failures}

    def plan(self) -> dict[int, list[tuple[int, int]]]:
        """Mutator index -> [(seed entry id, number of mutants)]."""
        cfg = self.config
        by_mut: dict[int, list[tuple[int, int]]] = {}
        weights: dict[bool, torch.Tensor] = {}  # the yields do not change within a plan
        for eid, n in self.scheduler.plan(cfg.seeds_per_batch, cfg.mutants_per_seed, self.rng):
            k = self.pick_mutator(self.queue[eid], weights)
            if k >= 0:
                by_mut.setdefault(k, []).append((eid, n))
        return by_mut

    def mutate(self, plan: dict[int, list[tuple[int, int]]]) -> Batch | None:
        """Run each mutator on its seeds' images (each seed stacked once, repeated per mutant);
        a model-querying mutator runs in groups of ``ATTACK_GROUP`` rows, the time budget
        checked between groups."""
        dev = self.target.device
        xs, slots, groups, seed_ids, rows = [], [], [], [], 0
        for k in sorted(plan):
            m = self.mutators[k]
            eids = [eid for eid, _ in plan[k]]
            n = torch.tensor([c for _, c in plan[k]], device=dev)
            xb = self.queue.images(eids).to(dev).repeat_interleave(n, 0)
            yb = torch.tensor([self.queue[e].label for e in eids], device=dev).repeat_interleave(n)
            slot = torch.arange(len(seed_ids), len(seed_ids) + len(eids), device=dev).repeat_interleave(n)
            seed_ids += eids
            step = ATTACK_GROUP if m.needs_model else len(xb)
            for i in range(0, len(xb), step):
                if groups and time.monotonic() >= self.deadline:
                    break  # the time budget ran out inside the iteration: skip the other groups
                t0, tgt = time.perf_counter(), self.target if m.needs_model else None
                with QueryMeter(tgt) as meter:  # counts the mutator's model queries (its cost)
                    res = m.mutate(xb[i : i + step], self.rng, bounds=self.target.bounds, target=tgt,
                                   y=yb[i : i + step] if m.needs_model else None)
                self.counters.mutator(m.name).charge(mutants=len(res.x), queries=meter.cost,
                                                     seconds=time.perf_counter() - t0)
                groups.append(Group(k, res, rows))
                xs.append(res.x)
                slots.append(slot[i : i + step])
                rows += len(res.x)
        if not xs:
            return None
        sizes = torch.tensor([len(g.res.x) for g in groups], device=dev)
        group = torch.arange(len(groups), device=dev).repeat_interleave(sizes)
        return Batch(torch.cat(xs), seed_ids, torch.cat(slots), group, groups, [self.queue[e] for e in seed_ids])

    def validate(self, batch: Batch) -> torch.Tensor:
        """Bool ``[N]``: which mutants the validity rule accepts (all, if it is disabled)."""
        if self.constraint is None:
            return torch.ones(len(batch.x), dtype=torch.bool, device=batch.x.device)
        seeds = batch.seeds
        refs = self.queue.images([q.ref for q in seeds]).to(batch.x.device)[batch.slot]
        affine = torch.tensor([self.mutators[g.mutator].kind == "affine" for g in batch.groups],
                              device=batch.x.device)[batch.group]
        used = batch.per_seed([q.affine_used for q in seeds])
        return self.constraint.judge(refs, batch.x, affine=affine, affine_used=used)

    def evaluate(self, batch: Batch, rows: torch.Tensor) -> tuple[Any, OracleContext]:
        """One forward pass over the valid mutants ``rows``: logits, coverage cells and gains."""
        x = batch.x[rows]
        ev = self.suite.evaluate(x)
        seeds = batch.seeds
        ctx = OracleContext(x=x, logits=ev.logits, labels=batch.per_seed([q.label for q in seeds], rows),
                            root_preds=batch.per_seed([q.root_pred for q in seeds], rows))
        return ev, ctx

    def judge(self, ev: Any, ctx: OracleContext) -> Verdict:
        flags = {o.name: o.check(ctx) for o in self.oracles}
        failing = torch.zeros(len(ctx.x), dtype=torch.bool, device=ctx.logits.device)
        for f in flags.values():
            failing |= f
        gain = ev.total_gain(self.feedback)
        keep = (~failing) & (gain > 0) & self.config.guided
        return Verdict(flags, failing, keep, gain)

    def retain(self, batch: Batch, rows: torch.Tensor, ev: Any, ctx: OracleContext, v: Verdict) -> tuple[int, int]:
        """Store retained and failing mutants (one transaction); return (retained, failing)."""
        stored = (v.keep | v.failing).nonzero().flatten()
        if not len(stored):
            return 0, 0
        x = ctx.x[stored].cpu()
        preds = ctx.preds[stored].tolist()
        keep, gain = v.keep[stored].tolist(), v.gain[stored].tolist()
        flags = {o: f[stored].tolist() for o, f in v.flags.items()}
        gains = {n: g[stored].tolist() for n, g in ev.gains.items()}
        brow = rows[stored]
        row_group, row_slot = batch.group[brow].tolist(), batch.slot[brow].tolist()
        retained = failing = 0
        now = self.clock()
        with self.store.batch():
            for j, row in enumerate(brow.tolist()):
                g = batch.groups[row_group[j]]
                m, parent = self.mutators[g.mutator], batch.seeds[row_slot[j]]
                chain = self.chain_of(parent) + [{"mutator": m.name, "params": g.res.params_of(row - g.first),
                                                  "config": m.config}]
                gj = {n: vals[j] for n, vals in gains.items()}
                if keep[j]:
                    retained += self._retain_one(x[j], parent, chain, m, preds[j], gj)
                else:
                    failing += 1
                    ms = self.counters.mutator(m.name)
                    ms.failures += 1
                    ms.new_pairs += self.counters.failure_seen(root=parent.root, label=parent.label, pred=preds[j],
                                                               at=now)  # True: a (root, class) pair not seen before
                    for oracle in (o for o, f in flags.items() if f[j]):
                        self._store_failure(x[j], parent, chain, oracle, preds[j], gj, gain[j] > 0, now)
            self.counters.retained += retained
            self.counters.failing += failing
        return retained, failing

    # ------------------------------------------------------------------ parts
    def chain_of(self, entry: QueueEntry) -> list:
        """The mutation chain of a queue entry: read from the store's index, the last
        ``CHAIN_CACHE`` of them kept (a bounded cache: lineages are not held in memory)."""
        if not entry.depth:
            return []
        chain = self._chains.pop(entry.id, None)
        self._remember_chain(entry.id, chain if chain is not None else self.store.get(entry.id).chain)
        return self._chains[entry.id]

    def _remember_chain(self, eid: int, chain: list) -> None:
        if len(self._chains) >= CHAIN_CACHE:
            self._chains.pop(next(iter(self._chains)))  # the least recently used
        self._chains[eid] = chain

    def pick_mutator(self, entry: QueueEntry, weights: dict[bool, torch.Tensor] | None = None) -> int:
        """A mutator index for ``entry`` (-1: none applies); ``weights`` caches the adaptive
        choice's weights between calls with unchanged counters."""
        allowed = self._non_affine if entry.affine_used else list(range(len(self.mutators)))
        if not allowed:
            return -1
        if not self.config.guided or self.config.mutator_choice == "uniform":
            return allowed[int(torch.randint(len(allowed), (1,), generator=self.rng))]
        # adaptive: by yield, part of it uniform so that no mutator starves (see mutator_choice)
        w = None if weights is None else weights.get(entry.affine_used)
        if w is None:
            w = choice_weights([self.counters.mutator(self.mutators[k].name) for k in allowed],
                               rule=self.config.mutator_choice)
            if weights is not None:
                weights[entry.affine_used] = w
        return allowed[int(torch.multinomial(w, 1, generator=self.rng))]

    def priority(self, gains: dict[str, int]) -> float:
        """Scheduler weight of an entry: its gain on each feedback metric as a share of that
        metric's map (per mille), summed, so a new NBC cell (2 per neuron) counts for more than a
        new KMNC section (k per neuron)."""
        return sum(1000.0 * gains.get(f, 0) / max(1, self.suite.metrics[f].n_cells) for f in self.feedback)

    @property
    def feedback(self) -> list[str]:  # the feedback metrics now: the configured ones, widened by feedback_patience
        return self.adaptive.active if self.adaptive is not None else self.config.feedback

    def _retain_one(self, x: torch.Tensor, parent: QueueEntry, chain: list, m: Mutator, pred: int,
                    gains: dict[str, int]) -> int:
        affine = m.kind == "affine"
        extra = {"ref": "self" if affine else parent.ref, "affine_used": parent.affine_used or affine}
        now = self.clock()
        e = self.store.add(x, kind="queue", label=parent.label, pred=pred, parent=parent.id, chain=chain, gains=gains,
                           iteration=self.counters.iterations, time_found=now, extra=extra)
        self.max_id = max(self.max_id, e.id)
        if e.duplicate:
            return 0
        self.queue.add(parent.child(e.id, affine=affine), x)
        self._remember_chain(e.id, chain)
        self.scheduler.add(e.id, gain=self.priority(gains), root=parent.root)
        self.scheduler.credit(parent.id, 1)
        self.counters.mutator(m.name).retained += 1
        self.counters.last_find = now
        return 1

    def _store_failure(self, x: torch.Tensor, parent: QueueEntry, chain: list, oracle: str, pred: int,
                       gains: dict[str, int], new_coverage: bool, now: float) -> None:
        c = self.counters
        c.failures_total[oracle] = c.failures_total.get(oracle, 0) + 1
        key = (parent.root, oracle, pred)
        if not (self.config.save_all_failures or key not in self.failure_keys or new_coverage):
            return
        e = self.store.add(x, kind="failure", oracle=oracle, label=parent.label, pred=pred, parent=parent.id,
                           chain=chain, gains=gains, iteration=c.iterations, time_found=now)
        self.max_id = max(self.max_id, e.id)
        if not e.duplicate:
            self.failure_keys.add(key)
            c.failures_stored[oracle] = c.failures_stored.get(oracle, 0) + 1
