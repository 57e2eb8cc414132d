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
from torch import nn

from neurofuzz.fuzzer.errors import UserError
from neurofuzz.mutators.attacks.base import AttackRun, project_linf, view4
from neurofuzz.mutators.attacks.blackbox import BlackBoxAttack, BlackBoxMutator, QueryOracle, draw, rows
from neurofuzz.mutators.base import Params, Range, per_input_generators
from neurofuzz.mutators.registry import register

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: torch.Tensor, it: int, n_iters: torch.Tensor) -> torch.Tensor:
    """The paper's schedule: ``p_init`` halved at each of ``_HALVINGS`` passed by ``it`` (on a
    10,000-iteration scale)."""
    scaled = (it * 10_000) // n_iters.clamp_min(1)
    halvings = sum((scaled > h).long() for h in _HALVINGS)
    return p_init * 0.5 ** halvings.double()


class Square(BlackBoxAttack):
    """Square attack (score-based random search), L-infinity.

    Args:
        model: a Target or an ``nn.Module`` returning logits (only its logits are used).
        eps: L-infinity radius (raw input units); default 0.3 (digits).
        max_queries: model queries per input, >= 1; default 1000.
        p_init: initial fraction of pixels changed per step, in (0, 1]; default 0.3 (for small
            images; the paper uses 0.05 on ImageNet).
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Shapes: ``x`` float ``[B, C, H, W]`` in bounds, ``y`` int64 ``[B]`` -> ``x_adv`` like ``x``;
    ``attack.last_queries`` int64 ``[B]``.

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

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        max_queries: int = 1000,
        p_init: float = 0.3,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)
        self.max_queries = self._budget(self.name, max_queries)
        self.p_init = self._positive(self.name, "p_init", p_init)
        if self.p_init > 1:
            raise UserError(f"{self.name}: p_init must be in (0, 1], got {p_init!r}")

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"eps": self.eps, "max_queries": self.max_queries, "p_init": self.p_init}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
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
        oracle.report()
        return x_best


@register
class SquareMutator(BlackBoxMutator):
    """Square attack, L-infinity (Andriushchenko et al., 2020) as a mutator; black-box (logits).

    Args:
        eps: ``(lo, hi)`` radius per input, fraction of the bounds' range; default (0.05, 0.3).
        max_queries: ``(lo, hi)`` query budget per input; default 300.
        p_init: ``(lo, hi)`` initial fraction of changed pixels; default 0.3.
        targeted: ``"no"``, ``"next"`` or ``"random"``.

    Records ``seed`` and, after the run, ``queries`` (model queries spent) per input.
    """

    name = "square"
    attack = Square
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "max_queries": Range(1, 100_000, (300, 300), integer=True, doc="query budget per input"),
        "p_init": Range(0.001, 1.0, (0.3, 0.3), doc="initial fraction of pixels per square"),
        "targeted": BlackBoxMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "eps": self.uniform("eps", batch, rng),
            "max_queries": self.uniform("max_queries", batch, rng),
            "p_init": self.uniform("p_init", batch, rng),
            "seed": self.seeds(batch, rng),
        }
