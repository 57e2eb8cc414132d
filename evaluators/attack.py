"""Attack evaluation, after MindArmour's ``AttackEvaluate`` and DEEPSEC's robustness metrics.

References: MindArmour ``mindarmour.evaluations.AttackEvaluate`` (MR, ACAC, ACTC, Lp distances,
SSIM, NTE); Ling et al., "DEEPSEC: A Uniform Platform for Security Analysis of Deep Learning
Model", IEEE S&P 2019 (RGB, RIC, NTE).

Notation, for ``N`` inputs ``x_i`` (clean), ``x'_i`` (adversarial), labels ``y_i``, optional
target labels ``t_i``, adversarial probabilities ``p'_i = softmax(f(x'_i))`` (or given) and
``c_i = argmax_k p'_i[k]``:

* success: ``S = {i : c_i != y_i}`` (untargeted) or ``S = {i : c_i == t_i}`` (targeted, when
  ``target_labels`` are given). An input the model already misclassifies counts as a success
  of an untargeted attack, as in MindArmour; ``clean_accuracy`` tells how many there were.
* ``MR   = |S| / N`` (misclassification rate; 0 when nothing succeeds).
* ``ACAC = mean_{i in S} p'_i[c_i]`` (confidence of the adversarial class; targeted: ``c_i = t_i``).
* ``ACTC = mean_{i in S} p'_i[y_i]`` (remaining confidence of the true class).
* With ``d_i = x'_i - x_i`` over all ``n = C*H*W`` elements, computed in float64:
  absolute ``L0 = |{j : d_ij != 0}|`` (count of changed elements), ``L2 = ||d_i||_2``,
  ``Linf = max_j |d_ij|``; relative ``l0_rel = L0 / n``, ``l2_rel = ||d_i||_2 / ||x_i||_2``,
  ``linf_rel = ||d_i||_inf / ||x_i||_inf`` and ``l0_rel_support = L0 / ||x_i||_0`` (changed
  elements over the non-zero elements of ``x_i``: what MindArmour's ``avg_lp_distance`` calls
  its L0, which can exceed 1, e.g. 1.70 for FGSM on MNIST in its tutorial). Each is averaged
  over ``S``; the three ratios with a norm of ``x_i`` in the denominator are averaged over the
  successes whose ``x_i`` is not all zero (no relative scale exists for a blank image;
  MindArmour adds 1e-14 to the denominator instead, which makes such a value explode).
* ``SSIM = mean_{i in S} ssim(x_i, x'_i)`` with :func:`neurofuzz.mutators.constraints.ssim`
  (Gaussian 11x11 window, sigma 1.5, ``data_range = upper - lower``).
* ``NTE  = mean_{i in S} (p'_i[(1)] - p'_i[(2)])``: largest minus second-largest probability
  on the adversarial input (noise tolerance estimate; with one class the second is 0).
* ``RGB  = |{i in S : x'_i blurred is still a success}| / |S|``, blur = Gaussian with
  ``blur_sigma`` (default 0.5, DEEPSEC's) and an odd kernel of ``blur_kernel`` pixels (default
  ``2*ceil(3*sigma)+1``, as the ``gaussian_blur`` mutator), replicated borders, per channel.
* ``RIC  = |{i in S : JPEG(x'_i) is still a success}| / |S|`` at ``jpeg_quality`` (default 90,
  DEEPSEC's), through the registered ``jpeg`` mutator (8-bit round trip over the bounds).

Empty success set: every metric averaged over ``S`` (ACAC, ACTC, distances, SSIM, NTE, RGB,
RIC) is NaN, meaning "undefined: no adversarial example to measure" (MindArmour returns 0 or
-1 there, which reads like a measurement). ``rgb``/``ric`` are ``None`` when not computed (no
model given, or ``robustness=False``); ``clean_accuracy`` is ``None`` without a model or
``probs_clean``.

Example::

    >>> import torch
    >>> x = torch.full((2, 1, 4, 4), 0.5); x_adv = x.clone(); x_adv[0, 0, 0, 0] = 0.75
    >>> p = torch.tensor([[0.2, 0.8], [0.9, 0.1]], dtype=torch.float64)  # input 0 now class 1
    >>> r = evaluate_attack(x, torch.tensor([0, 0]), x_adv, probs_adv=p)
    >>> r.misclassification_rate, r.acac, r.actc, r.l0_abs, r.l0_rel, r.linf_rel
    (0.5, 0.8, 0.2, 1.0, 0.0625, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from neurofuzz.evaluators._common import (
    as_images,
    as_labels,
    as_probs,
    check_batch_size,
    mean_or_nan,
    model_bounds,
    model_probs,
    spans,
)
from neurofuzz.ground.errors import UserError
from neurofuzz.mutators.constraints import ssim
from neurofuzz.mutators.registry import create

Model = Callable[[torch.Tensor], Any]


def gaussian_blur(x: torch.Tensor, sigma: float, kernel: int | None = None) -> torch.Tensor:
    """Per-channel Gaussian blur of ``x [B, C, H, W]``: separable kernel ``exp(-k^2 / (2 sigma^2))``
    for ``k = -r..r`` (``2r+1 = kernel``, default ``2*ceil(3*sigma)+1``), normalised to sum 1,
    replicated borders, computed in float64 and returned in ``x``'s dtype. ``sigma = 0`` copies."""
    if sigma == 0:
        return x.clone()
    k = 2 * math.ceil(3.0 * sigma) + 1 if kernel is None else kernel
    r = k // 2
    g = torch.exp(-(torch.arange(k, dtype=torch.float64, device=x.device) - r) ** 2 / (2.0 * sigma * sigma))
    g = g / g.sum()
    c = x.shape[1]
    t = F.pad(x.to(torch.float64), (r, r, r, r), mode="replicate")
    t = F.conv2d(t, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(t, g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    return t.to(x.dtype)


@dataclass(frozen=True)
class AttackReport:
    """Attack metrics; see the module docstring for every formula. NaN: no successful example
    to average over; ``None``: not computed."""

    n: int
    successes: int
    targeted: bool
    misclassification_rate: float
    clean_accuracy: float | None
    acac: float
    actc: float
    l0_rel: float
    l2_rel: float
    linf_rel: float
    l0_rel_support: float
    l0_abs: float
    l2_abs: float
    linf_abs: float
    ssim: float
    nte: float
    rgb: float | None
    ric: float | None
    blur_sigma: float
    blur_kernel: int
    jpeg_quality: int

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (NaN stays a float NaN, ``None`` stays ``None``)."""
        return asdict(self)

    def format(self) -> str:
        """One ``name value`` line per metric."""
        return "\n".join(f"{k:<24}{v:.6g}" if isinstance(v, float) else f"{k:<24}{v}" for k, v in self.to_dict().items())


class AttackEvaluator:
    """Streaming attack evaluation: call :meth:`update` per batch, then :meth:`result`.

    Only sums and counts are kept, so the data can be fed batch by batch from a loader.

    Args:
        model: callable ``x -> logits`` (a :class:`~neurofuzz.fuzzer.Target` or ``nn.Module``);
            needed for RGB / RIC and when probabilities are not passed to :meth:`update`.
        targeted: success means "predicted the target label"; :meth:`update` then needs
            ``target_labels``.
        bounds: input bounds (SSIM's data range, JPEG's 8-bit range); default the model's, else (0, 1).
        blur_sigma, blur_kernel: Gaussian blur of RGB (sigma >= 0 in pixels, odd kernel size).
        jpeg_quality: JPEG quality of RIC, 1..100.
        robustness: compute RGB and RIC (needs ``model``).
    """

    def __init__(
        self,
        model: Model | None = None,
        *,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        blur_sigma: float = 0.5,
        blur_kernel: int | None = None,
        jpeg_quality: int = 90,
        robustness: bool = True,
    ) -> None:
        if not isinstance(blur_sigma, (int, float)) or isinstance(blur_sigma, bool) or not 0 <= blur_sigma <= 10:
            raise UserError(f"blur_sigma must be a number in [0, 10] (pixels), got {blur_sigma!r}")
        if blur_kernel is None:
            blur_kernel = 2 * math.ceil(3.0 * blur_sigma) + 1
        if isinstance(blur_kernel, bool) or not isinstance(blur_kernel, int) or blur_kernel < 1 or blur_kernel % 2 == 0:
            raise UserError(f"blur_kernel must be an odd positive integer (pixels), got {blur_kernel!r}")
        if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise UserError(f"jpeg_quality must be an integer in [1, 100], got {jpeg_quality!r}")
        self.model = model
        self.targeted = bool(targeted)
        self.bounds = model_bounds(model, bounds)
        self.blur_sigma, self.blur_kernel, self.jpeg_quality = float(blur_sigma), blur_kernel, jpeg_quality
        self.robustness = bool(robustness) and model is not None
        self._jpeg = create("jpeg") if self.robustness else None
        self._s: dict[str, float] = dict.fromkeys(
            ("n", "succ", "clean_n", "clean_ok", "acac", "actc", "l0_rel", "l0_abs", "l2_abs", "linf_abs", "n_rel",
             "l2_rel", "linf_rel", "l0_sup", "ssim", "nte", "rgb", "ric"), 0.0)

    def _still(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> int:
        pred = model_probs(self.model, x, "transformed adversarial inputs").argmax(dim=1)  # type: ignore[arg-type]
        return int((pred == t).sum()) if t is not None else int((pred != y).sum())

    @torch.no_grad()
    def update(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_adv: torch.Tensor,
        *,
        probs_adv: torch.Tensor | None = None,
        probs_clean: torch.Tensor | None = None,
        target_labels: torch.Tensor | None = None,
    ) -> None:
        """Add one batch: clean ``x [B, C, H, W]``, labels ``y [B]`` (or one-hot ``[B, K]``),
        adversarial ``x_adv`` like ``x``; optional probabilities ``[B, K]`` on ``x_adv`` / ``x``
        (else the model's softmax) and ``target_labels [B]`` (targeted mode)."""
        x, x_adv = as_images(x, "x"), as_images(x_adv, "x_adv")
        if x.dim() != 4 or x.shape != x_adv.shape:
            raise UserError(f"x and x_adv must be image batches [B, C, H, W] of the same shape, got "
                            f"{list(x.shape)} and {list(x_adv.shape)}")
        if not (torch.isfinite(x).all() and torch.isfinite(x_adv).all()):
            raise UserError("x and x_adv must be finite (no NaN or Inf)")
        n = x.shape[0]
        y = as_labels(y, n, "y")
        if self.targeted != (target_labels is not None):
            raise UserError("pass target_labels exactly when the evaluator is targeted (AttackEvaluator(targeted=True))")
        t = None if target_labels is None else as_labels(target_labels, n, "target_labels")
        if probs_adv is None:
            if self.model is None:
                raise UserError("give probs_adv (probabilities on x_adv) or a model to compute them")
            p = model_probs(self.model, x_adv, "adversarial inputs")
        else:
            p = as_probs(probs_adv, n, "probs_adv")
        k = p.shape[1]
        for name, lab in (("y", y), ("target_labels", t)):
            if lab is not None and n and (int(lab.min()) < 0 or int(lab.max()) >= k):
                raise UserError(f"{name} must lie in [0, {k - 1}] (the probabilities have {k} classes)")
        if probs_clean is not None:
            pc: torch.Tensor | None = as_probs(probs_clean, n, "probs_clean")
        else:
            pc = None if self.model is None else model_probs(self.model, x, "clean inputs")
        s = self._s  # every check has passed: from here on the batch is counted
        s["n"] += n
        if pc is not None:
            s["clean_n"] += n
            s["clean_ok"] += int((pc.argmax(dim=1) == y).sum())
        pred = p.argmax(dim=1)
        ok = pred == t if t is not None else pred != y
        idx = ok.nonzero().flatten()
        m = len(idx)
        if m == 0:
            return
        s["succ"] += m
        ps, ys, cs = p[idx], y[idx], pred[idx]
        ts = None if t is None else t[idx]
        s["acac"] += float(ps.gather(1, cs.view(-1, 1)).sum())
        s["actc"] += float(ps.gather(1, ys.view(-1, 1)).sum())
        top = ps.topk(2, dim=1).values if k >= 2 else torch.cat([ps, torch.zeros_like(ps)], dim=1)
        s["nte"] += float((top[:, 0] - top[:, 1]).sum())
        idx_d = idx.to(x.device)
        xs, xa = x[idx_d], x_adv[idx_d]
        a = xs.detach().to("cpu", torch.float64).flatten(1)
        d = xa.detach().to("cpu", torch.float64).flatten(1) - a
        l0 = (d != 0).sum(dim=1).double()
        linf = d.abs().amax(dim=1)
        s["l0_abs"] += float(l0.sum())
        s["l2_abs"] += float(torch.linalg.vector_norm(d, dim=1).sum())
        s["linf_abs"] += float(linf.sum())
        s["l0_rel"] += float((l0 / a.shape[1]).sum())
        nz = a.abs().amax(dim=1) > 0
        s["n_rel"] += int(nz.sum())
        if bool(nz.any()):
            s["l2_rel"] += float((torch.linalg.vector_norm(d[nz], dim=1) / torch.linalg.vector_norm(a[nz], dim=1)).sum())
            s["linf_rel"] += float((linf[nz] / a[nz].abs().amax(dim=1)).sum())
            s["l0_sup"] += float((l0[nz] / (a[nz] != 0).sum(dim=1)).sum())
        s["ssim"] += float(ssim(xs, xa, data_range=self.bounds[1] - self.bounds[0]).sum())
        if self.robustness:
            s["rgb"] += self._still(gaussian_blur(xa, self.blur_sigma, self.blur_kernel), ys, ts)
            xj = self._jpeg.replay(xa, {"quality": self.jpeg_quality}, bounds=self.bounds)  # type: ignore[union-attr]
            s["ric"] += self._still(xj, ys, ts)

    def result(self) -> AttackReport:
        """The metrics over every batch seen so far."""
        s = self._s
        if s["n"] == 0:
            raise UserError("no inputs were evaluated; call update() with at least one example")
        succ, n_rel = int(s["succ"]), int(s["n_rel"])
        rob = (lambda key: mean_or_nan(s[key], succ)) if self.robustness else (lambda key: None)
        return AttackReport(
            n=int(s["n"]),
            successes=succ,
            targeted=self.targeted,
            misclassification_rate=succ / s["n"],
            clean_accuracy=s["clean_ok"] / s["clean_n"] if s["clean_n"] else None,
            acac=mean_or_nan(s["acac"], succ),
            actc=mean_or_nan(s["actc"], succ),
            l0_rel=mean_or_nan(s["l0_rel"], succ),
            l2_rel=mean_or_nan(s["l2_rel"], n_rel),
            linf_rel=mean_or_nan(s["linf_rel"], n_rel),
            l0_rel_support=mean_or_nan(s["l0_sup"], n_rel),
            l0_abs=mean_or_nan(s["l0_abs"], succ),
            l2_abs=mean_or_nan(s["l2_abs"], succ),
            linf_abs=mean_or_nan(s["linf_abs"], succ),
            ssim=mean_or_nan(s["ssim"], succ),
            nte=mean_or_nan(s["nte"], succ),
            rgb=rob("rgb"),
            ric=rob("ric"),
            blur_sigma=self.blur_sigma,
            blur_kernel=self.blur_kernel,
            jpeg_quality=self.jpeg_quality,
        )


def evaluate_attack(
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    model: Model | None = None,
    probs_adv: torch.Tensor | None = None,
    probs_clean: torch.Tensor | None = None,
    target_labels: torch.Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    batch_size: int = 256,
    blur_sigma: float = 0.5,
    blur_kernel: int | None = None,
    jpeg_quality: int = 90,
    robustness: bool = True,
) -> AttackReport:
    """Evaluate adversarial examples ``x_adv`` of ``x`` (labels ``y``), ``batch_size`` inputs at a
    time. Give ``model`` (logits) and/or ``probs_adv`` (probabilities on ``x_adv``); RGB and RIC
    need the model. ``target_labels`` switches to targeted mode. See :class:`AttackEvaluator`
    and the module docstring."""
    check_batch_size(batch_size)
    ev = AttackEvaluator(model, targeted=target_labels is not None, bounds=bounds, blur_sigma=blur_sigma,
                         blur_kernel=blur_kernel, jpeg_quality=jpeg_quality, robustness=robustness)
    n = len(x)
    for name, v in (("y", y), ("x_adv", x_adv), ("probs_adv", probs_adv), ("probs_clean", probs_clean),
                    ("target_labels", target_labels)):
        if v is not None and len(v) != n:
            raise UserError(f"{name} has {len(v)} rows but x has {n}; give one per input")
    for sl in spans(n, batch_size):
        ev.update(
            x[sl], y[sl], x_adv[sl],
            probs_adv=None if probs_adv is None else probs_adv[sl],
            probs_clean=None if probs_clean is None else probs_clean[sl],
            target_labels=None if target_labels is None else target_labels[sl],
        )
    return ev.result()
