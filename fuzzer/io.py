"""Loading user files at the boundary: models, checkpoints, seed sets.

Every problem becomes a one-line :class:`UserError` naming the file and the fix.

* Models: a TorchScript file (``torch.jit.load``), or ``module.path:factory`` (a callable
  returning an ``nn.Module``) plus an optional state_dict loaded with ``weights_only=True``
  (``allow_pickle=True`` opts in to full unpickling of trusted files), or ``builtin``.
* Seeds: ``.npz`` with arrays ``x`` [N,C,H,W] (or [N,H,W]) and ``y`` [N]; ``.npy`` images with
  labels from a second ``.npy``; or an image folder ``DIR/<label>/*.png|jpg`` (8-bit, scaled to
  the bounds).
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
import numpy as np
import torch
from torch import nn

from neurofuzz.fuzzer.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"}


def load_model(spec: str, weights: str | None = None, *, allow_pickle: bool = False) -> nn.Module:
    """Return the model named by ``spec`` (``builtin``, a TorchScript path, or ``module:factory``)."""
    if spec == "builtin":
        from neurofuzz.fuzzer.zoo import load_lenet5_digits

        if weights:
            raise UserError("--weights cannot be combined with the builtin model")
        return load_lenet5_digits()
    path = Path(spec)
    if path.suffix in {".pt", ".pth", ".ts", ".jit"} or path.exists():
        if not path.is_file():
            raise UserError(f"model file {path} not found")
        if weights:
            raise UserError("--weights applies to module:factory models; a TorchScript file carries its own weights")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception:  # noqa: BLE001
            raise UserError(f"{path} is not a TorchScript model; save one with torch.jit.save, "
                            "or pass module:factory with --weights for a state_dict") from None
    if ":" not in spec:
        raise UserError(f"model {spec!r}: give 'builtin', a TorchScript file, or 'module.path:factory'")
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot import module {mod_name!r} for the model: {type(e).__name__}: {e}") from None
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise UserError(f"{mod_name} has no callable {attr!r}; the model spec is module.path:factory")
    try:
        with torch.random.fork_rng(devices=[]):
            model = factory()
    except Exception as e:  # noqa: BLE001
        raise UserError(f"the model factory {spec} raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights:
        _load_into(model, weights, allow_pickle)
    return model


def load_state_dict(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Load a checkpoint that must be a state_dict (``weights_only=True`` unless ``allow_pickle``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001
        hint = " (it needs full unpickling: only if you trust it, pass --allow-pickle)" if "weights_only" in str(e) or "Unsupported" in str(e) else ""
        raise UserError(f"cannot load weights {path}: {type(e).__name__}{hint}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} is not a state_dict (a dict of tensors); save model.state_dict()")
    return obj


def _load_into(model: nn.Module, weights: str, allow_pickle: bool) -> None:
    sd = load_state_dict(weights, allow_pickle=allow_pickle)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UserError(f"weights {weights} do not fit the model: {first[1].strip() if len(first) > 1 else first[0]}") from None


def load_seeds(path: str | Path, labels: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(x, y)`` from an ``.npz``, ``.npy`` (+ labels ``.npy``) or an image folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"seed path {path} not found")
    if path.is_dir():
        return _load_image_folder(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z:
                    raise UserError(f"{path} has no array 'x' (found {sorted(z.files)}); save with np.savez(path, x=..., y=...)")
                x = z["x"]
                y = z["y"] if "y" in z else None
        elif path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
            y = None
        else:
            raise UserError(f"seed file {path}: use .npz (x, y), .npy or an image folder")
        if labels is not None:
            y = np.load(labels, allow_pickle=False)
    except UserError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"cannot read seeds {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if x.ndim == 3:
        x = x[:, None]
    return x, y


def _load_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    xs, ys = [], []
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"image folder {root} has no class subfolders; lay it out as {root}/<label>/<image>.png")
    for d in classes:
        try:
            label = int(d.name)
        except ValueError:
            raise UserError(f"class folder {d} is not an integer label; name class folders 0, 1, 2, ...") from None
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise UserError(f"cannot read image {f}")
            if img.dtype != np.uint8:
                raise UserError(f"image {f} is not 8-bit; convert it to 8-bit PNG")
            img = img[:, :, None] if img.ndim == 2 else img[:, :, 2::-1]  # BGR -> RGB, drop alpha
            xs.append(img.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise UserError(f"image folder {root} contains no images")
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise UserError(f"images in {root} differ in size {sorted(shapes)[:3]}; resize them to one size")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def seeds_to_tensor(x: np.ndarray, bounds: tuple[float, float]) -> torch.Tensor:
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0 * (bounds[1] - bounds[0]) + bounds[0])
    if x.dtype.kind != "f":
        raise UserError(f"seed images have dtype {x.dtype}; use float32 in the bounds or uint8")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

