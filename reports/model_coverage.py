"""Coverage report of any model on any data: what ``neurofuzz coverage`` prints.

Profiles the neurons (:class:`~neurofuzz.coverage.NeuronProfile`: min / max / mean / std per
neuron, streamed) on the profiling data, or takes a saved profile, then measures all five
default metrics (:meth:`~neurofuzz.coverage.CoverageSuite.default`) on the inputs, in batches,
with explicit commits. With labels, also the accuracy on the inputs.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from neurofuzz.ground import Target
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    >>> x = torch.rand(12, 1, 4, 4, generator=g)
    >>> r = coverage_report(Target(net), x, torch.zeros(12, dtype=torch.int64), profile_data=x[:6], model="toy")
    >>> sorted(r["coverage"]), r["inputs"], r["profiled_inputs"], 0 <= r["accuracy"] <= 1
    (['kmnc', 'nbc', 'nc', 'snac', 'tknc'], 12, 6, True)
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.coverage import CoverageSuite, NeuronProfile
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target, check_labels


def coverage_report(target: Target, x: torch.Tensor, y: torch.Tensor | None = None, *,
                    profile: NeuronProfile | None = None, profile_data: torch.Tensor | None = None,
                    batch_size: int = 256, model: str = "model") -> dict[str, Any]:
    """Coverage of ``target`` on inputs ``x`` (``[N, C, H, W]`` in the target's bounds).

    Args:
        y: labels ``[N]`` (optional): the report's ``accuracy`` (``None`` without them).
        profile: a saved neuron profile; else ``profile_data`` is profiled (default ``x``).
        batch_size: inputs per forward pass; model: the name the report gives the model.
    Returns:
        ``{"model", "accuracy", "profiled_inputs", "inputs", "metrics", "coverage", "per_layer"}``.
    """
    if len(x) == 0:
        raise UserError("the coverage inputs are empty; give at least one input")
    logits = target.probe(x[:2])
    if y is not None:
        check_labels(y, int(logits.shape[1]), what="input")
    if profile is None:
        data = profile_data if profile_data is not None else x
        profile = NeuronProfile.from_data(target, data, batch_size=batch_size)
    suite = CoverageSuite.default(target, profile)
    correct = 0
    with suite:
        for i in range(0, len(x), batch_size):
            ev = suite.evaluate(x[i : i + batch_size].to(target.device))
            suite.commit(ev)
            if y is not None:
                pred = torch.nan_to_num(ev.logits, nan=float("-inf")).argmax(1).cpu()
                correct += int((pred == y[i : i + batch_size].cpu()).sum())
    return {
        "model": model,
        "accuracy": correct / len(x) if y is not None else None,
        "profiled_inputs": profile.count,
        "inputs": len(x),
        "metrics": {n: m.config() for n, m in suite.metrics.items()},
        "coverage": suite.values(),
        "per_layer": suite.per_layer(),
    }
