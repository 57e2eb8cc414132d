"""Helpers shared by the natural mutators (private to :mod:`neurofuzz.mutators.natural`).

Exact replay (``replay(x[i:i+1], result.params_of(i)) == result.x[i:i+1]``) rests on three rules
that every natural mutator follows through these helpers:

* every float parameter is rounded to float32 before use (:func:`fvals`), so a float64 value drawn
  by :meth:`~neurofuzz.mutators.base.Mutator.sample` and the Python float that ``params_of``
  returns (turned into a float32 tensor by ``replay``) give the same computation;
* random fields come from per-input generators seeded with recorded seeds;
* per-input work is elementwise on the batch (one IEEE operation per element, whatever the batch
  size) or done one input at a time with the same shapes; never a batch-shaped reduction.

Example::

    >>> import torch
    >>> u, v = centre_coords(2, 4, torch.device("cpu"), torch.float32)
    >>> u.flatten().tolist(), v.flatten().tolist()
    ([-0.75, -0.25, 0.25, 0.75], [-0.5, 0.5])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from neurofuzz.mutators.base import Choice, Params

PADDING = Choice(
    ("constant", "border", "reflection"),
    "constant",
    doc="what fills pixels sampled from outside the image: the lower bound, the nearest edge pixel, or a mirror image",
)


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other floating dtype is processed in float32."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def fvals(params: Params, key: str) -> torch.Tensor:
    """Per-input values of a float parameter, rounded to float32 (CPU, ``[B]``)."""
    return params[key].to(torch.float32)


def floats(params: Params, key: str) -> list[float]:
    return fvals(params, key).tolist()


def ints(params: Params, key: str) -> list[int]:
    return [int(v) for v in params[key].to(torch.int64).tolist()]


def col(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` values as a ``[B, 1, 1, 1]`` column on ``x``'s device, in its working dtype."""
    return values.to(x.device, work_dtype(x)).view(-1, 1, 1, 1)


def pymap(fn: Callable[[float], float], values: torch.Tensor) -> torch.Tensor:
    """Apply a Python math function per input (float64): the same result whatever the batch size,
    unlike vectorised transcendental kernels whose scalar tail may differ in the last bit."""
    return torch.tensor([fn(v) for v in values.tolist()], dtype=torch.float64)


def stack(tensors: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """``torch.stack`` that also accepts an empty batch (giving ``[0, *shape]``)."""
    return torch.stack(tensors) if tensors else torch.empty(0, *shape)


def uniform_pm(batch: int, rng: torch.Generator, scale: torch.Tensor) -> torch.Tensor:
    """Per-input values drawn uniformly from ``[-scale, scale]`` (float64)."""
    return (2.0 * torch.rand(batch, generator=rng, dtype=torch.float64) - 1.0) * scale


# ---------------------------------------------------------------------------- geometry
def centre_coords(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel-centre coordinates of ``F.grid_sample(align_corners=False)``:
    ``u [1, 1, W]`` and ``v [1, H, 1]``, both in ``(-1, 1)``."""
    u = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    v = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    return u.view(1, 1, w), v.view(1, h, 1)


def pixel_coords(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates relative to the image centre, in pixels: ``X [1, 1, W]``, ``Y [1, H, 1]``."""
    xs = torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2
    ys = torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2
    return xs.view(1, 1, w), ys.view(1, h, 1)


def warp(
    x: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, padding: str, bounds: tuple[float, float]
) -> torch.Tensor:
    """Bilinear resampling of ``x`` at normalised source coordinates ``gx, gy`` (broadcastable to
    ``[B, H, W]``). ``padding="constant"`` fills with the lower bound."""
    dt = work_dtype(x)
    b, _, h, w = x.shape
    grid = torch.stack([g.to(dt).expand(b, h, w) for g in (gx, gy)], dim=-1)
    xs = x.to(dt)
    lo = float(bounds[0])
    if padding == "constant" and lo != 0.0:
        return F.grid_sample(xs - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + lo
    if padding == "constant":
        return F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.grid_sample(xs, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def affine_warp(
    x: torch.Tensor, m: torch.Tensor, t: torch.Tensor, padding: str, bounds: tuple[float, float]
) -> torch.Tensor:
    """Warp with per-input affine maps from output to source pixels, about the image centre and in
    pixel units: ``source = m @ output + t`` with ``m [B, 2, 2]``, ``t [B, 2]`` (float64, CPU)."""
    _, _, h, w = x.shape
    dt = work_dtype(x)
    # pixel units -> normalised grid units, per axis (keeps angles right on non-square images)
    coefs = [m[:, 0, 0], m[:, 0, 1] * (h / w), t[:, 0] * (2 / w), m[:, 1, 0] * (w / h), m[:, 1, 1], t[:, 1] * (2 / h)]
    c = torch.stack(coefs, dim=1).to(torch.float32).to(x.device, dt)
    c = c.view(-1, 6, 1, 1)
    u, v = centre_coords(h, w, x.device, dt)
    # [B, 1, W] + [B, H, 1]: one full-size operation per coordinate
    gx = c[:, 0] * u + (c[:, 1] * v + c[:, 2])
    gy = c[:, 3] * u + (c[:, 4] * v + c[:, 5])
    return warp(x, gx, gy, padding, bounds)


# ---------------------------------------------------------------------------- random fields
def smooth_field(gen: torch.Generator, channels: int, cells: int, h: int, w: int) -> torch.Tensor:
    """A smooth random field ``[channels, h, w]`` (float32, CPU): standard-normal values on a coarse
    grid of about ``cells`` control points along the shorter side, upsampled bicubically
    (``cv2.resize``: measured 3.0 ms vs 6.3 ms for ``F.interpolate``, 256 fields of 32x32)."""
    short = min(h, w)
    ch = min(h, max(2, round(cells * h / short)))
    cw = min(w, max(2, round(cells * w / short)))
    coarse = torch.randn(ch, cw, channels, generator=gen, dtype=torch.float32).numpy()
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
    return torch.from_numpy(np.ascontiguousarray(up.transpose(2, 0, 1)))


# ---------------------------------------------------------------------------- OpenCV round trips
def to_hwc(x: torch.Tensor) -> np.ndarray:
    """A CPU copy of the batch as ``[B, H, W, C]`` numpy (float32, or float64 for float64 input)."""
    return x.detach().to("cpu", work_dtype(x)).permute(0, 2, 3, 1).contiguous().numpy()


def from_hwc(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_hwc`: ``[B, H, W, C]`` numpy to ``[B, C, H, W]`` on ``like``'s device."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous().to(like.device)


def cv2_per_image(x: torch.Tensor, fn: Callable[[int, np.ndarray], np.ndarray], max_channels: int = 4) -> torch.Tensor:
    """Run ``fn(i, image [H, W, c])`` on every input, in chunks of at most ``max_channels``
    channels (OpenCV's limit for resize), and reassemble the batch."""
    imgs = to_hwc(x)
    out = np.empty_like(imgs)
    _, h, w, c = imgs.shape
    for i in range(imgs.shape[0]):
        for c0 in range(0, c, max_channels):
            c1 = min(c, c0 + max_channels)
            out[i, :, :, c0:c1] = np.asarray(fn(i, np.ascontiguousarray(imgs[i, :, :, c0:c1]))).reshape(h, w, c1 - c0)
    return from_hwc(out, x)


def gaussian_ksize(sigma: float) -> int:
    """Odd kernel size covering +-3 sigma."""
    return 2 * math.ceil(3.0 * sigma) + 1


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """An anti-aliased line segment of ``length`` pixels through the kernel centre, at ``angle_deg``
    counter-clockwise from the x axis (image y points down); peak 1, not normalised (float32)."""
    half = length / 2.0
    r = math.ceil(half) + 1
    a = math.radians(angle_deg)
    dx, dy = math.cos(a), -math.sin(a)
    ys, xs = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    along = np.clip(xs * dx + ys * dy, -half, half)
    dist = np.hypot(xs - along * dx, ys - along * dy)
    return np.clip(1.0 - dist, 0.0, 1.0).astype(np.float32)
