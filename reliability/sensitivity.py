"""Fault sensitivity map: accuracy drop and prediction changes per fault kind x layer.

For every fault kind, location (weights / activations) and layer (each chosen layer alone, plus
``*``, all of them at once) a :func:`~neurofuzz.reliability.faults.faulty_copy` of the model is
run on a labelled data set. Per cell:

* ``accuracy``: of the faulty copy; a prediction from logits that hold NaN or Inf counts as wrong;
* ``drop``: healthy accuracy minus ``accuracy`` (positive: the fault hurts);
* ``changed``: share of inputs whose predicted class differs from the healthy model's (non-finite
  logits count as changed);
* ``nonfinite``: share of inputs whose logits hold NaN or Inf.

MindArmour's FaultInjector reports the accuracy drop per fault; the prediction-change rate adds
what accuracy hides (a fault can flip right to wrong and wrong to right).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    >>> x = torch.rand(8, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    >>> y = net(x).argmax(1)
    >>> r = sensitivity_report(net, x, y, kinds=["sign", "nan"], rate=1.0, seed=0)
    >>> [(c["kind"], c["layer"], c["accuracy"]) for c in r["cells"]]
    [('sign', '1', 0.0), ('nan', '1', 0.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.reliability.faults import KINDS, check_fault, fault_layers, faulty_copy

__all__ = ["format_sensitivity", "predictions", "sensitivity_report"]


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes ``[N]``; ``-1`` where the logits hold NaN or Inf."""
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size])
        pred = logits.argmax(1)
        pred[~torch.isfinite(logits).all(1)] = -1
        out.append(pred.cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def sensitivity_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, kinds: Sequence[str] = KINDS,
                       layers: str | Sequence[str] = "*", rate: float, seed: int,
                       where: Sequence[str] = ("weights",), bits: tuple[int, int] = (0, 31),
                       per_layer: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Run every (kind, where, layer) fault on ``x [N, ...]`` with labels ``y [N]``.

    ``per_layer=False`` keeps only the all-layers row ``*``. Returns ``{"accuracy", "inputs",
    "rate", "seed", "bits", "layers", "cells": [{kind, where, layer, accuracy, drop, changed,
    nonfinite}, ...]}``; ``model`` is never changed.
    """
    where = [where] if isinstance(where, str) else list(where)
    for k in kinds:
        for w in where:
            check_fault(k, rate, bits, w)
    names = fault_layers(model, layers)
    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"the fault data needs inputs and as many labels, got {len(x)} inputs and {len(y)} labels")
    y = y.cpu()
    healthy = predictions(model, x)
    base = float((healthy == y).float().mean())
    rows = (names if per_layer else []) + (["*"] if len(names) > 1 or not per_layer else [])
    cells = []
    for w in where:
        for kind in kinds:
            for layer in rows:
                chosen = names if layer == "*" else [layer]
                pred = predictions(faulty_copy(model, kind=kind, layers=chosen, rate=rate, seed=seed, where=w, bits=bits), x)
                acc = float((pred == y).float().mean())
                cells.append({"kind": kind, "where": w, "layer": layer, "accuracy": acc, "drop": base - acc,
                              "changed": float((pred != healthy).float().mean()),
                              "nonfinite": float((pred == -1).float().mean())})
                if progress is not None:
                    progress(f"{w} {kind} {layer}: accuracy {acc:.4f}")
    return {"accuracy": base, "inputs": len(x), "rate": rate, "seed": seed, "bits": list(bits), "layers": names,
            "cells": cells}


def format_sensitivity(report: dict) -> str:
    """Tables (one per location) of ``drop / changed`` per layer (rows) and kind (columns)."""
    lines = [f"healthy accuracy {report['accuracy']:.4f} on {report['inputs']} inputs; rate {report['rate']}, "
             f"seed {report['seed']}, bitflip bits {report['bits'][0]}-{report['bits'][1]}; "
             "cells: accuracy drop / share of predictions changed"]
    for w in dict.fromkeys(c["where"] for c in report["cells"]):
        cells = [c for c in report["cells"] if c["where"] == w]
        kinds = list(dict.fromkeys(c["kind"] for c in cells))
        layers = list(dict.fromkeys(c["layer"] for c in cells))
        at = {(c["layer"], c["kind"]): c for c in cells}
        width = max(len(n) for n in layers + [w]) + 2
        lines.append("")
        lines.append(w.ljust(width) + "".join(k.rjust(14) for k in kinds))
        for layer in layers:
            lines.append(layer.ljust(width) + "".join(
                f"{at[layer, k]['drop']:+.3f} / {at[layer, k]['changed']:.2f}".rjust(14) for k in kinds))
    return "\n".join(lines)
