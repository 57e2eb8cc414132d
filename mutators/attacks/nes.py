"""NES: PGD-Linf on gradients estimated from scores (Ilyas, Engstrom, Athalye and Lin,
"Black-box Adversarial Attacks with Limited Queries and Information", ICML 2018).

The model's gradient is never used. At the current iterate ``x_t`` the gradient of the loss
``L = -margin`` (the Carlini-Wagner logit margin ``z_y - max_{j != y} z_j``, targeted
``max_{j != t} z_j - z_t``; Ilyas et al. use the cross-entropy, which saturates in float32 on a
confident model, so that differences of ``sigma``-close queries round to zero) is estimated by natural evolution strategies with antithetic Gaussian samples
``u_1..u_n ~ N(0, I)``:

    g = 1 / (2 n sigma) * sum_i [L(x_t + sigma u_i) - L(x_t - sigma u_i)] u_i

(``2 n`` queries; query points are clipped to the bounds). Then a PGD step
``x_{t+1} = clip(x + clip(x_t + alpha * sign(g) - x, -eps, eps))`` and one query of the new
iterate, which stops the input as soon as it is adversarial. Each step costs ``2 n + 1`` queries
(plus one for ``x`` itself at the start); an input stops when the next step would exceed
``max_queries``. ``||x_adv - x||_inf <= eps`` always. The loop is the shared L-inf iteration of
:mod:`~neurofuzz.mutators.attacks.iterative`: only the ``gradient`` (estimated, for the inputs
still running) and the stopping rule (adversarial, or out of budget) are NES's own.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.attacks.base import EPS, AttackRun, Param, as_mutator
from neurofuzz.mutators.attacks.blackbox import MAX_QUERIES, QUERY_CHUNK, BlackBoxAttack, QueryOracle, rows
from neurofuzz.mutators.attacks.iterative import IterativeAttack, Iteration
from neurofuzz.mutators.base import Params, per_input_generators


def nes_gradient(
    oracle: QueryOracle,
    cur: torch.Tensor,
    idx: torch.Tensor,
    pairs: torch.Tensor,
    sigma: torch.Tensor,
    gens: list[torch.Generator],
    bounds: tuple[float, float],
) -> torch.Tensor:
    """Antithetic NES estimate (up to a positive factor per input) of the gradient of ``-margin``
    at ``cur`` ``[k, C, H, W]``, with ``pairs[j]`` samples for input ``idx[j]`` from its own
    generator; ``2 * pairs[j]`` queries each."""
    shape = cur.shape[1:]
    n = int(pairs.max())
    u = cur.new_zeros(len(idx), n, *shape)  # each input draws exactly its own samples
    for j, (i, k) in enumerate(zip(idx.tolist(), pairs.tolist())):
        u[j, :k] = torch.randn(k, *shape, generator=gens[i]).to(u)
    valid = (torch.arange(n).view(1, n) < pairs.view(-1, 1)).repeat(1, 2).flatten()
    s = sigma.view(-1, 1, *[1] * len(shape))
    pts = torch.cat([cur.unsqueeze(1) + s * u, cur.unsqueeze(1) - s * u], 1).clamp(*bounds).flatten(0, 1)
    loss = cur.new_zeros(len(valid))  # ascended: minus the margin
    v = valid.to(cur.device)
    loss[v] = -oracle.margin(pts[v], idx.repeat_interleave(2 * n)[valid]).to(cur.dtype)
    loss = loss.view(-1, 2, n)
    weight = loss[:, 0] - loss[:, 1]  # zero for the unused sample slots
    return torch.einsum("kn,knchw->kchw", weight, u)


class NES(IterativeAttack, BlackBoxAttack):
    """NES gradient estimation (antithetic Gaussian samples) with PGD-Linf steps; score-based.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = NES(builtin_target(), eps=0.3, samples=10, max_queries=300)
        >>> x_adv = attack(x[:4], y[:4], rng=torch.Generator().manual_seed(0))
        >>> bool((x_adv - x[:4]).abs().max() <= 0.3 + 1e-6), bool((attack.last_queries <= 300).all())
        (True, True)
    """

    name = "nes"
    params = {
        "eps": EPS,
        "alpha": Param(0.05, (0.0, 1.0), None, "PGD step size", scaled=True),
        "sigma": Param(0.001, (1e-6, 1.0), None, "standard deviation of the samples (Ilyas et al.)", scaled=True),
        "samples": Param(20, (1, 1000), (10, 10), "antithetic pairs per estimate (2 queries each)", integer=True),
        "max_queries": MAX_QUERIES.but(draw=(500, 500)),
    }

    @classmethod
    def begin(cls, run: AttackRun, x: torch.Tensor, p: Params, options: dict[str, Any]) -> Iteration:
        s = super().begin(run, x, p, options)
        s.oracle, s.gens = QueryOracle(run, p["max_queries"].long()), per_input_generators(p["seed"])
        s.sigma, s.pairs = p["sigma"].to(x.device, x.dtype), p["samples"].long()
        s.done = s.oracle.decide(x, torch.arange(x.shape[0])).cpu()
        return s

    @classmethod
    def active(cls, s: Iteration, t: int) -> torch.Tensor:
        return ~s.done & (s.oracle.remaining() >= 2 * s.pairs + 1) & (s.p["eps"] > 0)

    @classmethod
    def gradient(cls, s: Iteration, x_adv: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        idx, g = rows(active), torch.zeros_like(x_adv)
        per = max(1, QUERY_CHUNK // (2 * int(s.pairs[idx].max())))  # bounds the memory
        g[idx.to(x_adv.device)] = torch.cat([nes_gradient(s.oracle, x_adv[part], part, s.pairs[part], s.sigma[part], s.gens,
                                                          s.run.bounds) for part in idx.split(per)])
        return g

    @classmethod
    def after_step(cls, s: Iteration, x_adv: torch.Tensor, active: torch.Tensor) -> None:
        idx = rows(active)
        s.done[idx] = s.oracle.decide(x_adv[idx.to(x_adv.device)], idx).cpu()

    @classmethod
    def finish(cls, s: Iteration, x_adv: torch.Tensor) -> tuple[torch.Tensor, Params]:
        return x_adv, s.oracle.outcomes()


NESMutator = as_mutator(NES)
