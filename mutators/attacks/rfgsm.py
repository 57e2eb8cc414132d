"""FGSM with a random start: R+FGSM (Tramer et al., "Ensemble Adversarial Training: Attacks and
Defenses", ICLR 2018) and FGSM-RS (Wong, Rice and Kolter, "Fast is better than free: Revisiting
adversarial training", ICLR 2020).

``start="sign"`` (R+FGSM): ``x' = clip(x + alpha * sign(N(0, I)))``, then one gradient step of
``eps - alpha``: ``x_adv = clip(x' + (eps - alpha) * sign(grad_x' L))``; needs ``alpha <= eps``.
``start="uniform"`` (FGSM-RS): ``x' = clip(x + U(-eps, eps))``, then ``x' + alpha * sign(grad)``
projected onto the eps-ball (Wong et al. use ``alpha = 1.25 eps``).
The random start is drawn from a per-input recorded seed, so replay reproduces it exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofuzz.fuzzer.errors import UserError
from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun, project_linf, random_fields, view4
from neurofuzz.mutators.base import Choice, Params, Range
from neurofuzz.mutators.registry import register

STARTS = ("sign", "uniform")


class RFGSM(Attack):
    """FGSM from a random start (R+FGSM or FGSM-RS), L-infinity radius ``eps``.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: L-infinity radius (raw input units); default 0.3.
        alpha: random step (``"sign"``) or gradient step (``"uniform"``); default ``eps / 2``
            for ``"sign"``, ``1.25 * eps`` for ``"uniform"``.
        start: ``"sign"`` (Tramer et al.) or ``"uniform"`` (Wong et al.).
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = RFGSM(builtin_target(), eps=0.2, start="uniform")
        >>> bool((attack(x[:8], y[:8]) - x[:8]).abs().max() <= 0.2 + 1e-6)
        True
    """

    name = "rfgsm"
    randomized = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        alpha: float | None = None,
        start: str = "sign",
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        if start not in STARTS:
            raise UserError(f"{self.name}: start must be one of {list(STARTS)}, got {start!r}")
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)
        default = self.eps / 2 if start == "sign" else 1.25 * self.eps
        self.alpha = self._positive(self.name, "alpha", default if alpha is None else alpha, zero_ok=True)
        if start == "sign" and self.alpha > self.eps:
            raise UserError(f"{self.name}: with start='sign' alpha must be <= eps ({self.alpha:g} > {self.eps:g})")
        self.start = start

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"eps": self.eps, "alpha": self.alpha}, {"start": self.start}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, *, start: str = "sign", **options: Any) -> torch.Tensor:
        eps, alpha = view4(p["eps"], x), view4(p["alpha"], x)
        if start == "sign":
            x_adv = torch.addcmul(x, alpha, random_fields(p["seed"], x.shape[1:], "sign", x)).clamp_(*run.bounds)
            step = (eps - alpha).clamp_min_(0.0)
        else:
            x_adv = torch.addcmul(x, eps, random_fields(p["seed"], x.shape[1:], "uniform", x)).clamp_(*run.bounds)
            step = alpha
        x_adv = torch.addcmul(x_adv, step, run.grad(x_adv).sign_())
        return project_linf(x_adv, x, eps, run.bounds)


@register
class RFGSMMutator(AttackMutator):
    """R+FGSM / FGSM-RS (Tramer et al. 2018; Wong et al. 2020) as a mutator.

    Args:
        eps: ``(lo, hi)`` L-infinity radius per input, fraction of the bounds' range; default (0.05, 0.3).
        ratio: ``alpha = ratio * eps`` per input; ``"sign"`` start needs ratio <= 1; default 0.5.
        start: ``"sign"`` (R+FGSM, default) or ``"uniform"`` (FGSM-RS).
        targeted: ``"no"``, ``"next"`` or ``"random"``.
    """

    name = "rfgsm"
    attack = RFGSM
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "ratio": Range(0.0, 2.0, (0.5, 0.5), doc="alpha as a fraction of eps"),
        "start": Choice(STARTS, "sign", doc="sign: R+FGSM; uniform: FGSM-RS"),
        "targeted": AttackMutator.targeted_choice,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["start"] == "sign" and self.config["ratio"][1] > 1.0:
            raise UserError(f"{self.name}: with start='sign' use ratio <= 1 (alpha <= eps), got {self.config['ratio']!r}")

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "eps": self.uniform("eps", batch, rng),
            "ratio": self.uniform("ratio", batch, rng),
            "seed": self.seeds(batch, rng),
        }

    def options(self) -> dict[str, Any]:
        return {"start": self.config["start"]}

    def prepare(self, p: Params) -> Params:
        return {**p, "alpha": p["ratio"] * p["eps"]}
