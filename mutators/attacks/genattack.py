"""GenAttack: a gradient-free genetic attack, L-infinity (Alzantot, Sharma, Chakraborty, Zhang,
Hsieh and Srivastava, "GenAttack: Practical Black-box Attacks with Gradient-Free Optimization",
GECCO 2019).

Per input, a population of ``population`` candidates ``x + delta``, ``||delta||_inf <= eps``,
starts uniform in the eps-ball. The fitness comes from the output probabilities ``p``:
``log(sum_{j != y} p_j) - log p_y`` (untargeted) or ``log p_t - log(sum_{j != t} p_j)``
(targeted). An input stops as soon as one member is adversarial (arg-max decision; the best
such member is returned). Each generation keeps the elite (fittest member)
and breeds ``population - 1`` children: two parents drawn with probabilities
``softmax(fitness / temperature)``, a uniform crossover taking each value from the first parent
with probability ``p1 / (p1 + p2)``, then a mutation adding ``U(-alpha * eps, alpha * eps)`` to a
fraction ``rho`` of the values, and a projection onto the eps-ball and the bounds. Adaptive
scaling as in the paper: ``rho = max(rho_min, 0.5 * 0.9^k)`` and ``alpha = max(alpha_min,
0.4 * 0.9^k)``, ``k`` the number of generations without improvement of the elite.

Queries: the initial population (``population``, or as many members as the budget allows), then ``population - 1`` children per
generation (the elite's fitness is kept, not recomputed). An input also stops when the next
generation would exceed ``max_queries``; the fittest member is then returned.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import EPS, AttackRun, Param, as_mutator, project_linf, view4
from neurofuzz.mutators.attacks.blackbox import MAX_QUERIES, BlackBoxAttack, QueryOracle, draw, rows
from neurofuzz.mutators.attacks.logits import is_adversarial
from neurofuzz.mutators.base import Params, per_input_generators


def fitness(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """``log p_t - log sum_{j != t} p_j`` (targeted, the paper's) or ``log sum_{j != y} p_j -
    log p_y`` (untargeted), in float64, ``[n]``."""
    logp = logits.double().log_softmax(1)
    own = logp.gather(1, labels.view(-1, 1)).squeeze(1)
    rest = logp.scatter(1, labels.view(-1, 1), float("-inf")).logsumexp(1)
    return own - rest if targeted else rest - own


class GenAttack(BlackBoxAttack):
    """GenAttack (genetic algorithm on output probabilities), L-infinity; score-based.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = GenAttack(builtin_target(), eps=0.3, max_queries=200)
        >>> x_adv = attack(x[:4], y[:4], rng=torch.Generator().manual_seed(0))
        >>> bool((x_adv - x[:4]).abs().max() <= 0.3 + 1e-6), bool((attack.last_queries <= 200).all())
        (True, True)
    """

    name = "genattack"

    params = {
        "eps": EPS.but(doc="L-infinity radius (the paper's 0.3 for MNIST)"),
        "population": Param(6, choices=tuple(range(2, 33)), doc="candidates per input (the paper's 6)"),
        "max_queries": MAX_QUERIES,
        "rho_min": Param(0.1, (1e-4, 1.0), None, "smallest mutation probability"),
        "alpha_min": Param(0.15, (1e-4, 1.0), None, "smallest mutation range, as a fraction of eps"),
        "temperature": Param(0.1, (1e-3, 100.0), None, "of the softmax selection"),
    }

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, *, population: int = 6,
                **options: Any) -> tuple[torch.Tensor, Params]:
        b, shape, n = x.shape[0], x.shape[1:], population
        oracle = QueryOracle(run, p["max_queries"].long())
        gens = per_input_generators(p["seed"])
        eps, tau = view4(p["eps"], x).unsqueeze(1), p["temperature"].double()  # eps: [B, 1, 1, 1, 1]
        out, pop = x.clone(), x.unsqueeze(1).repeat(1, n, *[1] * len(shape))
        fit = torch.full((b, n), float("-inf"), dtype=torch.float64, device=x.device)
        plateaus = torch.zeros(b, dtype=torch.float64)
        alive = oracle.remaining() > 0

        def evaluate(cands: torch.Tensor, idx: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Fitness and decisions ``[m, k]`` of the first ``count[j]`` candidates of input
            ``idx[j]`` (the others are not queried: fitness -inf, never selected)."""
            k = cands.shape[1]
            use = (torch.arange(k).view(1, k) < count.view(-1, 1)).flatten()
            owner = idx.repeat_interleave(k)[use]
            z, labels = oracle.logits(cands.flatten(0, 1)[use.to(x.device)], owner), oracle.labels(owner)
            fit_all = torch.full((len(use),), float("-inf"), dtype=torch.float64, device=x.device)
            adv_all = torch.zeros(len(use), dtype=torch.bool, device=x.device)
            fit_all[use.to(x.device)] = fitness(z, labels, targeted=run.targeted)
            adv_all[use.to(x.device)] = is_adversarial(z, labels, targeted=run.targeted)
            return fit_all.view(len(idx), k), adv_all.view(len(idx), k)

        def finish(idx: torch.Tensor, adv: torch.Tensor) -> None:  # stop inputs with an adversarial member
            found = adv.any(1)
            if bool(found.any()):
                i = idx[found.cpu()]
                best = torch.where(adv[found], fit[i], float("-inf")).argmax(1)
                out[i], alive[i] = pop[i, best], False

        idx = rows(alive)
        if len(idx):
            start = draw(gens, idx, lambda g: torch.rand(n, *shape, generator=g) * 2 - 1, x).to(x.dtype)
            pop[idx] = project_linf(x[idx].unsqueeze(1) + eps[idx] * start, x[idx].unsqueeze(1), eps[idx], run.bounds)
            fit[idx], adv = evaluate(pop[idx], idx, torch.clamp(oracle.remaining()[idx], max=n))
            finish(idx, adv)
        d = shape.numel()
        while True:
            idx = rows(alive & (oracle.remaining() >= n - 1) & (p["eps"] > 0))
            if not len(idx):
                break
            m, ar = len(idx), torch.arange(len(idx))
            old, old_fit = pop[idx], fit[idx]
            top = old_fit.argmax(1)
            elite, elite_fit = old[ar, top], old_fit[ar, top]
            u = draw(gens, idx, lambda g: torch.rand(2 * (n - 1) + 3 * (n - 1) * d, generator=g, dtype=torch.float64), x)
            picks, fields = u[:, : 2 * (n - 1)], u[:, 2 * (n - 1):].view(m, 3, n - 1, *shape)
            probs = torch.softmax(old_fit / tau[idx].to(old_fit.device).view(-1, 1), 1)
            parents = torch.searchsorted(probs.cumsum(1), picks.contiguous()).clamp_(max=n - 1).view(m, 2, n - 1)
            w1, w2 = probs.gather(1, parents[:, 0]), probs.gather(1, parents[:, 1])
            expand = (m, n - 1, *[1] * len(shape))
            first = fields[:, 0] < (w1 / (w1 + w2).clamp_min(1e-300)).view(expand)
            child = torch.where(first, old[ar.view(-1, 1), parents[:, 0]], old[ar.view(-1, 1), parents[:, 1]])
            k = plateaus[idx]  # generations without improvement: adaptive mutation (Alzantot et al.)
            rho = torch.clamp(0.5 * 0.9**k, min=p["rho_min"][idx].double()).to(x.device).view(m, *[1] * (len(shape) + 1))
            alpha = torch.clamp(0.4 * 0.9**k, min=p["alpha_min"][idx].double()).to(x.device).view_as(rho)
            noise = (fields[:, 2] * 2 - 1) * alpha * eps[idx].double()
            child = child + torch.where(fields[:, 1] < rho, noise, 0.0).to(child.dtype)
            child = project_linf(child, x[idx].unsqueeze(1), eps[idx], run.bounds)
            child_fit, adv = evaluate(child, idx, torch.full((m,), n - 1))
            improved = (child_fit.max(1).values > elite_fit).cpu()
            plateaus[idx] = torch.where(improved, 0.0, k + 1)
            pop[idx] = torch.cat([elite.unsqueeze(1), child], 1)
            fit[idx] = torch.cat([elite_fit.unsqueeze(1), child_fit], 1)
            finish(idx, torch.cat([torch.zeros_like(adv[:, :1]), adv], 1))
        rest = rows(alive & torch.isfinite(fit).any(1).cpu())  # budget spent: the fittest member
        out[rest] = pop[rest, fit[rest].argmax(1)]
        return out, oracle.outcomes()


GenAttackMutator = as_mutator(GenAttack)
