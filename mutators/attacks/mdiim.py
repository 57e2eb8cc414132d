"""M-DI2-FGSM ("MDIIM"): momentum iterative FGSM with input diversity (Xie, Zhang, Zhou, Bai,
Wang, Ren and Yuille, "Improving Transferability of Adversarial Examples with Input Diversity",
CVPR 2019; momentum from Dong et al., CVPR 2018).

Before each forward pass, with probability ``prob``, the input is resized to a random side
``s in [ceil(resize_rate * H), H]`` (bilinear) and padded back to ``H x W`` at a random offset
with the lower bound (black). Xie et al. enlarge 299 -> [299, 330) and pad to 330; shrinking
into the original canvas is the same transform up to one global rescale, and keeps the input
size, so models with a fixed input size (LeNet-5) can be attacked. The gradient flows through
the transform to the undiversified iterate: MI-FGSM's iteration with another ``gradient`` hook.

Randomness: the draws (apply?, size, offsets) are made once per step for a whole group of inputs
sharing the same recorded ``(seed, resize_rate, prob)``; as a mutator these are drawn once per
batch, so the batch costs one transform per step, and an input replayed alone (same recorded
values) sees exactly the same transforms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from neurofuzz.mutators.attacks.base import AttackRun, Param, as_mutator
from neurofuzz.mutators.attacks.iterative import Iteration
from neurofuzz.mutators.attacks.mifgsm import MIFGSM
from neurofuzz.mutators.base import Params


def _diverse(z: torch.Tensor, g: torch.Generator, rate: float, prob: float, fill: float) -> torch.Tensor:
    h, w = z.shape[-2:]
    coin = float(torch.rand((), generator=g))
    s_h = int(torch.randint(max(1, math.ceil(rate * h - 1e-9)), h + 1, (), generator=g))
    s_w = max(1, min(w, round(s_h * w / h)))
    top = int(torch.randint(0, h - s_h + 1, (), generator=g))
    left = int(torch.randint(0, w - s_w + 1, (), generator=g))
    if coin >= prob or (s_h == h and s_w == w):
        return z
    small = F.interpolate(z, size=(s_h, s_w), mode="bilinear", align_corners=False)
    return F.pad(small, (left, w - s_w - left, top, h - s_h - top), value=fill)


def input_diversity(p: Params, fill: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A differentiable batch transform whose random draws come from one generator per group of
    inputs with equal ``(seed, resize_rate, prob)``; each call advances every group's generator."""
    keys = torch.stack([p["seed"].double(), p["resize_rate"].double(), p["prob"].double()], 1)
    uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
    groups = []
    for k in range(len(uniq)):
        idx = (inverse == k).nonzero().flatten()
        i0 = int(idx[0])
        gen = torch.Generator().manual_seed(int(p["seed"][i0]))
        groups.append((idx, gen, float(p["resize_rate"][i0]), float(p["prob"][i0])))

    def transform(z: torch.Tensor) -> torch.Tensor:
        if len(groups) == 1:
            _, gen, rate, prob = groups[0]
            return _diverse(z, gen, rate, prob, fill)
        out = z.clone()
        for idx, gen, rate, prob in groups:
            idx = idx.to(z.device)
            out[idx] = _diverse(z[idx], gen, rate, prob, fill)
        return out

    return transform


class MDIIM(MIFGSM):
    """M-DI2-FGSM: MI-FGSM with input diversity, L-infinity (``decay=0`` gives DI2-FGSM).

    Example:
        >>> import torch
        >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
        >>> x, y = load_digits32("test")
        >>> attack = MDIIM(builtin_target(), eps=0.3)
        >>> a = attack(x[:4], y[:4], rng=torch.Generator().manual_seed(1))
        >>> torch.equal(a, attack(x[:4], y[:4], rng=torch.Generator().manual_seed(1)))
        True
    """

    name = "mdiim"
    randomized = True
    batch_seed = True  # one transform per step for the whole batch (see the module docstring)
    params = {
        **MIFGSM.params,
        "resize_rate": Param(0.9, (0.05, 1.0), None, "smallest resize factor (Xie et al.: 299/330)", per_batch=True),
        "prob": Param(0.5, (0.0, 1.0), None, "probability of the diversity transform at each step", per_batch=True),
    }

    @classmethod
    def begin(cls, run: AttackRun, x: torch.Tensor, p: Params, options: dict[str, Any]) -> Iteration:
        s = super().begin(run, x, p, options)
        s.transform = input_diversity(p, fill=run.bounds[0])
        return s

    @classmethod
    def gradient(cls, s: Iteration, x_adv: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return s.run.grad(x_adv, s.transform)


MDIIMMutator = as_mutator(MDIIM)
