"""MI-FGSM: momentum iterative FGSM (Dong, Liao, Pang, Su, Zhu, Hu and Li, "Boosting Adversarial
Attacks with Momentum", CVPR 2018).

``g <- decay * g + grad / mean(|grad|)`` (per input; the L1 norm of the paper up to the constant
``C*H*W``, which does not change any sign), ``x_adv <- x_adv + alpha * sign(g)``, projected onto
the eps-ball and the bounds: the shared L-inf iteration of
:mod:`~neurofuzz.mutators.attacks.iterative` with a momentum ``normalize``. Dong et al. use
``alpha = eps / steps``, ``steps = 10``, ``decay = 1``. Deterministic. An all-zero gradient
contributes nothing (no 0/0).
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import ALPHA, EPS, STEPS, AttackRun, Param, as_mutator, view4
from neurofuzz.mutators.attacks.iterative import IterativeAttack, Iteration
from neurofuzz.mutators.base import Params


class MIFGSM(IterativeAttack):
    """Momentum iterative FGSM, L-infinity.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = MIFGSM(builtin_target(), eps=0.3)
        >>> attack.alpha == 0.3 / 10, attack(x[:4], y[:4]).shape
        (True, torch.Size([4, 1, 32, 32]))
    """

    name = "mifgsm"
    params = {
        "eps": EPS,
        "alpha": ALPHA.but(default=None, draw=(0.03, 0.03), derive=lambda v: v["eps"] / max(v["steps"], 1),
                           rule="eps / steps (Dong et al.)"),
        "steps": STEPS.but(default=10),
        "decay": Param(1.0, (0.0, 10.0), None, "momentum decay factor mu"),
    }

    @classmethod
    def begin(cls, run: AttackRun, x: torch.Tensor, p: Params, options: dict[str, Any]) -> Iteration:
        s = super().begin(run, x, p, options)
        s.decay, s.momentum = view4(p["decay"], x), torch.zeros_like(x)
        return s

    @classmethod
    def normalize(cls, s: Iteration, g: torch.Tensor) -> torch.Tensor:
        scale = g.abs().mean(dim=tuple(range(1, g.dim())), keepdim=True)
        s.momentum = torch.addcmul(g.div_(scale.masked_fill_(scale == 0, 1.0)), s.decay, s.momentum)
        return s.momentum.sign()


MIFGSMMutator = as_mutator(MIFGSM)
