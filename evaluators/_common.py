"""Helpers shared by the evaluators (private to :mod:`neurofuzz.evaluators`): boundary checks for
labels and probabilities, running a model in chunks, safe means.

Example::

    >>> import torch
    >>> as_labels(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 2, "y").tolist()  # one-hot -> indices
    [1, 0]
    >>> mean_or_nan(3.0, 2), mean_or_nan(0.0, 0)
    (1.5, nan)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import extract_logits
from neurofuzz.mutators.attacks.base import eval_mode

PROB_TOL = 1e-3  # how far a row of probabilities may sum from 1


def check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def spans(n: int, batch_size: int) -> Iterator[slice]:
    """``slice`` objects covering ``range(n)`` in chunks of ``batch_size``."""
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def mean_or_nan(total: float, count: int) -> float:
    """``total / count``, or NaN when ``count`` is 0 (nothing to average over)."""
    return float(total) / count if count else float("nan")


def as_images(x: Any, what: str) -> torch.Tensor:
    """A float batch ``[B, ...]`` (at least 2-D) on the CPU or wherever it is."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise UserError(f"{what}: expected a tensor [B, C, H, W], got {type(x).__name__}") from None
    if x.dim() < 2 or not x.dtype.is_floating_point:
        raise UserError(f"{what}: expected a float batch [B, C, H, W], got shape {list(x.shape)} dtype {x.dtype}")
    return x


def as_labels(y: Any, n: int, what: str) -> torch.Tensor:
    """Integer labels ``[n]`` (int64, CPU). One-hot (or probability) rows ``[n, K]`` are reduced
    with argmax, as MindArmour accepts both."""
    t = torch.as_tensor(y)
    if t.dim() == 2 and t.shape[0] == n:
        t = t.argmax(dim=1)
    if t.dim() != 1 or t.shape[0] != n or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise UserError(
            f"{what}: expected {n} integer class indices (shape [{n}]) or one-hot rows [{n}, K], "
            f"got shape {list(t.shape)} dtype {t.dtype}"
        )
    return t.to("cpu", torch.int64)


def as_probs(p: Any, n: int, what: str) -> torch.Tensor:
    """Probability rows ``[n, K]`` as float64 on the CPU: finite, in [0, 1], each row summing to 1
    within :data:`PROB_TOL`. Logits are refused (apply a softmax first)."""
    t = torch.as_tensor(p)
    if t.dim() != 2 or t.shape[0] != n or t.shape[1] < 1 or not t.dtype.is_floating_point:
        raise UserError(f"{what}: expected float probabilities [{n}, n_classes], got shape {list(t.shape)} dtype {t.dtype}")
    t = t.detach().to("cpu", torch.float64)
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise UserError(f"{what}: probabilities must be finite numbers in [0, 1]; if these are logits, apply softmax first")
    if n and ((t.sum(dim=1) - 1.0).abs() > PROB_TOL).any():
        raise UserError(f"{what}: each row must sum to 1 (within {PROB_TOL:g}); if these are logits, apply softmax first")
    return t


def model_device(model: Callable[..., Any]) -> torch.device:
    """Where ``model`` runs: ``model.device`` (a Target), else its first parameter's device, else CPU."""
    dev = getattr(model, "device", None)
    if isinstance(dev, (str, torch.device)):
        return torch.device(dev)
    if isinstance(model, torch.nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


def model_bounds(model: Any, bounds: tuple[float, float] | None) -> tuple[float, float]:
    """``bounds`` if given, else the model's (a Target's) bounds, else ``(0, 1)``; checked."""
    if bounds is None:
        bounds = getattr(model, "bounds", (0.0, 1.0))
    try:
        lo, hi = float(bounds[0]), float(bounds[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        raise UserError(f"bounds must be a (lower, upper) pair of numbers, got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserError(f"bounds must be finite with lower < upper, got {bounds!r}")
    return lo, hi


@torch.no_grad()
def model_probs(model: Callable[[torch.Tensor], Any], x: torch.Tensor, what: str) -> torch.Tensor:
    """Softmax probabilities ``[B, K]`` (float64, CPU) of ``model`` (a callable returning logits)
    on ``x``. An ``nn.Module`` runs in eval mode (its previous modes are restored)."""
    dev = model_device(model)
    if isinstance(model, torch.nn.Module):
        with eval_mode(model):
            out = model(x.to(dev))
    else:
        out = model(x.to(dev))
    logits = extract_logits(out)
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise UserError(f"the model returned logits of shape {list(logits.shape)} for {x.shape[0]} {what}; "
                        "it must return [batch, n_classes]")
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits).all(dim=1)).sum())
        raise UserError(f"the model returned non-finite logits (NaN or Inf) for {bad} of {x.shape[0]} {what}; "
                        "check the model and the inputs' range")
    return torch.softmax(logits.detach().to("cpu", torch.float64), dim=1)
