"""Seed images: image folders ``DIR/<label>/*.png|jpg`` and image file headers.

A class folder's name is its label, in plain decimal digits (``0``, ``7``, ``10``; not ``-1``,
``+3``, `` 3`` or ``seven``); names starting with ``.`` are skipped. A symlink that points outside
the seed folder is refused. Each image's width and height are read from its file header (PNG,
JPEG, BMP, PNM, TIFF) *before* anything is decoded, so the caller's size limits (see
:mod:`neurofuzz.fuzzer.io`) hold before a pixel is decoded. What the image libraries print while
decoding (libpng warnings, OpenCV log lines) is turned into Python warnings, so the CLI can hold
them back when it reports an error.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from neurofuzz.ground.errors import UserError, one_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff"}
_CLASS_NAME = re.compile(r"[0-9]+")


def _inside(p: Path, root_real: Path, root: Path) -> None:
    """Refuse ``p`` if it is (or passes through) a symlink leading outside the seed folder."""
    real = p.resolve()
    if real != root_real and root_real not in real.parents:
        raise UserError(f"{p} is a symlink to {real}, outside the seed folder {root}; copy the file into "
                        "the folder (or point --seeds at the folder it lives in)")


def _visible(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if not p.name.startswith("."))


def load_image_folder(root: Path, *, max_pixels: int, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` uint8 ``[N,C,H,W]`` and int64 labels from ``root/<label>/<image>``; an image of more than
    ``max_pixels`` pixels or a folder that would decode to more than ``max_bytes`` is refused from
    the file headers, before anything is decoded."""
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
            w, h, channels = image_size(f)
            if w * h > max_pixels:
                raise UserError(f"image {f} is {w}x{h} = {w * h} pixels, more than the {max_pixels} allowed "
                                "per seed image; resize the seeds to the model's input size")
            if first is None:
                first = (f, w, h)
            elif (w, h) != first[1:]:
                raise UserError(f"images in {root} differ in size ({first[0].name} is {first[1]}x{first[2]}, "
                                f"{f.name} is {w}x{h}); resize them to one size")
            total += w * h * channels
            if total > max_bytes:
                raise UserError(f"the images in {root} would decode to more than {max_bytes} bytes; "
                                "fuzz a subset of them")
            files.append((f, label))
    if not files:
        raise UserError(f"image folder {root} contains no images")
    xs, ys = [], []
    with library_output_as_warnings("reading the seed images"):
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
def library_output_as_warnings(doing: str) -> Iterator[None]:
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


def image_size(f: Path) -> tuple[int, int, int]:
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
        raise UserError(f"cannot read image {f}: {type(e).__name__}: {one_line(e)}") from None
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
