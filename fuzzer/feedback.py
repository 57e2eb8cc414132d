"""Feedback that widens when it saturates: add the criterion that would have kept the most inputs.

The loop keeps a mutant when it raises coverage on a *feedback* metric (default NBC and SNAC).
Every configured metric is measured on every batch anyway (coverage is one forward pass), so the
loop can count, for each metric outside the feedback, the valid non-failing mutants that *would*
have raised it: a counterfactual yield, measured like the mutators' yield. With
``feedback_patience = P`` (0: off, the default), once ``P`` iterations in a row retained nothing
the feedback saturated, and the metric with the most counterfactual finds over those ``P``
iterations joins the feedback (none joins if no metric found anything). The counts restart
after each change and after each retained input. The feedback only grows; its state (the active
list, the idle count, the counts and the events) is checkpointed, so a resume continues it and a
fixed seed still gives the same campaign.

Finer cells are candidates too: configure a finer instance of a metric type
(``kmnc_fine = { metric = "kmnc", k = 1000 }`` under ``[metrics]``). A finer instance becomes
eligible only once every coarser instance of its type (same type and layers, fewer cells) is in
the feedback (:func:`refinement_order`): its sections nest inside the coarse ones, so it would
otherwise always count at least as many finds and flood the queue before the coarse cells are
used up. Element-level neurons and more layers would need a second recorder and profile; they
are not candidates.

Example::

    >>> import torch
    >>> fb = AdaptiveFeedback(["nbc"], ["nc", "kmnc", "nbc"], patience=2)
    >>> ok = torch.tensor([True, True, False])
    >>> fb.observe({"nc": torch.tensor([0, 1, 1]), "kmnc": torch.tensor([3, 2, 5]), "nbc": torch.tensor([0, 0, 0])},
    ...            eligible=ok, retained=0, iteration=1)
    >>> fb.observe({"nc": torch.tensor([0, 0, 0]), "kmnc": torch.tensor([1, 0, 0]), "nbc": torch.tensor([0, 0, 0])},
    ...            eligible=ok, retained=0, iteration=2)
    >>> fb.active, fb.events
    (['nbc', 'kmnc'], [[2, 'kmnc']])
"""

from __future__ import annotations

from typing import Any

import torch


class AdaptiveFeedback:
    """The feedback list of a campaign with ``feedback_patience`` set (see the module docstring)."""

    def __init__(self, initial: list[str], candidates: list[str], *, patience: int,
                 requires: dict[str, str] | None = None) -> None:
        self.active = list(initial)
        self.candidates = [c for c in candidates if c not in self.active]
        self.patience = int(patience)
        self.requires = dict(requires or {})  # candidate -> the metric that must be active first
        self.idle = 0
        self.finds = {c: 0 for c in self.candidates}
        self.events: list[list[Any]] = []  # [iteration, metric added]

    def observe(self, gains: dict[str, torch.Tensor], *, eligible: torch.Tensor, retained: int, iteration: int) -> None:
        """One iteration's outcome: per-metric gains of the valid mutants, which of them could be
        retained (not failing), and how many the active feedback retained."""
        for c in self.candidates:
            self.finds[c] += int(((gains[c] > 0) & eligible).sum())
        if retained:
            self.idle = 0
            self.finds = dict.fromkeys(self.candidates, 0)
            return
        self.idle += 1
        if self.idle < self.patience:
            return
        eligible = [c for c in self.candidates if c not in self.requires or self.requires[c] in self.active]
        best = max(eligible, key=lambda c: self.finds[c], default=None)
        if best is not None and self.finds[best] > 0:
            self.active.append(best)
            self.candidates.remove(best)
            self.events.append([int(iteration), best])
        self.idle = 0
        self.finds = dict.fromkeys(self.candidates, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"active": list(self.active), "candidates": list(self.candidates), "idle": self.idle,
                "finds": dict(self.finds), "events": [list(e) for e in self.events]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.active, self.candidates = list(d["active"]), list(d["candidates"])
        self.idle, self.finds = int(d["idle"]), {str(k): int(v) for k, v in d["finds"].items()}
        self.events = [list(e) for e in d["events"]]


def refinement_order(metrics: dict[str, Any]) -> dict[str, str]:
    """``{finer: next coarser}`` among metrics of one type over the same layers with different
    cell counts: the finer one joins the feedback only after the coarser one did. Instances with
    equal cell counts (NC at two thresholds, say) are not ordered."""
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for name, m in metrics.items():
        groups.setdefault((type(m), tuple(getattr(m, "layers", {}).items())), []).append((int(m.n_cells), name))
    out = {}
    for members in groups.values():
        members.sort()
        for (n_coarse, coarse), (n_fine, fine) in zip(members, members[1:]):
            if n_fine > n_coarse:
                out[fine] = coarse
    return out
