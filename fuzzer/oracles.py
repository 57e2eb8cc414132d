"""Objectives (oracles): "is this input a failure?".

Each oracle maps a batch's context to a bool ``[B]``. The loop checks oracles *before* coverage
feedback: a failing input goes to ``failures/<oracle>/`` and never back into the queue.

* ``misclassified``: the prediction differs from the input's label (the root seed's label);
* ``prediction_changed``: the prediction differs from the root seed's prediction;
* ``nonfinite``: some logit is NaN or +-Inf;
* ``disagreement``: a second model (``reference=``) predicts another class.

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.oracles import OracleContext, build_oracle
    >>> ctx = OracleContext(x=torch.zeros(2, 1, 4, 4), logits=torch.tensor([[2., 0.], [0., float("nan")]]),
    ...                     labels=torch.tensor([0, 0]), root_preds=torch.tensor([0, 1]))
    >>> build_oracle("misclassified").check(ctx).tolist(), build_oracle("nonfinite").check(ctx).tolist()
    ([False, False], [False, True])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.registry import Registry


@dataclass
class OracleContext:
    """What oracles see: inputs ``x [B,C,H,W]``, ``logits [B,K]``, ``labels [B]`` and the
    predictions of each input's root seed ``root_preds [B]``."""

    x: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    root_preds: torch.Tensor

    @property
    def preds(self) -> torch.Tensor:
        return torch.nan_to_num(self.logits, nan=float("-inf")).argmax(1)


class Oracle:
    name = ""

    def check(self, ctx: OracleContext) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Misclassified(Oracle):
    name = "misclassified"

    def check(self, ctx: OracleContext) -> torch.Tensor:
        return ctx.preds != ctx.labels.to(ctx.logits.device)


class PredictionChanged(Oracle):
    name = "prediction_changed"

    def check(self, ctx: OracleContext) -> torch.Tensor:
        return ctx.preds != ctx.root_preds.to(ctx.logits.device)


class NonFinite(Oracle):
    name = "nonfinite"

    def check(self, ctx: OracleContext) -> torch.Tensor:
        return ~torch.isfinite(ctx.logits).all(1)


class Disagreement(Oracle):
    """A second model (any callable ``x -> logits``) predicts another class."""

    name = "disagreement"
    resources = ("reference",)

    def __init__(self, reference: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.reference = reference

    @torch.no_grad()
    def check(self, ctx: OracleContext) -> torch.Tensor:
        other = torch.nan_to_num(self.reference(ctx.x), nan=float("-inf")).argmax(1).to(ctx.logits.device)
        return ctx.preds != other


ORACLES: Registry[Oracle] = Registry("oracle")
for _cls in (Misclassified, PredictionChanged, NonFinite, Disagreement):
    ORACLES.register(_cls)
register_oracle = ORACLES.register


def build_oracles(specs: list[dict[str, Any]], resources: dict[str, Any] | None = None) -> list[Oracle]:
    """Oracles from config entries ``{"name": ..., **params}``. An oracle class that needs an
    object that is not a config value (``Disagreement`` needs the reference model) names it in
    ``resources``; it is taken from ``resources`` here, the one place that knows about them."""
    resources = resources or {}
    out = []
    for spec in specs:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = spec.pop("name")
        cls = ORACLES.get(name)
        for r in getattr(cls, "resources", ()):
            if spec.get(r) is not None:
                continue
            if resources.get(r) is None:
                raise UserError(f"the {name} oracle needs a {r} (a second model; for the CLI: --reference-model)")
            spec[r] = resources[r]
        out.append(ORACLES.build(name, **spec))
    return out


def build_oracle(name: str, **params: Any) -> Oracle:
    """One oracle by name (see :func:`build_oracles`)."""
    return build_oracles([{"name": name, **params}])[0]
