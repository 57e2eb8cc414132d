"""Image inversion from an intermediate representation, with a total-variation prior.

Mahendran and Vedaldi, "Understanding Deep Image Representations by Inverting Them" (CVPR 2015);
MindArmour ``ImageInversionAttack`` (same reference; it reports the average L2 distance, SSIM
and the model's confidence in the true label on the reconstructions, and weighs its three loss
terms ``(1, 0.2, 5)``). Given the representation ``phi0 = f_l(x)`` of a hidden image at layer
``l`` (a name of ``model.named_modules()``; the output of that module), find ``x'`` in the
bounds minimising

    ||f_l(x') - phi0||^2 / ||phi0||^2  +  tv_weight * TV(x')  +  l2_weight * mean(x'^2)

with ``TV(x) = mean((x[i+1,j] - x[i,j])^2) + mean((x[i,j+1] - x[i,j])^2)`` (the squared,
anisotropic total variation of Mahendran and Vedaldi with beta = 2). ``x'`` is parametrised as
``lower + (upper - lower) * sigmoid(w)``, so it never leaves the bounds; Adam on ``w`` from a
seeded uniform start. Works on any :class:`~neurofuzz.ground.target.Target` (normalisation
inside) or bare module; the reconstruction can seed a fuzz campaign like any image batch.

Example::

    >>> import torch
    >>> from torch import nn
    >>> with torch.random.fork_rng():
    ...     net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> inv = ImageInversion(net, layer="module.1", steps=20, seed=0)
    >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    >>> rec = inv.invert(inv.representation(x), shape=(1, 4, 4))
    >>> rec.shape, bool(rec.min() >= 0 and rec.max() <= 1)
    (torch.Size([2, 1, 4, 4]), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy._common import as_target, check_pair


@dataclass
class InversionResult:
    l2: float  # mean L2 distance, reconstruction to original
    ssim: float  # mean SSIM (data_range = the bounds' width)
    confidence: float  # mean softmax probability of the true label on the reconstructions
    per_image_ssim: list[float]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


class ImageInversion:
    """Reconstruct inputs from the output of module ``layer`` (names as ``Target.named_modules()``).

    Args:
        model: a Target or a module (wrapped with bounds (0, 1)).
        layer: e.g. ``"module.pool2"`` for the built-in LeNet-5 wrapped in a Target.
        steps, lr: Adam iterations and step size; ``tv_weight``, ``l2_weight``: the priors.
    """

    def __init__(self, model: Any, *, layer: str, steps: int = 300, lr: float = 0.1, tv_weight: float = 0.05,
                 l2_weight: float = 0.0, seed: int = 0) -> None:
        self.target = as_target(model)
        names = dict(self.target.named_modules())
        if layer not in names or layer == "":
            some = [n for n in names if n][:8]
            raise UserError(f"layer {layer!r} is not a module of the model; choose one of {some}...")
        if not (isinstance(steps, int) and steps >= 1):
            raise UserError(f"inversion steps must be a whole number >= 1, got {steps!r}")
        self.layer, self.module = layer, names[layer]
        self.steps, self.lr, self.tv_weight, self.l2_weight, self.seed = steps, lr, tv_weight, l2_weight, seed

    def _forward_rep(self, x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        h = self.module.register_forward_hook(lambda _m, _i, o: out.append(o if torch.is_tensor(o) else o[0]))
        try:
            self.target(x)
        finally:
            h.remove()
        return out[0]

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._forward_rep(x.to(self.target.device)).detach()

    def invert(self, rep: torch.Tensor, *, shape: tuple[int, ...]) -> torch.Tensor:
        lo, hi = self.target.bounds
        g = torch.Generator().manual_seed(int(self.seed))
        u = torch.rand(len(rep), *shape, generator=g).clamp(0.05, 0.95)
        w = torch.logit(u).to(self.target.device).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        scale = rep.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        for _ in range(self.steps):
            x = lo + (hi - lo) * torch.sigmoid(w)
            r = self._forward_rep(x)
            loss = ((r - rep).flatten(1).pow(2).sum(1) / scale).sum() + len(rep) * (
                self.tv_weight * total_variation(x) + self.l2_weight * x.pow(2).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (lo + (hi - lo) * torch.sigmoid(w)).detach().cpu()

    def evaluate(self, x: Any, y: Any, x_rec: torch.Tensor) -> InversionResult:
        """MindArmour's three figures: mean L2, mean SSIM, mean confidence in the true label."""
        from neurofuzz.mutators.constraints import ssim

        x, y = check_pair(x, y, "original images")
        if x.shape != x_rec.shape:
            raise UserError(f"reconstructions {list(x_rec.shape)} and originals {list(x.shape)} differ in shape")
        lo, hi = self.target.bounds
        s = ssim(x, x_rec, data_range=hi - lo)
        with torch.no_grad():
            p = torch.softmax(self.target(x_rec.to(self.target.device)).double(), 1).cpu()
        return InversionResult(l2=float((x - x_rec).flatten(1).norm(dim=1).mean()), ssim=float(s.mean()),
                               confidence=float(p.gather(1, y.view(-1, 1)).mean()), per_image_ssim=s.tolist())

    def run(self, x: Any, y: Any) -> tuple[torch.Tensor, InversionResult]:
        """Invert the representations of ``x`` and evaluate the reconstructions."""
        x, y = check_pair(x, y, "images to invert")
        rec = self.invert(self.representation(x), shape=tuple(x.shape[1:]))
        return rec, self.evaluate(x, y, rec)
