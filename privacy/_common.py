"""Shared helpers of the privacy evaluators: a model as a Target, per-example outputs, subsets."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target

TrainFn = Callable[[torch.Tensor, torch.Tensor, int], nn.Module]  # (x, y, seed) -> trained model


def as_target(model: nn.Module | Target) -> Target:
    """A :class:`Target` as it is; a bare module wrapped with bounds (0, 1) and no normalisation."""
    return model if isinstance(model, Target) else Target(model)


@torch.no_grad()
def logits_of(model: nn.Module | Target, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    t = as_target(model)
    out = [t(x[i : i + batch_size].to(t.device)).double().cpu() for i in range(0, len(x), batch_size)]
    if not out:
        raise UserError("no inputs given to evaluate")
    z = torch.cat(out)
    if not torch.isfinite(z).all():
        raise UserError("the model returns NaN or Inf logits; fix the model before evaluating its privacy")
    return z


def check_pair(x: Any, y: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y).long()
    if x.dim() < 2 or len(x) != len(y) or len(x) == 0:
        raise UserError(f"{what}: {len(x)} inputs and {len(y)} labels; give the same number, at least one")
    return x, y


def true_class_logit_gap(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log p_y - log(1 - p_y)``, computed stably (LiRA's logit-scaled confidence)."""
    zy = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.clone()
    others.scatter_(1, y.view(-1, 1), float("-inf"))
    return zy - torch.logsumexp(others, dim=1)


def losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def random_halves(n: int, k: int, seed: int) -> list[np.ndarray]:
    """``k`` boolean masks over ``n`` examples, each selecting a random half (seeded)."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(k):
        m = np.zeros(n, dtype=bool)
        m[rng.permutation(n)[: n // 2]] = True
        masks.append(m)
    return masks


def check_pool(n: int, *, k: int, n_classes: int, minimum: int, what: str) -> None:
    if n // 2 < max(minimum, n_classes):
        raise UserError(f"{what}: the attacker's data holds {n} examples, too few to train {k} model(s) on halves of "
                        f"it (need at least {2 * max(minimum, n_classes)}); give more data or use fewer classes")
