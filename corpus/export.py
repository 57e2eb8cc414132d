"""Export a corpus for other tools: one ``.npz`` of arrays, or a folder of PNGs plus a manifest.

Both take ``which`` = ``"queue"``, ``"failures"`` or ``"all"`` (and optionally ``oracle=``), work
on any store (:class:`CampaignStore`, read-only or not, or :class:`MemoryStore`), read the images
one at a time, refuse to replace an existing output unless ``overwrite=True``, and build the output
under a temp name next to it before renaming it into place, so an interrupted export leaves no
half-written result.

Example::

    >>> import tempfile, shutil, pathlib, numpy as np, torch
    >>> from neurofuzz.corpus import MemoryStore, export_npz, export_png
    >>> s = MemoryStore()
    >>> _ = s.add(torch.full((3, 4, 4), 0.5), kind="queue", label=1, pred=1)
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> a = np.load(export_npz(s, d / "corpus.npz"))
    >>> a["x"].shape, a["labels"].tolist(), a["kinds"].tolist()
    ((1, 3, 4, 4), [1], ['queue'])
    >>> sorted(p.name for p in export_png(s, d / "png").iterdir())
    ['manifest.jsonl', 'queue']
    >>> shutil.rmtree(d)
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np

from neurofuzz.corpus._atomic import fsync_dir, temp_name
from neurofuzz.corpus.base import BaseStore, select_entries
from neurofuzz.corpus.entry import Entry
from neurofuzz.fuzzer.errors import UserError


def _entry_meta(e: Entry) -> dict[str, object]:
    return {"id": e.id, "label": e.label, "pred": e.pred, "kind": e.kind, "oracle": e.oracle,
            "root": e.root, "parent": e.parent, "depth": e.depth, "chain": e.chain, "gains": e.gains,
            "sha": e.sha, "iteration": e.iteration, "time_found": e.time_found}


def _write_npy(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def export_npz(
    store: BaseStore,
    out_path: str | Path,
    which: str = "all",
    *,
    oracle: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the selected entries to one ``.npz`` (read it with ``numpy.load``); return its path.

    Arrays, one row per entry in id order: ``x`` float32 ``[N, C, H, W]``; ``ids``, ``labels``,
    ``preds``, ``roots``, ``parents`` (``-1`` for none), ``depths``, ``iterations`` int64;
    ``times`` float64; ``kinds``, ``oracles`` (``""`` for none), ``shas`` str; ``chains`` and
    ``gains`` JSON str; plus ``setup``, the store's setup as a 0-d JSON str. With no entries ``x``
    is ``[0, 0, 0, 0]``. All selected inputs must share one shape (else export each kind or oracle
    on its own, or use :func:`export_png`). ``x`` is streamed into the file, never held whole in
    memory. The path is used as given (no ``.npz`` is appended).

    Example: ``export_npz(CampaignStore.open("out", readonly=True), "failures.npz", "failures")``.
    """
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite (overwrite=True) or choose another path")
    if out.is_dir():
        raise UserError(f"{out} is a directory; pass a file path for the .npz")
    if not out.parent.is_dir():
        raise UserError(f"directory {out.parent} does not exist; create it first")
    entries = select_entries(store, which, oracle)
    shapes = sorted({e.shape for e in entries})
    if len(shapes) > 1:
        raise UserError(
            f"cannot stack inputs of different shapes {shapes} into one array; export each kind or "
            "oracle separately (which=/oracle=) or use export_png"
        )
    x_shape = (len(entries), *shapes[0]) if entries else (0, 0, 0, 0)
    tmp = temp_name(out)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("x.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": x_shape})
                for e in entries:
                    f.write(np.ascontiguousarray(e.load().numpy(), dtype="<f4").tobytes())

            def ints(vals: list[int]) -> np.ndarray:
                return np.asarray(vals, dtype=np.int64)

            def strs(vals: list[str]) -> np.ndarray:
                return np.asarray(vals, dtype=str) if vals else np.zeros(0, dtype="<U1")

            _write_npy(zf, "ids", ints([e.id for e in entries]))
            _write_npy(zf, "labels", ints([e.label for e in entries]))
            _write_npy(zf, "preds", ints([e.pred for e in entries]))
            _write_npy(zf, "roots", ints([e.root for e in entries]))
            _write_npy(zf, "parents", ints([-1 if e.parent is None else e.parent for e in entries]))
            _write_npy(zf, "depths", ints([e.depth for e in entries]))
            _write_npy(zf, "iterations", ints([e.iteration for e in entries]))
            _write_npy(zf, "times", np.asarray([e.time_found for e in entries], dtype=np.float64))
            _write_npy(zf, "kinds", strs([e.kind for e in entries]))
            _write_npy(zf, "oracles", strs([e.oracle or "" for e in entries]))
            _write_npy(zf, "shas", strs([e.sha for e in entries]))
            _write_npy(zf, "chains", strs([json.dumps(e.chain) for e in entries]))
            _write_npy(zf, "gains", strs([json.dumps(e.gains) for e in entries]))
            _write_npy(zf, "setup", np.asarray(json.dumps(getattr(store, "setup", {}))))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    return out


def to_uint8_image(x: np.ndarray, bounds: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """``[C, H, W]`` float in ``bounds`` -> ``uint8`` image for cv2: ``[H, W]`` (1 channel) or
    ``[H, W, 3]`` BGR (3 channels, input assumed RGB). Values outside ``bounds`` are clipped;
    ``round((x - lo) / (hi - lo) * 255)``, so a round trip is exact to within 0.5/255 of the range.
    """
    lo, hi = bounds
    v = np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    v = np.nan_to_num(v, nan=0.0)
    img = np.rint(v * 255.0).astype(np.uint8)
    if img.shape[0] == 1:
        return img[0]
    return np.ascontiguousarray(img[::-1].transpose(1, 2, 0))  # RGB -> BGR, CHW -> HWC


def export_png(
    store: BaseStore,
    out_dir: str | Path,
    which: str = "all",
    *,
    oracle: str | None = None,
    overwrite: bool = False,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """Write the selected entries as 8-bit PNGs plus ``manifest.jsonl``; return the folder.

    Pixel values are assumed to lie in ``bounds`` (default ``[0, 1]``, the Target default) and are
    mapped linearly to 0..255 (clipped outside). Images have 1 channel (grayscale PNG) or 3 (taken
    as RGB, written as a colour PNG); other channel counts are refused (use :func:`export_npz`).
    Files: ``queue/id_000012.png`` and ``failures/<oracle>/id_000013.png``. ``manifest.jsonl`` has
    one JSON object per image: ``file`` (relative path), ``id``, ``label``, ``pred``, ``kind``,
    ``oracle``, ``root``, ``parent``, ``depth``, ``chain``, ``gains``, ``sha``, ``iteration``,
    ``time_found``. ``out_dir`` must be missing or empty unless ``overwrite=True``; the folder is
    built under a temp name and renamed into place.

    Example: ``export_png(CampaignStore.open("out", readonly=True), "out_png", "failures")``.
    """
    out = Path(out_dir)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise UserError(f"bounds must satisfy lower < upper, got {bounds!r}")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} is a file; pass a directory for the PNG export")
        if any(out.iterdir()) and not overwrite:
            raise UserError(f"{out} is not empty; pass --overwrite (overwrite=True) or choose another directory")
    if not out.parent.is_dir():
        raise UserError(f"directory {out.parent} does not exist; create it first")
    entries = select_entries(store, which, oracle)
    bad = sorted({e.shape[0] for e in entries} - {1, 3})
    if bad:
        raise UserError(f"PNG export supports 1- or 3-channel images, found {bad} channels; use export_npz")
    tmp = temp_name(out)
    tmp.mkdir()
    try:
        with open(tmp / "manifest.jsonl", "w", encoding="utf-8") as man:
            for e in entries:
                sub = "queue" if e.kind == "queue" else f"failures/{e.oracle}"
                rel = f"{sub}/id_{e.id:06d}.png"
                (tmp / sub).mkdir(parents=True, exist_ok=True)
                ok, buf = cv2.imencode(".png", to_uint8_image(e.load().numpy(), (lo, hi)))
                if not ok:  # pragma: no cover - cv2 fails only on unsupported arrays, excluded above
                    raise UserError(f"OpenCV could not encode entry {e.id} as PNG")
                (tmp / rel).write_bytes(buf.tobytes())
                man.write(json.dumps({"file": rel, **_entry_meta(e)}) + "\n")
        if out.exists():
            old = temp_name(out)
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)  # put the previous export back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
