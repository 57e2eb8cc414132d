"""Export a corpus for other tools: one ``.npz`` of arrays, or a folder of PNGs plus a manifest.

Both take ``which`` = ``"queue"``, ``"failures"`` or ``"all"`` (and optionally ``oracle=``), work
on any store (:class:`CampaignStore`, read-only or not, or :class:`MemoryStore`), read the images
one at a time, refuse to replace an existing output unless ``overwrite=True``, and build the output
under a temp name next to it before renaming it into place (:mod:`neurofuzz.corpus.fs`), so an
interrupted export leaves no half-written result; its temp files are deleted by the next export
into the same directory.

An export can never damage a campaign: an output path that is, or lies inside, a campaign
directory (the one being read or any other: a directory holding ``fuzzer_setup`` or
``index.sqlite``) is refused, with or without ``overwrite``, and ``overwrite`` never replaces a
directory that holds a campaign (nor a non-empty directory that is not a previous PNG export).

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
import shutil
import zipfile
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from neurofuzz.corpus.base import BaseStore, select_entries
from neurofuzz.corpus.fs import atomic_write, remove_stale_temps, replace_dir, temp_name
from neurofuzz.corpus.layout import contained_campaign, enclosing_campaign
from neurofuzz.corpus.entry import Entry
from neurofuzz.ground.errors import UserError


def _entry_meta(e: Entry) -> dict[str, object]:
    return {"id": e.id, "label": e.label, "pred": e.pred, "kind": e.kind, "oracle": e.oracle,
            "root": e.root, "parent": e.parent, "depth": e.depth, "chain": e.chain, "gains": e.gains,
            "sha": e.sha, "iteration": e.iteration, "time_found": e.time_found}


def _write_npy(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def check_export_path(store: BaseStore, out: Path) -> None:
    """Refuse (``UserError``) an output path inside any campaign directory or one that holds a
    campaign; delete temp files left in its directory by a killed export."""
    src = getattr(store, "path", None)
    camp = enclosing_campaign(out)
    if camp is None and src is not None:
        s, o = Path(src).resolve(), out.absolute().resolve()
        camp = s if o == s or s in o.parents else None
    if camp is not None:
        raise UserError(
            f"{out} is inside the campaign directory {camp}; an export there could overwrite the campaign's "
            "own files: choose an output path outside any campaign"
        )
    held = contained_campaign(out)
    if held is not None:
        raise UserError(f"{out} holds a campaign ({held}); an export never replaces it: choose another output path")
    if out.parent.is_dir():
        remove_stale_temps(out.parent)


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
    check_export_path(store, out)
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

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("x.npy", "w", force_zip64=True) as xf:
                np.lib.format.write_array_header_1_0(xf, {"descr": "<f4", "fortran_order": False, "shape": x_shape})
                for e in entries:
                    xf.write(np.ascontiguousarray(e.load().numpy(), dtype="<f4").tobytes())

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

    atomic_write(out, write)
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
    built under a temp name and renamed into place; ``overwrite`` replaces only a previous PNG
    export (a folder with ``manifest.jsonl``).

    Example: ``export_png(CampaignStore.open("out", readonly=True), "out_png", "failures")``.
    """
    out = Path(out_dir)
    check_export_path(store, out)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise UserError(f"bounds must satisfy lower < upper, got {bounds!r}")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} is a file; pass a directory for the PNG export")
        if any(out.iterdir()):
            if not overwrite:
                raise UserError(f"{out} is not empty; pass --overwrite (overwrite=True) or choose another directory")
            if not (out / "manifest.jsonl").is_file():
                raise UserError(f"{out} is not empty and is not a previous PNG export (no manifest.jsonl); "
                                "--overwrite replaces only an export: choose another directory")
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
        replace_dir(tmp, out)  # the folder appears whole (its files are not fsynced one by one)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
