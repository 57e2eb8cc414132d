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

from neurofuzz.mutators.attacks.base import Attack, AttackRun, Param, as_mutator, view4
from neurofuzz.mutators.attacks.logits import forward_logits, is_adversarial
from neurofuzz.mutators.base import Params


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

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> x_adv = DeepFool(target)(x[:8], y[:8])
        >>> bool((target.predict(x_adv) != y[:8]).all())
        True
    """

    name = "deepfool"

    params = {
        "steps": Param(50, (0, 1000), None, "maximum iterations (max_iter)", integer=True),
        "overshoot": Param(0.02, (0.0, 10.0), None, "relative overshoot of the accumulated step (the paper's 0.02)"),
    }

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


DeepFoolMutator = as_mutator(DeepFool)
