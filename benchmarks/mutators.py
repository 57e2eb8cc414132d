"""Mutator benchmarks: prints one JSON document with a key per section.

Sections live in :data:`SECTIONS` (name -> function taking the parsed options and returning a
JSON-ready dict). ``natural`` measures throughput (mutants per second, ``mutate`` end to end:
sampling, transform, clipping) of every registered natural mutator on a batch of 256 random
images of 1x32x32 and of 3x224x224, from the fastest of several calls (the machine may be shared)
and from the median, with one torch and OpenCV thread by default (``--threads``). An attack section (FGSM and PGD-40 time as a ratio to
``steps x (forward + backward)``) plugs in the same way: write ``attacks_section(opts) -> dict``
and add it to :data:`SECTIONS`.

Usage::

    python benchmarks/mutators.py                       # every section
    python benchmarks/mutators.py --section natural --reps-small 10 --reps-large 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import cv2
import torch

from neurofuzz.fuzzer import __version__
from neurofuzz.mutators import available, create, get

SHAPES = {"1x32x32": (1, 32, 32), "3x224x224": (3, 224, 224)}


def timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
    """Wall time of ``reps`` calls, in seconds: the fastest (the least disturbed by other load on
    a shared machine, so the best estimate of the cost itself) and the median."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"best": min(times), "median": statistics.median(times)}


def natural_section(opts: argparse.Namespace) -> dict[str, Any]:
    """Mutants per second of every natural mutator (default configuration), per image shape."""
    names = [n for n in available() if not get(n).needs_model]
    reps = {"1x32x32": opts.reps_small, "3x224x224": opts.reps_large}
    results: dict[str, dict[str, float]] = {}
    medians: dict[str, dict[str, float]] = {}
    for label, shape in SHAPES.items():
        x = torch.rand(opts.batch, *shape, generator=torch.Generator().manual_seed(0))
        results[label], medians[label] = {}, {}
        for name in names:
            m = create(name)
            g = torch.Generator().manual_seed(1)
            m.mutate(x[:8], g)  # warm-up: lazy initialisation, kernel caches
            t = timed(lambda: m.mutate(x, g), reps[label])
            results[label][name] = round(opts.batch / t["best"], 1)
            medians[label][name] = round(opts.batch / t["median"], 1)
    return {
        "unit": "mutants/s (fastest of reps; median_results: from the median time)",
        "batch": opts.batch,
        "reps": reps,
        "results": results,
        "median_results": medians,
    }


# Name -> section. The attack section (FGSM, PGD-40 cost ratios) is added here by its author.
SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"natural": natural_section}


def attacks_section(opts: argparse.Namespace) -> dict[str, Any]:
    """FGSM and PGD-40 time per batch as a ratio to steps x (forward + backward), same run
    (the measurement of ``benchmarks/attack_overhead.py``)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from attack_overhead import measure

    return measure(argparse.Namespace(batch=opts.batch, repeats=5, steps=40, rounds=3))


SECTIONS["attacks"] = attacks_section


def environment() -> dict[str, Any]:
    return {
        "neurofuzz": __version__,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cv2_threads": cv2.getNumThreads(),
        "device": "cpu",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", action="append", choices=sorted(SECTIONS), help="run only this section (repeatable)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps-small", type=int, default=10, help="timed calls per mutator on 1x32x32")
    ap.add_argument("--reps-large", type=int, default=3, help="timed calls per mutator on 3x224x224")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and OpenCV threads (default 1, as in attack_overhead.py: stable on a shared machine; "
        "0 keeps the libraries' defaults)",
    )
    opts = ap.parse_args(argv)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
        cv2.setNumThreads(opts.threads)
    out: dict[str, Any] = {"environment": environment()}
    for name in opts.section or list(SECTIONS):
        t0 = time.perf_counter()
        out[name] = SECTIONS[name](opts)
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
