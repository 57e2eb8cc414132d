"""Salt-and-pepper noise attack, decision-based (the ``SaltAndPepperNoiseAttack`` of Foolbox:
Rauber, Brendel and Bethge, "Foolbox: A Python toolbox to benchmark the robustness of machine
learning models", ICML 2017 Reliable ML workshop; decision-based setting of Brendel, Rauber and
Bethge, ICLR 2018).

Only the predicted label is used. A sweep raises the noise density ``q`` over
``q_max * 1/steps, 2/steps, ..., 1``; at density ``q`` each pixel (all channels together) is set
to the upper bound with probability ``q / 2`` (salt), to the lower bound with probability
``q / 2`` (pepper) and left alone otherwise, from a fresh draw. The first misclassified
(targeted: classified as the target) candidate ends the sweep; the next sweep searches below it
(``q_max`` becomes that density). Sweeps repeat until ``max_queries`` queries are spent
(one per candidate); of all adversarial candidates the one closest to ``x`` in L2 is returned,
``x`` itself if none was found.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import AttackRun, l2_norms
from neurofuzz.mutators.attacks.blackbox import BlackBoxAttack, BlackBoxMutator, QueryOracle, draw, rows
from neurofuzz.mutators.base import Params, Range, per_input_generators
from neurofuzz.mutators.registry import register


class SaltAndPepper(BlackBoxAttack):
    """Salt-and-pepper noise of increasing density; decision-based, minimises the L2 distance.

    Args:
        model: a Target or an ``nn.Module`` returning logits (only the arg-max is used).
        steps: densities per sweep, >= 1; default 50.
        max_queries: model queries per input, >= 1; default 200.
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Shapes: ``x`` float ``[B, C, H, W]`` in bounds, ``y`` int64 ``[B]`` -> ``x_adv`` like ``x``;
    ``attack.last_queries`` int64 ``[B]``.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> attack = SaltAndPepper(target, steps=20, max_queries=60)
        >>> x_adv = attack(x[:8], y[:8], rng=torch.Generator().manual_seed(0))
        >>> int((target.predict(x_adv) != y[:8]).sum()) >= 4, bool((attack.last_queries <= 60).all())
        (True, True)
    """

    name = "salt_pepper"

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 50,
        max_queries: int = 200,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.steps = self._count(self.name, "steps", steps, minimum=1)
        self.max_queries = self._budget(self.name, max_queries)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        return {"steps": self.steps, "max_queries": self.max_queries}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        b, (c, h, w) = x.shape[0], x.shape[1:]
        lo, hi = run.bounds
        oracle = QueryOracle(run, p["max_queries"].long())
        gens = per_input_generators(p["seed"])
        steps = p["steps"].long()
        step = torch.zeros(b, dtype=torch.long)  # position in the current sweep
        q_max = torch.ones(b, dtype=torch.float64)
        best, best_norm = x.clone(), torch.full((b,), float("inf"), dtype=torch.float64)
        while True:
            idx = rows(oracle.remaining() > 0)
            if not len(idx):
                break
            q = (q_max[idx] * (step[idx] + 1) / steps[idx]).to(x.device).view(-1, 1, 1, 1)
            u = draw(gens, idx, lambda g: torch.rand(1, h, w, generator=g, dtype=torch.float64), x)
            xi = x[idx]
            cand = torch.where(u < q / 2, hi, torch.where(u > 1 - q / 2, lo, xi.double())).to(x.dtype)
            adv = oracle.decide(cand, idx).cpu()
            norm = l2_norms(cand - xi).flatten().double().cpu()
            better = adv & (norm < best_norm[idx])
            best[idx[better]], best_norm[idx[better]] = cand[better.to(x.device)], norm[better]
            q_max[idx[adv]] = q[adv.to(x.device)].flatten().cpu()  # the next sweep searches below
            step[idx] = torch.where(adv | (step[idx] + 1 >= steps[idx]), 0, step[idx] + 1)
        oracle.report()
        return best


@register
class SaltAndPepperMutator(BlackBoxMutator):
    """Salt-and-pepper noise attack (Foolbox; Rauber et al., 2017) as a mutator; decision-based.

    Args:
        steps: ``(lo, hi)`` densities per sweep; default 50.
        max_queries: ``(lo, hi)`` query budget per input; default 100.
        targeted: ``"no"``, ``"next"`` or ``"random"``.

    Records ``seed`` and, after the run, ``queries`` (model queries spent) per input.
    """

    name = "salt_pepper"
    attack = SaltAndPepper
    schema = {
        "steps": Range(1, 10_000, (50, 50), integer=True, doc="noise densities per sweep"),
        "max_queries": Range(1, 100_000, (100, 100), integer=True, doc="query budget per input"),
        "targeted": BlackBoxMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "steps": self.uniform("steps", batch, rng),
            "max_queries": self.uniform("max_queries", batch, rng),
            "seed": self.seeds(batch, rng),
        }
