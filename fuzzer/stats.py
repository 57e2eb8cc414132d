"""Typed campaign statistics: the one definition that the loop, the monitor, the CLI, the
evaluators and ``status --json`` read.

* :class:`MutatorStats` — per mutator: mutants made, inputs retained, failing mutants, new
  failing (root, predicted class) pairs, cost in forward-pass equivalents, mutate seconds.
* :class:`Counters` — the monotonic counters a campaign checkpoints (with each batch commit).
* :class:`CampaignStats` — what ``fuzzer_stats`` says at one moment: counters, rates, coverage,
  status. :meth:`CampaignStats.to_flat` gives the ``key : value`` lines (numbers as numbers;
  ``per_mutator`` as one JSON line) and :meth:`CampaignStats.from_flat` is the only parser of them.

Example::

    >>> s = CampaignStats(iterations=3, mutants=96, coverage={"nc": 0.5},
    ...                   per_mutator={"blur": MutatorStats(96, 4, 1, new_pairs=1, cost=96, seconds=0.01)})
    >>> flat = s.to_flat()
    >>> flat["cov_nc"], flat["per_mutator"]
    (0.5, '{"blur": [96, 4, 1, 1, 96]}')
    >>> CampaignStats.from_flat(flat).per_mutator["blur"].retained
    4
    >>> CampaignStats.from_flat({"per_mutator": '{"blur": [96, 4, 1]}'}).per_mutator["blur"]  # an older file
    MutatorStats(mutants=96, retained=4, failures=1, new_pairs=0, cost=0, seconds=0.0)

``per_mutator`` lists are ``[mutants, retained, failures, new_pairs, cost]`` in ``fuzzer_stats``
and ``[..., cost, seconds]`` in the checkpointed counters; lists of 3 (written before the cost
and the new pairs were counted) read with those as 0. ``seconds`` is wall-clock time, kept out
of ``fuzzer_stats`` so that file stays identical for a fixed seed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MutatorStats:
    """What one mutator made and found, and what it cost (see :mod:`neurofuzz.fuzzer.mutator_choice`)."""

    mutants: int = 0
    retained: int = 0
    failures: int = 0  # failing mutants
    new_pairs: int = 0  # failing mutants that revealed a (root seed, predicted class) pair not seen before
    cost: int = 0  # forward-pass equivalents: one per mutant (its evaluation) plus the mutator's model queries
    seconds: float = 0.0  # wall-clock seconds inside the mutator (informational: the choice uses ``cost``)

    @property
    def yield_(self) -> float:
        """(retained + failures + 1) / (mutants + 2): the per-mutant yield (``mutator_choice =
        "adaptive-per-mutant"``; the adaptive rule before issue 11)."""
        return (self.retained + self.failures + 1) / (self.mutants + 2)

    @property
    def finds(self) -> int:
        """What counts for the adaptive choice: inputs retained plus new failing pairs."""
        return self.retained + self.new_pairs

    @property
    def spent(self) -> int:
        """Cost in forward-pass equivalents, at least one per mutant (counters written before the
        cost was counted have ``cost = 0``)."""
        return max(self.cost, self.mutants)

    def charge(self, *, mutants: int, queries: int, seconds: float) -> None:
        """Count ``mutants`` made with ``queries`` forward-pass equivalents of model queries."""
        self.mutants += mutants
        self.cost += mutants + queries
        self.seconds += seconds

    def to_list(self, *, seconds: bool = True) -> list:
        """``[mutants, retained, failures, new_pairs, cost, seconds]`` (``seconds=False``: without it)."""
        out = [self.mutants, self.retained, self.failures, self.new_pairs, self.cost]
        return out + [self.seconds] if seconds else out

    @classmethod
    def from_list(cls, v: Any) -> "MutatorStats":
        """Inverse of :meth:`to_list`; 3 to 6 numbers (3: written before the cost was counted)."""
        if not isinstance(v, (list, tuple)) or not 3 <= len(v) <= 6:
            raise ValueError(f"per_mutator entry must be a list of 3 to 6 numbers, got {v!r}")
        ints = [int(x) for x in v[:5]]
        return cls(*ints, *(float(x) for x in v[5:]))


@dataclass
class Counters:
    """Counters of a campaign; all grow monotonically over its life (kills and resumes included)."""

    iterations: int = 0
    mutants: int = 0
    valid: int = 0
    invalid: int = 0
    retained: int = 0
    failing: int = 0  # distinct failing mutants (a mutant flagged by two oracles counts once)
    failures_total: dict[str, int] = field(default_factory=dict)
    failures_stored: dict[str, int] = field(default_factory=dict)
    seed_failures: int = 0  # seeds the model got wrong at intake, stored as failures before any mutation
    elapsed: float = 0.0  # campaign time (seconds) at the moment these counters were taken
    last_find: float = 0.0  # campaign time of the last retained input
    per_mutator: dict[str, MutatorStats] = field(default_factory=dict)
    # Fault-revealing measures, over every failing mutant (stored or not). Their sizes are bounded
    # by seeds x classes, not by the number of mutants.
    first_failure: float = -1.0  # campaign time of the first failing mutant; -1: none yet
    failing_pairs: set[tuple[int, int]] = field(default_factory=set)  # distinct (root seed, predicted class)
    confusions: set[tuple[int, int]] = field(default_factory=set)  # distinct (true, predicted) with true != predicted

    SETS = ("failing_pairs", "confusions")

    def mutator(self, name: str) -> MutatorStats:
        return self.per_mutator.setdefault(name, MutatorStats())

    @property
    def failing_roots(self) -> set[int]:
        """Root seeds with at least one failing mutant (from the pairs)."""
        return {r for r, _ in self.failing_pairs}

    def failure_seen(self, *, root: int, label: int, pred: int, at: float) -> bool:
        """Count one failing mutant of ``root`` (true class ``label``) predicted as ``pred``;
        True if its (root, pred) pair is new."""
        if self.first_failure < 0:
            self.first_failure = at
        new = (root, pred) not in self.failing_pairs
        self.failing_pairs.add((root, pred))
        if pred != label:
            self.confusions.add((label, pred))
        return new

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["failures_total"], d["failures_stored"] = dict(self.failures_total), dict(self.failures_stored)
        d["per_mutator"] = {k: m.to_list() for k, m in self.per_mutator.items()}
        d["failing_pairs"] = [list(p) for p in sorted(self.failing_pairs)]
        d["confusions"] = [list(p) for p in sorted(self.confusions)]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Counters":
        d = dict(d)
        pm = d.pop("per_mutator", {}) or {}
        sets = {k: d.pop(k, None) or [] for k in cls.SETS}
        known = {f.name for f in dataclasses.fields(cls)}
        c = cls(**{k: v for k, v in d.items() if k in known})
        c.per_mutator = {str(k): MutatorStats.from_list(v) for k, v in pm.items()}
        c.failing_pairs = {(int(a), int(b)) for a, b in sets["failing_pairs"]}
        c.confusions = {(int(a), int(b)) for a, b in sets["confusions"]}
        return c


@dataclass
class CampaignStats:
    """One snapshot of a campaign, as written to ``fuzzer_stats``."""

    status: str = ""
    pid: int = 0
    neurofuzz_version: str = ""
    run_time: float = 0.0
    iterations: int = 0
    mutants: int = 0
    valid_mutants: int = 0
    invalid_mutants: int = 0
    mutants_per_sec: float = 0.0
    queue_size: int = 0
    retained: int = 0
    failing_mutants: int = 0
    failures_total: int = 0
    failures_stored: int = 0
    seed_failures: int = 0  # of the stored failures, seeds failing before any mutation
    seconds_since_last_find: float = 0.0
    failing_seeds: int = 0  # root seeds with at least one failing mutant
    failing_pairs: int = 0  # distinct (root seed, predicted class) among failing mutants
    confusions: int = 0  # distinct (true class, predicted class) among misclassifying mutants
    time_to_first_failure: float = -1.0  # campaign seconds; -1: no failure yet
    failures: dict[str, int] = field(default_factory=dict)  # oracle -> failures counted
    coverage: dict[str, float] = field(default_factory=dict)  # metric -> value in [0, 1]
    per_mutator: dict[str, MutatorStats] = field(default_factory=dict)

    PLOT_COLUMNS = ("run_time", "iterations", "mutants", "queue_size", "failures_total", "failures_stored",
                    "failing_seeds", "failing_pairs", "confusions")

    def to_flat(self) -> dict[str, Any]:
        """``fuzzer_stats`` items: scalars, ``failures_<oracle>``, ``cov_<metric>``, ``per_mutator``."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                               if f.name not in ("failures", "coverage", "per_mutator")}
        out.update({f"failures_{k}": v for k, v in self.failures.items()})
        out.update({f"cov_{k}": v for k, v in self.coverage.items()})
        out["per_mutator"] = json.dumps({k: m.to_list(seconds=False) for k, m in self.per_mutator.items()})
        return out

    def plot_row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PLOT_COLUMNS} | {f"cov_{k}": v for k, v in self.coverage.items()}

    @classmethod
    def from_flat(cls, d: Mapping[str, Any]) -> "CampaignStats":
        """Inverse of :meth:`to_flat`; values may be strings (an old or hand-edited file)."""
        scalars = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("failures", "coverage", "per_mutator")}
        s = cls()
        for k, v in d.items():
            if k in scalars:
                typ = type(getattr(s, k))
                try:
                    setattr(s, k, typ(float(v)) if typ is int else typ(v))
                except (TypeError, ValueError):
                    pass  # a damaged value reads as its default
            elif k.startswith("cov_"):
                s.coverage[k[4:]] = float(v)
            elif k.startswith("failures_"):
                s.failures[k[9:]] = int(float(v))
            elif k == "per_mutator" and v:
                try:
                    pm = json.loads(v) if isinstance(v, str) else v
                    s.per_mutator = {str(n): MutatorStats.from_list(c) for n, c in pm.items()}
                except (ValueError, TypeError, AttributeError):  # a damaged line reads as no per-mutator data
                    pass
        return s

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["per_mutator"] = {k: dataclasses.asdict(m) for k, m in self.per_mutator.items()}
        return d
