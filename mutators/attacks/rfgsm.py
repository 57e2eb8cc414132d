"""FGSM with a random start: R+FGSM (Tramer et al., "Ensemble Adversarial Training: Attacks and
Defenses", ICLR 2018) and FGSM-RS (Wong, Rice and Kolter, "Fast is better than free: Revisiting
adversarial training", ICLR 2020).

With ``alpha = ratio * eps`` (the parameter is the ratio, so that a mutator drawing ``eps`` per
input keeps the same relation):
``start="sign"`` (R+FGSM): ``x' = clip(x + alpha * sign(N(0, I)))``, then one gradient step of
``eps - alpha``: ``x_adv = clip(x' + (eps - alpha) * sign(grad_x' L))``; needs ``ratio <= 1``.
``start="uniform"`` (FGSM-RS): ``x' = clip(x + U(-eps, eps))``, then ``x' + alpha * sign(grad)``
projected onto the eps-ball (Wong et al. use ``alpha = 1.25 eps``).
The random start is drawn from a per-input recorded seed, so replay reproduces it exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators.attacks.base import EPS, Attack, AttackRun, Param, as_mutator, project_linf, random_fields, view4
from neurofuzz.mutators.base import Params

STARTS = ("sign", "uniform")


class RFGSM(Attack):
    """FGSM from a random start (R+FGSM or FGSM-RS), L-infinity radius ``eps``.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = RFGSM(builtin_target(), eps=0.2, start="uniform")
        >>> bool((attack(x[:8], y[:8]) - x[:8]).abs().max() <= 0.2 + 1e-6)
        True
    """

    name = "rfgsm"
    randomized = True
    params = {
        "eps": EPS,
        "ratio": Param(None, (0.0, 2.0), (0.5, 0.5), "alpha = ratio * eps: the random step (sign) or the gradient step "
                       "(uniform)", derive=lambda v: 0.5 if v["start"] == "sign" else 1.25, rule="0.5 (sign), 1.25 (uniform)"),
        "start": Param("sign", choices=STARTS, doc="sign: R+FGSM (Tramer et al.); uniform: FGSM-RS (Wong et al.)"),
    }

    @classmethod
    def check_values(cls, name: str, values: dict[str, Any], *, standalone: bool) -> None:
        if values["start"] == "sign" and values["ratio"][1] > 1.0:
            raise UserError(f"{name}: with start='sign' use ratio <= 1 (alpha <= eps), got {values['ratio'][1]!r}")

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, *, start: str = "sign", **options: Any) -> torch.Tensor:
        eps, alpha = view4(p["eps"], x), view4(p["ratio"] * p["eps"], x)
        if start == "sign":
            x_adv = torch.addcmul(x, alpha, random_fields(p["seed"], x.shape[1:], "sign", x)).clamp_(*run.bounds)
            step = (eps - alpha).clamp_min_(0.0)
        else:
            x_adv = torch.addcmul(x, eps, random_fields(p["seed"], x.shape[1:], "uniform", x)).clamp_(*run.bounds)
            step = alpha
        x_adv = torch.addcmul(x_adv, step, run.grad(x_adv).sign_())
        return project_linf(x_adv, x, eps, run.bounds)


RFGSMMutator = as_mutator(RFGSM)
