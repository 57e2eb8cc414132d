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

from neurofuzz.mutators.attacks.base import AttackRun, Param, as_mutator, l2_norms
from neurofuzz.mutators.attacks.blackbox import MAX_QUERIES, BlackBoxAttack, QueryOracle, draw, rows
from neurofuzz.mutators.base import Params, per_input_generators


class SaltAndPepper(BlackBoxAttack):
    """Salt-and-pepper noise of increasing density; decision-based, minimises the L2 distance.

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

    params = {
        "steps": Param(50, (1, 10_000), None, "noise densities per sweep", integer=True),
        "max_queries": MAX_QUERIES.but(default=200, draw=(100, 100)),
    }

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> tuple[torch.Tensor, Params]:
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
        return best, oracle.outcomes()


SaltAndPepperMutator = as_mutator(SaltAndPepper)
