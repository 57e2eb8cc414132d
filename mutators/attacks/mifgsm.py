"""MI-FGSM: momentum iterative FGSM (Dong, Liao, Pang, Su, Zhu, Hu and Li, "Boosting Adversarial
Attacks with Momentum", CVPR 2018).

``g <- decay * g + grad / mean(|grad|)`` (per input; the L1 norm of the paper up to the constant
``C*H*W``, which does not change any sign), ``x_adv <- x_adv + alpha * sign(g)``, projected onto
the eps-ball and the bounds. Dong et al. use ``alpha = eps / steps``, ``steps = 10``,
``decay = 1``. Deterministic. An all-zero gradient contributes nothing (no 0/0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun, project_linf, view4
from neurofuzz.mutators.base import Params, Range
from neurofuzz.mutators.registry import register


def momentum_iterate(
    run: AttackRun,
    x: torch.Tensor,
    p: Params,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The MI-FGSM loop; ``transform`` (e.g. input diversity) is applied before each forward."""
    eps, alpha, decay, steps = view4(p["eps"], x), view4(p["alpha"], x), view4(p["decay"], x), p["steps"]
    n_min, n_max = (int(steps.min()), int(steps.max())) if steps.numel() else (0, 0)
    x_adv, momentum = x, torch.zeros_like(x)
    for t in range(n_max):
        g = run.grad(x_adv, transform)
        scale = g.abs().mean(dim=tuple(range(1, g.dim())), keepdim=True)
        g = g.div_(scale.masked_fill_(scale == 0, 1.0))
        momentum = torch.addcmul(g, decay, momentum)
        x_new = project_linf(torch.addcmul(x_adv, alpha, momentum.sign()), x, eps, run.bounds)
        if t >= n_min:  # some inputs have already done all their steps
            x_new = torch.where(view4(steps > t, x).bool(), x_new, x_adv)
        x_adv = x_new
    return x_adv


class MIFGSM(Attack):
    """Momentum iterative FGSM, L-infinity.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: L-infinity radius (raw input units); default 0.3.
        alpha: step size; default ``eps / steps`` (Dong et al.).
        steps: iterations; default 10.
        decay: momentum decay factor mu >= 0; default 1.0.
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = MIFGSM(builtin_target(), eps=0.3)
        >>> attack.alpha == 0.3 / 10, attack(x[:4], y[:4]).shape
        (True, torch.Size([4, 1, 32, 32]))
    """

    name = "mifgsm"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        alpha: float | None = None,
        steps: int = 10,
        decay: float = 1.0,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)
        self.steps = self._count(self.name, "steps", steps, minimum=1)
        self.alpha = self._positive(self.name, "alpha", self.eps / self.steps if alpha is None else alpha, zero_ok=True)
        self.decay = self._positive(self.name, "decay", decay, zero_ok=True)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps, "decay": self.decay}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        return momentum_iterate(run, x, p)


@register
class MIFGSMMutator(AttackMutator):
    """MI-FGSM (Dong et al., 2018) as a mutator; deterministic.

    Args:
        eps: ``(lo, hi)`` radius per input, fraction of the bounds' range; default (0.05, 0.3).
        alpha: ``(lo, hi)`` step size per input; default 0.03.
        steps: ``(lo, hi)`` iterations per input; default 10.
        decay: ``(lo, hi)`` momentum decay per input; default 1.0.
        targeted: ``"no"``, ``"next"`` or ``"random"``.
    """

    name = "mifgsm"
    attack = MIFGSM
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "alpha": Range(0.0, 1.0, (0.03, 0.03), doc="step size"),
        "steps": Range(0, 1000, (10, 10), integer=True, doc="iterations"),
        "decay": Range(0.0, 10.0, (1.0, 1.0), doc="momentum decay factor"),
        "targeted": AttackMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "eps": self.uniform("eps", batch, rng),
            "alpha": self.uniform("alpha", batch, rng),
            "steps": self.uniform("steps", batch, rng),
            "decay": self.uniform("decay", batch, rng),
        }
