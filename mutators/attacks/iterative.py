"""One Lp iteration for the PGD family: PGD (L-inf), PGD-L2, BIM, MI-FGSM, M-DI2-FGSM and NES.

Every member runs the same loop (after the design of Foolbox's gradient-descent base class:
Rauber, Brendel and Bethge, ICML 2017 workshop), from a start point ``x_0``:

    x_{t+1} = project(x_t + alpha * normalize(gradient(x_t)))

for the inputs that are still :meth:`~IterativeAttack.active` at step ``t`` (the others keep
their iterate), and differs only in its hooks:

* :meth:`~IterativeAttack.start`: the start point (``x``; PGD: a random point of the ball);
* :meth:`~IterativeAttack.gradient`: the model's input gradient (MDIIM: through a random input
  transform; NES: estimated from queries);
* :meth:`~IterativeAttack.normalize`: the step direction (L-inf: the sign; L2: the unit
  vector; MI-FGSM: the sign of the momentum);
* :meth:`~IterativeAttack.project`: back onto the eps-ball and into the bounds;
* :meth:`~IterativeAttack.active`: the inputs that take step ``t`` (default: those whose
  ``steps`` exceed ``t``; inputs of a batch may run different step counts);
* :meth:`~IterativeAttack.begin` / :meth:`~IterativeAttack.after_step` /
  :meth:`~IterativeAttack.finish`: set up and carry the variant's state (momentum, query
  oracle), and return the result with its outcomes.

The gradient is computed on the whole batch at every step (a finished input keeps its iterate
through ``torch.where``), so each input's float results do not depend on when the others stop.
The defaults are the L-inf ones, so BIM is the base class with its parameters.

References: Kurakin et al., ICLR 2017 (BIM); Madry et al., ICLR 2018 (PGD); Dong et al., CVPR
2018 (MI-FGSM); Xie et al., CVPR 2019 (M-DI2-FGSM); Ilyas et al., ICML 2018 (NES).
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import Attack, AttackRun, project_linf, view4
from neurofuzz.mutators.base import Params


class Iteration:
    """The state of one run of an :class:`IterativeAttack`: the run, the clean batch ``x``,
    the per-input parameters ``p`` and options, ``eps`` and ``alpha`` as ``[B, 1, 1, 1]``, and
    whatever a variant's :meth:`~IterativeAttack.begin` adds (momentum, oracle...)."""

    def __init__(self, run: AttackRun, x: torch.Tensor, p: Params, options: dict[str, Any]) -> None:
        self.run, self.x, self.p, self.options = run, x, p, options
        self.eps, self.alpha = view4(p["eps"], x), view4(p["alpha"], x)
        steps = p.get("steps")
        self.steps = steps.long() if steps is not None else None
        self.n_min, self.n_max = (int(steps.min()), int(steps.max())) if steps is not None and steps.numel() else (0, 0)


class IterativeAttack(Attack):
    """Base of the PGD family: the loop of the module docstring; subclasses override hooks."""

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor | tuple[torch.Tensor, Params]:
        s = cls.begin(run, x, p, options)
        x_adv = cls.start(s)
        t = 0
        while bool((active := cls.active(s, t)).any()):
            x_new = cls.project(s, torch.addcmul(x_adv, s.alpha, cls.normalize(s, cls.gradient(s, x_adv, active))))
            x_adv = x_new if bool(active.all()) else torch.where(view4(active, x).bool(), x_new, x_adv)
            cls.after_step(s, x_adv, active)
            t += 1
        return cls.finish(s, x_adv)

    @classmethod
    def begin(cls, run: AttackRun, x: torch.Tensor, p: Params, options: dict[str, Any]) -> Iteration:
        return Iteration(run, x, p, options)

    @classmethod
    def start(cls, s: Iteration) -> torch.Tensor:
        return s.x

    @classmethod
    def active(cls, s: Iteration, t: int) -> torch.Tensor:
        """Bool ``[B]`` (CPU): the inputs that take step ``t``; the loop ends when none does."""
        assert s.steps is not None
        return s.steps > t if t < s.n_max else torch.zeros_like(s.steps, dtype=torch.bool)

    @classmethod
    def gradient(cls, s: Iteration, x_adv: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return s.run.grad(x_adv)

    @classmethod
    def normalize(cls, s: Iteration, g: torch.Tensor) -> torch.Tensor:
        return g.sign_()

    @classmethod
    def project(cls, s: Iteration, x_adv: torch.Tensor) -> torch.Tensor:
        return project_linf(x_adv, s.x, s.eps, s.run.bounds)

    @classmethod
    def after_step(cls, s: Iteration, x_adv: torch.Tensor, active: torch.Tensor) -> None:
        """Called after each step (NES: judges the new iterates)."""

    @classmethod
    def finish(cls, s: Iteration, x_adv: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, Params]:
        return x_adv
