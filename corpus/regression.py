"""The regression report: a stored corpus replayed through a new model, input by input, against a
baseline (the stored predictions of the fuzzed model, or a baseline model run afresh).

Each input lands in one category, judged against its stored label (the root seed's label):

* ``fixed`` — wrong before, correct now;     * ``still_failing`` — wrong before and now;
* ``new_regression`` — correct before, wrong now (non-finite logits count as wrong);
* ``stable`` — correct before and now.

Besides: whether the predicted class changed at all (a still-failing input may now fail with
another class), and the confidence, the probability of the labelled class under softmax, before
(only with a baseline model: the store keeps classes, not probabilities) and now. Counts are
grouped by kind, oracle, last mutator of the chain (``seed`` for a root) and class. This is the
differential-testing idea of DeepXplore (Pei et al., SOSP 2017) and TensorFuzz (Odena et al.,
ICML 2019) applied over time: the old model is the reference for the new one.

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore()
    >>> for v, label, pred in [(0.0, 0, 0), (1.0, 0, 1), (0.9, 1, 1), (0.2, 1, 0)]:
    ...     _ = s.add(torch.full((1, 2, 2), v), kind="queue", label=label, pred=pred)
    >>> bright = lambda x: torch.stack([0.5 - x.mean((1, 2, 3)), x.mean((1, 2, 3)) - 0.5], 1)
    >>> r = regression_report(s, lambda x: bright(x) * torch.tensor([1.0, -1.0]))  # a broken model
    >>> {k: r.counts[k] for k in CATEGORIES}
    {'fixed': 1, 'still_failing': 1, 'new_regression': 1, 'stable': 1}
    >>> r.ids("new_regression")
    [3]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neurofuzz.corpus.base import BaseStore, select_entries
from neurofuzz.corpus.replay import predict_entries

CATEGORIES = ("fixed", "still_failing", "new_regression", "stable")


@dataclass
class InputResult:
    """One replayed input: its record (id, kind, oracle, label, lineage) and what both models said.

    ``before``/``after`` are predicted classes (``-1``: non-finite logits); ``conf_before`` is
    ``None`` when the baseline is the stored predictions."""

    id: int
    kind: str
    oracle: str | None
    label: int
    root: int
    parent: int | None
    chain: list[dict[str, Any]]
    before: int
    after: int
    conf_before: float | None
    conf_after: float

    @property
    def category(self) -> str:
        was, now = self.before == self.label, self.after == self.label
        return ("stable" if now else "new_regression") if was else ("fixed" if now else "still_failing")

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def mutator(self) -> str:
        return str(self.chain[-1].get("mutator", "?")) if self.chain else "seed"

    @property
    def drop(self) -> float | None:
        """Confidence lost (before - after), ``None`` without baseline confidences."""
        return None if self.conf_before is None else self.conf_before - self.conf_after

    def lineage(self) -> str:
        """``root 3 (label 4) -> rotate(angle=2.1) -> contrast(alpha=1.1, beta=0.02)``."""
        steps = [f"{c.get('mutator', '?')}({', '.join(f'{k}={_num(v)}' for k, v in (c.get('params') or {}).items())})"
                 for c in self.chain]
        return " -> ".join([f"root {self.root} (label {self.label})", *steps])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "oracle": self.oracle, "label": self.label, "root": self.root,
                "parent": self.parent, "mutators": [c.get("mutator") for c in self.chain], "before": self.before,
                "after": self.after, "conf_before": self.conf_before, "conf_after": self.conf_after,
                "category": self.category, "changed": self.changed}


def _num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class RegressionReport:
    """Per-input results (id order) and their counts; ``notes`` holds lines the caller wants
    stated (e.g. a normalisation that differs from the campaign's record)."""

    results: list[InputResult] = field(default_factory=list)
    baseline: str = "stored predictions"
    which: str = "all"
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def counts(self) -> dict[str, int]:
        return count(self.results)

    def ids(self, category: str) -> list[int]:
        if category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
        return [r.id for r in self.results if r.category == category]

    @property
    def accuracy(self) -> float:
        """Share of inputs the new model classifies as labelled (NaN if none)."""
        return sum(r.after == r.label for r in self.results) / self.n if self.n else float("nan")

    @property
    def accuracy_before(self) -> float:
        return sum(r.before == r.label for r in self.results) / self.n if self.n else float("nan")

    def groups(self, by: str) -> dict[str, dict[str, int]]:
        """Counts per ``by`` = ``"kind"``, ``"oracle"``, ``"mutator"`` or ``"class"``."""
        key: Callable[[InputResult], str] = {
            "kind": lambda r: r.kind, "oracle": lambda r: r.oracle or "-", "mutator": lambda r: r.mutator,
            "class": lambda r: str(r.label)}[by]
        out: dict[str, list[InputResult]] = {}
        for r in self.results:
            out.setdefault(key(r), []).append(r)
        return {k: count(v) for k, v in sorted(out.items(), key=lambda kv: _sort_key(kv[0]))}

    def largest_drops(self, k: int = 10) -> list[InputResult]:
        """The ``k`` inputs that lost the most confidence in their label (none without baseline
        confidences), largest first; ties by id."""
        rs = [r for r in self.results if r.drop is not None and r.drop > 0]
        return sorted(rs, key=lambda r: (-(r.drop or 0.0), r.id))[:k]


def _sort_key(k: str) -> tuple[int, object]:
    return (0, int(k)) if k.isdigit() else (1, k)


def count(results: list[InputResult]) -> dict[str, int]:
    """``{n, fixed, still_failing, new_regression, stable, changed}`` over ``results``."""
    out = {"n": len(results), **{c: 0 for c in CATEGORIES}, "changed": 0}
    for r in results:
        out[r.category] += 1
        out["changed"] += r.changed
    return out


@torch.no_grad()
def regression_report(store: BaseStore, model: Callable[[torch.Tensor], object], *,
                      baseline: Callable[[torch.Tensor], object] | None = None, which: str = "all",
                      oracle: str | None = None, batch_size: int = 256,
                      baseline_name: str | None = None) -> RegressionReport:
    """Replay the selected entries (``which`` = ``"queue"``, ``"failures"``, ``"all"``; optionally
    one ``oracle``) through ``model`` and compare with ``baseline`` (a model, or ``None``: the
    stored predictions).

    Args:
        store: any corpus store (e.g. ``CampaignStore.open(path, readonly=True)``).
        model, baseline: callables ``x [B, C, H, W] -> logits [B, K]`` (a Target applies its
            normalisation; a bare module is called as it is, so put it in eval mode).
        batch_size: inputs per forward pass (the most images held in memory at once).

    Example: ``regression_report(store, Target(new), baseline=Target(old)).ids("new_regression")``.
    """
    entries = select_entries(store, which, oracle)
    now = predict_entries(entries, model, batch_size=batch_size)
    before = predict_entries(entries, baseline, batch_size=batch_size) if baseline is not None else None
    results = []
    for e in entries:
        b, cb = before[e.id] if before is not None else (e.pred, None)
        a, ca = now[e.id]
        results.append(InputResult(id=e.id, kind=e.kind, oracle=e.oracle, label=e.label, root=e.root,
                                   parent=e.parent, chain=list(e.chain), before=b, after=a, conf_before=cb,
                                   conf_after=ca))
    name = baseline_name or ("baseline model" if baseline is not None else "stored predictions")
    return RegressionReport(results=results, baseline=name, which=which)
