"""Shared template of the black-box attacks (scores or decisions only, no gradients).

A black-box attack runs through the same final template as the gradient attacks
(:func:`~neurofuzz.mutators.attacks.base.run_attack`: validation, eval mode, clipping), but sees
the model only through a :class:`QueryOracle`:

* every model call happens under ``torch.no_grad()`` and returns detached logits, decisions or
  margins, so no autograd graph is ever built and no gradient is ever read;
* queries are counted honestly, per input: one query is one input (one candidate image)
  evaluated once; a query point belongs to the input it was derived from (``owner``);
* each input has a budget (``max_queries``) that the oracle enforces: asking for more is a bug
  in the attack and raises;
* query points are always inside the bounds (the attacks clip them), as a real black box that
  accepts only valid images would require.

Query counts are returned explicitly, per input: ``perturb`` returns ``(x_adv,
oracle.outcomes())``, which reaches the caller as ``AttackResult.outcomes["queries"]`` (int64
``[B]``): on a standalone attack as ``attack.run(x, y).outcomes`` and ``attack.last_queries``,
on a mutator as the recorded parameter ``queries`` (ignored on replay, recomputed).

Randomness comes from one generator per input, seeded from the recorded ``seed`` parameter
(:func:`~neurofuzz.mutators.base.per_input_generators`); each input draws from its own generator
only while it is still being attacked, so an input's random stream does not depend on the rest
of the batch. Replaying one input alone evaluates the model on smaller batches; float32 kernels
then round differently (~1e-7), and a score comparison that lands on such a tie could take the
other branch, so single-input replays are reproducible up to float rounding.

References: Andriushchenko et al., ECCV 2020 (Square); Chen, Jordan and Wainwright, IEEE S&P
2020 (HopSkipJump); Alzantot et al., GECCO 2019 (GenAttack); Ilyas et al., ICML 2018 (NES);
Rauber, Brendel and Bethge, ICML 2017 workshop (Foolbox, salt-and-pepper).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neurofuzz.mutators.attacks.base import Attack, AttackMutator, AttackRun, Param
from neurofuzz.mutators.attacks.logits import forward_logits, is_adversarial, margin
from neurofuzz.mutators.base import Params

QUERY_CHUNK = 2048  # query points evaluated per forward pass (bounds the activation memory)
MAX_QUERIES = Param(1000, (1, 100_000), (300, 300), "model queries per input (budget)", integer=True)


class QueryOracle:
    """The model as a black box: logits, margins or decisions for query points ``[n, C, H, W]``
    owned by inputs ``owner`` (int64 ``[n]``, indices into the attacked batch).

    Args:
        run: the :class:`AttackRun` (model, labels, targets, bounds).
        budget: maximum number of queries per input, ``[B]``.
    """

    def __init__(self, run: AttackRun, budget: torch.Tensor) -> None:
        self.run = run
        self.targeted = run.targeted
        self.budget = budget.detach().to("cpu", torch.long).clone()
        self.used = torch.zeros_like(self.budget)
        self._n_classes: int | None = None

    def remaining(self) -> torch.Tensor:
        """Queries left per input, int64 ``[B]`` (CPU)."""
        return self.budget - self.used

    def logits(self, x: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Detached logits ``[n, n_classes]``; counts one query per row for its owner."""
        owner = owner.detach().to("cpu", torch.long)
        if owner.shape != (x.shape[0],):
            raise RuntimeError(f"owner must have shape [{x.shape[0]}], got {tuple(owner.shape)}")
        counts = torch.bincount(owner, minlength=self.budget.numel())
        if bool((self.used + counts > self.budget).any()):
            raise RuntimeError("a black-box attack asked for more queries than its budget (bug in the attack)")
        if x.shape[0] == 0:
            return torch.empty(0, self._n_classes or 0, device=x.device)
        with torch.no_grad():
            out = torch.cat([forward_logits(self.run, chunk) for chunk in x.split(QUERY_CHUNK)]).detach()
        self._n_classes = out.shape[1]
        self.used += counts
        return out

    def labels(self, owner: torch.Tensor) -> torch.Tensor:
        """The attacked labels (true labels, or targets) of ``owner``; valid after a first query."""
        if self.run.labels is None:
            raise RuntimeError("labels are resolved by the first query")
        return self.run.labels[owner.to(self.run.labels.device)]

    def margin(self, x: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Margin loss ``[n]`` (negative: adversarial), see :func:`logits.margin`."""
        z = self.logits(x, owner)
        return margin(z, self.labels(owner), targeted=self.targeted) if len(z) else z.new_empty(0)

    def scores(self, x: torch.Tensor, owner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin ``[n]`` and decision ``[n]`` from one query per point."""
        z = self.logits(x, owner)
        if not len(z):
            return z.new_empty(0), torch.zeros(0, dtype=torch.bool, device=x.device)
        labels = self.labels(owner)
        return margin(z, labels, targeted=self.targeted), is_adversarial(z, labels, targeted=self.targeted)

    def decide(self, x: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Decisions only: is each query point adversarial? bool ``[n]``."""
        z = self.logits(x, owner)
        if not len(z):
            return torch.zeros(0, dtype=torch.bool, device=x.device)
        return is_adversarial(z, self.labels(owner), targeted=self.targeted)

    def outcomes(self) -> Params:
        """The per-input query counts, ``{"queries": int64 [B]}``, for ``perturb`` to return."""
        return {"queries": self.used.clone()}


def draw(gens: list[torch.Generator], idx: torch.Tensor, fn: Callable[[torch.Generator], torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``stack([fn(gens[i]) for i in idx])`` on ``like``'s device: one draw per listed input,
    each from that input's own generator."""
    return torch.stack([fn(gens[i]) for i in idx.tolist()]).to(like.device)


def rows(mask: torch.Tensor) -> torch.Tensor:
    """Indices (int64, CPU) of the ``True`` entries of a ``[B]`` mask."""
    return mask.detach().cpu().nonzero().flatten()


class BlackBoxAttack(Attack):
    """Base of the black-box attacks: randomized (per-input seeds), and the per-input query
    counts are an outcome; after each call ``last_queries`` (int64 ``[B]``) holds them.
    Arguments as :class:`~neurofuzz.mutators.attacks.base.Attack`."""

    randomized = True
    outcome_keys = ("queries",)

    @property
    def last_queries(self) -> torch.Tensor | None:
        """Model queries spent on each input by the last call (``None`` before the first)."""
        return self.last_outcomes.get("queries")


BlackBoxMutator = AttackMutator  # the adapter records every attack's outcomes (here: queries)
