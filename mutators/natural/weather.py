"""Weather-like mutators: Fog, Rain and Snow (plausible, deliberately simple versions of
Hendrycks & Dietterich's ImageNet-C ``fog`` and ``snow`` (ICLR 2019) and of the rain-streak
model in Garg & Nayar, "Photorealistic Rendering of Rain Streaks", SIGGRAPH 2006).

* Fog: blend toward a light grey through a fractal (multi-octave smooth random) density map.
* Rain: sparse random drops smeared into anti-aliased streaks (a line kernel), blended as light grey.
* Snow: sparse random flakes of random brightness, Gaussian-shaped, over a whitening veil.

Random maps are drawn per input from recorded seeds; streaks and flakes are filtered per image in
OpenCV and blended with batched torch: rain streaks measured 9.0 ms (cv2.filter2D) vs 24 ms (torch
``conv2d`` per image) at batch 256 1x32x32, 319 ms vs 1069 ms at 3x224x224 (2 threads).

Shapes: ``x [B, C, H, W]`` -> ``[B, C, H, W]``; every parameter is one value per input.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from neurofuzz.mutators.base import Mutator, Params, Range, per_input_generators
from neurofuzz.mutators.natural._common import (
    col,
    floats,
    fvals,
    gaussian_ksize,
    ints,
    line_kernel,
    smooth_field,
    stack,
    work_dtype,
)
from neurofuzz.mutators.registry import register

_GREY = 0.85  # colour of fog and rain, as a fraction of the range


def _blend(x: torch.Tensor, masks: list[torch.Tensor], level: float, bounds: tuple[float, float]) -> torch.Tensor:
    """``x + m * (colour - x)`` with per-pixel opacity masks ``[H, W]``, one per input."""
    lo, hi = bounds
    m = stack(masks, tuple(x.shape[2:])).unsqueeze(1).to(x.device, work_dtype(x))
    xs = x.to(work_dtype(x))
    return xs + m * (lo + level * (hi - lo) - xs)


@register
class Fog(Mutator):
    """Fog: ``x + t * (grey - x)`` with opacity ``t = density * (0.5 + 0.5 * f)``, where ``f`` in
    [0, 1] sums up to four octaves of smooth noise, the coarsest with ``cells`` control points.

    Args:
        density: ``(lo, hi)`` largest opacity within [0, 1]; default (0.2, 0.5).
        cells: ``(lo, hi)`` integer control points of the coarsest octave within [1, 16]; default (2, 4).

    Example:
        >>> import torch
        >>> x = torch.zeros(2, 3, 32, 32)
        >>> y = Fog(density=0.5).mutate(x, torch.Generator().manual_seed(0)).x
        >>> bool(y.min() >= 0.5 * 0.5 * 0.85 - 1e-6 and y.max() <= 0.5 * 0.85 + 1e-6)
        True
    """

    name = "fog"
    kind = "natural"
    schema = {
        "density": Range(0.0, 1.0, (0.2, 0.5), doc="largest fog opacity"),
        "cells": Range(1, 16, (2, 4), integer=True, doc="control points of the coarsest octave"),
    }

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        return {k: self.uniform(k, batch, rng) for k in ("density", "cells")} | {"seed": self.seeds(batch, rng)}

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        _, _, h, w = x.shape
        masks = []
        gens = per_input_generators(params["seed"])
        for g, cells, density in zip(gens, ints(params, "cells"), floats(params, "density")):
            f = torch.zeros(h, w)
            n, amp = max(cells, 2), 1.0
            for _ in range(4):
                f = f + amp * smooth_field(g, 1, n, h, w)[0]
                n, amp = n * 2, amp / 2
                if n > min(h, w):
                    break
            f = (f - f.min()) / (f.max() - f.min()).clamp_min(1e-12)
            masks.append(density * (0.5 + 0.5 * f))
        return _blend(x, masks, _GREY, ctx["bounds"])


@register
class Rain(Mutator):
    """Rain: drops at a share ``density`` of the pixels, each smeared into a streak of ``length``
    (fraction of the height) tilted by ``angle`` degrees from vertical, blended as light grey with
    opacity ``intensity``.

    Args:
        density: ``(lo, hi)`` share of pixels that start a streak, within [0, 0.2]; default (0.002, 0.01).
        length: ``(lo, hi)`` streak length as a fraction of the height within [0, 1] (at least
            1 pixel); default (0.05, 0.2).
        angle: ``(lo, hi)`` tilt from vertical in degrees within [-60, 60]; default (-20, 20).
        intensity: ``(lo, hi)`` streak opacity within [0, 1]; default (0.3, 0.6).

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1, 32, 32)
        >>> y = Rain().replay(x, {"density": 0.01, "length": 0.25, "angle": 0.0, "intensity": 0.5, "seed": 3})
        >>> bool(0 < (y > 0).float().mean() < 0.5 and y.max() <= 0.5 * 0.85 + 1e-6)
        True
    """

    name = "rain"
    kind = "natural"
    schema = {
        "density": Range(0.0, 0.2, (0.002, 0.01), doc="share of pixels starting a streak"),
        "length": Range(0.0, 1.0, (0.05, 0.2), doc="streak length, fraction of the height"),
        "angle": Range(-60.0, 60.0, (-20.0, 20.0), doc="tilt from vertical, degrees"),
        "intensity": Range(0.0, 1.0, (0.3, 0.6), doc="streak opacity"),
    }

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        p = {k: self.uniform(k, batch, rng) for k in ("density", "length", "angle", "intensity")}
        p["seed"] = self.seeds(batch, rng)
        return p

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        _, _, h, w = x.shape
        masks = []
        values = (floats(params, k) for k in ("density", "length", "angle", "intensity"))
        for g, density, length, angle, intensity in zip(per_input_generators(params["seed"]), *values):
            drops = (torch.rand(h, w, generator=g) < density).numpy().astype(np.float32)
            kernel = line_kernel(max(1.0, length * h), 90.0 - angle)
            streaks = cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)
            streaks[streaks < 1e-6] = 0.0  # large kernels are applied through a DFT: clear its round-off
            masks.append(torch.from_numpy(np.clip(streaks, 0.0, 1.0)) * intensity)
        return _blend(x, masks, _GREY, ctx["bounds"])


@register
class Snow(Mutator):
    """Snow: whiten by ``veil`` (``x + veil * (hi - x)``), then add flakes at a share ``density``
    of the pixels, each a Gaussian blob of standard deviation ``size`` pixels whose peak opacity is
    ``intensity`` times a random brightness in [0.5, 1].

    Args:
        density: ``(lo, hi)`` share of pixels holding a flake, within [0, 0.2]; default (0.005, 0.03).
        size: ``(lo, hi)`` flake standard deviation in pixels within [0, 5]; default (0.5, 1.5).
        intensity: ``(lo, hi)`` flake opacity within [0, 1]; default (0.7, 1.0).
        veil: ``(lo, hi)`` whitening of the whole image within [0, 1]; default (0, 0.2).

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 3, 32, 32)
        >>> p = {"density": 0.02, "size": 0.0, "intensity": 1.0, "veil": 0.0, "seed": 0}
        >>> y = Snow().replay(x, p)
        >>> bool(0.005 < (y[0, 0] > 0).float().mean() < 0.04 and y.max() <= 1.0)
        True
    """

    name = "snow"
    kind = "natural"
    schema = {
        "density": Range(0.0, 0.2, (0.005, 0.03), doc="share of pixels holding a flake"),
        "size": Range(0.0, 5.0, (0.5, 1.5), doc="flake standard deviation in pixels"),
        "intensity": Range(0.0, 1.0, (0.7, 1.0), doc="flake opacity"),
        "veil": Range(0.0, 1.0, (0.0, 0.2), doc="whitening of the whole image"),
    }

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        p = {k: self.uniform(k, batch, rng) for k in ("density", "size", "intensity", "veil")}
        p["seed"] = self.seeds(batch, rng)
        return p

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        lo, hi = ctx["bounds"]
        _, _, h, w = x.shape
        masks = []
        for g, density, size, intensity in zip(
            per_input_generators(params["seed"]), *(floats(params, k) for k in ("density", "size", "intensity"))
        ):
            u = torch.rand(2, h, w, generator=g).numpy()
            flakes = np.where(u[0] < density, 0.5 + 0.5 * u[1], 0.0).astype(np.float32)
            if size > 0:
                k = gaussian_ksize(size)
                peak = float(cv2.getGaussianKernel(k, size)[k // 2, 0]) ** 2
                blurred = cv2.GaussianBlur(flakes, (k, k), sigmaX=size, sigmaY=size, borderType=cv2.BORDER_CONSTANT)
                flakes = blurred / peak
            masks.append(torch.from_numpy(np.clip(flakes, 0.0, 1.0)) * intensity)
        veil = col(fvals(params, "veil"), x)
        xs = x.to(work_dtype(x))
        return _blend(xs + veil * (hi - xs), masks, 1.0, (lo, hi))
