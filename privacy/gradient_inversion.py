"""Gradient inversion: reconstruct a training batch from one step's gradients (DLG / iDLG).

Zhu, Liu and Han, "Deep Leakage from Gradients" (NeurIPS 2019); Zhao, Mopuri and Bilen, "iDLG:
Improved Deep Leakage from Gradients" (2020) for the labels. A client that shares the gradient
``g = grad_theta mean_i CE(f(x_i), y_i)`` of a batch of ``B`` (1-8) images leaks them: start
from seeded random images ``x'`` (parametrised in the bounds through a sigmoid) and minimise the
gradient distance ``sum_params ||grad_theta CE(f(x'), y') - g||^2`` (+ ``tv_weight * TV(x')``)
with L-BFGS (DLG's optimiser) or Adam.

Labels: given, or inferred from the gradient of the last layer's bias ``b`` (iDLG: for a
softmax cross-entropy, ``dL/db_c = mean_i (p_ic - [y_i = c])`` is negative exactly for the
classes present when the model is not already confident; the ``B`` most negative entries are
taken, a class repeated when there are fewer negative entries than ``B``). For ``B > 1`` that
is a heuristic (exact for ``B = 1`` with a bias), reported as ``labels_exact``.

Score: reconstructions are matched to the originals by the Hungarian algorithm on SSIM
(scipy ``linear_sum_assignment``; the batch order is not recoverable from a summed gradient),
then SSIM and PSNR (``10 log10(range^2 / MSE)``) are reported per image.

Measured (8x8 digits, ``Linear(64, 64) - Sigmoid - Linear(64, 10)`` at its seeded init,
L-BFGS): batch 1 and 2 recovered (SSIM 1.00), batch 4 SSIM 1.00 / 0.84 / 0.80 / 1.00, batch 8
with given labels 0.71-1.00 (the inferred labels are wrong for 8: repeated classes are
guessed). On LeNet-5 (ReLU, max-pool, 32x32) DLG does much worse: the trained built-in model
gives SSIM 0.03 (a confident model's gradient is nearly zero), a freshly initialised one 0.05
with L-BFGS (50 steps) and 0.76 with Adam (1000 steps, lr 0.05).

Example::

    >>> import torch
    >>> from torch import nn
    >>> with torch.random.fork_rng():
    ...     net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Sigmoid(), nn.Linear(32, 3))
    >>> x, y = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([2])
    >>> r = GradientInversion(net, steps=30, seed=0).run(x, y)
    >>> r.labels, r.ssim[0] > 0.9
    ([2], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy._common import as_target, check_pair
from neurofuzz.privacy.inversion import total_variation

MAX_BATCH = 8


@dataclass
class GradientInversionResult:
    images: torch.Tensor  # reconstructions in the originals' order (after matching)
    labels: list[int]  # labels used for the reconstruction (inferred or given)
    labels_exact: bool  # the inferred labels equal the true ones (as a multiset)
    ssim: list[float]
    psnr: list[float]
    gradient_distance: float


def step_gradients(model: Any, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = False) -> list[torch.Tensor]:
    """The gradient of the mean cross-entropy over the batch, per trainable parameter."""
    t = as_target(model)
    params = [p for p in t.module.parameters() if p.requires_grad]
    loss = F.cross_entropy(t(x.to(t.device)), y.to(t.device))
    return list(torch.autograd.grad(loss, params, create_graph=create_graph))


def infer_labels(grads: list[torch.Tensor], batch_size: int) -> list[int]:
    """iDLG-style labels from the last bias gradient (the last 1-D gradient)."""
    bias = [g for g in grads if g.dim() == 1]
    if not bias:
        raise UserError("labels cannot be inferred: the model has no bias in its last layer; pass labels=")
    b = bias[-1].detach().flatten()
    order = torch.argsort(b)
    neg = [int(c) for c in order if b[c] < 0] or [int(order[0])]
    return sorted((neg * batch_size)[:batch_size]) if len(neg) < batch_size else sorted(neg[:batch_size])


def match(x: torch.Tensor, rec: torch.Tensor, data_range: float) -> tuple[list[int], torch.Tensor]:
    """Hungarian matching of reconstructions to originals on SSIM; returns (order, SSIM matrix)."""
    from scipy.optimize import linear_sum_assignment

    from neurofuzz.mutators.constraints import ssim

    s = torch.stack([ssim(x[i], rec, data_range=data_range) for i in range(len(x))])  # [orig, rec]
    rows, cols = linear_sum_assignment(-s.numpy())
    return [int(c) for _r, c in sorted(zip(rows, cols))], s


class GradientInversion:
    """DLG / iDLG on ``model`` (a Target or a module); ``optimizer`` ``"lbfgs"`` or ``"adam"``."""

    def __init__(self, model: Any, *, steps: int = 100, lr: float = 1.0, optimizer: str = "lbfgs",
                 tv_weight: float = 0.0, seed: int = 0) -> None:
        self.target = as_target(model)
        if optimizer not in ("lbfgs", "adam"):
            raise UserError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
        if not any(p.requires_grad for p in self.target.module.parameters()):
            raise UserError("the model has no trainable parameters: there is no gradient to invert")
        self.steps, self.lr, self.optimizer, self.tv_weight, self.seed = steps, lr, optimizer, tv_weight, seed

    def reconstruct(self, grads: list[torch.Tensor], *, shape: tuple[int, ...],
                    labels: list[int]) -> tuple[torch.Tensor, float]:
        lo, hi = self.target.bounds
        g = torch.Generator().manual_seed(int(self.seed))
        w = torch.logit(torch.rand(len(labels), *shape, generator=g).clamp(0.05, 0.95)).requires_grad_(True)
        yl = torch.tensor(labels, dtype=torch.long)
        true = [t.detach() for t in grads]

        def objective() -> torch.Tensor:
            x = lo + (hi - lo) * torch.sigmoid(w)
            dummy = step_gradients(self.target, x, yl, create_graph=True)
            d = sum(((a - b) ** 2).sum() for a, b in zip(dummy, true))
            return d + self.tv_weight * total_variation(x) if self.tv_weight else d

        if self.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([w], lr=self.lr, max_iter=20, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad(set_to_none=True)
                loss = objective()
                loss.backward()
                return loss

            for _ in range(self.steps):
                opt.step(closure)
        else:
            opt = torch.optim.Adam([w], lr=self.lr)
            for _ in range(self.steps):
                opt.zero_grad(set_to_none=True)
                objective().backward()
                opt.step()
        with torch.enable_grad():
            dist = float(objective().detach())
        return (lo + (hi - lo) * torch.sigmoid(w)).detach(), dist

    def run(self, x: Any, y: Any, *, labels: list[int] | None = None) -> GradientInversionResult:
        """Compute the step's gradient on ``(x, y)`` (1 to 8 images), invert it, match and score."""
        x, y = check_pair(x, y, "training batch")
        if not 1 <= len(x) <= MAX_BATCH:
            raise UserError(f"gradient inversion takes batches of 1 to {MAX_BATCH} images, got {len(x)}")
        grads = step_gradients(self.target, x, y)
        used = sorted(labels) if labels is not None else infer_labels(grads, len(x))
        rec, dist = self.reconstruct(grads, shape=tuple(x.shape[1:]), labels=used)
        lo, hi = self.target.bounds
        order, s = match(x, rec, hi - lo)
        rec = rec[order]
        mse = (rec - x).flatten(1).pow(2).mean(1).clamp_min(1e-12)
        psnr = (10 * torch.log10((hi - lo) ** 2 / mse)).tolist()
        return GradientInversionResult(images=rec, labels=used, labels_exact=sorted(y.tolist()) == used,
                                       ssim=[float(s[i, j]) for i, j in enumerate(order)], psnr=psnr,
                                       gradient_distance=dist)
