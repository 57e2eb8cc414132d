"""Luminance mutators: Contrast (contrast and brightness, ``alpha * x + beta``; DeepHunter's
contrast/brightness, MindArmour's ``Contrast``) and GradientLuminance (a brightness gradient
across the image, after MindArmour's ``GradientLuminance``).

Batched torch (elementwise), measured at batch 256 (2 threads): Contrast 0.16 ms vs 0.37 ms for
``cv2.addWeighted`` per image on 1x32x32 and 139 ms vs 131 ms on 3x224x224; GradientLuminance
0.29 ms vs 1.9 ms for numpy per image, 77 ms vs 177 ms.

Values are in units of the bounds' range ``r = hi - lo``: ``beta = 0.1`` adds a tenth of the range.
Shapes: ``x [B, C, H, W]`` -> ``[B, C, H, W]``; every parameter is one value per input.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neurofuzz.mutators.base import Choice, Mutator, Params, Range
from neurofuzz.mutators.natural._common import col, fvals, pixel_coords, pymap, work_dtype
from neurofuzz.mutators.registry import register


@register
class Contrast(Mutator):
    """``alpha * (x - lo) + lo + beta * (hi - lo)``: contrast ``alpha`` about the lower bound and
    brightness offset ``beta`` (for bounds [0, 1] exactly ``alpha * x + beta``).

    Args:
        alpha: ``(lo, hi)`` contrast factor within [0, 10]; default (0.8, 1.2).
        beta: ``(lo, hi)`` brightness offset as a fraction of the range, within [-1, 1];
            default (-0.1, 0.1).

    Example:
        >>> import torch
        >>> x = torch.full((1, 1, 2, 2), 0.5)
        >>> Contrast().replay(x, {"alpha": 1.5, "beta": -0.25}).flatten().tolist()
        [0.5, 0.5, 0.5, 0.5]
    """

    name = "contrast"
    kind = "natural"
    schema = {
        "alpha": Range(0.0, 10.0, (0.8, 1.2), doc="contrast factor"),
        "beta": Range(-1.0, 1.0, (-0.1, 0.1), doc="brightness offset, fraction of the range"),
    }

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        return {"alpha": self.uniform("alpha", batch, rng), "beta": self.uniform("beta", batch, rng)}

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        lo, hi = ctx["bounds"]
        alpha, beta = col(fvals(params, "alpha"), x), col(fvals(params, "beta"), x)
        return (x.to(work_dtype(x)) - lo) * alpha + lo + beta * (hi - lo)


@register
class GradientLuminance(Mutator):
    """Add a brightness ramp: ``x + strength * r * t`` where ``t`` goes from 0 to 1 across the image.
    ``pattern="linear"``: ``t`` grows along the direction ``angle`` (degrees, counter-clockwise from
    the x axis). ``pattern="radial"``: ``t`` is 1 at ``(cx * W, cy * H)`` and falls to 0 at the
    farthest corner, like a light source (negative ``strength``: a shadow).

    Args:
        strength: ``(lo, hi)`` brightness change at the bright end, fraction of the range, within
            [-1, 1]; default (-0.3, 0.3).
        angle: ``(lo, hi)`` ramp direction in degrees (linear); default (-180, 180).
        cx, cy: ``(lo, hi)`` light position, fractions of the width / height (radial); default (0, 1).
        pattern: ``"linear"`` (default) or ``"radial"``.

    Example:
        >>> import torch
        >>> p = {"strength": 0.4, "angle": 0.0, "cx": 0.0, "cy": 0.0}
        >>> y = GradientLuminance().replay(torch.zeros(1, 1, 1, 5), p)
        >>> [round(v, 2) for v in y.flatten().tolist()]
        [0.0, 0.1, 0.2, 0.3, 0.4]
    """

    name = "gradient_luminance"
    kind = "natural"
    schema = {
        "strength": Range(-1.0, 1.0, (-0.3, 0.3), doc="brightness change at the bright end, fraction of the range"),
        "angle": Range(-180.0, 180.0, (-180.0, 180.0), doc="direction of the linear ramp, degrees"),
        "cx": Range(0.0, 1.0, (0.0, 1.0), doc="radial centre, fraction of the width"),
        "cy": Range(0.0, 1.0, (0.0, 1.0), doc="radial centre, fraction of the height"),
        "pattern": Choice(("linear", "radial"), "linear", doc="shape of the ramp"),
    }

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        return {k: self.uniform(k, batch, rng) for k in ("strength", "angle", "cx", "cy")}

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        lo, hi = ctx["bounds"]
        _, _, h, w = x.shape
        dt = work_dtype(x)
        px, py = pixel_coords(h, w, x.device, dt)
        if self.config["pattern"] == "linear":
            a = fvals(params, "angle")
            cos = pymap(lambda d: math.cos(math.radians(d)), a)
            sin = pymap(lambda d: math.sin(math.radians(d)), a)
            half = (cos.abs() * ((w - 1) / 2) + sin.abs() * ((h - 1) / 2)).clamp_min(1e-12)
            # projection on the direction (cos, -sin) (y points down), scaled to [-1, 1]
            c = col(cos / half, x).squeeze(1)
            s = col(sin / half, x).squeeze(1)
            t = (px * c - py * s + 1) / 2
        else:
            cx, cy = fvals(params, "cx").double() * w, fvals(params, "cy").double() * h
            far = torch.tensor(
                [max(math.hypot(max(a, w - a), max(b, h - b)), 1e-12) for a, b in zip(cx.tolist(), cy.tolist())],
                dtype=torch.float64,
            )
            ox, oy = col(cx - w / 2, x).squeeze(1), col(cy - h / 2, x).squeeze(1)
            t = 1 - ((px - ox) ** 2 + (py - oy) ** 2).sqrt() / col(far, x).squeeze(1)
        return x.to(dt) + col(fvals(params, "strength"), x) * (hi - lo) * t.unsqueeze(1)
