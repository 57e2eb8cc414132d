"""Additive noise mutators.

GaussianNoise: ``x + N(0, std^2)`` per pixel, one ``std`` drawn per input (MindArmour's
``GaussianNoise`` factor). Batched torch: per-input generators seeded from recorded seeds, so a
single input can be replayed alone.
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.mutators.base import Mutator, Params, Range, per_input_generators
from neurofuzz.mutators.registry import register


@register
class GaussianNoise(Mutator):
    """Add Gaussian noise with a per-input standard deviation (in units of the bounds' range).

    Args:
        std: ``(lo, hi)`` range of the noise standard deviation, within [0, 1]; default (0.01, 0.1).

    Example:
        >>> import torch
        >>> m = GaussianNoise(std=0.05)
        >>> m.mutate(torch.rand(2, 1, 8, 8), torch.Generator().manual_seed(1)).x.shape
        torch.Size([2, 1, 8, 8])
    """

    name = "gaussian_noise"
    kind = "natural"
    schema = {"std": Range(0.0, 1.0, (0.01, 0.1), doc="noise std as a fraction of the bounds' range")}

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        return {"std": self.uniform("std", batch, rng), "seed": self.seeds(batch, rng)}

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        lo, hi = ctx["bounds"]
        noise = torch.stack(
            [torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in per_input_generators(params["seed"])]
        ).to(x.device, x.dtype)
        std = params["std"].to(x.device, x.dtype).view(-1, 1, 1, 1) * (hi - lo)
        return x + noise * std
