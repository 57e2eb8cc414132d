"""Adaptive mutator choice: each seed's mutator is drawn by what the mutators found per unit of cost.

Rules (``FuzzConfig.mutator_choice``):

* ``"adaptive"`` (default). For mutator ``i``, *finds* ``f_i`` = inputs retained + failing
  mutants that revealed a (root seed, predicted class) pair not seen before (a mutant repeating
  a known failure finds nothing), and *spent* ``c_i`` = its cost in forward-pass equivalents
  (below). Its yield is the posterior mean of its find rate per forward pass under a Gamma(1, 2)
  prior (one find per two forward passes, the prior of the per-mutant rule carried over to cost
  units)::

      y_i = (f_i + 1) / (c_i + 2)

  The prior is optimistic, so a mutator with no data is tried (not starved), and weighs two
  forward passes, so the mutator's own record outweighs it after its first few mutants (one
  attack group costs thousands: not trusted beyond one try). The *budget* is shared by yield,
  ``EXPLORE`` of it uniformly: ``b_i = (1 - EXPLORE) y_i / sum y + EXPLORE / K``; one pick of
  ``i`` spends ``k_i = (c_i + 1) / (m_i + 1)`` per mutant (``m_i`` mutants made; an untried
  mutator is priced as a cheap one until its first group), so the pick probability is ``p_i ~
  b_i / k_i``. An 80-step attack (241 forward passes per mutant) must find 241 times as much per
  mutant as a natural mutator (1 per mutant) to get the same share of the budget, and the
  exploration floor is a share of the cost too, not of the picks. With natural mutators only and
  no failure, ``k_i = 1`` and the weights are those of the per-mutant rule.
* ``"adaptive-per-mutant"``: the rule before issue 11, kept for ablations: ``p_i = 0.8 y_i / sum
  y + 0.2 / K`` with ``y_i = (retained + failing + 1) / (mutants + 2)`` (every failing mutant
  counts, whatever its cost).
* ``"uniform"``: every allowed mutator equally often.

Cost unit. A campaign must stay bit-reproducible for a fixed seed, so the cost is counted, not
timed: one forward-pass equivalent per mutant made (its evaluation, the batched forward pass that
also measures coverage; attributed because every mutant pays it, and without it a natural
mutator would look free), plus, while the mutator runs, one per input row it sends through the
model and ``GRAD_COST`` per row whose gradient it takes (forward + backward; measured on the
built-in LeNet-5 on CPU: 3.4 forward passes). :class:`QueryMeter` counts them with a forward
pre-hook on the target. A natural transform's own work is not counted (measured: 0.04-1.0 forward
passes per mutant, median 0.25). Wall-clock seconds inside each mutator are recorded too
(``MutatorStats.seconds``), for reading, not for the choice.

Background: mutation operators scheduled by their measured success, as in MOPT (Lyu et al.,
USENIX Security 2019); the Gamma-Poisson posterior mean of a rate (Gelman et al., *Bayesian Data
Analysis*, 3rd ed., section 2.6).

Example::

    >>> from neurofuzz.fuzzer.stats import MutatorStats
    >>> cheap = MutatorStats(mutants=100, retained=10, cost=100)
    >>> costly = MutatorStats(mutants=100, failures=100, new_pairs=10, cost=12100)  # same finds
    >>> [round(p, 3) for p in choice_weights([cheap, costly], rule="adaptive").tolist()]
    [0.999, 0.001]
    >>> [round(p, 3) for p in choice_weights([cheap, costly], rule="adaptive-per-mutant").tolist()]
    [0.179, 0.821]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neurofuzz.fuzzer.stats import MutatorStats

RULES = ("adaptive", "adaptive-per-mutant", "uniform")
EXPLORE = 0.2  # share of the budget (adaptive) or of the picks (adaptive-per-mutant) spread uniformly
PRIOR_FINDS, PRIOR_COST = 1.0, 2.0  # the Gamma prior of a find rate: 1 find per 2 forward-pass equivalents
GRAD_COST = 3  # forward-pass equivalents of one row's forward + backward pass


def yields(stats: Sequence[MutatorStats]) -> torch.Tensor:
    """Finds per forward-pass equivalent, ``(finds + 1) / (spent + 2)`` (float64 ``[K]``)."""
    f = torch.tensor([s.finds for s in stats], dtype=torch.float64)
    c = torch.tensor([s.spent for s in stats], dtype=torch.float64)
    return (f + PRIOR_FINDS) / (c + PRIOR_COST)


def choice_weights(stats: Sequence[MutatorStats], *, rule: str = "adaptive") -> torch.Tensor:
    """Pick probabilities (float64 ``[K]``, summing to 1) of the mutators with ``stats``."""
    k = len(stats)
    if not k:
        raise ValueError("no mutator to choose from")
    if rule == "uniform":
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    if rule == "adaptive-per-mutant":
        y = torch.tensor([s.yield_ for s in stats], dtype=torch.float64)
        return (1 - EXPLORE) * y / y.sum() + EXPLORE / k
    if rule != "adaptive":
        raise ValueError(f"unknown mutator choice rule {rule!r}; choose from {', '.join(RULES)}")
    y = yields(stats)
    budget = (1 - EXPLORE) * y / y.sum() + EXPLORE / k
    per_mutant = torch.tensor([(s.spent + 1.0) / (s.mutants + 1.0) for s in stats], dtype=torch.float64)
    w = budget / per_mutant
    return w / w.sum()


class QueryMeter:
    """Counts, while active, the forward-pass equivalents of the calls to ``module``: a row costs
    1, a row whose gradient can be taken (grad mode on, input requiring grad) ``GRAD_COST``.
    ``module=None`` counts nothing. Example::

        >>> net = torch.nn.Linear(3, 2)
        >>> with QueryMeter(net) as meter:
        ...     _ = net(torch.zeros(4, 3))
        ...     _ = net(torch.zeros(2, 3, requires_grad=True))
        >>> meter.cost, len(net._forward_pre_hooks)
        (10, 0)
    """

    def __init__(self, module: Any) -> None:
        self.module, self.cost, self._handle = module, 0, None

    def __enter__(self) -> "QueryMeter":
        if isinstance(self.module, torch.nn.Module):
            self._handle = self.module.register_forward_pre_hook(self._count)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _count(self, module: Any, args: tuple) -> None:
        x = args[0] if args else None
        if isinstance(x, torch.Tensor):
            rows = x.shape[0] if x.dim() else 1
            self.cost += rows * (GRAD_COST if torch.is_grad_enabled() and x.requires_grad else 1)
