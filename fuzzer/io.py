"""Loading user files at the boundary: models, checkpoints, seed sets.

Every problem becomes a one-line :class:`UserError` naming the file and the fix.

* Models: a TorchScript file (``torch.jit.load``), or ``module.path:factory`` /
  ``path/to/file.py:factory`` (a callable returning an ``nn.Module``; the working directory is on
  the import path while the model loads, as with ``python -m``) plus an optional state_dict loaded
  with ``weights_only=True`` (``allow_pickle=True`` opts in to full unpickling of trusted files),
  or ``builtin``.
* Seeds: ``.npz`` with arrays ``x`` [N,C,H,W] (or [N,H,W]) and ``y`` [N]; ``.npy`` images with
  labels from a second ``.npy``; or an image folder ``DIR/<label>/*.png|jpg`` (8-bit, scaled to
  the bounds).

Image folders are read by :mod:`neurofuzz.fuzzer.images` (labels from class folder names, sizes
from the file headers before anything is decoded): an image of more than ``MAX_IMAGE_PIXELS``
pixels, or a folder that would decode to more than ``MAX_SEED_BYTES``, is refused.
``.npy`` / ``.npz`` arrays are measured from their headers against ``MAX_SEED_BYTES`` before they
are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurofuzz.fuzzer.images import IMAGE_SUFFIXES, image_size, load_image_folder
from neurofuzz.ground.errors import UserError, one_line

_image_size = image_size  # its name here before image folders moved to neurofuzz.fuzzer.images
__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "MAX_SEED_BYTES", "TORCHSCRIPT_SUFFIXES", "load_model", "load_seeds",
           "load_state_dict", "seeds_to_tensor"]

TORCHSCRIPT_SUFFIXES = {".pt", ".pth", ".ts", ".jit"}
MAX_IMAGE_PIXELS = 2**24  # width * height of one seed image (e.g. 4096 x 4096)
MAX_SEED_BYTES = 2**31  # a seed set as stored (uint8 images decoded, or the .npy / .npz array x): 2 GiB


def load_model(spec: str, weights: str | None = None, *, allow_pickle: bool = False,
               key_file: str | None = None) -> nn.Module:
    """Return the model named by ``spec``: ``builtin``, a TorchScript file, ``module.path:factory``
    or ``path/to/file.py:factory``. Encrypted ``weights`` are decrypted with ``key_file`` (or the key
    in the environment, see :mod:`neurofuzz.security.encryption`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("the model spec is empty; give 'builtin', a TorchScript file, or 'module.path:factory'")
    if spec == "builtin":
        from neurofuzz.fuzzer.zoo import load_lenet5_digits

        if weights:
            raise UserError("--weights cannot be combined with the builtin model")
        return load_lenet5_digits()
    path = Path(spec)
    if path.suffix == ".onnx":  # converted to torch modules named after the ONNX nodes
        from neurofuzz.fuzzer.onnx_model import OnnxModule

        if weights:
            raise UserError(f"--weights does not apply to an ONNX model ({path} carries its own weights)")
        return OnnxModule(path)
    if path.suffix in TORCHSCRIPT_SUFFIXES or path.exists():
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
        raise UserError(f"model {spec!r}: give 'builtin', a TorchScript file, 'module.path:factory' "
                        "or 'path/to/file.py:factory'")
    mod_name, _, attr = spec.rpartition(":")  # rpartition: a Windows path keeps its drive letter
    if not mod_name or not attr:
        raise UserError(f"model {spec!r}: give module.path:factory or path/to/file.py:factory")
    with _import_paths(Path.cwd()):
        if _is_file_spec(mod_name):
            mod = _import_file(Path(mod_name))
        else:
            try:
                mod = importlib.import_module(mod_name)
            except Exception as e:  # noqa: BLE001
                raise UserError(f"cannot import module {mod_name!r} for the model: {type(e).__name__}: "
                                f"{one_line(e)} (looked in the working directory and the installed packages)") from None
        factory = getattr(mod, attr, None)
        if not callable(factory):
            raise UserError(f"{mod_name} has no callable {attr!r}; the model spec is module.path:factory")
        try:
            with torch.random.fork_rng(devices=[]):
                model = factory()
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"the model factory {spec} raised {type(e).__name__}: {one_line(e)}") from None
        if not isinstance(model, nn.Module):
            raise UserError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
        if weights:
            _load_into(model, weights, allow_pickle, key_file)
    return model


def _is_file_spec(mod_name: str) -> bool:
    return mod_name.endswith(".py") or "/" in mod_name or os.sep in mod_name


@contextlib.contextmanager
def _import_paths(*dirs: Path) -> Iterator[None]:
    """Put ``dirs`` first on ``sys.path`` while a model loads (as ``python -m`` puts the working
    directory), then restore ``sys.path``."""
    added = [str(d) for d in dirs if str(d) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(d)


def _import_file(path: Path):
    """Import a model file by path; its folder is on the import path while it runs, so it can
    import its siblings."""
    if not path.is_file():
        raise UserError(f"model file {path} not found (the model spec is path/to/file.py:factory)")
    if path.suffix != ".py":
        raise UserError(f"model file {path} is not a Python file (.py); the model spec is path/to/file.py:factory")
    real = path.resolve()
    name = f"_neurofuzz_model_{re.sub(r'[^0-9a-zA-Z_]', '_', real.stem)}_{hashlib.sha256(str(real).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, real)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import model file {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        with _import_paths(real.parent):
            spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001
        sys.modules.pop(name, None)
        raise UserError(f"cannot import model file {path}: {type(e).__name__}: {one_line(e)}") from None
    return mod


def load_state_dict(path: str | Path, *, allow_pickle: bool = False,
                    key_file: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Load a checkpoint that must be a state_dict (``weights_only=True`` unless ``allow_pickle``);
    an encrypted one is authenticated, decrypted in memory and loaded ``weights_only=True``."""
    from neurofuzz.security.encryption import is_encrypted, key_from, load_encrypted

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found")
    if is_encrypted(path):
        return load_encrypted(path, key=key_from(key_file))
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


def _load_into(model: nn.Module, weights: str, allow_pickle: bool, key_file: str | None = None) -> None:
    sd = load_state_dict(weights, allow_pickle=allow_pickle, key_file=key_file)
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
        x, y = load_image_folder(path, max_pixels=MAX_IMAGE_PIXELS, max_bytes=MAX_SEED_BYTES)
        if labels is not None:
            raise UserError("--labels applies to .npy seeds; an image folder's labels are its class folder names")
        return x, y
    with _reading(path, "seeds"):
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z:
                    raise UserError(f"{path} has no array 'x' (found {sorted(z.files)}); save with np.savez(path, x=..., y=...)")
                _check_stored_size(path, _npz_member_bytes(z, "x.npy"))
                x = z["x"]
                y = z["y"] if "y" in z else None
        elif path.suffix == ".npy":
            x = _load_npy(path)
            y = None
        else:
            raise UserError(f"seed file {path}: use .npz (x, y), .npy or an image folder")
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise UserError(f"labels file {labels} not found")
        with _reading(labels, "labels"):
            y = _load_npy(labels)
    if x.ndim == 3:
        x = x[:, None]
    return x, y


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except UserError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise UserError(f"cannot read {what} {path}: {type(e).__name__}: {one_line(e, 200)}") from None


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles, measured (memory-mapped header) before it is read."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    _check_stored_size(path, arr.nbytes)
    return np.array(arr)


def _npz_member_bytes(z: "np.lib.npyio.NpzFile", member: str) -> int:
    """The byte size of an .npz member's array, from its .npy header (nothing else is read)."""
    fmt = np.lib.format
    with z.zip.open(member) as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def _check_stored_size(path: Path, nbytes: int) -> None:
    if nbytes > MAX_SEED_BYTES:
        raise UserError(f"seed array {path} holds {nbytes} bytes, more than the {MAX_SEED_BYTES} a seed set may "
                        "hold; fuzz a subset of it")


def seeds_to_tensor(x: np.ndarray, bounds: tuple[float, float]) -> torch.Tensor:
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0 * (bounds[1] - bounds[0]) + bounds[0])
    if x.dtype.kind != "f":
        raise UserError(f"seed images have dtype {x.dtype}; use float32 in the bounds or uint8")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

