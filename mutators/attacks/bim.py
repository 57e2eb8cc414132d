"""BIM / I-FGSM: the basic iterative method (Kurakin, Goodfellow and Bengio, "Adversarial
examples in the physical world", ICLR 2017 workshop).

FGSM repeated ``steps`` times with step ``alpha`` from the clean input, each iterate clipped to
the eps-ball and the bounds; deterministic: the shared L-inf iteration of
:mod:`~neurofuzz.mutators.attacks.iterative` without a random start. Kurakin et al. take
``alpha = 1/255`` and ``steps = min(255 eps + 4, 1.25 * 255 eps)``; with ``steps=None`` we use
that rule with ``1/alpha`` in place of 255: ``ceil(min(eps/alpha + 4, 1.25 eps/alpha))``.
"""

from __future__ import annotations

import math
from typing import Any

from neurofuzz.mutators.attacks.base import ALPHA, EPS, STEPS, as_mutator
from neurofuzz.mutators.attacks.iterative import IterativeAttack


def kurakin_steps(v: dict[str, Any]) -> int:
    """``ceil(min(eps/alpha + 4, 1.25 eps/alpha))`` (Kurakin et al.'s rule, 34 for 0.3 / 0.01)."""
    return math.ceil(min(v["eps"] / v["alpha"] + 4, 1.25 * v["eps"] / v["alpha"]) - 1e-9) if v["alpha"] > 0 else 0


class BIM(IterativeAttack):
    """Basic iterative method (I-FGSM), L-infinity: PGD without a random start.

    Example:
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = BIM(builtin_target(), eps=0.3)
        >>> attack.steps, attack(x[:4], y[:4]).shape
        (34, torch.Size([4, 1, 32, 32]))
    """

    name = "bim"
    params = {"eps": EPS, "alpha": ALPHA, "steps": STEPS.but(default=None, draw=(20, 20), derive=kurakin_steps,
                                                          rule="Kurakin et al.'s ceil(min(eps/alpha + 4, 1.25 eps/alpha))")}


BIMMutator = as_mutator(BIM)
