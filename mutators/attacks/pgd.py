"""PGD, L-infinity: projected gradient descent (Madry, Makelov, Schmidt, Tsipras and Vladu,
"Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018).

Optionally start from a uniform point of the eps-ball (``x + U(-eps, eps)``, clipped), then
``steps`` times: ``x_adv <- clip(x + clip(x_adv + alpha * sign(grad) - x, -eps, eps), lower,
upper)`` -- the update and projection torchattacks' ``PGD`` uses, so without a random start the
result is deterministic and matches it. The random start is drawn from a per-input recorded
seed. Inputs of one batch may run different step counts (as mutants they draw their own). The
loop is the shared one of :mod:`~neurofuzz.mutators.attacks.iterative`.
"""

from __future__ import annotations

import torch

from neurofuzz.mutators.attacks.base import ALPHA, EPS, STEPS, Param, as_mutator, random_fields
from neurofuzz.mutators.attacks.iterative import IterativeAttack, Iteration

RANDOM_START = Param(True, choices=(True, False), doc="start from a random point of the ball")


class PGD(IterativeAttack):
    """Projected gradient descent in the L-infinity ball (random start as Madry et al.).

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
    params = {"eps": EPS, "alpha": ALPHA, "steps": STEPS, "random_start": RANDOM_START}

    @classmethod
    def start(cls, s: Iteration) -> torch.Tensor:
        if not s.options.get("random_start"):
            return s.x
        return torch.addcmul(s.x, s.eps, random_fields(s.p["seed"], s.x.shape[1:], "uniform", s.x)).clamp_(*s.run.bounds)


PGDMutator = as_mutator(PGD)
