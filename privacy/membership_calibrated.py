"""Calibrated membership inference with reference models: offline LiRA.

Carlini, Chien, Nasr, Song, Terzis and Tramer, "Membership Inference Attacks From First
Principles" (S&P 2022), the offline variant. Some examples are easy (every model is confident on
them, member or not), so a raw loss threshold confuses "easy" with "member". LiRA calibrates per
example: ``k`` reference models are trained (with the target's recipe, ``train_fn``) on random
halves of the attacker's pool, which must not contain the examples under attack, so each
reference is an OUT model for all of them. For each example, with the logit-scaled confidence
``phi = log p_y - log(1 - p_y)`` (stable in logits):

    score(x, y) = (phi_target(x, y) - mean_r phi_r(x, y)) / sigma

``sigma`` = the per-example standard deviation over the references when ``k >= 8``, else the
global one over all examples (Carlini et al. use a fixed variance for few references). The
score is the one-sided z statistic of the likelihood-ratio test against the OUT Gaussian, so
it ranks as the offline LiRA statistic does. RMIA (Zarifzadeh et al., ICML 2024) would need the
same reference models; it is not implemented here.

Example::

    >>> import torch
    >>> with torch.random.fork_rng():
    ...     refs = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)) for _ in range(2)]
    >>> x, y = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> LiRAOffline(refs).scores(refs[0], x, y).shape
    (6,)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy._common import TrainFn, check_pair, check_pool, logits_of, random_halves, true_class_logit_gap
from neurofuzz.privacy.metrics import MembershipMetrics, membership_metrics

MIN_PER_SIDE = 10


def train_references(train_fn: TrainFn, x: Any, y: Any, *, k: int = 4, seed: int = 0) -> list[nn.Module]:
    """``k`` reference models, each trained with ``train_fn(x, y, seed)`` on a random half of the pool."""
    x, y = check_pair(x, y, "reference data")
    if not (isinstance(k, int) and k >= 1):
        raise UserError(f"the number of reference models must be a whole number >= 1, got {k!r}")
    check_pool(len(x), k=k, n_classes=int(y.max()) + 1, minimum=MIN_PER_SIDE, what="reference models")
    masks = random_halves(len(x), k, seed + 7)
    return [train_fn(x[torch.from_numpy(m)], y[torch.from_numpy(m)], seed + 2000 + i) for i, m in enumerate(masks)]


class LiRAOffline:
    """Offline LiRA from ``references`` (OUT models for every example attacked)."""

    def __init__(self, references: list[Any]) -> None:
        if not references:
            raise UserError("LiRA needs at least one reference model (see train_references)")
        self.references = list(references)

    def scores(self, model: Any, x: Any, y: Any) -> np.ndarray:
        x, y = check_pair(x, y, "examples to attack")
        phi_t = true_class_logit_gap(logits_of(model, x), y)
        phi_r = torch.stack([true_class_logit_gap(logits_of(r, x), y) for r in self.references])  # [k, n]
        mu = phi_r.mean(0)
        if len(self.references) >= 8:
            sd = phi_r.std(0).clamp_min(1e-3)
        else:
            sd = (phi_r - mu).pow(2).mean().sqrt().clamp_min(1e-3) if len(self.references) > 1 else torch.tensor(1.0)
        return ((phi_t - mu) / sd).numpy()

    def evaluate(self, model: Any, members: tuple[Any, Any], nonmembers: tuple[Any, Any]) -> MembershipMetrics:
        si, so = self.scores(model, *members), self.scores(model, *nonmembers)
        return membership_metrics(np.r_[si, so], np.r_[np.ones(len(si)), np.zeros(len(so))])
