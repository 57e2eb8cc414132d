"""Input-transformation defenses: squeeze or re-encode every input before the model sees it.

* :class:`JpegCompression` -- a JPEG encode/decode round trip (Guo, Rana, Cisse and van der
  Maaten, "Countering Adversarial Images using Input Transformations", ICLR 2018; Dziugaite et
  al., 2016), through OpenCV's codec, image by image, 8-bit.
* :class:`BitDepthReduction` -- keep ``bits`` bits per value (Xu, Evans and Qi, "Feature
  Squeezing: Detecting Adversarial Examples in Deep Neural Networks", NDSS 2018).
* :class:`MedianSmoothing` -- a ``size x size`` median filter per channel (Xu et al., 2018,
  "local spatial smoothing"); edges are padded by replicating the border pixels; for an even
  ``size`` the window reaches one pixel further right/down than left/up and the lower of the two
  middle values is taken.

Each transform maps ``x [B, C, H, W]`` inside ``bounds`` to a batch of the same shape, dtype and
device, deterministically, without touching ``x``. :class:`TransformDefense` chains them in front
of a model and is itself a :class:`~neurofuzz.fuzzer.Target` (bounds, normalisation, ``predict``,
``probe``, ``hash``), so a fuzz campaign, an attack or an evaluator can use it unchanged.

Gradients. None of the transforms is usefully differentiable (rounding, codecs, order
statistics). The defense passes gradients straight through (``x + (T(x) - x).detach()``): the
backward pass treats the transforms as the identity, which is BPDA (Athalye, Carlini and Wagner,
"Obfuscated Gradients Give a False Sense of Security", ICML 2018). A white-box gradient attack
on a :class:`TransformDefense` is therefore the *adaptive* attack; crafting the examples on the
undefended model and feeding them to the defense is the gray-box setting of Guo et al. and Xu et al.

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = Target(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    >>> x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> defense = TransformDefense(model, [BitDepthReduction(3), MedianSmoothing(3)])
    >>> torch.equal(defense(x), model(defense.transform(x))), defense.predict(x).shape
    (True, torch.Size([4]))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target, model_hash

Bounds = tuple[float, float]


class JpegCompression:
    """JPEG round trip at ``quality`` (1..100; Guo et al. used 75). Values are quantised to 256
    levels of the bounds' range; 3-channel inputs are coded as colour images, others per channel."""

    def __init__(self, quality: int = 75) -> None:
        if isinstance(quality, bool) or not 1 <= int(quality) <= 100 or int(quality) != quality:
            raise UserError(f"JpegCompression: quality must be an integer in [1, 100], got {quality!r}")
        self.quality = int(quality)

    def _code(self, img: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - OpenCV encodes every uint8 image of 1 or 3 channels
            raise RuntimeError("cv2.imencode failed")
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(img.shape)

    def __call__(self, x: torch.Tensor, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        lo, hi = bounds
        u8 = ((x.detach() - lo) / (hi - lo) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        out = np.empty_like(u8)
        for i, img in enumerate(u8):
            if img.shape[0] == 3:  # CHW RGB -> HWC BGR for OpenCV and back
                out[i] = self._code(np.ascontiguousarray(img[::-1].transpose(1, 2, 0))).transpose(2, 0, 1)[::-1]
            else:
                out[i] = np.stack([self._code(np.ascontiguousarray(ch)) for ch in img])
        return (torch.from_numpy(out).to(x.device, x.dtype) / 255.0) * (hi - lo) + lo

    def __repr__(self) -> str:
        return f"JpegCompression(quality={self.quality})"


class BitDepthReduction:
    """Reduce every value to ``bits`` bits of the bounds' range: ``round(u * (2^bits - 1)) /
    (2^bits - 1)`` with ``u`` the value scaled to [0, 1] (Xu et al.: 1 bit for MNIST)."""

    def __init__(self, bits: int = 4) -> None:
        if isinstance(bits, bool) or not 1 <= int(bits) <= 16 or int(bits) != bits:
            raise UserError(f"BitDepthReduction: bits must be an integer in [1, 16], got {bits!r}")
        self.bits = int(bits)

    def __call__(self, x: torch.Tensor, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        lo, hi = bounds
        levels = 2**self.bits - 1
        u = ((x.detach() - lo) / (hi - lo)).clamp(0.0, 1.0)
        return torch.round(u * levels) / levels * (hi - lo) + lo

    def __repr__(self) -> str:
        return f"BitDepthReduction(bits={self.bits})"


class MedianSmoothing:
    """``size x size`` median filter per channel, border pixels replicated (Xu et al.: 2x2 or 3x3)."""

    def __init__(self, size: int = 3) -> None:
        if isinstance(size, bool) or not 1 <= int(size) <= 15 or int(size) != size:
            raise UserError(f"MedianSmoothing: size must be an integer in [1, 15], got {size!r}")
        self.size = int(size)

    def __call__(self, x: torch.Tensor, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        k = self.size
        if k == 1:
            return x.detach().clone()
        b, c, h, w = x.shape
        padded = F.pad(x.detach(), ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2), mode="replicate")
        windows = F.unfold(padded.reshape(b * c, 1, *padded.shape[2:]), k)  # [B*C, k*k, H*W]
        return windows.median(dim=1).values.view(b, c, h, w)

    def __repr__(self) -> str:
        return f"MedianSmoothing(size={self.size})"


Transform = Callable[..., torch.Tensor]


def apply_transforms(x: torch.Tensor, transforms: Sequence[Transform], bounds: Bounds) -> torch.Tensor:
    """Apply ``transforms`` in order (without gradients) and clip into ``bounds``."""
    with torch.no_grad():
        for t in transforms:
            x = t(x, bounds)
        return x.clamp(bounds[0], bounds[1])


class TransformDefense(Target):
    """A model behind a chain of input transformations; usable wherever a Target is.

    Args:
        target_or_model: a :class:`~neurofuzz.fuzzer.Target` (its module, bounds, normalisation
            and device are taken over) or an ``nn.Module`` returning logits.
        transforms: callables ``(x, bounds) -> x'`` applied in order, e.g.
            ``[JpegCompression(75)]``, ``[BitDepthReduction(1)]``, ``[MedianSmoothing(2)]``.
        bounds, mean, std, device: as for Target, when a bare module is given.

    ``defense(x)`` returns the logits of the transformed ``x`` (gradients pass straight through
    the transforms, see the module docstring); ``defense.transform(x)`` returns the transformed
    batch itself. ``hash()`` covers the weights and the transforms.
    """

    def __init__(
        self,
        target_or_model: nn.Module,
        transforms: Sequence[Transform],
        *,
        bounds: Bounds = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(target_or_model, Target):
            t = target_or_model
            mean = None if t._mean is None else t._mean.flatten().tolist()
            std = None if t._std is None else t._std.flatten().tolist()
            bounds, device, target_or_model = t.bounds, t.device, t.module
        transforms = list(transforms)
        bad = [t for t in transforms if not callable(t)]
        if bad:
            raise UserError(f"TransformDefense: transforms must be callables (x, bounds) -> x, got {bad[0]!r}")
        super().__init__(target_or_model, bounds=bounds, mean=mean, std=std, device=device)
        self.transforms = transforms

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return apply_transforms(x, self.transforms, self.bounds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_t = self.transform(x)
        if x.requires_grad:  # straight-through (BPDA): the backward pass sees the identity
            x_t = x + (x_t - x).detach()
        return super().forward(x_t)

    def hash(self) -> str:
        spec = model_hash(self.module) + "|" + "|".join(repr(t) for t in self.transforms)
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def extra_repr(self) -> str:
        return f"transforms={self.transforms!r}, bounds={self.bounds}"
