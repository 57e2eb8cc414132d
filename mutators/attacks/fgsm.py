"""FGSM: the fast gradient sign method (Goodfellow, Shlens and Szegedy, "Explaining and
Harnessing Adversarial Examples", ICLR 2015).

One step of size ``eps`` along the sign of the input gradient of the cross-entropy:
``x_adv = clip(x + eps * sign(grad_x CE(f(x), y)), lower, upper)`` (targeted: ``- eps *
sign(grad_x CE(f(x), t))``). Deterministic; ``torch.sign`` is 0 where the gradient is 0, so such
pixels are not moved. Matches the closed form as torchattacks and ART compute it.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import EPS, Attack, AttackRun, as_mutator, view4
from neurofuzz.mutators.base import Params


class FGSM(Attack):
    """Fast gradient sign method, L-infinity: one step of size ``eps`` (the radius).

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> x_adv = FGSM(builtin_target(), eps=0.1)(x[:8], y[:8])
        >>> bool((x_adv - x[:8]).abs().max() <= 0.1 + 1e-6)
        True
    """

    name = "fgsm"
    params = {"eps": EPS.but(doc="step size = L-infinity radius")}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        # clipping to the bounds happens once, in the shared template (attack_batch)
        return torch.addcmul(x, view4(p["eps"], x), run.grad(x).sign_())


FGSMMutator = as_mutator(FGSM)
