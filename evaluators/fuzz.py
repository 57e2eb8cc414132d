"""Fuzz-campaign evaluation: what a campaign found, per group, mutator and class.

Reads a campaign directory (opened read-only, so a running campaign can be evaluated) or any
corpus store (:class:`~neurofuzz.corpus.CampaignStore`, :class:`~neurofuzz.corpus.MemoryStore`).
Images are loaded only when a ``target`` is given (through :func:`neurofuzz.corpus.replay`,
``batch_size`` at a time).

Definitions (a *seed* is a queue entry with an empty chain; a *failing image* is a distinct
failure image, by content hash: one image flagged by two oracles is stored twice but counted once):

* accuracy, per group ``g``: ``|{e in g : pred_e = label_e}| / |g|`` (NaN for an empty group),
  with ``pred_e`` the stored prediction (the fuzzed model's), or, given ``target``, the target's
  prediction now (non-finite logits count as wrong). Groups: ``seeds``, ``queue_mutants`` (queue
  entries with a chain), ``queue`` (both), ``failures`` (distinct failing images),
  ``failures/<oracle>`` (that oracle's entries). With stored predictions and the
  ``misclassified`` oracle, queue mutants are right and failures wrong by construction; the
  numbers say something new for another model (regression testing, a defended model).
* attack success rate ``ASR = failing mutants / mutants`` and ``valid_success_rate = failing
  mutants / valid mutants`` (oracles judge valid mutants only). ``mutants``, ``valid_mutants``
  and ``failures_total`` come from ``fuzzer_stats``.
  ``failures_total`` counts a mutant once per oracle that flags it; the number of distinct
  failing mutants is ``failing_mutants`` of ``fuzzer_stats`` (``asr_source = "stats"``); for a
  stats file without it, ``failures_total``: exact when at most one oracle reported failures
  (``"stats"``), an upper bound otherwise (``"stats-upper-bound"``). Without stats: NaN (``"none"``).
* per-mutator yield: for each entry with a chain, its last step's ``mutator`` produced it;
  ``queue`` = retained queue entries, ``failures`` = distinct failing images. ``mutants`` and
  ``failing`` (all generated / all failing mutants, stored or not) come from ``per_mutator`` of
  ``fuzzer_stats``, else ``None``; ``success_rate = failing / mutants``.
* per-class failures: label -> number of distinct failing images; confusion: label -> stored
  predicted class -> count (the failure as it was found, whatever ``target``).
* coverage: every ``cov_<metric>`` value of ``fuzzer_stats``.

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore()
    >>> seed = s.add(torch.zeros(1, 2, 2), kind="queue", label=3, pred=3)
    >>> step = {"mutator": "gaussian_noise", "params": {"std": 0.1}, "config": {}}
    >>> _ = s.add(torch.ones(1, 2, 2), kind="failure", oracle="misclassified", label=3, pred=5,
    ...           parent=seed.id, chain=[step])
    >>> s.write_stats({"mutants": 10, "valid_mutants": 8, "failures_total": 1, "failures_misclassified": 1,
    ...                "cov_nc": 0.25})
    >>> r = evaluate_campaign(s)
    >>> r.attack_success_rate, r.per_mutator["gaussian_noise"].failures, r.confusion, r.coverage
    (0.1, 1, {3: {5: 1}}, {'nc': 0.25})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurofuzz.corpus import BaseStore, CampaignStore, Entry, replay
from neurofuzz.evaluators._common import check_batch_size
from neurofuzz.fuzzer.stats import CampaignStats, MutatorStats
from neurofuzz.ground.errors import UserError



@dataclass(frozen=True)
class GroupAccuracy:
    """``correct`` of ``n`` entries classified as their label; ``accuracy`` NaN when ``n = 0``."""

    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


@dataclass(frozen=True)
class MutatorYield:
    """What one mutator produced: stored ``queue`` entries and distinct failing images (from
    the chains); ``mutants`` generated and ``failing`` mutants (``per_mutator`` of the stats, or None)."""

    queue: int = 0
    failures: int = 0
    mutants: int | None = None
    failing: int | None = None

    @property
    def success_rate(self) -> float:
        """``failing / mutants``; NaN when unknown or no mutant."""
        return self.failing / self.mutants if self.mutants and self.failing is not None else float("nan")


@dataclass(frozen=True)
class FuzzReport:
    """Fuzz-campaign evaluation; see the module docstring for every definition."""

    path: str | None
    preds_source: str
    accuracy: dict[str, GroupAccuracy]
    mutants: int | None
    valid_mutants: int | None
    failures_total: int | None
    failures_by_oracle: dict[str, int]
    failing_mutants: int | None
    attack_success_rate: float
    valid_success_rate: float
    asr_source: str
    per_mutator: dict[str, MutatorYield]
    failures_by_class: dict[int, int]
    confusion: dict[int, dict[int, int]]
    coverage: dict[str, float]
    stats: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict; groups and mutators also carry their ``accuracy`` / ``success_rate``."""
        d = asdict(self)
        d["accuracy"] = {k: {**asdict(g), "accuracy": g.accuracy} for k, g in self.accuracy.items()}
        d["per_mutator"] = {k: {**asdict(m), "success_rate": m.success_rate} for k, m in self.per_mutator.items()}
        return d

    def format(self) -> str:
        """A plain-text report with one table per concern."""

        def num(v: Any, spec: str = "") -> str:
            if v is None:
                return "-"
            if isinstance(v, float) and math.isnan(v):
                return "n/a"
            return format(v, spec)

        out = [f"campaign {self.path or '(in memory)'}"]
        if self.coverage:
            out.append("coverage  " + "  ".join(f"{k} {v:.4f}" for k, v in self.coverage.items()))
        out.append(f"mutants {num(self.mutants)} (valid {num(self.valid_mutants)}), failing {num(self.failing_mutants)}, "
                   f"attack success rate {num(self.attack_success_rate, '.4f')} "
                   f"(of valid {num(self.valid_success_rate, '.4f')}) [{self.asr_source}]")
        if self.failures_by_oracle:
            out.append("failures by oracle  " + "  ".join(f"{k} {v}" for k, v in self.failures_by_oracle.items()))
        out += ["", f"accuracy ({self.preds_source} predictions)", f"{'group':<28}{'n':>8}{'correct':>9}{'accuracy':>10}"]
        for k, g in self.accuracy.items():
            out.append(f"{k:<28}{g.n:>8}{g.correct:>9}{num(g.accuracy, '.4f'):>10}")
        out += ["", "per mutator (last step of each chain)",
                f"{'mutator':<20}{'queue':>7}{'failures':>10}{'mutants':>9}{'failing':>9}{'success':>9}"]
        if not self.per_mutator:
            out.append("(no mutant stored)")
        for k, m in self.per_mutator.items():
            out.append(f"{k:<20}{m.queue:>7}{m.failures:>10}{num(m.mutants):>9}{num(m.failing):>9}"
                       f"{num(m.success_rate, '.4f'):>9}")
        out += ["", "failures by class", f"{'label':<8}{'failures':>9}  predicted as (class:count)"]
        if not self.failures_by_class:
            out.append("(no failure)")
        for lab, c in self.failures_by_class.items():
            conf = " ".join(f"{p}:{k}" for p, k in self.confusion.get(lab, {}).items())
            out.append(f"{lab:<8}{c:>9}  {conf}")
        return "\n".join(out)


def _last_mutator(e: Entry) -> str:
    step = e.chain[-1]
    return str(step.get("mutator") or step.get("op") or "?")


@dataclass(frozen=True)
class _Counts:
    mutants: int | None
    valid: int | None
    failures_total: int | None
    by_oracle: dict[str, int]
    failing: int | None
    source: str
    per_mutator: dict[str, MutatorStats] | None


def _run_counts(stats: Mapping[str, Any]) -> _Counts:
    """Mutant and failure counts from ``fuzzer_stats`` (typed, :class:`CampaignStats`). Distinct
    failing mutants come from ``failing_mutants`` when recorded (``"stats"``); files written
    without it fall back to ``failures_total``: exact when at most one oracle reported failures
    (``"stats"``), an upper bound otherwise (``"stats-upper-bound"``)."""
    if "mutants" not in stats:
        return _Counts(None, None, None, {}, None, "none", None)
    s = CampaignStats.from_flat(stats)
    pm = s.per_mutator if "per_mutator" in stats else None
    if "failing_mutants" in stats:
        return _Counts(s.mutants, s.valid_mutants, s.failures_total, s.failures, s.failing_mutants, "stats", pm)
    source = "stats" if sum(1 for v in s.failures.values() if v) <= 1 else "stats-upper-bound"
    return _Counts(s.mutants, s.valid_mutants, s.failures_total, s.failures, s.failures_total, source, pm)


def evaluate_store(store: BaseStore, *, target: Callable[[torch.Tensor], Any] | None = None,
                   batch_size: int = 256) -> FuzzReport:
    """Evaluate the campaign held by ``store`` (see the module docstring). ``target``: a model
    (callable returning logits) to judge the corpus with now, instead of the stored predictions."""
    check_batch_size(batch_size)
    entries = store.entries()
    if target is not None:
        rep = replay(store, target, "all", batch_size)
        pred = dict(zip(rep.ids, rep.preds))
    else:
        pred = {e.id: e.pred for e in entries}

    # accuracy groups
    groups: dict[str, list[int]] = {"seeds": [0, 0], "queue_mutants": [0, 0], "queue": [0, 0], "failures": [0, 0]}
    per_mut: dict[str, list[int]] = {}
    by_class: dict[int, int] = {}
    confusion: dict[int, dict[int, int]] = {}
    seen: set[tuple[str, int]] = set()
    for e in entries:
        ok = int(pred[e.id] == e.label)
        if e.kind == "queue":
            in_groups = ["queue", "queue_mutants" if e.chain else "seeds"]
            if e.chain:
                per_mut.setdefault(_last_mutator(e), [0, 0])[0] += 1
        else:
            in_groups = [f"failures/{e.oracle}"]
            key = (e.sha, e.label)
            if key not in seen:
                seen.add(key)
                in_groups.append("failures")
                if e.chain:
                    per_mut.setdefault(_last_mutator(e), [0, 0])[1] += 1
                by_class[e.label] = by_class.get(e.label, 0) + 1
                row = confusion.setdefault(e.label, {})
                row[e.pred] = row.get(e.pred, 0) + 1
        for g in in_groups:
            acc = groups.setdefault(g, [0, 0])
            acc[0] += 1
            acc[1] += ok

    stats = store.read_stats()
    c = _run_counts(stats)
    yields = {}
    for name in sorted(set(per_mut) | set(c.per_mutator or {})):
        q, f = per_mut.get(name, [0, 0])
        pm = (c.per_mutator or {}).get(name)
        yields[name] = MutatorYield(q, f, None if pm is None else pm.mutants, None if pm is None else pm.failures)

    return FuzzReport(
        path=None if store.path is None else str(store.path),
        preds_source="stored" if target is None else "model",
        accuracy={k: GroupAccuracy(v[0], v[1]) for k, v in groups.items()},
        mutants=c.mutants,
        valid_mutants=c.valid,
        failures_total=c.failures_total,
        failures_by_oracle=c.by_oracle,
        failing_mutants=c.failing,
        attack_success_rate=c.failing / c.mutants if c.failing is not None and c.mutants else float("nan"),
        valid_success_rate=c.failing / c.valid if c.failing is not None and c.valid else float("nan"),
        asr_source=c.source,
        per_mutator=yields,
        failures_by_class=dict(sorted(by_class.items())),
        confusion={k: dict(sorted(v.items())) for k, v in sorted(confusion.items())},
        coverage=CampaignStats.from_flat(stats).coverage,
        stats=dict(stats),
    )


def evaluate_campaign(source: str | Path | BaseStore, *, target: Callable[[torch.Tensor], Any] | None = None,
                      batch_size: int = 256) -> FuzzReport:
    """Evaluate a campaign directory (opened read-only and closed again) or an open store.
    See :func:`evaluate_store`."""
    if isinstance(source, BaseStore):
        return evaluate_store(source, target=target, batch_size=batch_size)
    if not isinstance(source, (str, Path)):
        raise UserError(f"expected a campaign directory or a corpus store, got {type(source).__name__}")
    store = CampaignStore.open(source, readonly=True)
    try:
        return evaluate_store(store, target=target, batch_size=batch_size)
    finally:
        store.close()
