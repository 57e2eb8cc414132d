"""HopSkipJump, L2, decision-based (Chen, Jordan and Wainwright, "HopSkipJumpAttack: A
Query-Efficient Decision-Based Attack", IEEE S&P 2020).

Only the predicted label is used. Start from a random uniform image that is already adversarial
(up to ``init_tries`` draws), and binary-search the segment to ``x`` for the boundary. Then per
iteration ``t = 1, 2, ...`` at the boundary point ``x_b`` (distance ``dist`` from ``x``):

1. estimate the gradient direction of the decision from ``n_t = min(init_evals * sqrt(t),
   max_evals)`` random unit directions ``u_i``: query ``clip(x_b + delta * u_i)`` with
   ``delta = 0.1 * (upper - lower)`` at ``t = 1``, else ``sqrt(d) * theta * dist``; ``phi_i =
   +1`` if adversarial else ``-1``; ``g = mean((phi_i - mean(phi)) * u_i)`` (``mean(phi * u)``
   when all ``phi`` agree), normalised;
2. geometric step search: ``eps = dist / sqrt(t)``, halved until ``clip(x_b + eps * g)`` is
   adversarial;
3. binary search between ``x`` and that point for the new boundary point; the threshold is
   ``theta = gamma / d^(3/2)`` on the blend factor (``d = C*H*W``).

Every iterate is adversarial, so the attack always returns an adversarial example once the start
is found (``x`` itself if no start was found), and lowers its L2 distance with the budget. The
phases of an input stop when its ``max_queries`` are spent (the gradient estimate then uses the
queries that remain). Targeted runs need a random start classified as the target, which
is rare on most models: prefer untargeted use.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators.attacks.base import AttackRun, Param, as_mutator, l2_norms, view4
from neurofuzz.mutators.attacks.blackbox import MAX_QUERIES, QUERY_CHUNK, BlackBoxAttack, QueryOracle, draw, rows
from neurofuzz.mutators.base import Params, per_input_generators


def boundary_search(oracle: QueryOracle, x: torch.Tensor, x_adv: torch.Tensor, idx: torch.Tensor, theta: float) -> torch.Tensor:
    """Binary search on ``(1 - a) x + a x_adv`` for inputs ``idx``; returns the points at the
    adversarial end of the final interval (``a = high``), ``[len(idx), C, H, W]``."""
    xi, ai = x[idx], x_adv[idx]
    low, high = torch.zeros(len(idx), dtype=x.dtype, device=x.device), torch.ones(len(idx), dtype=x.dtype, device=x.device)
    for _ in range(max(1, math.ceil(math.log2(1.0 / theta)))):
        go = (oracle.remaining()[idx] > 0).to(x.device)
        if not bool(go.any()):
            break
        mid = (low + high) / 2
        adv = oracle.decide(torch.lerp(xi[go], ai[go], view4(mid[go], xi)), idx[go.cpu()])
        high[go] = torch.where(adv, mid[go], high[go])
        low[go] = torch.where(adv, low[go], mid[go])
    return torch.lerp(xi, ai, view4(high, xi))


def grouped_search(oracle: QueryOracle, x: torch.Tensor, x_adv: torch.Tensor, idx: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``boundary_search`` for groups of inputs sharing the same ``theta``."""
    out = x_adv[idx].clone()
    th = theta[idx]
    for value in th.unique().tolist():
        sel = (th == value).nonzero().flatten()
        out[sel.to(x.device)] = boundary_search(oracle, x, x_adv, idx[sel], value)
    return out


def estimate_direction(
    oracle: QueryOracle,
    xb: torch.Tensor,
    idx: torch.Tensor,
    n: torch.Tensor,
    delta: torch.Tensor,
    gens: list[torch.Generator],
    bounds: tuple[float, float],
) -> torch.Tensor:
    """Monte-Carlo estimate of the decision's gradient direction at ``xb`` (``n[j]`` unit random
    directions for input ``idx[j]``, from its generator), normalised; ``[len(idx), C, H, W]``.
    Inputs are processed in chunks of about ``QUERY_CHUNK`` query points."""
    n_max = int(n.max()) if len(n) else 0
    per = max(1, QUERY_CHUNK // max(n_max, 1))
    if len(idx) > per:
        parts = [estimate_direction(oracle, xb[s : s + per], idx[s : s + per], n[s : s + per], delta[s : s + per], gens, bounds)
                 for s in range(0, len(idx), per)]
        return torch.cat(parts)
    shape = xb.shape[1:]
    if n_max == 0:
        return torch.zeros_like(xb)
    u = xb.new_zeros(len(idx), n_max, *shape)
    for j, (i, k) in enumerate(zip(idx.tolist(), n.tolist())):
        if k:
            u[j, :k] = torch.randn(k, *shape, generator=gens[i]).to(u)
    u = u / l2_norms(u.flatten(0, 1)).view(len(idx), n_max, *[1] * len(shape)).clamp_min(1e-12)
    pts = (xb.unsqueeze(1) + delta.view(-1, 1, *[1] * len(shape)) * u).clamp(*bounds)
    u = (pts - xb.unsqueeze(1)) / delta.view(-1, 1, *[1] * len(shape))
    valid = torch.arange(n_max).view(1, -1) < n.view(-1, 1)
    phi = torch.zeros(len(idx), n_max, dtype=xb.dtype, device=xb.device)
    owner = idx.repeat_interleave(n_max)[valid.flatten()]
    v = valid.to(xb.device)
    phi[v] = oracle.decide(pts[v], owner).to(xb.dtype) * 2 - 1
    count = n.to(xb.device, xb.dtype).clamp_min(1)
    mean = phi.sum(1) / count
    centred = torch.where(v, phi - mean.view(-1, 1), 0.0)
    agree = mean.abs() == 1  # all queries on one side: the plain average
    weights = torch.where(agree.view(-1, 1), phi, centred)
    grads = torch.einsum("kn,knchw->kchw", weights, u) / count.view(-1, 1, 1, 1)
    return grads / l2_norms(grads).clamp_min(1e-12)


class HopSkipJump(BlackBoxAttack):
    """HopSkipJump (decision-based boundary attack with gradient estimation), L2.

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> target = builtin_target()
        >>> attack = HopSkipJump(target, max_queries=300)
        >>> x_adv = attack(x[:4], y[:4], rng=torch.Generator().manual_seed(0))
        >>> bool((target.predict(x_adv) != y[:4]).all()), bool((attack.last_queries <= 300).all())
        (True, True)
    """

    name = "hopskipjump"

    params = {
        "max_queries": MAX_QUERIES.but(doc="model queries per input (the paper: up to 25,000)"),
        "init_evals": Param(100, (1, 10_000), (50, 50), "samples of the first gradient estimate", integer=True),
        "max_evals": Param(1000, (1, 100_000), (500, 500), "most samples per gradient estimate", integer=True),
        "gamma": Param(1.0, (1e-3, 1e3), None, "binary-search threshold theta = gamma / d^(3/2)"),
        "init_tries": Param(50, (1, 10_000), (20, 20), "random uniform images tried as the start", integer=True),
    }

    @classmethod
    def check_values(cls, name: str, values: dict[str, Any], *, standalone: bool) -> None:
        if standalone and values["max_evals"][0] < values["init_evals"][1]:  # a mutator's max_evals caps each estimate
            raise UserError(f"{name}: max_evals must be >= init_evals, got {values['max_evals']!r} < {values['init_evals']!r}")

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> tuple[torch.Tensor, Params]:
        b, shape = x.shape[0], x.shape[1:]
        lo, hi = run.bounds
        d = shape.numel()
        oracle = QueryOracle(run, p["max_queries"].long())
        gens = per_input_generators(p["seed"])
        theta = p["gamma"].double() / d**1.5
        found = torch.zeros(b, dtype=torch.bool)
        x_adv = x.clone()
        tries = p["init_tries"].long()
        for r in range(int(tries.max()) if b else 0):  # a random uniform image that is adversarial
            idx = rows(~found & (tries > r) & (oracle.remaining() > 0))
            if not len(idx):
                break
            noise = draw(gens, idx, lambda g: torch.rand(shape, generator=g), x).to(x.dtype) * (hi - lo) + lo
            adv = oracle.decide(noise, idx).cpu()
            x_adv[idx[adv]], found[idx[adv]] = noise[adv.to(x.device)], True
        alive = rows(found)
        if len(alive):
            x_adv[alive] = grouped_search(oracle, x, x_adv, alive, theta)
        t = 0
        while True:
            t += 1
            idx = rows(found & (oracle.remaining() > 0))
            if not len(idx):
                break
            xb, xi = x_adv[idx], x[idx]
            dist = l2_norms(xb - xi)
            n_t = torch.clamp((p["init_evals"][idx].double() * math.sqrt(t)).long(), max=p["max_evals"][idx].long())
            n_t = torch.minimum(n_t, oracle.remaining()[idx])
            delta = dist * (math.sqrt(d) * theta[idx]).to(x).view_as(dist) if t > 1 else torch.full_like(dist, 0.1 * (hi - lo))
            grad = estimate_direction(oracle, xb, idx, n_t, delta, gens, run.bounds)
            # geometric step search, then back to the boundary
            eps = dist / math.sqrt(t)
            ok = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
            step_pt = xb.clone()
            for _ in range(30):
                go = ~ok & (oracle.remaining()[idx] > 0).to(x.device)
                if not bool(go.any()):
                    break
                cand = (xb[go] + eps[go] * grad[go]).clamp(lo, hi)
                adv = oracle.decide(cand, idx[go.cpu()])
                sub = go.nonzero().flatten()
                step_pt[sub[adv]], ok[sub[adv]] = cand[adv], True
                eps[sub[~adv]] = eps[sub[~adv]] / 2
            x_adv[idx] = step_pt
            moved = idx[ok.cpu()]
            if len(moved):
                x_adv[moved] = grouped_search(oracle, x, x_adv, moved, theta)
        return x_adv, oracle.outcomes()


HopSkipJumpMutator = as_mutator(HopSkipJump)
