"""Attack overhead on the built-in LeNet-5: how close FGSM and PGD-40 come to the cost of the
forward+backward passes they cannot avoid.

Measures, in one run, with ``torch.set_num_threads(1)`` on a batch of 256 digits (the 360 test
images, repeated): the median time of one forward + backward with respect to the input (the
gradient the attacks need: cross-entropy, ``torch.autograd.grad``), of FGSM, and of PGD-40
(no random start), and prints JSON with the ratios ``fgsm / (1 x fwd+bwd)`` and
``pgd40 / (40 x fwd+bwd)``. Target: ``pgd_ratio <= 1.2``. Times are medians of ``--repeats``
runs (PGD: one run per round); each attack is divided by the fwd+bwd medians measured just
before and after it, and the ratios reported are medians over ``--rounds`` rounds.

Usage: ``python benchmarks/attack_overhead.py [--batch 256] [--repeats 7] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
from neurofuzz.mutators.attacks import FGSM, PGD


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(measure(args), indent=2))
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Run the measurement for options ``batch``, ``repeats``, ``steps``, ``rounds``; return the
    JSON-ready result (also used by ``benchmarks/mutators.py``'s ``attacks`` section)."""

    target = builtin_target()
    x_all, y_all = load_digits32("test")
    reps = -(-args.batch // len(y_all))
    x = x_all.repeat(reps, 1, 1, 1)[: args.batch].contiguous()
    y = y_all.repeat(reps)[: args.batch].contiguous()

    def fwd_bwd() -> torch.Tensor:
        xr = x.detach().requires_grad_(True)
        loss = F.cross_entropy(target(xr), y, reduction="sum")
        return torch.autograd.grad(loss, xr)[0]

    fgsm = FGSM(target, eps=0.3)
    pgd = PGD(target, eps=0.3, alpha=0.01, steps=args.steps, random_start=False)
    for fn in (fwd_bwd, lambda: fgsm(x, y), lambda: pgd(x, y)):  # warm up
        fn()
    # Rounds of: fwd+bwd, FGSM, fwd+bwd, PGD, fwd+bwd. Each attack is compared with the
    # fwd+bwd medians measured right around it, so that drifting load from other processes
    # hits numerator and denominator alike; the reported ratios are medians over the rounds.
    fb_all, tf_all, tp_all, rf_all, rp_all = [], [], [], [], []
    for _ in range(args.rounds):
        fb0 = median_time(fwd_bwd, args.repeats, warmup=0)
        tf = median_time(lambda: fgsm(x, y), args.repeats, warmup=0)
        fb1 = median_time(fwd_bwd, args.repeats, warmup=0)
        tp = median_time(lambda: pgd(x, y), 1, warmup=0)
        fb2 = median_time(fwd_bwd, args.repeats, warmup=0)
        fb_all += [fb0, fb1, fb2]
        tf_all.append(tf)
        tp_all.append(tp)
        rf_all.append(tf / ((fb0 + fb1) / 2))
        rp_all.append(tp / (args.steps * (fb1 + fb2) / 2))
    fb, tf, tp = statistics.median(fb_all), statistics.median(tf_all), statistics.median(tp_all)
    out = {
        "model": "builtin LeNet-5 (digits)",
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "fwd_bwd_ms": round(fb * 1e3, 3),
        "fgsm_ms": round(tf * 1e3, 3),
        "fgsm_ratio": round(statistics.median(rf_all), 3),
        "pgd_steps": args.steps,
        "pgd_ms": round(tp * 1e3, 3),
        "pgd_ratio": round(statistics.median(rp_all), 3),
        "pgd_ratio_per_round": [round(r, 3) for r in rp_all],
        "pgd_target_ratio": 1.2,
    }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
