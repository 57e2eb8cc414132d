"""Loss-threshold membership inference: members have lower loss.

Yeom, Giacomelli, Fredrikson and Jha, "Privacy Risk in Machine Learning: Analyzing the
Connection to Overfitting" (CSF 2018). The score of ``(x, y)`` is ``-CE(f(x), y)``; the attack
says "member" when the loss is below a threshold ``tau``. Yeom et al. take ``tau`` = the mean
training loss, which the attacker may know (``train_loss=``); without it, the metrics report
the best threshold on the evaluated scores (optimistic; AUC and TPR at low FPR do not depend on
the threshold). No shadow or reference model is trained: this is the cheap baseline that the
calibrated attack (:mod:`~neurofuzz.privacy.membership_calibrated`) improves on.

Example::

    >>> import torch
    >>> with torch.random.fork_rng():
    ...     net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])
    >>> LossThresholdAttack().scores(net, x, y).shape
    (2,)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofuzz.privacy._common import check_pair, logits_of, losses
from neurofuzz.privacy.metrics import MembershipMetrics, membership_metrics


class LossThresholdAttack:
    """Score = minus the per-example cross-entropy; threshold = minus ``train_loss`` if given."""

    def __init__(self, *, train_loss: float | None = None) -> None:
        self.train_loss = train_loss

    def scores(self, model: Any, x: Any, y: Any) -> np.ndarray:
        x, y = check_pair(x, y, "examples to attack")
        return -losses(logits_of(model, x), y).numpy()

    def evaluate(self, model: Any, members: tuple[Any, Any], nonmembers: tuple[Any, Any]) -> MembershipMetrics:
        si, so = self.scores(model, *members), self.scores(model, *nonmembers)
        thr = None if self.train_loss is None else -float(self.train_loss)
        return membership_metrics(np.r_[si, so], np.r_[np.ones(len(si)), np.zeros(len(so))], threshold=thr)
