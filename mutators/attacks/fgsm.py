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
from torch import nn

from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun, view4
from neurofuzz.mutators.base import Params, Range
from neurofuzz.mutators.registry import register


class FGSM(Attack):
    """Fast gradient sign method, L-infinity.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: step size = L-infinity radius (raw input units), >= 0; default 0.3 (digits).
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Shapes: ``x`` float ``[B, C, H, W]`` in bounds, ``y`` int64 ``[B]`` -> ``x_adv`` like ``x``.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> x_adv = FGSM(builtin_target(), eps=0.1)(x[:8], y[:8])
        >>> bool((x_adv - x[:8]).abs().max() <= 0.1 + 1e-6)
        True
    """

    name = "fgsm"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"eps": self.eps}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        # clipping to the bounds happens once, in the shared template (run_attack)
        return torch.addcmul(x, view4(p["eps"], x), run.grad(x).sign_())


@register
class FGSMMutator(AttackMutator):
    """FGSM (Goodfellow et al., 2015) as a mutator: one signed-gradient step of size ``eps``.

    Args:
        eps: ``(lo, hi)`` L-infinity step drawn per input, as a fraction of the bounds' range;
            default (0.05, 0.3).
        targeted: ``"no"``, ``"next"`` or ``"random"`` (see the attacks package docstring).
    """

    name = "fgsm"
    attack = FGSM
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf step size"),
        "targeted": AttackMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {"eps": self.uniform("eps", batch, rng)}
