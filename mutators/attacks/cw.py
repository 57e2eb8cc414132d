"""Carlini-Wagner L2 (Carlini and Wagner, "Towards Evaluating the Robustness of Neural
Networks", IEEE S&P 2017).

Change of variables into tanh space, ``x' = lower + (upper - lower) * (tanh(w) + 1) / 2`` (the
bounds hold by construction), and minimise, with Adam on ``w`` from ``w_0 = atanh(x)``,

    ||x' - x||_2^2 + c * max(z_y - max_{j != y} z_j, -kappa)

(targeted: ``max(max_{j != t} z_j - z_t, -kappa)``; ``z`` the logits). A binary search over the
constant ``c`` per input: after each of ``search_steps`` runs of ``steps`` Adam steps, ``c`` is
halved towards the last failure if the run found an adversarial example, else multiplied by 10
until a success bounds it (then bisected). Success means ``margin <= -kappa`` and ``margin < 0``
(see :mod:`~neurofuzz.mutators.attacks.logits`). The result is the adversarial example with the
smallest L2 distance found over all runs, ``x`` itself if none was found. The paper's defaults
(9 search steps of up to 10,000 iterations, ``lr = 0.01``, ``c_0 = 1e-3``) are far slower; the
small defaults here (5 x 50 steps, ``lr = 0.1``, ``c_0 = 1``) run in about a second on LeNet-5
with a batch of 64. Deterministic; the early abort of the paper is not used.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import Attack, AttackRun, Param, as_mutator, view4
from neurofuzz.mutators.attacks.logits import forward_logits, margin
from neurofuzz.mutators.base import Params

_BETAS, _ADAM_EPS, _NO_UPPER = (0.9, 0.999), 1e-8, 1e10


class CarliniWagnerL2(Attack):
    """Carlini-Wagner L2 attack (tanh space, Adam, binary search over ``c``).

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> x_adv = CarliniWagnerL2(target, steps=20, search_steps=2)(x[:8], y[:8])
        >>> int((target.predict(x_adv) != y[:8]).sum()) >= 6
        True
    """

    name = "cw_l2"

    params = {
        "c": Param(1.0, (1e-4, 1e4), None, "initial trade-off constant"),
        "kappa": Param(0.0, (0.0, 100.0), None, "confidence margin (logits)"),
        "steps": Param(50, (0, 10_000), (30, 30), "Adam steps per binary-search step", integer=True),
        "search_steps": Param(5, (1, 100), (3, 3), "binary-search steps over c", integer=True),
        "lr": Param(0.1, (1e-5, 10.0), None, "Adam learning rate (tanh space)"),
    }

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        b = x.shape[0]
        lo, hi = run.bounds
        steps, searches = p["steps"].long(), p["search_steps"].long()
        kappa, lr = p["kappa"].to(x.device, x.dtype), view4(p["lr"], x)
        const, lower, upper = p["c"].double().clone(), torch.zeros(b, dtype=torch.float64), torch.full((b,), _NO_UPPER, dtype=torch.float64)
        w0 = torch.atanh(((x - lo) / (hi - lo) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        best, best_l2 = x.clone(), torch.full((b,), float("inf"), dtype=x.dtype, device=x.device)
        for s in range(int(searches.max()) if b else 0):
            w, m, v = w0.clone(), torch.zeros_like(x), torch.zeros_like(x)
            found = torch.zeros(b, dtype=torch.bool)
            c_dev = const.to(x.device, x.dtype)
            for t in range(int(steps.max()) + 1):  # the last pass only judges the final iterate
                idx = ((searches > s) & (steps >= t)).nonzero().flatten()
                if not len(idx):
                    break
                wi = w[idx].requires_grad_(True)
                xi = lo + (hi - lo) * (torch.tanh(wi) + 1) / 2
                logits = forward_logits(run, xi)
                marg = margin(logits, run.labels[idx.to(x.device)], targeted=run.targeted)
                l2sq = (xi - x[idx]).flatten(1).pow(2).sum(1)
                with torch.no_grad():  # judge the current iterate
                    ok = (marg <= -kappa[idx]) & (marg < 0)
                    better = ok & (l2sq.sqrt() < best_l2[idx])
                    sel = idx[better.cpu()]
                    best[sel], best_l2[sel] = xi.detach()[better], l2sq.detach().sqrt()[better]
                    found[idx[ok.cpu()]] = True
                go = (steps[idx] > t).to(x.device)
                if not bool(go.any()):
                    continue
                loss = l2sq + c_dev[idx] * torch.clamp(marg, min=-kappa[idx])
                (g,) = torch.autograd.grad(loss.sum(), wi)
                j = idx[go.cpu()]
                g = g[go]
                m[j] = _BETAS[0] * m[j] + (1 - _BETAS[0]) * g
                v[j] = _BETAS[1] * v[j] + (1 - _BETAS[1]) * g * g
                m_hat, v_hat = m[j] / (1 - _BETAS[0] ** (t + 1)), v[j] / (1 - _BETAS[1] ** (t + 1))
                w[j] = w[j] - lr[j] * m_hat / (v_hat.sqrt() + _ADAM_EPS)
            running = searches > s  # binary search over c, per input
            win, lose = running & found, running & ~found
            upper = torch.where(win, torch.minimum(upper, const), upper)
            lower = torch.where(lose, torch.maximum(lower, const), lower)
            bounded = upper < _NO_UPPER / 10
            const = torch.where(running, torch.where(bounded, (lower + upper) / 2, const * 10), const)
        return best


CarliniWagnerL2Mutator = as_mutator(CarliniWagnerL2)
