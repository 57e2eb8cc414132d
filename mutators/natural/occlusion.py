"""Occlusion (cutout): fill one axis-aligned rectangle per input with a constant value
(DeVries & Taylor, "Improved Regularization of CNNs with Cutout", 2017; DeepXplore's occlusion).

Batched torch (a mask from index comparisons and one ``torch.where``), measured at batch 256
(2 threads): 0.57 ms vs 0.12 ms for numpy slice assignment per image on 1x32x32, 69 ms vs 121 ms
on 3x224x224; both negligible at 32x32, so the batched form that runs on any device is kept.

Shapes: ``x [B, C, H, W]`` -> ``[B, C, H, W]``; every parameter is one value per input.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neurofuzz.mutators.base import Mutator, Params, Range
from neurofuzz.mutators.natural._common import col, floats, fvals, work_dtype
from neurofuzz.mutators.registry import register


def rectangle(params: Params, b: int, h: int, w: int) -> torch.Tensor:
    """Pixel rectangles ``[B, 4]`` (top, left, height, width) from the recorded fractions: the
    size is ``round(fraction * side)`` (at least 1 pixel when the fraction is positive) and the
    position ``floor(top * (H - height + 1))``, so the rectangle always lies inside the image."""
    rows = []
    for hf, wf, tf, lf in zip(*(floats(params, k) for k in ("height", "width", "top", "left"))):
        rh = min(h, max(1, round(hf * h))) if hf > 0 else 0
        rw = min(w, max(1, round(wf * w))) if wf > 0 else 0
        top = min(h - rh, math.floor(tf * (h - rh + 1)))
        left = min(w - rw, math.floor(lf * (w - rw + 1)))
        rows.append((top, left, rh, rw))
    return torch.tensor(rows, dtype=torch.int64).view(b, 4)


@register
class Occlusion(Mutator):
    """Cut out a rectangle of ``height x width`` (fractions of the image's height and width) at a
    random position and fill it with ``lo + value * (hi - lo)``.

    Args:
        height, width: ``(lo, hi)`` rectangle size as fractions of the image's sides within
            [0, 1]; default (0.1, 0.3) each.
        value: ``(lo, hi)`` fill value as a fraction of the range; default (0, 0) (the lower bound).

    Recorded parameters: ``height, width, value`` and the position ``top, left`` in [0, 1)
    (fractions of the free space; see :func:`rectangle`).

    Example:
        >>> import torch
        >>> p = {"height": 0.5, "width": 0.5, "top": 0.0, "left": 0.99, "value": 0.0}
        >>> y = Occlusion().replay(torch.ones(1, 1, 4, 4), p)
        >>> y[0, 0].tolist()
        [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """

    name = "occlusion"
    kind = "natural"
    schema = {
        "height": Range(0.0, 1.0, (0.1, 0.3), doc="rectangle height, fraction of the image height"),
        "width": Range(0.0, 1.0, (0.1, 0.3), doc="rectangle width, fraction of the image width"),
        "value": Range(0.0, 1.0, (0.0, 0.0), doc="fill value, fraction of the range above the lower bound"),
    }

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        p = {k: self.uniform(k, batch, rng) for k in ("height", "width", "value")}
        p["top"] = torch.rand(batch, generator=rng, dtype=torch.float64)
        p["left"] = torch.rand(batch, generator=rng, dtype=torch.float64)
        return p

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        lo, hi = ctx["bounds"]
        b, _, h, w = x.shape
        r = rectangle(params, b, h, w).to(x.device)
        top, left, rh, rw = (r[:, k].view(b, 1, 1, 1) for k in range(4))
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        inside = (rows >= top) & (rows < top + rh) & (cols >= left) & (cols < left + rw)
        fill = col(fvals(params, "value"), x) * (hi - lo) + lo
        return torch.where(inside, fill, x.to(work_dtype(x)))
