"""Seed intake and the setup record of a campaign.

* :func:`validate_seeds` checks seed images and labels at the boundary.
* :func:`check_model_outputs` probes the model once: the number of classes (labels are checked
  against it) and finite logits.
* :func:`target_record` / :func:`setup_record`: what ``fuzzer_setup`` records about the target
  and the campaign, so that a resume can be checked against it
  (:func:`neurofuzz.fuzzer.campaign.check_resume_target`).
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target, check_labels

MAX_SEED_ELEMENTS = 2**31  # N*C*H*W of the seed tensor (8 GiB of float32): refused beyond


def validate_seeds(x: Any, y: Any, bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Check seed images and labels; return float32 ``[N,C,H,W]``, int64 ``[N]``. uint8 images
    are scaled from [0, 255] to ``bounds``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise UserError(f"seeds must be an array [N, C, H, W], got shape {tuple(getattr(x, 'shape', ()))}; "
                        "add a channel axis for grayscale images")
    if not (x.dtype.is_floating_point or x.dtype == torch.uint8):
        raise UserError(f"seeds must be float (or uint8) images, got dtype {x.dtype}")
    if x.numel() > MAX_SEED_ELEMENTS:
        raise UserError(f"the seeds hold {x.numel()} values (shape {tuple(x.shape)}), more than {MAX_SEED_ELEMENTS}; "
                        "fuzz a subset of them")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0 * (bounds[1] - bounds[0]) + bounds[0]
    x = x.float().contiguous()
    if len(x) == 0:
        raise UserError("the seed set is empty; give at least one seed image")
    if not torch.isfinite(x).all():
        raise UserError("seeds contain NaN or Inf values; clean the seed file")
    lo, hi = float(x.min()), float(x.max())
    if lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6:
        raise UserError(f"seed values lie in [{lo:g}, {hi:g}], outside the bounds {list(bounds)}; "
                        "rescale the seeds or pass --bounds")
    if y is None:
        raise UserError("seed labels are missing; give labels (e.g. an .npz with arrays x and y)")
    y = torch.as_tensor(y)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise UserError(f"labels must be a 1-D integer array, got shape {tuple(y.shape)} dtype {y.dtype}")
    if len(y) != len(x):
        raise UserError(f"{len(x)} seeds but {len(y)} labels; give one label per seed")
    return x, y.long()


def check_model_outputs(target: Target, x: torch.Tensor, y: torch.Tensor) -> int:
    """Probe the model on two seeds: return its number of classes; refuse labels outside
    ``[0, n_classes)`` and non-finite logits (on every seed, in batches)."""
    n = int(target.probe(x[:2]).shape[1])
    check_labels(y, n)
    with torch.no_grad():
        for i in range(0, len(x), 256):
            out = target(x[i : i + 256].to(target.device))
            if not torch.isfinite(out).all():
                j = i + int((~torch.isfinite(out).all(1)).nonzero()[0])
                raise UserError(f"the model returns NaN or Inf logits on seed {j}; fix the model (or its weights) "
                                "before fuzzing it")
    return n


def _channels(t: torch.Tensor | None) -> list[float] | None:
    return None if t is None else [float(v) for v in t.flatten().tolist()]


def target_record(target: Target) -> dict[str, Any]:
    """What a resume must match about the target: weights hash, normalisation, bounds."""
    return {"model_hash": target.hash(), "mean": _channels(target._mean), "std": _channels(target._std),
            "bounds": [float(b) for b in target.bounds]}


def setup_record(target: Target, config: Any, profile: Any, x: torch.Tensor, n_classes: int,
                 extra: dict[str, Any]) -> dict[str, Any]:
    """The ``setup`` of ``fuzzer_setup``: config, versions, target record, input shape, classes,
    device kind, profile hash, plus ``extra`` (the model spec, weights path, seeds as given)."""
    import cv2
    import scipy

    from neurofuzz.fuzzer import __version__

    return {
        "config": config.to_dict(),
        "versions": {"neurofuzz": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "opencv": cv2.__version__, "python": platform.python_version()},
        **target_record(target),
        "input_shape": list(x.shape[1:]),
        "n_classes": n_classes,
        "device": target.device.type,
        "profile_hash": profile.hash(),
        **extra,
    }
