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

Image folders: a class folder's name is its label, in plain decimal digits (``0``, ``7``, ``10``;
not ``-1``, ``+3``, `` 3`` or ``seven``); names starting with ``.`` are skipped. A symlink that
points outside the seed folder is refused. Each image's width and height are read from its file
header (PNG, JPEG, BMP, PNM, TIFF) *before* anything is decoded: an image of more than
``MAX_IMAGE_PIXELS`` pixels, or a folder that would decode to more than ``MAX_SEED_BYTES``, is
refused. What the image libraries print while decoding (libpng warnings, OpenCV log lines) is
turned into Python warnings, so the CLI can hold them back when it reports an error.
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
import struct
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from neurofuzz.ground.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff"}
TORCHSCRIPT_SUFFIXES = {".pt", ".pth", ".ts", ".jit"}
MAX_IMAGE_PIXELS = 2**24  # width * height of one seed image (e.g. 4096 x 4096)
MAX_SEED_BYTES = 2**31  # a seed set as stored (uint8 images decoded, or the .npy / .npz array x): 2 GiB
_CLASS_NAME = re.compile(r"[0-9]+")


def load_model(spec: str, weights: str | None = None, *, allow_pickle: bool = False) -> nn.Module:
    """Return the model named by ``spec``: ``builtin``, a TorchScript file, ``module.path:factory``
    or ``path/to/file.py:factory``."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("the model spec is empty; give 'builtin', a TorchScript file, or 'module.path:factory'")
    if spec == "builtin":
        from neurofuzz.fuzzer.zoo import load_lenet5_digits

        if weights:
            raise UserError("--weights cannot be combined with the builtin model")
        return load_lenet5_digits()
    path = Path(spec)
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
                                f"{_one_line(e)} (looked in the working directory and the installed packages)") from None
        factory = getattr(mod, attr, None)
        if not callable(factory):
            raise UserError(f"{mod_name} has no callable {attr!r}; the model spec is module.path:factory")
        try:
            with torch.random.fork_rng(devices=[]):
                model = factory()
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"the model factory {spec} raised {type(e).__name__}: {_one_line(e)}") from None
        if not isinstance(model, nn.Module):
            raise UserError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
        if weights:
            _load_into(model, weights, allow_pickle)
    return model


def _one_line(e: BaseException, limit: int = 300) -> str:
    return " ".join(str(e).split())[:limit]


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
        raise UserError(f"cannot import model file {path}: {type(e).__name__}: {_one_line(e)}") from None
    return mod


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
        x, y = _load_image_folder(path)
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
        raise UserError(f"cannot read {what} {path}: {type(e).__name__}: {_one_line(e, 200)}") from None


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


# ---------------------------------------------------------------------------- image folders
def _inside(p: Path, root_real: Path, root: Path) -> None:
    """Refuse ``p`` if it is (or passes through) a symlink leading outside the seed folder."""
    real = p.resolve()
    if real != root_real and root_real not in real.parents:
        raise UserError(f"{p} is a symlink to {real}, outside the seed folder {root}; copy the file into "
                        "the folder (or point --seeds at the folder it lives in)")


def _visible(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if not p.name.startswith("."))


def _load_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    root_real = root.resolve()
    classes: dict[int, Path] = {}
    for d in _visible(root):
        if not d.is_dir():
            continue
        _inside(d, root_real, root)
        if not _CLASS_NAME.fullmatch(d.name):
            raise UserError(f"class folder {d.name!r} in {root} is not a class number; name class folders "
                            "0, 1, 2, ... in plain decimal digits (the folder name is the label)")
        label = int(d.name)
        if label in classes:
            raise UserError(f"class folders {classes[label].name!r} and {d.name!r} in {root} both mean class {label}; "
                            "merge them")
        classes[label] = d
    if not classes:
        raise UserError(f"image folder {root} has no class subfolders; lay it out as {root}/<label>/<image>.png")
    # headers first: sizes are checked before a single pixel is decoded
    files: list[tuple[Path, int]] = []
    total = 0
    first: tuple[Path, int, int] | None = None
    for label in sorted(classes):
        for f in _visible(classes[label]):
            if f.suffix.lower() not in IMAGE_SUFFIXES or f.is_dir():
                continue
            _inside(f, root_real, root)
            w, h, channels = _image_size(f)
            if w * h > MAX_IMAGE_PIXELS:
                raise UserError(f"image {f} is {w}x{h} = {w * h} pixels, more than the {MAX_IMAGE_PIXELS} allowed "
                                "per seed image; resize the seeds to the model's input size")
            if first is None:
                first = (f, w, h)
            elif (w, h) != first[1:]:
                raise UserError(f"images in {root} differ in size ({first[0].name} is {first[1]}x{first[2]}, "
                                f"{f.name} is {w}x{h}); resize them to one size")
            total += w * h * channels
            if total > MAX_SEED_BYTES:
                raise UserError(f"the images in {root} would decode to more than {MAX_SEED_BYTES} bytes; "
                                "fuzz a subset of them")
            files.append((f, label))
    if not files:
        raise UserError(f"image folder {root} contains no images")
    xs, ys = [], []
    with _library_output_as_warnings("reading the seed images"):
        for f, label in files:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise UserError(f"cannot read image {f}")
            if img.dtype != np.uint8:
                raise UserError(f"image {f} is not 8-bit; convert it to 8-bit PNG")
            img = img[:, :, None] if img.ndim == 2 else img[:, :, 2::-1]  # BGR -> RGB, drop alpha
            xs.append(img.transpose(2, 0, 1))
            ys.append(label)
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise UserError(f"images in {root} differ in size or channels {sorted(shapes)[:3]}; convert them to one "
                        "size and colour mode")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


@contextlib.contextmanager
def _library_output_as_warnings(doing: str) -> Iterator[None]:
    """Capture what C libraries write to file descriptor 2 (libpng's warnings, OpenCV's log) and
    re-issue it as one Python warning after the block (none if the block raised)."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old_level = log.getLogLevel() if log is not None else None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    sink = tempfile.TemporaryFile()
    ok = False
    try:
        if log is not None:
            log.setLogLevel(log.LOG_LEVEL_ERROR)
        os.dup2(sink.fileno(), 2)
        yield
        ok = True
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if log is not None and old_level is not None:
            log.setLogLevel(old_level)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
        sink.close()
    if ok and text.strip():
        lines = sorted({line.strip() for line in text.splitlines() if line.strip()})
        warnings.warn(f"while {doing}: {'; '.join(lines)[:500]}", UserWarning, stacklevel=3)


def _image_size(f: Path) -> tuple[int, int, int]:
    """``(width, height, channels)`` from the file header (PNG, JPEG, BMP, PNM, TIFF), without decoding.
    ``channels`` is an upper bound of what OpenCV decodes (bytes per pixel, for the size budget)."""
    try:
        with open(f, "rb") as fh:
            head = fh.read(32)
            size = None
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                depth, colour = head[24], head[25]
                size = (w, h, {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour, 4) * (2 if depth == 16 else 1))
            elif head.startswith(b"\xff\xd8"):
                size = _jpeg_size(fh)
            elif head.startswith(b"BM") and len(head) >= 26:
                (hsize,) = struct.unpack("<I", head[14:18])
                if hsize == 12:
                    w, h = struct.unpack("<HH", head[18:22])
                else:
                    w, h = struct.unpack("<ii", head[18:26])
                size = (abs(w), abs(h), 4)
            elif head[:1] == b"P" and head[1:2] in b"123456" and len(head) >= 2:
                size = _pnm_size(fh)
            elif head[:4] in (b"II*\x00", b"MM\x00*"):
                size = _tiff_size(fh, head[:2])
    except (OSError, struct.error) as e:
        raise UserError(f"cannot read image {f}: {type(e).__name__}: {_one_line(e)}") from None
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise UserError(f"cannot read image {f}: not a readable PNG, JPEG, BMP, PNM or TIFF file")
    return size


def _jpeg_size(fh: BinaryIO) -> tuple[int, int, int] | None:
    fh.seek(2)
    for _ in range(10000):
        b = fh.read(1)
        while b == b"\xff":  # fill bytes
            b = fh.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, *range(0xD0, 0xD8)):  # no payload
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before a frame header
            return None
        (length,) = struct.unpack(">H", fh.read(2))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            _, h, w, n = struct.unpack(">BHHB", fh.read(6))
            return w, h, 3 if n >= 3 else 1
        fh.seek(length - 2, 1)
        # the marker of the next segment must follow
        nxt = fh.read(1)
        if nxt != b"\xff":
            return None
        fh.seek(-1, 1)
    return None


def _pnm_size(fh: BinaryIO) -> tuple[int, int, int] | None:
    fh.seek(0)
    data = fh.read(4096)
    kind = data[1:2]
    tokens = re.sub(rb"#[^\n]*", b" ", data[2:]).split()
    if len(tokens) < 2 or not tokens[0].isdigit() or not tokens[1].isdigit():
        return None
    channels = 3 if kind in b"36" else 1
    if kind not in b"14" and len(tokens) >= 3 and tokens[2].isdigit() and int(tokens[2]) > 255:
        channels *= 2
    return int(tokens[0]), int(tokens[1]), channels


def _tiff_size(fh: BinaryIO, order: bytes) -> tuple[int, int, int] | None:
    e = "<" if order == b"II" else ">"
    fh.seek(4)
    (ifd,) = struct.unpack(e + "I", fh.read(4))
    fh.seek(ifd)
    (n,) = struct.unpack(e + "H", fh.read(2))
    tags: dict[int, int] = {}
    for _ in range(min(n, 1000)):
        tag, typ, _count, raw = struct.unpack(e + "HHI4s", fh.read(12))
        if typ == 3:  # SHORT, left-justified in the 4-byte field
            tags[tag] = struct.unpack(e + "H", raw[:2])[0]
        elif typ == 4:  # LONG
            tags[tag] = struct.unpack(e + "I", raw)[0]
    if 256 not in tags or 257 not in tags:
        return None
    bits = tags.get(258, 8) if tags.get(277, 1) == 1 else 8  # BitsPerSample is an offset when several samples
    return tags[256], tags[257], max(1, tags.get(277, 1)) * (2 if bits > 8 else 1)


def seeds_to_tensor(x: np.ndarray, bounds: tuple[float, float]) -> torch.Tensor:
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0 * (bounds[1] - bounds[0]) + bounds[0])
    if x.dtype.kind != "f":
        raise UserError(f"seed images have dtype {x.dtype}; use float32 in the bounds or uint8")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

