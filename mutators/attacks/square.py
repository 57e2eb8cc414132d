"""Square attack, L-infinity, score-based (Andriushchenko, Croce, Flammarion and Hein, "Square
Attack: a query-efficient black-box adversarial attack via random search", ECCV 2020).

Random search on the margin loss ``z_y - max_{j != y} z_j`` (targeted: ``max_{j != t} z_j - z_t``)
of the logits. Start from vertical stripes: ``x + eps * s`` with one random sign per channel and
column (one query). Then, per iteration, pick a random square of side
``s = round(sqrt(p * H * W))`` (clamped to ``[1, min(H, W) - 1]``) and set the perturbation inside it to
``+eps`` or ``-eps`` (one random sign per channel); keep the candidate if its margin is lower.
The fraction ``p`` starts at ``p_init`` and is halved on the schedule of the paper
(iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000, rescaled to the budget).
Each input stops as soon as it is misclassified (targeted: classified as the target) or has
spent ``max_queries``. A candidate equal to the current iterate is not evaluated (the paper
redraws it instead). The perturbation never leaves the eps-ball: ``||x_adv - x||_inf <= eps``.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import EPS, AttackRun, Param, as_mutator, project_linf, view4
from neurofuzz.mutators.attacks.blackbox import MAX_QUERIES, BlackBoxAttack, QueryOracle, draw, rows
from neurofuzz.mutators.base import Params, per_input_generators

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: torch.Tensor, it: int, n_iters: torch.Tensor) -> torch.Tensor:
    """The paper's schedule: ``p_init`` halved at each of ``_HALVINGS`` passed by ``it`` (on a
    10,000-iteration scale)."""
    scaled = (it * 10_000) // n_iters.clamp_min(1)
    halvings = sum((scaled > h).long() for h in _HALVINGS)
    return p_init * 0.5 ** halvings.double()


class Square(BlackBoxAttack):
    """Square attack (score-based random search), L-infinity.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = Square(builtin_target(), eps=0.3, max_queries=200)
        >>> x_adv = attack(x[:8], y[:8], rng=torch.Generator().manual_seed(0))
        >>> bool((x_adv - x[:8]).abs().max() <= 0.3 + 1e-6), bool((attack.last_queries <= 200).all())
        (True, True)
    """

    name = "square"

    params = {
        "eps": EPS,
        "max_queries": MAX_QUERIES,
        "p_init": Param(0.3, (0.001, 1.0), None, "initial fraction of the pixels per square (the paper: 0.05 on ImageNet)"),
    }

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> tuple[torch.Tensor, Params]:
        b, c, h, w = x.shape
        budget = p["max_queries"].long()
        oracle = QueryOracle(run, budget)
        gens = per_input_generators(p["seed"])
        eps = view4(p["eps"], x)
        everyone = torch.arange(b)
        stripes = draw(gens, everyone, lambda g: torch.rand(c, 1, w, generator=g), x)
        x_best = project_linf(x + torch.where(stripes < 0.5, -eps, eps), x, eps, run.bounds)
        loss, done = oracle.scores(x_best, everyone)
        hh, ww = torch.arange(h, device=x.device).view(1, h, 1), torch.arange(w, device=x.device).view(1, 1, w)
        for it in range(1, int(budget.max())):
            idx = rows(~done.cpu() & (budget > it) & (p["eps"] > 0))  # eps = 0: nothing to search
            if not len(idx):
                break
            frac = square_fraction(p["p_init"][idx].double(), it, budget[idx])
            side = (frac * h * w).sqrt().round().long().clamp(1, max(min(h, w) - 1, 1))
            u = draw(gens, idx, lambda g: torch.rand(2 + c, generator=g), x).double()
            top = (u[:, 0].cpu() * (h - side + 1)).long().to(x.device).view(-1, 1, 1)
            left = (u[:, 1].cpu() * (w - side + 1)).long().to(x.device).view(-1, 1, 1)
            side = side.to(x.device).view(-1, 1, 1)
            window = ((hh >= top) & (hh < top + side) & (ww >= left) & (ww < left + side)).unsqueeze(1)
            e = eps[idx]
            signs = torch.where(u[:, 2:] < 0.5, -1.0, 1.0).to(x.dtype).view(-1, c, 1, 1)
            xi, cur = x[idx], x_best[idx]
            cand = project_linf(torch.where(window, xi + signs * e, cur), xi, e, run.bounds)
            moved = (cand != cur).flatten(1).any(1)
            if not bool(moved.any()):
                continue
            sel, cand = idx[moved.cpu()], cand[moved]
            new_loss, new_done = oracle.scores(cand, sel)
            better = new_loss < loss[sel]
            keep = sel[better.cpu()]
            x_best[keep], loss[keep], done[keep] = cand[better], new_loss[better], new_done[better]
        return x_best, oracle.outcomes()


SquareMutator = as_mutator(Square)
