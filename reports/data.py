"""What a campaign report shows, gathered from a store in one pass (no drawing, no HTML).

:func:`collect` reads a campaign's store (open it read-only: a running campaign is read as of
now) and returns a :class:`ReportData`: the setup record, the typed stats and status, the
``plot_data`` rows, the campaign evaluation (:func:`neurofuzz.evaluators.evaluate_store`), the
fault-revealing measures (:func:`neurofuzz.evaluators.faults_found.fault_measures`), the triage
(:func:`neurofuzz.reports.triage.triage`), the queue's depth distribution, the first
``max_failures`` failures of the triage ranking with their seed images, and the minimised
failures stored beside the campaign (:mod:`neurofuzz.reports.minimise`).

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore()
    >>> seed = s.add(torch.zeros(1, 4, 4), kind="queue", label=2, pred=2)
    >>> d = collect(s)
    >>> d.measures.failures, d.depths, d.tiles
    (0, {0: 1}, [])
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from neurofuzz.corpus import BaseStore, campaign_status
from neurofuzz.evaluators.faults_found import FaultMeasures, fault_measures, pairs_over_time
from neurofuzz.evaluators.fuzz import FuzzReport, evaluate_store
from neurofuzz.fuzzer.stats import CampaignStats
from neurofuzz.reports.minimise import load_minimised
from neurofuzz.reports.triage import Failure, Triage, triage


@dataclass
class Tile:
    """One failing input of the grid: the failure, its image and its root seed's image."""

    failure: Failure
    oracle: str
    chain: list[dict[str, Any]]
    x: torch.Tensor
    seed: torch.Tensor


@dataclass
class ReportData:
    path: str | None
    status: str
    generated: float
    setup: dict[str, Any]
    stats: CampaignStats
    has_stats: bool
    plot: list[dict[str, float]]
    evaluation: FuzzReport
    measures: FaultMeasures
    triage: Triage
    pairs_curve: list[tuple[float, int]]
    depths: dict[int, int]
    n_classes: int
    tiles: list[Tile] = field(default_factory=list)
    minimised: list[dict[str, Any]] = field(default_factory=list)
    queue: int = 0
    stored_failures: int = 0

    @property
    def confusion(self) -> dict[int, dict[int, int]]:
        """True class -> predicted class -> found failures (seed failures not included)."""
        out: dict[int, dict[int, int]] = {}
        for f in self.triage.failures:
            row = out.setdefault(f.label, {})
            row[f.pred] = row.get(f.pred, 0) + 1
        return {t: dict(sorted(r.items())) for t, r in sorted(out.items())}

    @property
    def by_class(self) -> dict[int, int]:
        """True class -> found failures."""
        return {t: sum(r.values()) for t, r in self.confusion.items()}

    @property
    def bounds(self) -> tuple[float, float]:
        b = self.setup.get("bounds") or (0.0, 1.0)
        return float(b[0]), float(b[1])


def _numbers(rows: list[dict[str, str]]) -> list[dict[str, float]]:
    out = []
    for r in rows:
        try:
            out.append({k: float(v) for k, v in r.items() if v not in (None, "")})
        except ValueError:
            continue  # a hand-edited or damaged row is left out of the plots
    return out


def collect(store: BaseStore, *, max_failures: int = 48, merge_linf: float = 0.05) -> ReportData:
    """Everything the report shows (see the module docstring)."""
    if max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {max_failures}")
    raw = store.read_stats()
    tri = triage(store, merge_linf=merge_linf)
    measures = fault_measures(store, distances=tri.distances)
    queue = store.entries(kind="queue")
    labels = [e.label for e in store.entries()]
    setup = dict(store.setup or {})
    n_classes = int(setup.get("n_classes") or (max(labels) + 1 if labels else 0))
    by_id = {e.id: e for e in store.entries(kind="failure")}
    tiles = []
    seeds: dict[int, torch.Tensor] = {}
    for f in tri.failures[:max_failures]:
        e = by_id[f.id]
        if f.root not in seeds:
            seeds[f.root] = store.get(f.root).load()
        tiles.append(Tile(f, ", ".join(f.oracles), list(e.chain), e.load(), seeds[f.root]))
    minimised = load_minimised(store.path, images=True) if store.path is not None else []
    for r in minimised:
        rid = int(r.get("root", -1))
        if rid in seeds:
            r["seed"] = seeds[rid]
        else:
            try:
                r["seed"] = seeds.setdefault(rid, store.get(rid).load())
            except KeyError:
                r["seed"] = None
        if int(r.get("id", -1)) in by_id:
            r["original"] = by_id[int(r["id"])].load()
    return ReportData(
        path=None if store.path is None else str(store.path),
        status=campaign_status(store),
        generated=time.time(),
        setup=setup,
        stats=CampaignStats.from_flat(raw),
        has_stats=bool(raw),
        plot=_numbers(store.read_plot()),
        evaluation=evaluate_store(store),
        measures=measures,
        triage=tri,
        pairs_curve=pairs_over_time(store),
        depths=dict(sorted(Counter(e.depth for e in queue).items())),
        n_classes=n_classes,
        tiles=tiles,
        minimised=minimised,
        queue=len(queue),
        stored_failures=len(by_id),
    )
