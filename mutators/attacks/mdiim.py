"""M-DI2-FGSM ("MDIIM"): momentum iterative FGSM with input diversity (Xie, Zhang, Zhou, Bai,
Wang, Ren and Yuille, "Improving Transferability of Adversarial Examples with Input Diversity",
CVPR 2019; momentum from Dong et al., CVPR 2018).

Before each forward pass, with probability ``prob``, the input is resized to a random side
``s in [ceil(resize_rate * H), H]`` (bilinear) and padded back to ``H x W`` at a random offset
with the lower bound (black). Xie et al. enlarge 299 -> [299, 330) and pad to 330; shrinking
into the original canvas is the same transform up to one global rescale, and keeps the input
size, so models with a fixed input size (LeNet-5) can be attacked. The gradient flows through
the transform to the undiversified iterate.

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
from torch import nn

from neurofuzz.fuzzer.errors import UserError
from neurofuzz.mutators.attacks.base import AttackMutator, AttackRun
from neurofuzz.mutators.attacks.mifgsm import MIFGSM, momentum_iterate
from neurofuzz.mutators.base import Params, Range
from neurofuzz.mutators.registry import register


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
    """M-DI2-FGSM: MI-FGSM with input diversity, L-infinity.

    Args:
        model: a Target or an ``nn.Module`` returning logits.
        eps: L-infinity radius (raw input units); default 0.3.
        alpha: step size; default ``eps / steps``.
        steps: iterations; default 10.
        decay: momentum decay; default 1.0 (``decay=0`` gives DI2-FGSM).
        resize_rate: smallest resize factor, in (0, 1]; default 0.9 (Xie et al.: 299/330).
        prob: probability of transforming the input at each step; default 0.5.
        targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.

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

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 0.3,
        alpha: float | None = None,
        steps: int = 10,
        decay: float = 1.0,
        resize_rate: float = 0.9,
        prob: float = 0.5,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, decay=decay, targeted=targeted, bounds=bounds, seed=seed)
        if not 0.0 < float(resize_rate) <= 1.0:
            raise UserError(f"{self.name}: resize_rate must be in (0, 1], got {resize_rate!r}")
        if not 0.0 <= float(prob) <= 1.0:
            raise UserError(f"{self.name}: prob must be in [0, 1], got {prob!r}")
        self.resize_rate, self.prob = float(resize_rate), float(prob)

    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        scalars, _ = super().settings()
        return {**scalars, "resize_rate": self.resize_rate, "prob": self.prob}, {}

    def seeds(self, batch: int, rng: torch.Generator) -> torch.Tensor:
        # one seed for the whole batch: one transform per step (see the module docstring)
        return super().seeds(1, rng).expand(batch).clone()

    @classmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        return momentum_iterate(run, x, p, input_diversity(p, fill=run.bounds[0]))


@register
class MDIIMMutator(AttackMutator):
    """M-DI2-FGSM (Xie et al., 2019) as a mutator.

    Args:
        eps: ``(lo, hi)`` radius per input, fraction of the bounds' range; default (0.05, 0.3).
        alpha: ``(lo, hi)`` step size per input; default 0.03.
        steps: ``(lo, hi)`` iterations per input; default 10.
        decay: ``(lo, hi)`` momentum decay per input; default 1.0.
        resize_rate: ``(lo, hi)`` smallest resize factor, drawn once per batch; default 0.9.
        prob: ``(lo, hi)`` transform probability, drawn once per batch; default 0.5.
        targeted: ``"no"``, ``"next"`` or ``"random"``.
    """

    name = "mdiim"
    attack = MDIIM
    schema = {
        "eps": Range(0.0, 1.0, (0.05, 0.3), doc="L-inf radius"),
        "alpha": Range(0.0, 1.0, (0.03, 0.03), doc="step size"),
        "steps": Range(0, 1000, (10, 10), integer=True, doc="iterations"),
        "decay": Range(0.0, 10.0, (1.0, 1.0), doc="momentum decay factor"),
        "resize_rate": Range(0.05, 1.0, (0.9, 0.9), doc="smallest resize factor (per batch)"),
        "prob": Range(0.0, 1.0, (0.5, 0.5), doc="probability of the diversity transform (per batch)"),
        "targeted": AttackMutator.targeted_choice,
    }

    def draw(self, batch: int, rng: torch.Generator) -> Params:
        per_batch = {k: self.uniform(k, 1, rng).expand(batch).clone() for k in ("resize_rate", "prob")}
        return {
            "eps": self.uniform("eps", batch, rng),
            "alpha": self.uniform("alpha", batch, rng),
            "steps": self.uniform("steps", batch, rng),
            "decay": self.uniform("decay", batch, rng),
            **per_batch,
            "seed": self.seeds(1, rng).expand(batch).clone(),
        }
