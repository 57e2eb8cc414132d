"""Device and bounds helpers: turn what a user typed into a checked value, or one clear line.

* :func:`resolve_device` parses ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"xpu"`` (or a
  ``torch.device``) and refuses a device this machine does not have, naming those it has.
* :func:`available_devices` lists them.
* :func:`check_bounds` checks an input range ``(lower, upper)``: finite numbers, ``lower < upper``.

Example::

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> "cpu" in available_devices()
    True
    >>> check_bounds((0, 255))
    (0.0, 255.0)
    >>> check_bounds((1.0, float("nan")))
    Traceback (most recent call last):
    ...
    neurofuzz.ground.errors.UserError: bounds must be two finite numbers lower < upper (e.g. --bounds 0 1), got (1.0, nan)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from neurofuzz.ground.errors import UserError

# device kinds a model can run on here; others (meta, lazy, ...) hold no data or need a plugin
_ACCELERATORS = ("cuda", "mps", "xpu")


def _count(kind: str) -> int:
    """How many devices of ``kind`` this process can use (0 if the build lacks the backend)."""
    try:
        if kind == "cuda":
            return torch.cuda.device_count() if torch.cuda.is_available() else 0
        if kind == "mps":
            return 1 if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else 0
        if kind == "xpu":
            xpu = getattr(torch, "xpu", None)
            return xpu.device_count() if xpu is not None and xpu.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver means: not available
        return 0
    return 0


def available_devices() -> list[str]:
    """Device strings usable on this machine, e.g. ``["cpu", "cuda", "cuda:0", "cuda:1"]``."""
    out = ["cpu"]
    for kind in _ACCELERATORS:
        n = _count(kind)
        if n:
            out.append(kind)
            if kind != "mps":
                out += [f"{kind}:{i}" for i in range(n)]
    return out


def _why_missing(kind: str) -> str:
    if kind == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            return "this torch build has no CUDA (install a CUDA build of torch)"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"no CUDA GPU is visible{hint}"
    if kind == "mps":
        return "Apple's Metal (MPS) backend is not available on this machine"
    return f"this torch build or machine has no {kind.upper()} device"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A ``torch.device`` this machine has, or a :class:`UserError` listing the ones it has.

    ``None`` means ``"cpu"``; ``"auto"`` the first accelerator there is (else the CPU). An index
    (``"cuda:7"``) must be below the number of devices."""
    if device is None:
        return torch.device("cpu")
    text = str(device).strip()
    if text.lower() == "auto":
        return next((torch.device(k) for k in _ACCELERATORS if _count(k)), torch.device("cpu"))
    avail = ", ".join(available_devices())
    try:
        dev = torch.device(text.lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"device {text!r} is not a device name (use cpu, cuda, cuda:N or mps); available: {avail}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type not in _ACCELERATORS:
        raise UserError(f"device {text!r} cannot run a model here (only cpu, cuda, mps and xpu are supported); "
                        f"available: {avail}")
    n = _count(dev.type)
    if n == 0:
        raise UserError(f"device {text!r} is not available: {_why_missing(dev.type)}; available: {avail}")
    if dev.index is not None and dev.index >= n:
        raise UserError(f"device {text!r} is not available: there {'is' if n == 1 else 'are'} only {n} "
                        f"{dev.type} device{'s' if n != 1 else ''} ({dev.type}:0..{dev.type}:{n - 1}); available: {avail}")
    return dev


def check_bounds(bounds: Sequence[float]) -> tuple[float, float]:
    """``(lower, upper)`` as floats; refused unless two finite numbers with ``lower < upper``."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise UserError(f"bounds must be two numbers lower < upper (e.g. --bounds 0 1), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserError(f"bounds must be two finite numbers lower < upper (e.g. --bounds 0 1), got {tuple(bounds)!r}")
    return lo, hi
