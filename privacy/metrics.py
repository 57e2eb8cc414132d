"""Metrics of a membership-inference attack from its scores: AUC, accuracy, precision, recall,
TPR at low FPR, and the ROC curve as data.

A *score* is the attack's belief that an example is a member (higher = member). Definitions,
with ``P`` members and ``N`` non-members:

* ``auc``: area under the ROC curve (scikit-learn ``roc_auc_score``; 0.5 = chance).
* ``accuracy``, ``precision``, ``recall`` at a decision ``threshold`` (member iff score >=
  threshold); with ``threshold=None`` the one that maximises balanced accuracy on these very
  scores (an optimistic, "best threshold" figure: say so when you report it). MindArmour reports
  these three (``MembershipInference.eval``).
* ``tpr_at_fpr[f]``: the largest TPR among ROC points with FPR <= f (Carlini et al., "Membership
  Inference Attacks From First Principles", S&P 2022: report the low-FPR regime). With ``N``
  non-members the smallest non-zero FPR is ``1/N``: for ``f < 1/N`` the value is the TPR at
  FPR exactly 0 (``resolvable`` tells whether ``N >= 1/f``).
* ``roc``: ``{"fpr": [...], "tpr": [...], "thresholds": [...]}`` (scikit-learn ``roc_curve``).

Example::

    >>> import numpy as np
    >>> m = membership_metrics(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0]))
    >>> m.auc, m.accuracy, m.tpr_at_fpr[0.01]
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofuzz.ground.errors import UserError

FPRS = (0.01, 0.001)


@dataclass
class MembershipMetrics:
    auc: float
    accuracy: float
    precision: float
    recall: float
    threshold: float
    tpr_at_fpr: dict[float, float]
    resolvable: dict[float, bool]
    n_members: int
    n_nonmembers: int
    roc: dict[str, list[float]] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"auc": self.auc, "accuracy": self.accuracy, "precision": self.precision, "recall": self.recall,
                **{f"tpr@{f:g}fpr": v for f, v in self.tpr_at_fpr.items()}}


def membership_metrics(scores: Any, is_member: Any, *, threshold: float | None = None,
                       fprs: tuple[float, ...] = FPRS) -> MembershipMetrics:
    """Metrics of ``scores [n]`` against ``is_member [n]`` (0/1); see the module docstring."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s = np.asarray(scores, dtype=np.float64).ravel()
    m = np.asarray(is_member).astype(bool).ravel()
    if s.shape != m.shape:
        raise UserError(f"scores ({s.size}) and membership labels ({m.size}) differ in length")
    if m.all() or not m.any():
        raise UserError("membership metrics need both members and non-members among the examples")
    if not np.isfinite(s).all():
        raise UserError("membership scores contain NaN or Inf; check the model's outputs")
    fpr, tpr, thr = roc_curve(m, s)
    auc = float(roc_auc_score(m, s))
    if threshold is None:
        best = int(np.argmax(tpr - fpr))  # balanced accuracy = (tpr + 1 - fpr) / 2
        threshold = float(thr[best]) if np.isfinite(thr[best]) else float(s.max())
    pred = s >= threshold
    tp, fp = int((pred & m).sum()), int((pred & ~m).sum())
    tn = int((~pred & ~m).sum())
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    out = {f: float(tpr[fpr <= f].max()) for f in fprs}
    return MembershipMetrics(
        auc=auc, accuracy=(tp + tn) / len(s), precision=tp / (tp + fp) if tp + fp else 0.0, recall=tp / n_pos,
        threshold=float(threshold), tpr_at_fpr=out, resolvable={f: n_neg * f >= 1 for f in fprs},
        n_members=n_pos, n_nonmembers=n_neg,
        roc={"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.nan_to_num(thr, posinf=1e300).tolist()})
