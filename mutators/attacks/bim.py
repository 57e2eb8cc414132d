"""BIM / I-FGSM: the basic iterative method (Kurakin, Goodfellow and Bengio, "Adversarial
examples in the physical world", ICLR 2017 workshop).

FGSM repeated ``steps`` times with step ``alpha`` from the clean input, each iterate clipped to
the eps-ball and the bounds; deterministic. Kurakin et al. take ``alpha = 1/255`` and
``steps = min(255 eps + 4, 1.25 * 255 eps)``; with ``steps=None`` we use that rule with
``1/alpha`` in place of 255: ``ceil(min(eps/alpha + 4, 1.25 eps/alpha))``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun
from neurofuzz.mutators.attacks.pgd import linf_iterate
from neurofuzz.mutators.base import Params, Range
from neurofuzz.mutators.registry import register


class BIM(Attack):
    """Basic iterative method (I-FGSM), L-infinity: PGD without a random start.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: L-infinity radius (raw input units); default 0.3.
        alpha: step size; default 0.01.
        steps: iterations; default ``None``: Kurakin et al.'s rule (34 for the defaults).
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = BIM(builtin_target(), eps=0.3)
        >>> attack.steps, attack(x[:4], y[:4]).shape
        (34, torch.Size([4, 1, 32, 32]))
    """

    name = "bim"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        alpha: float = 0.01,
        steps: int | None = None,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)
        self.alpha = self._positive(self.name, "alpha", alpha)
        if steps is None:
            steps = math.ceil(min(self.eps / self.alpha + 4, 1.25 * self.eps / self.alpha) - 1e-9)
        self.steps = self._count(self.name, "steps", steps)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        return linf_iterate(run, x, x, p)


@register
class BIMMutator(AttackMutator):
    """BIM / I-FGSM (Kurakin et al., 2017) as a mutator; deterministic.

    Args:
        eps: ``(lo, hi)`` radius per input, fraction of the bounds' range; default (0.05, 0.3).
        alpha: ``(lo, hi)`` step size per input; default 0.01.
        steps: ``(lo, hi)`` iterations per input; default 20.
        targeted: ``"no"``, ``"next"`` or ``"random"``.
    """

    name = "bim"
    attack = BIM
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "alpha": Range(0.0, 1.0, (0.01, 0.01), doc="step size"),
        "steps": Range(0, 1000, (20, 20), integer=True, doc="iterations"),
        "targeted": AttackMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "eps": self.uniform("eps", batch, rng),
            "alpha": self.uniform("alpha", batch, rng),
            "steps": self.uniform("steps", batch, rng),
        }
