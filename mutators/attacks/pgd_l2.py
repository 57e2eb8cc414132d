"""PGD, L2: projected gradient descent in the L2 ball (Madry et al., "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018).

Optional random start ``x + r * eps * z / ||z||`` with ``z ~ N(0, I)`` and ``r ~ U(0, 1)`` per
input (clipped to the bounds), drawn from a per-input recorded seed; then ``steps`` times:
step ``alpha * grad / ||grad||_2``, rescale ``x_adv - x`` into the ball of radius ``eps``, clip
to the bounds. A zero gradient gives a zero step (no division by zero). The loop is the shared
one of :mod:`~neurofuzz.mutators.attacks.iterative`, with L2 hooks.
"""

from __future__ import annotations

import torch

from neurofuzz.mutators.attacks.base import STEPS, Param, as_mutator, l2_norms, project_l2, view4
from neurofuzz.mutators.attacks.iterative import Iteration
from neurofuzz.mutators.attacks.pgd import PGD, RANDOM_START
from neurofuzz.mutators.base import per_input_generators


def l2_random_start(x: torch.Tensor, eps: torch.Tensor, seeds: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``x + r * eps * z / ||z||`` per input, ``z ~ N(0, I)``, ``r ~ U(0, 1)``, from recorded seeds."""
    fields, radii = [], []
    for g in per_input_generators(seeds):
        fields.append(torch.randn(x.shape[1:], generator=g))
        radii.append(torch.rand((), generator=g))
    z = torch.stack(fields).to(device=x.device, dtype=x.dtype)
    r = view4(torch.stack(radii), x)
    z = z / l2_norms(z).clamp_min(1e-12)
    return project_l2(x + z * (r * eps), x, eps, bounds)


class PGDL2(PGD):
    """Projected gradient descent in the L2 ball.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> d = PGDL2(builtin_target(), eps=1.0)(x[:8], y[:8]) - x[:8]
        >>> bool(d.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5)
        True
    """

    name = "pgd_l2"
    params = {
        "eps": Param(2.0, (0.0, 1000.0), (0.5, 1.0), "L2 radius (over all C*H*W values)", scaled=True),
        "alpha": Param(0.1, (0.0, 1000.0), None, "L2 length of each step", scaled=True),
        "steps": STEPS,
        "random_start": RANDOM_START,
    }

    @classmethod
    def start(cls, s: Iteration) -> torch.Tensor:
        return l2_random_start(s.x, s.eps, s.p["seed"], s.run.bounds) if s.options.get("random_start") else s.x

    @classmethod
    def normalize(cls, s: Iteration, g: torch.Tensor) -> torch.Tensor:
        return g.div_(l2_norms(g).clamp_min_(1e-12))

    @classmethod
    def project(cls, s: Iteration, x_adv: torch.Tensor) -> torch.Tensor:
        return project_l2(x_adv, s.x, s.eps, s.run.bounds)


PGDL2Mutator = as_mutator(PGDL2)
