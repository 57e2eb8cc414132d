"""Adversarial-example detectors with one interface.

Every detector maps a batch ``x [B, C, H, W]`` to a score ``[B]`` (float, *higher = more
suspicious*) and flags ``score > threshold``. The threshold is calibrated on clean data at a
chosen false-positive rate: :meth:`Detector.fit` trains what needs training (the MagNet
autoencoder) and then sets ``threshold`` to the ``1 - fpr`` quantile of the clean scores
(``calibration=`` gives held-out clean data for that step; default: the training data).

* :class:`FeatureSqueezing` -- Xu, Evans and Qi, NDSS 2018: the largest L1 distance between the
  model's probabilities on ``x`` and on squeezed versions of ``x`` (bit depth, median filter).
* :class:`SpatialSmoothing` -- the same idea with a single median filter, scoring either the
  probability distance or whether the predicted class changes.
* :class:`MagNet` -- Meng and Chen, CCS 2017 (detector I): the reconstruction error of a small
  convolutional autoencoder trained on clean data.
* :class:`SimilarityDetector` -- Chen, Carlini and Wagner, "Stateful Detection of Black-Box
  Adversarial Attacks", SPAI 2020: a query whose mean distance to its ``k`` nearest previous
  queries is unusually small is part of a query attack. This one is *stateful*: ``score`` and
  ``detect`` process the batch as a stream, in order, and remember it.

:mod:`neurofuzz.defenses.oracles` turns any detector into a fuzzing objective.

Measured on the built-in digits LeNet-5 (threshold from the 1,437 training images at 5% FPR;
FPR on the 360 clean test images; TPR on the test images' successful adversarial versions
crafted on the undefended model):

====================  =====  ============  ============  ============  =============
detector              FPR    FGSM-0.05     FGSM-0.1      PGD-0.1       PGD-0.3
====================  =====  ============  ============  ============  =============
FeatureSqueezing      0.081  0.70 (0.95)   0.61 (0.90)   0.62 (0.90)   0.06 (0.48)
SpatialSmoothing(3)   0.078  0.87 (0.96)   0.58 (0.89)   0.60 (0.90)   0.08 (0.42)
MagNet                0.050  0.96 (0.99)   1.00 (1.00)   1.00 (1.00)   1.00 (1.00)
====================  =====  ============  ============  ============  =============

(TPR, AUROC in brackets.) Squeezing-based detectors miss high-confidence examples (PGD at eps
0.3), as Xu et al. report for strong attacks. SimilarityDetector (k=10, 8x8 downscale): every
query but the first of a 100-query NES-style probe sequence (sigma 0.01 to 0.2) flagged; none of
the 360 distinct clean test images.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from neurofuzz.ground import Target
    >>> model = Target(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    >>> x = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> det = FeatureSqueezing(model).fit(x, fpr=0.05)
    >>> float(det.detect(x).float().mean()) <= 0.05
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.defenses.transforms import BitDepthReduction, MedianSmoothing
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import extract_logits


def _check_batch(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.dtype.is_floating_point:
        raise UserError(f"{name}: expected a float batch [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    return x.detach()


class Detector(ABC):
    """Base class: ``fit`` (train + calibrate), ``score`` (higher = more suspicious), ``detect``."""

    name: ClassVar[str] = ""
    threshold: float | None = None

    def learn(self, x_clean: torch.Tensor) -> None:
        """Learn from clean data (default: nothing to learn)."""

    def calibration_scores(self, x_clean: torch.Tensor) -> torch.Tensor:
        """Scores of clean inputs used to place the threshold (default: :meth:`score`)."""
        return self.score(x_clean)

    def fit(self, x_clean: torch.Tensor, *, fpr: float = 0.05, calibration: torch.Tensor | None = None) -> "Detector":
        """Train on ``x_clean``, then set ``threshold`` so that at most ``fpr`` of the clean
        calibration inputs (``calibration``, default ``x_clean``) score above it. Returns self."""
        if not 0.0 <= float(fpr) < 1.0:
            raise UserError(f"{self.name}: fpr must lie in [0, 1), got {fpr!r}")
        x_clean = _check_batch(self.name, x_clean)
        self.learn(x_clean)
        cal = x_clean if calibration is None else _check_batch(self.name, calibration)
        if cal.shape[0] == 0:
            raise UserError(f"{self.name}: calibration needs at least one clean input")
        self.calibrate(self.calibration_scores(cal), fpr)
        return self

    def calibrate(self, clean_scores: torch.Tensor, fpr: float) -> None:
        """``threshold`` = the ``1 - fpr`` quantile (nearest higher value) of ``clean_scores``."""
        s = clean_scores.detach().double().cpu()
        finite = s[torch.isfinite(s)]
        self.threshold = float(torch.quantile(finite, 1.0 - float(fpr), interpolation="higher")) if finite.numel() else float("inf")

    @abstractmethod
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion score ``[B]`` (float64 on the CPU)."""

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """``score(x) > threshold`` as bool ``[B]`` on the CPU."""
        if self.threshold is None:
            raise UserError(f"{self.name}: no threshold yet; call fit(x_clean) or calibrate(scores, fpr) first")
        return self.score(x) > self.threshold


class _ModelDetector(Detector):
    """A detector that queries the classifier: ``model`` is a Target or a module on raw inputs."""

    def __init__(self, model: nn.Module, *, bounds: tuple[float, float] | None = None, batch_size: int = 512) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"{self.name}: the model must be an nn.Module or a Target, got {type(model).__name__}")
        self.model = model
        self.bounds = tuple(bounds) if bounds is not None else tuple(getattr(model, "bounds", (0.0, 1.0)))
        self.batch_size = int(batch_size)
        p = next(model.parameters(), None)
        self.device = getattr(model, "device", p.device if p is not None else torch.device("cpu"))

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            out = [F.softmax(extract_logits(self.model(x[i : i + self.batch_size].to(self.device))).double(), 1).cpu()
                   for i in range(0, len(x), self.batch_size)]
        finally:
            self.model.train(was)
        return torch.cat(out) if out else torch.empty(0, 0, dtype=torch.float64)


class FeatureSqueezing(_ModelDetector):
    """Feature squeezing (Xu et al., NDSS 2018): ``max_s || p(x) - p(s(x)) ||_1`` over squeezers ``s``.

    Args:
        model: the classifier (Target or module on raw inputs).
        squeezers: callables ``(x, bounds) -> x``; default ``[BitDepthReduction(1),
            MedianSmoothing(2)]``, Xu et al.'s MNIST choice.
        bounds: input bounds; default ``model.bounds`` or ``(0, 1)``.
        batch_size: inputs per forward pass.
    """

    name = "feature_squeezing"

    def __init__(
        self,
        model: nn.Module,
        squeezers: Sequence[Callable[..., torch.Tensor]] | None = None,
        *,
        bounds: tuple[float, float] | None = None,
        batch_size: int = 512,
    ) -> None:
        super().__init__(model, bounds=bounds, batch_size=batch_size)
        self.squeezers = list(squeezers) if squeezers is not None else [BitDepthReduction(1), MedianSmoothing(2)]
        if not self.squeezers:
            raise UserError(f"{self.name}: give at least one squeezer")

    def score(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_batch(self.name, x)
        p = self.probs(x)
        dists = [(p - self.probs(s(x, self.bounds))).abs().sum(1) for s in self.squeezers]
        return torch.stack(dists).amax(0)


class SpatialSmoothing(_ModelDetector):
    """Median-filter detector: ``|| p(x) - p(median(x)) ||_1`` (``metric="l1"``) or ``1.0`` if the
    predicted class changes under the filter, else ``0.0`` (``metric="label"``).

    Args:
        model: the classifier.
        size: median window (pixels); default 3.
        metric: ``"l1"`` or ``"label"``. On the digits LeNet-5 the filter rarely flips the
            prediction of an adversarial input (measured TPR 0.02 on FGSM-0.1), so ``"l1"``
            is the default.
        bounds, batch_size: as for :class:`FeatureSqueezing`.
    """

    name = "spatial_smoothing"

    def __init__(
        self,
        model: nn.Module,
        *,
        size: int = 3,
        metric: str = "l1",
        bounds: tuple[float, float] | None = None,
        batch_size: int = 512,
    ) -> None:
        super().__init__(model, bounds=bounds, batch_size=batch_size)
        if metric not in ("l1", "label"):
            raise UserError(f"{self.name}: metric must be 'l1' or 'label', got {metric!r}")
        self.filter, self.metric = MedianSmoothing(size), metric

    def score(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_batch(self.name, x)
        p, q = self.probs(x), self.probs(self.filter(x, self.bounds))
        if self.metric == "label":
            return (p.argmax(1) != q.argmax(1)).double()
        return (p - q).abs().sum(1)


class _AutoEncoder(nn.Module):
    """Conv encoder (two 3x3 convolutions around a 2x2 average pool) and a mirrored decoder with a
    sigmoid output, after MagNet's MNIST detector (wider, ReLU, so that it trains in seconds)."""

    def __init__(self, channels: int, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)


class MagNet(Detector):
    """MagNet detector I (Meng and Chen, CCS 2017): reconstruction error of an autoencoder trained
    on clean data, ``mean |x - AE(x)|^p`` over pixels (inputs scaled to [0, 1] by the bounds).

    Args:
        bounds: input bounds; default ``(0, 1)``.
        p: 1 or 2, the error norm; default 1.
        width: channels of the autoencoder; default 8.
        epochs, lr, batch_size: Adam training on the clean data passed to :meth:`fit`.
        noise: std of the Gaussian noise added to training inputs (a denoising autoencoder, as
            MagNet's "volume" of noise); default 0.1.
        seed: seeds the initialisation, shuffling and noise (the global RNG is never used).

    Needs even ``H`` and ``W`` (one 2x2 pooling). Training runs on one thread for bit-exact
    reproducibility. ``reform(x)`` returns ``AE(x)``, MagNet's reformer, usable as a transform.
    """

    name = "magnet"

    def __init__(
        self,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        p: int = 1,
        width: int = 8,
        epochs: int = 10,
        lr: float = 5e-3,
        batch_size: int = 64,
        noise: float = 0.1,
        seed: int = 0,
    ) -> None:
        if p not in (1, 2):
            raise UserError(f"{self.name}: p must be 1 or 2, got {p!r}")
        self.bounds, self.p, self.width = (float(bounds[0]), float(bounds[1])), p, int(width)
        self.epochs, self.lr, self.batch_size, self.noise, self.seed = int(epochs), float(lr), int(batch_size), float(noise), int(seed)
        self.autoencoder: _AutoEncoder | None = None

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return ((x - lo) / (hi - lo)).float()

    def learn(self, x_clean: torch.Tensor) -> None:
        if x_clean.shape[-1] % 2 or x_clean.shape[-2] % 2:
            raise UserError(f"{self.name}: height and width must be even, got {tuple(x_clean.shape[-2:])}")
        g = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            ae = _AutoEncoder(x_clean.shape[1], self.width)
        with torch.no_grad():  # seeded init, independent of the global RNG
            for q in ae.parameters():
                bound = 1.0 / q.shape[1:].numel() ** 0.5 if q.dim() > 1 else 0.0
                q.copy_(torch.empty_like(q).uniform_(-bound, bound, generator=g) if q.dim() > 1 else torch.zeros_like(q))
        u = self._unit(x_clean.cpu())
        opt = torch.optim.Adam(ae.parameters(), lr=self.lr)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            ae.train()
            for _ in range(self.epochs):
                perm = torch.randperm(len(u), generator=g)
                for i in range(0, len(u), self.batch_size):
                    clean = u[perm[i : i + self.batch_size]]
                    noisy = (clean + self.noise * torch.randn(clean.shape, generator=g)).clamp(0.0, 1.0)
                    opt.zero_grad(set_to_none=True)
                    F.mse_loss(ae(noisy), clean).backward()
                    opt.step()
        finally:
            torch.set_num_threads(threads)
        self.autoencoder = ae.eval()

    @torch.no_grad()
    def reform(self, x: torch.Tensor, bounds: tuple[float, float] | None = None) -> torch.Tensor:
        """``AE(x)`` in ``x``'s bounds (MagNet's reformer); the signature of a transform."""
        if self.autoencoder is None:
            raise UserError(f"{self.name}: call fit(x_clean) first to train the autoencoder")
        lo, hi = self.bounds
        return (self.autoencoder(self._unit(_check_batch(self.name, x)).cpu()) * (hi - lo) + lo).to(x.device, x.dtype)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_batch(self.name, x)
        if self.autoencoder is None:
            raise UserError(f"{self.name}: call fit(x_clean) first to train the autoencoder")
        u = self._unit(x).cpu()
        err = (u - self.autoencoder(u)).abs().pow(self.p)
        return err.flatten(1).mean(1).double()


class SimilarityDetector(Detector):
    """Stateful query detector (Chen, Carlini and Wagner, SPAI 2020).

    Every query is encoded (``encoding="downscale"``: area-downscaled to ``size x size`` pixels;
    ``"projection"``: a fixed Gaussian random projection to ``dim`` values, seeded) and kept in a
    buffer of the last ``buffer_size`` queries. A query's score is minus the mean L2 distance to
    its ``k`` nearest *previous* queries (fewer if fewer are stored; ``-inf`` for the first), so
    a high score means "very close to what was asked before". ``fit(x_clean)`` calibrates the
    threshold on leave-one-out distances within the clean data (at ``fpr``); it does not fill the
    buffer. ``score`` and ``detect`` consume the batch in order and append it to the buffer;
    ``reset()`` empties it.

    Args:
        k: neighbours; default 10.
        encoding: ``"downscale"`` or ``"projection"``.
        size: downscaled side (pixels); default 8.
        dim: projection dimension; default 64.
        buffer_size: queries remembered (oldest dropped first); default 10,000.
        bounds: input bounds, to scale queries to [0, 1]; default ``(0, 1)``.
        seed: seeds the projection.
    """

    name = "similarity"

    def __init__(
        self,
        *,
        k: int = 10,
        encoding: str = "downscale",
        size: int = 8,
        dim: int = 64,
        buffer_size: int = 10_000,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> None:
        if encoding not in ("downscale", "projection"):
            raise UserError(f"{self.name}: encoding must be 'downscale' or 'projection', got {encoding!r}")
        if int(k) < 1 or int(buffer_size) < 1:
            raise UserError(f"{self.name}: k and buffer_size must be >= 1, got {k!r} and {buffer_size!r}")
        self.k, self.encoding, self.size, self.dim = int(k), encoding, int(size), int(dim)
        self.buffer_size, self.bounds, self.seed = int(buffer_size), (float(bounds[0]), float(bounds[1])), int(seed)
        self._proj: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every stored query."""
        self.buffer = torch.empty(0, 0, dtype=torch.float64)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Query features ``[B, d]`` (float64, CPU)."""
        lo, hi = self.bounds
        u = ((_check_batch(self.name, x).cpu().double() - lo) / (hi - lo))
        if self.encoding == "downscale":
            return F.adaptive_avg_pool2d(u, self.size).flatten(1)
        flat = u.flatten(1)
        if self._proj is None or self._proj.shape[0] != flat.shape[1]:
            g = torch.Generator().manual_seed(self.seed)
            self._proj = torch.randn(flat.shape[1], self.dim, generator=g, dtype=torch.float64) / self.dim**0.5
        return flat @ self._proj

    def _knn_mean(self, d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        d = d.masked_fill(~valid, float("inf"))
        kk = min(self.k, d.shape[1])
        near = d.topk(kk, dim=1, largest=False).values if kk else d[:, :0]
        n = valid.sum(1).clamp(max=self.k)
        total = torch.where(torch.isfinite(near), near, torch.zeros_like(near)).sum(1)
        return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("inf")))

    def calibration_scores(self, x_clean: torch.Tensor) -> torch.Tensor:
        e = self.encode(x_clean)
        d = torch.cdist(e, e)
        valid = ~torch.eye(len(e), dtype=torch.bool)
        return -self._knn_mean(d, valid)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        q = self.encode(x)
        if self.buffer.numel() == 0:
            self.buffer = q.new_empty(0, q.shape[1])
        elif self.buffer.shape[1] != q.shape[1]:
            raise UserError(f"{self.name}: queries changed shape; call reset() before a new kind of input")
        pool = torch.cat([self.buffer, q])
        n_old, b = len(self.buffer), len(q)
        col = torch.arange(len(pool)).view(1, -1)
        end = n_old + torch.arange(b).view(-1, 1)  # query i sees the pool entries before it
        valid = (col < end) & (col >= end - self.buffer_size)
        scores = -self._knn_mean(torch.cdist(q, pool), valid)
        self.buffer = pool[-self.buffer_size :]
        return scores
