"""PGD, L-infinity: projected gradient descent (Madry, Makelov, Schmidt, Tsipras and Vladu,
"Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018).

Optionally start from a uniform point of the eps-ball (``x + U(-eps, eps)``, clipped), then
``steps`` times: ``x_adv <- clip(x + clip(x_adv + alpha * sign(grad) - x, -eps, eps), lower,
upper)`` -- the update and projection torchattacks' ``PGD`` uses, so without a random start the
result is deterministic and matches it. The random start is drawn from a per-input recorded
seed. Inputs of one batch may run different step counts (as mutants they draw their own).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun, project_linf, random_fields, view4
from neurofuzz.mutators.base import Choice, Params, Range
from neurofuzz.mutators.registry import register


def linf_iterate(run: AttackRun, x: torch.Tensor, x_adv: torch.Tensor, p: Params) -> torch.Tensor:
    """``p["steps"]`` signed-gradient steps of ``p["alpha"]``, each projected onto the eps-ball."""
    eps, alpha, steps = view4(p["eps"], x), view4(p["alpha"], x), p["steps"]
    n_min, n_max = (int(steps.min()), int(steps.max())) if steps.numel() else (0, 0)
    for t in range(n_max):
        x_new = project_linf(torch.addcmul(x_adv, alpha, run.grad(x_adv).sign_()), x, eps, run.bounds)
        if t >= n_min:  # some inputs have already done all their steps
            x_new = torch.where(view4(steps > t, x).bool(), x_new, x_adv)
        x_adv = x_new
    return x_adv


class PGD(Attack):
    """Projected gradient descent in the L-infinity ball.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: L-infinity radius (raw input units); default 0.3 (MNIST-style digits, Madry et al.).
        alpha: step size; default 0.01.
        steps: number of iterations; default 40.
        random_start: start from a uniform point of the ball (default True, as Madry et al.).
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> x_adv = PGD(target, eps=0.3, alpha=0.01, steps=40)(x[:16], y[:16])
        >>> bool((target.predict(x_adv) != y[:16]).all())
        True
    """

    name = "pgd"
    randomized = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        alpha: float = 0.01,
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
        x_adv = x
        if random_start:
            noise = random_fields(p["seed"], x.shape[1:], "uniform", x)
            x_adv = torch.addcmul(x, view4(p["eps"], x), noise).clamp_(*run.bounds)
        return linf_iterate(run, x, x_adv, p)


@register
class PGDMutator(AttackMutator):
    """PGD, L-infinity (Madry et al., 2018) as a mutator.

    Args:
        eps: ``(lo, hi)`` radius per input, fraction of the bounds' range; default (0.05, 0.3).
        alpha: ``(lo, hi)`` step size per input, same units; default 0.01.
        steps: ``(lo, hi)`` iterations per input (integer); default 40.
        random_start: uniform start in the ball from a recorded per-input seed; default True.
        targeted: ``"no"``, ``"next"`` or ``"random"``.
    """

    name = "pgd"
    attack = PGD
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "alpha": Range(0.0, 1.0, (0.01, 0.01), doc="step size"),
        "steps": Range(0, 1000, (40, 40), integer=True, doc="iterations"),
        "random_start": Choice((True, False), True, doc="uniform random start in the ball"),
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
