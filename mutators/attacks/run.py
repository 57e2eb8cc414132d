"""Running an attack on a batch: the final template and the helpers every attack shares.

* :func:`attack_batch` (the final template): validate the batch and the labels, put the model
  in eval mode (restoring every module's previous mode afterwards), enable autograd even under
  ``torch.no_grad()`` / ``inference_mode``, run ``perturb``, clip into bounds, detach. It returns
  an :class:`AttackResult`: the batch and the per-input outcomes that ``perturb`` returned
  explicitly (black-box attacks: ``queries``); :func:`run_attack` returns the batch only.
* :meth:`AttackRun.grad`: the gradient of the loss with respect to the *input only*, through
  :func:`torch.autograd.grad`, so parameter ``.grad`` fields are never written.
* :func:`project_linf` / :func:`project_l2`: projection onto the eps-ball and clipping to the
  bounds, in one place.

Loss and reduction. The loss is cross-entropy on the logits with ``reduction="sum"``: each
input's gradient is then independent of the batch size (no ``1/B`` factor that could underflow),
and because every step here uses only the *direction* of the gradient (its sign, its L2- or
L1-normalised value) the steps equal those of mean-reduction implementations (torchattacks, ART)
-- bit for bit whenever ``1/B`` is exact (power-of-two batches). ``torch.sign`` is 0 at 0, so a
pixel with a zero gradient is not moved. Untargeted attacks ascend the loss of the true label;
targeted attacks descend the loss of the target label (they ascend ``-CE``).

Targets. ``targeted`` without given target labels aims at ``(y + 1) mod n_classes``, or, with a
recorded per-input offset ``shift``, at ``(y + 1 + shift mod (n_classes - 1)) mod n_classes``
(:func:`target_labels_from`); never the true label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import extract_logits
from neurofuzz.mutators.base import Params


TARGET_MODES = ("no", "next", "random")


def target_labels_from(y: torch.Tensor, n_classes: int, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Target labels that differ from ``y``: ``(y + 1 + shift mod (n - 1)) mod n`` (``shift=None``
    means 0, i.e. the next class)."""
    if n_classes < 2:
        raise UserError(f"a targeted attack needs at least 2 classes, the model has {n_classes}")
    k = 1 if shift is None else 1 + shift.to(y.device) % (n_classes - 1)
    return (y + k) % n_classes


class AttackRun:
    """What ``perturb`` needs: the model, the labels to attack and the bounds.

    ``labels`` are resolved lazily at the first forward pass (the number of classes is the width
    of the logits), so no extra forward pass is spent on it.
    """

    def __init__(
        self,
        model: nn.Module,
        y: torch.Tensor,
        *,
        bounds: tuple[float, float],
        targeted: bool,
        target_labels: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.y = y
        self.bounds = bounds
        self.targeted = targeted
        self._target_labels = target_labels
        self._shift = shift
        self.labels: torch.Tensor | None = None
        param = next((q for q in model.parameters() if q.is_floating_point()), None)
        self.model_dtype = param.dtype if param is not None else None

    def _resolve(self, n_classes: int) -> torch.Tensor:
        given = self._target_labels if self._target_labels is not None else self.y
        if int(given.min()) < 0 or int(given.max()) >= n_classes:
            what = "target_labels" if self._target_labels is not None else "labels y"
            raise UserError(f"{what} must lie in [0, {n_classes - 1}] (the model has {n_classes} classes)")
        if self.targeted and self._target_labels is None:
            return target_labels_from(self.y, n_classes, self._shift)
        return given

    def grad(self, x_adv: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Gradient, with respect to ``x_adv`` only, of the objective the attack *ascends*:
        ``CE(logits, y)`` (untargeted) or ``-CE(logits, target)`` (targeted), summed over the
        batch. ``transform`` (differentiable) is applied to the input before the model."""
        x_adv = x_adv.detach().requires_grad_(True)
        x_in = x_adv if transform is None else transform(x_adv)
        if self.model_dtype is not None and x_in.dtype != self.model_dtype:
            x_in = x_in.to(self.model_dtype)  # differentiable cast; the gradient comes back in x's dtype
        logits = extract_logits(self.model(x_in))
        if logits.dim() != 2 or logits.shape[0] != x_adv.shape[0]:
            raise UserError(f"the model must return logits [B, n_classes]; got shape {tuple(logits.shape)}")
        if self.labels is None:
            self.labels = self._resolve(logits.shape[1])
        loss = F.cross_entropy(logits, self.labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        return g.neg_() if self.targeted else g


def view4(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-input tensor ``[B]`` as ``[B, 1, 1, 1]`` on ``like``'s device and dtype."""
    return t.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``clip(x + clip(x_adv - x, -eps, eps), lower, upper)`` (``eps`` is ``[B, 1, 1, 1]``)."""
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return (x + delta).clamp_(bounds[0], bounds[1])


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-input L2 norms as ``[B, 1, 1, 1]``."""
    return torch.linalg.vector_norm(t.flatten(1), ord=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Scale ``x_adv - x`` back into the L2 ball of radius ``eps``, then clip to the bounds.
    Clipping only moves coordinates towards ``x`` (which is inside the bounds), so the result
    stays inside the ball."""
    delta = x_adv - x
    factor = torch.clamp(eps / l2_norms(delta).clamp_min(1e-12), max=1.0)
    return (x + delta * factor).clamp_(bounds[0], bounds[1])


def random_fields(seeds: torch.Tensor, shape: torch.Size, kind: str, like: torch.Tensor) -> torch.Tensor:
    """One random field per input from its recorded seed (``kind``: ``uniform`` in [-1, 1],
    ``normal``, or ``sign`` of a normal draw), so that one input can be replayed alone."""
    fields = []
    for s in seeds.tolist():
        g = torch.Generator().manual_seed(int(s))
        if kind == "uniform":
            fields.append(torch.empty(shape).uniform_(-1.0, 1.0, generator=g))
        else:
            fields.append(torch.randn(shape, generator=g))
    out = torch.stack(fields).to(device=like.device, dtype=like.dtype)
    return out.sign_() if kind == "sign" else out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run with every submodule in eval mode; restore each module's previous mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def model_bounds(model: nn.Module, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        bounds = getattr(model, "bounds", (0.0, 1.0))
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise UserError(f"bounds must satisfy lower < upper, got {bounds!r}")
    return lo, hi


@dataclass
class AttackResult:
    """An attacked batch and its per-input outcomes (``{name: tensor [B]}``, e.g. ``queries``:
    the model queries a black-box attack spent on each input)."""

    x: torch.Tensor
    outcomes: Params = field(default_factory=dict)


def attack_batch(
    perturb: Callable[..., torch.Tensor | tuple[torch.Tensor, Params]],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Params,
    *,
    name: str,
    bounds: tuple[float, float],
    targeted: bool = False,
    target_labels: torch.Tensor | None = None,
    options: dict[str, Any] | None = None,
) -> AttackResult:
    """Final template shared by every attack: validate, run ``perturb`` in eval mode with
    autograd enabled, clip into ``bounds``; the batch comes back detached, of ``x``'s shape, with
    the outcomes ``perturb`` returned (``perturb`` returns ``x_adv`` or ``(x_adv, outcomes)``)."""
    if not isinstance(model, nn.Module):
        raise UserError(f"{name}: the model must be a torch.nn.Module (or a neurofuzz Target), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.dtype.is_floating_point:
        raise UserError(f"{name}: expected a float batch [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    lo, hi = bounds
    if x.numel() and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
        raise UserError(f"{name}: the batch has values outside the bounds [{lo:g}, {hi:g}]; clip it or pass matching bounds")

    def labels(t: Any, what: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool or t.shape != (x.shape[0],):
            got = getattr(t, "shape", type(t))
            raise UserError(f"{name}: {what} must be an integer tensor of shape [{x.shape[0]}], got {got}")
        return t.to(device=x.device, dtype=torch.long)

    y = labels(y, "labels y")
    if target_labels is not None:
        target_labels = labels(target_labels, "target_labels")
        targeted = True
    if x.shape[0] == 0:
        return AttackResult(x.detach().clone())
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        x0 = x.detach().clone() if x.is_inference() else x.detach()
        run = AttackRun(model, y, bounds=(lo, hi), targeted=targeted, target_labels=target_labels, shift=params.get("shift"))
        out = perturb(run, x0, params, **(options or {}))
    x_adv, outcomes = out if isinstance(out, tuple) else (out, {})
    return AttackResult(x_adv.detach().clamp(lo, hi).to(dtype=x.dtype), dict(outcomes))


def run_attack(perturb: Callable[..., Any], model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Params,
               **kwargs: Any) -> torch.Tensor:
    """:func:`attack_batch`, returning the attacked batch only."""
    return attack_batch(perturb, model, x, y, params, **kwargs).x
