"""JSMA: the Jacobian-based saliency map attack, L0 (Papernot, McDaniel, Jha, Fredrikson, Celik
and Swami, "The Limitations of Deep Learning in Adversarial Settings", IEEE EuroS&P 2016).

Targeted, on the logits ``z`` (the "JSMA-Z" variant of Carlini and Wagner). Per iteration, from
the input gradients ``a = grad z_t`` and ``b = grad sum_{j != t} z_j``, the saliency of a pair of
input values ``(p, q)`` is ``-(a_p + a_q)(b_p + b_q)`` where ``a_p + a_q > 0`` and
``b_p + b_q < 0`` (both signs flipped for ``theta < 0``), and the most salient pair of the search
domain is changed by ``theta`` (clipped to the bounds), then removed from the domain. The domain
starts as the values that can still move (below the upper bound for ``theta > 0``, above the
lower bound otherwise). An input stops when it is classified as the target, when no pair
qualifies, or after ``floor(gamma * C*H*W / 2)`` iterations, so at most a fraction ``gamma`` of
the values changes (``L0 <= gamma * C*H*W``). Untargeted (an extension): the same with ``a =
-grad z_y`` and ``b = -grad sum_{j != y} z_j``, lowering the true class.

Vectorised over the batch; the pair search costs ``(C*H*W)^2`` per input and iteration (done
in chunks of inputs to bound memory), which makes JSMA the slowest attack here.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators.attacks.base import Attack, AttackRun, Param, as_mutator
from neurofuzz.mutators.attacks.logits import forward_logits, is_adversarial
from neurofuzz.mutators.base import Params

PAIR_CHUNK = 1 << 22  # pair scores held at once (x 4 bytes, a few tensors)


def best_pairs(a: torch.Tensor, b: torch.Tensor, domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Most salient pair per row of ``a, b, domain`` ``[k, n]``: indices ``p, q`` ``[k]`` and
    whether a pair qualified at all (``a_p + a_q > 0``, ``b_p + b_q < 0``, both in the domain).

    The saliency ``-(a_p + a_q)(b_p + b_q)`` of a qualifying pair is positive; with ``A`` clamped
    at 0 every other pair scores ``<= 0``, so one max over ``-max(A, 0) * B`` finds the best
    qualifying pair, and a best score ``<= 0`` means none qualifies."""
    k, n = a.shape
    a = a.masked_fill(~domain, float("-inf"))  # a pair with a value outside the domain has A = -inf
    chunk = max(1, PAIR_CHUNK // (n * n))
    ps, qs, oks = [], [], []
    for s in range(0, k, chunk):
        big = (a[s : s + chunk].unsqueeze(2) + a[s : s + chunk].unsqueeze(1)).clamp_(min=0.0)
        big.diagonal(dim1=1, dim2=2).zero_()
        big.mul_(b[s : s + chunk].unsqueeze(2) + b[s : s + chunk].unsqueeze(1))  # -saliency
        value, flat = big.flatten(1).min(1)
        ps.append(flat // n), qs.append(flat % n), oks.append(value < 0)
    return torch.cat(ps), torch.cat(qs), torch.cat(oks)


class JSMA(Attack):
    """Jacobian-based saliency map attack (pairs of values), L0; targeted by default.

    ``targeted`` defaults to True (without ``target_labels``: the next class, ``(y + 1) mod n``;
    as a mutator: ``"random"``); False runs the untargeted extension.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> x_adv = JSMA(target, gamma=0.1)(x[:4], y[:4])
        >>> bool(((x_adv != x[:4]).flatten(1).sum(1) <= 0.1 * 32 * 32).all())
        True
    """

    name = "jsma"

    targeted_default = True
    params = {
        "theta": Param(1.0, (-1.0, 1.0), None, "change of each selected value (negative decreases)", scaled=True),
        # as a mutator: DeepHunter's default L0 budget (2 % of the values), so that its mutants stay valid
        "gamma": Param(0.1, (0.0, 1.0), (0.02, 0.02), "largest fraction of the values changed"),
    }

    @classmethod
    def check_values(cls, name: str, values: dict[str, Any], *, standalone: bool) -> None:
        if values["theta"] == (0.0, 0.0):
            raise UserError(f"{name}: theta must be non-zero (the change of each selected value)")

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        b, n = x.shape[0], x[0].numel()
        lo, hi = run.bounds
        theta = p["theta"].to(x.device, x.dtype)
        direction = torch.where(theta >= 0, 1.0, -1.0).to(x.dtype).view(-1, 1)
        iters = torch.floor(p["gamma"].double() * n / 2).long()
        flat = x.detach().flatten(1).clone()
        domain = torch.where(direction > 0, flat < hi, flat > lo)
        active = torch.ones(b, dtype=torch.bool)
        for t in range(int(iters.max()) + 1 if b else 0):  # the last pass only judges
            idx = (active & (iters >= t)).nonzero().flatten()
            if not len(idx):
                break
            xi = flat[idx].view(-1, *x.shape[1:]).requires_grad_(True)
            logits = forward_logits(run, xi)
            labels = run.labels[idx.to(x.device)]
            own = logits.gather(1, labels.view(-1, 1)).sum()
            (g_own,) = torch.autograd.grad(own, xi, retain_graph=True)
            (g_all,) = torch.autograd.grad(logits.sum(), xi)
            g_own, g_rest = g_own.flatten(1), (g_all - g_own).flatten(1)
            if not run.targeted:  # lower the true class instead of raising the target
                g_own, g_rest = -g_own, -g_rest
            done = is_adversarial(logits.detach(), labels, targeted=run.targeted).cpu()
            go = ~done & (iters[idx] > t)
            active[idx[~go]] = False
            if not bool(go.any()):
                continue
            sel, gd = idx[go], go.to(x.device)
            d = direction[sel.to(x.device)]
            pq, qq, ok = best_pairs(g_own[gd] * d, g_rest[gd] * d, domain[sel])
            active[sel[~ok.cpu()]] = False  # no qualifying pair left
            step = theta[sel.to(x.device)] * ok.to(x.dtype)
            for col in (pq, qq):
                flat[sel, col] = (flat[sel, col] + step).clamp(lo, hi)
                domain[sel, col] = domain[sel, col] & ~ok
        return flat.view_as(x)


JSMAMutator = as_mutator(JSMA)
