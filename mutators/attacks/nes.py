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
``max_queries``. ``||x_adv - x||_inf <= eps`` always.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofuzz.mutators.attacks.base import AttackRun, project_linf, view4
from neurofuzz.mutators.attacks.blackbox import QUERY_CHUNK, BlackBoxAttack, BlackBoxMutator, QueryOracle, rows
from neurofuzz.mutators.base import Params, Range, per_input_generators
from neurofuzz.mutators.registry import register


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


class NES(BlackBoxAttack):
    """NES gradient estimation (antithetic Gaussian samples) with PGD-Linf steps; score-based.

    Args:
        model: a Target or an ``nn.Module`` returning logits (only its logits are used).
        eps: L-infinity radius (raw input units); default 0.3 (digits).
        alpha: PGD step size; default 0.05.
        sigma: search variance of the Gaussian samples (raw units); default 0.001 (Ilyas et al.).
        samples: antithetic pairs per estimate (``2 * samples`` queries); default 20.
        max_queries: model queries per input, >= 1; default 1000.
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

    Shapes: ``x`` float ``[B, C, H, W]`` in bounds, ``y`` int64 ``[B]`` -> ``x_adv`` like ``x``;
    ``attack.last_queries`` int64 ``[B]``.

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

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        alpha: float = 0.05,
        sigma: float = 0.001,
        samples: int = 20,
        max_queries: int = 1000,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = self._positive(self.name, "eps", eps, zero_ok=True)
        self.alpha = self._positive(self.name, "alpha", alpha)
        self.sigma = self._positive(self.name, "sigma", sigma)
        self.samples = self._count(self.name, "samples", samples, minimum=1)
        self.max_queries = self._budget(self.name, max_queries)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        scalars = {"eps": self.eps, "alpha": self.alpha, "sigma": self.sigma, "samples": self.samples}
        return {**scalars, "max_queries": self.max_queries}, {}

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        b = x.shape[0]
        oracle = QueryOracle(run, p["max_queries"].long())
        gens = per_input_generators(p["seed"])
        eps, alpha, sigma = view4(p["eps"], x), view4(p["alpha"], x), p["sigma"].to(x.device, x.dtype)
        n_pairs = p["samples"].long()
        x_adv, everyone = x.clone(), torch.arange(b)
        done = oracle.decide(x, everyone)
        while True:
            idx = rows(~done.cpu() & (oracle.remaining() >= 2 * n_pairs + 1) & (p["eps"] > 0))
            if not len(idx):
                break
            per = max(1, QUERY_CHUNK // (2 * int(n_pairs[idx].max())))  # bounds the memory
            g = torch.cat([nes_gradient(oracle, x_adv[part], part, n_pairs[part], sigma[part], gens, run.bounds)
                           for part in idx.split(per)])
            step = torch.addcmul(x_adv[idx], alpha[idx], g.sign())
            x_adv[idx] = project_linf(step, x[idx], eps[idx], run.bounds)
            done[idx.to(done.device)] = oracle.decide(x_adv[idx], idx)
        oracle.report()
        return x_adv


@register
class NESMutator(BlackBoxMutator):
    """NES gradient estimation + PGD-Linf (Ilyas et al., 2018) as a mutator; black-box (logits).

    Args:
        eps: ``(lo, hi)`` radius per input, fraction of the bounds' range; default (0.05, 0.3).
        alpha: ``(lo, hi)`` step size per input, same units; default 0.05.
        sigma: ``(lo, hi)`` sampling standard deviation, same units; default 0.001.
        samples: ``(lo, hi)`` antithetic pairs per estimate; default 10.
        max_queries: ``(lo, hi)`` query budget per input; default 500.
        targeted: ``"no"``, ``"next"`` or ``"random"``.

    Records ``seed`` and, after the run, ``queries`` (model queries spent) per input.
    """

    name = "nes"
    attack = NES
    scaled = ("eps", "alpha", "sigma")
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "alpha": Range(0.0, 1.0, (0.05, 0.05), doc="step size"),
        "sigma": Range(1e-6, 1.0, (0.001, 0.001), doc="sampling standard deviation"),
        "samples": Range(1, 1000, (10, 10), integer=True, doc="antithetic pairs per gradient estimate"),
        "max_queries": Range(1, 100_000, (500, 500), integer=True, doc="query budget per input"),
        "targeted": BlackBoxMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        return {
            "eps": self.uniform("eps", batch, rng),
            "alpha": self.uniform("alpha", batch, rng),
            "sigma": self.uniform("sigma", batch, rng),
            "samples": self.uniform("samples", batch, rng),
            "max_queries": self.uniform("max_queries", batch, rng),
            "seed": self.seeds(batch, rng),
        }
