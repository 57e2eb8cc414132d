"""PGD, L2: projected gradient descent in the L2 ball (Madry et al., "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018).

Optional random start ``x + r * eps * z / ||z||`` with ``z ~ N(0, I)`` and ``r ~ U(0, 1)`` per
input (clipped to the bounds), drawn from a per-input recorded seed; then ``steps`` times:
step ``alpha * grad / ||grad||_2``, rescale ``x_adv - x`` into the ball of radius ``eps``, clip
to the bounds. A zero gradient gives a zero step (no division by zero).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import (
    Attack, AttackMutator, AttackRun, l2_norms, project_l2, view4,
)
from neurofuzz.mutators.base import Choice, Params, Range, per_input_generators
from neurofuzz.mutators.registry import register


def l2_random_start(x: torch.Tensor, eps: torch.Tensor, seeds: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``x + r * eps * z / ||z||`` per input, ``z ~ N(0, I)``, ``r ~ U(0, 1)``, from recorded seeds."""
    fields, radii = [], []
    for g in per_input_generators(seeds):
        fields.append(torch.randn(x.shape[1:], generator=g))
        radii.append(torch.rand((), generator=g))
    z = torch.stack(fields).to(device=x.device, dtype=x.dtype)
    r = view4(torch.stack(radii), x)
    z = z / l2_norms(z).clamp_min(1e-12)
    return project_l2(x + z * (r * eps), x, eps, bounds)


class PGDL2(Attack):
    """Projected gradient descent in the L2 ball.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: L2 radius (raw input units, over all ``C*H*W`` values); default 2.0.
        alpha: L2 length of each step; default 0.1.
        steps: iterations; default 40.
        random_start: random point of the ball as start; default True.
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> d = PGDL2(builtin_target(), eps=1.0)(x[:8], y[:8]) - x[:8]
        >>> bool(d.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5)
        True
    """

    name = "pgd_l2"
    randomized = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 2.0,
        alpha: float = 0.1,
        steps: int = 40,
        random_start: bool = True,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)
        self.alpha = self._positive(self.name, "alpha", alpha)
        self.steps = self._count(self.name, "steps", steps)
        self.random_start = bool(random_start)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps}, {"random_start": self.random_start}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, *, random_start: bool = False, **options: Any) -> torch.Tensor:
        eps, alpha, steps = view4(p["eps"], x), view4(p["alpha"], x), p["steps"]
        x_adv = l2_random_start(x, eps, p["seed"], run.bounds) if random_start else x
        n_min, n_max = (int(steps.min()), int(steps.max())) if steps.numel() else (0, 0)
        for t in range(n_max):
            g = run.grad(x_adv)
            g = g.div_(l2_norms(g).clamp_min_(1e-12))
            x_new = project_l2(torch.addcmul(x_adv, alpha, g), x, eps, run.bounds)
            if t >= n_min:  # some inputs have already done all their steps
                x_new = torch.where(view4(steps > t, x).bool(), x_new, x_adv)
            x_adv = x_new
        return x_adv


@register
class PGDL2Mutator(AttackMutator):
    """PGD, L2 (Madry et al., 2018) as a mutator.

    Args:
        eps: ``(lo, hi)`` L2 radius per input, in units of the bounds' range; default (0.5, 2.0).
        alpha: ``(lo, hi)`` L2 step length per input; default 0.1.
        steps: ``(lo, hi)`` iterations per input; default 40.
        random_start: random start in the ball from a recorded per-input seed; default True.
        targeted: ``"no"``, ``"next"`` or ``"random"``.
    """

    name = "pgd_l2"
    attack = PGDL2
    schema = {
        "eps": Range(0.0, 1000.0, (0.5, 2.0), doc="L2 radius"),
        "alpha": Range(0.0, 1000.0, (0.1, 0.1), doc="L2 step length"),
        "steps": Range(0, 1000, (40, 40), integer=True, doc="iterations"),
        "random_start": Choice((True, False), True, doc="random start in the ball"),
        "targeted": AttackMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "eps": self.uniform("eps", batch, rng),
            "alpha": self.uniform("alpha", batch, rng),
            "steps": self.uniform("steps", batch, rng),
            "seed": self.seeds(batch, rng),
        }

    def options(self) -> dict[str, Any]:
        return {"random_start": self.config["random_start"]}
