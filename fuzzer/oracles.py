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

from neurofuzz.fuzzer.errors import UserError


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

    def __init__(self, reference: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.reference = reference

    @torch.no_grad()
    def check(self, ctx: OracleContext) -> torch.Tensor:
        other = torch.nan_to_num(self.reference(ctx.x), nan=float("-inf")).argmax(1).to(ctx.logits.device)
        return ctx.preds != other


ORACLES: dict[str, type[Oracle]] = {
    c.name: c for c in (Misclassified, PredictionChanged, NonFinite, Disagreement)
}


def register_oracle(cls: type[Oracle]) -> type[Oracle]:
    """Class decorator: make an :class:`Oracle` subclass available by ``cls.name`` (e.g. a
    detector-based oracle from :mod:`neurofuzz.defenses`)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    ORACLES[cls.name] = cls
    return cls


def build_oracle(name: str, **kwargs: Any) -> Oracle:
    if name not in ORACLES:
        raise UserError(f"unknown oracle {name!r}; choose from {', '.join(ORACLES)}")
    if name == "disagreement" and kwargs.get("reference") is None:
        raise UserError("the disagreement oracle needs a second model (--reference-model)")
    try:
        return ORACLES[name](**kwargs)
    except TypeError:
        raise UserError(f"oracle {name!r} does not take parameters {sorted(kwargs)}") from None
