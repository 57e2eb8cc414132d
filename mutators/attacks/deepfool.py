"""DeepFool, L2 (Moosavi-Dezfooli, Fawzi and Frossard, "DeepFool: a simple and accurate method
to fool deep neural networks", CVPR 2016).

At the current iterate ``x_i`` the classifier is linearised around the true class ``y``: for
every other class ``k``, ``w_k = grad f_k(x_i) - grad f_y(x_i)`` and ``f'_k = f_k(x_i) -
f_y(x_i)`` (``f`` the logits). The closest linearised boundary is ``l = argmin_k |f'_k| /
||w_k||_2`` and the minimal step onto it ``r_i = (|f'_l| + 1e-4) / ||w_l||^2 * w_l``. The steps
accumulate, ``r = sum r_i``, and the iterate is ``x_{i+1} = clip(x + (1 + overshoot) * r)``
(Foolbox's form of the overshoot); an input stops as soon as it is misclassified, or after
``steps`` iterations. Targeted (an extension of the paper): only the boundary to the target
class is considered, and the input stops once it is classified as the target.
Deterministic. Each iteration costs one forward pass and ``n_classes`` backward passes (the
Jacobian), on the inputs still running only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun, view4
from neurofuzz.mutators.attacks.logits import forward_logits, is_adversarial
from neurofuzz.mutators.base import Params, Range
from neurofuzz.mutators.registry import register


def logits_and_jacobian(run: AttackRun, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[n, K]`` and their input Jacobian ``[n, K, C, H, W]`` (one backward pass per
    class; inputs are independent, so summing over the batch gives per-input gradients)."""
    x = x.detach().requires_grad_(True)
    logits = forward_logits(run, x)
    rows = [torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k + 1 < logits.shape[1])[0]
            for k in range(logits.shape[1])]
    return logits.detach(), torch.stack(rows, 1)


def y_of(run: AttackRun, idx: torch.Tensor) -> torch.Tensor:
    """The class DeepFool linearises around: the true label (also when targeted)."""
    return run.y[idx.to(run.y.device)]


class DeepFool(Attack):
    """DeepFool, L2: iterated minimal steps onto the linearised decision boundary.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        steps: maximum iterations (``max_iter``); default 50.
        overshoot: relative overshoot of the accumulated step; default 0.02 (the paper's).
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Shapes: ``x`` float ``[B, C, H, W]`` in bounds, ``y`` int64 ``[B]`` -> ``x_adv`` like ``x``.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> x_adv = DeepFool(target)(x[:8], y[:8])
        >>> bool((target.predict(x_adv) != y[:8]).all())
        True
    """

    name = "deepfool"

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 50,
        overshoot: float = 0.02,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.steps = self._count(self.name, "steps", steps)
        self.overshoot = self._positive(self.name, "overshoot", overshoot, zero_ok=True)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"steps": self.steps, "overshoot": self.overshoot}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        steps, overshoot = p["steps"].long(), view4(p["overshoot"], x)
        r_tot, x_adv = torch.zeros_like(x), x.clone()
        active = torch.ones(x.shape[0], dtype=torch.bool)
        for t in range(int(steps.max()) if len(steps) else 0):
            idx = (active & (steps > t)).nonzero().flatten()
            if not len(idx):
                break
            logits, jac = logits_and_jacobian(run, x_adv[idx])
            own = y_of(run, idx)
            done = is_adversarial(logits, run.labels[idx], targeted=run.targeted).cpu()
            active[idx[done]] = False
            keep = ~done
            idx, logits, jac, own = idx[keep], logits[keep.to(x.device)], jac[keep.to(x.device)], own[keep.to(x.device)]
            if not len(idx):
                break
            ar = torch.arange(len(idx), device=x.device)
            f = logits - logits[ar, own].unsqueeze(1)  # f'_k = f_k - f_y, [n, K]
            w = jac - jac[ar, own].unsqueeze(1)  # [n, K, C, H, W]
            norms = w.flatten(2).norm(dim=2)  # [n, K]
            dist = f.abs() / norms.clamp_min(1e-12)
            if run.targeted:
                k = run.labels[idx.to(run.labels.device)]
            else:
                k = dist.scatter(1, own.view(-1, 1), float("inf")).argmin(1)
            w_l, f_l, n_l = w[ar, k], f[ar, k], norms[ar, k]
            r = view4((f_l.abs() + 1e-4) / n_l.clamp_min(1e-12) ** 2, x) * w_l
            r_tot[idx] += r
            x_adv[idx] = (x[idx] + (1 + overshoot[idx]) * r_tot[idx]).clamp(*run.bounds)
        return x_adv


@register
class DeepFoolMutator(AttackMutator):
    """DeepFool, L2 (Moosavi-Dezfooli et al., 2016) as a mutator; deterministic.

    Args:
        steps: ``(lo, hi)`` maximum iterations per input; default 50.
        overshoot: ``(lo, hi)`` overshoot per input; default 0.02.
        targeted: ``"no"``, ``"next"`` or ``"random"`` (an extension: towards the target class).
    """

    name = "deepfool"
    attack = DeepFool
    scaled = ()
    schema = {
        "steps": Range(0, 1000, (50, 50), integer=True, doc="maximum iterations"),
        "overshoot": Range(0.0, 10.0, (0.02, 0.02), doc="relative overshoot of the step"),
        "targeted": AttackMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {"steps": self.uniform("steps", batch, rng), "overshoot": self.uniform("overshoot", batch, rng)}
