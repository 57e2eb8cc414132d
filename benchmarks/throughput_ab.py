"""Loop throughput A/B across versions: ``benchmarks/campaign.py`` (a) measured the same way by
any importable neurofuzz, before or after the campaign / loop split. Prints one JSON line:
mode, ratio (loop / plain forward), loop mutants/s, plain forward inputs/s, queue size.

    python benchmarks/throughput_ab.py static [MUTANTS]            # this version, the five metrics, no widening
    python benchmarks/throughput_ab.py default [MUTANTS]           # this version, its defaults
    OLD_VENV/bin/python benchmarks/throughput_ab.py old [MUTANTS]  # an older install, its defaults

Run the modes alternately in the same minutes and compare medians: on the 2-core development
machine identical runs vary by about 15%.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    from neurofuzz.fuzzer.campaign import Campaign as Fuzzer
except ImportError:  # versions before the campaign / loop split
    from neurofuzz.fuzzer.loop import Fuzzer
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

FIVE = {"nc": {"threshold": 0.5}, "tknc": {"k": 2}, "kmnc": {"k": 100}, "nbc": {}, "snac": {}}


def forward_rate(target, xb: torch.Tensor, repeats: int = 30) -> float:
    """Inputs per second of a plain forward pass (median of ``repeats``): benchmarks/campaign.py's
    ``plain_forward_per_sec`` written again, since that script does not import under old versions."""
    with torch.no_grad():
        for _ in range(3):
            target(xb)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            target(xb)
            ts.append(time.perf_counter() - t0)
    return len(xb) / statistics.median(ts)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("old", "static", "default"):
        raise SystemExit("usage: throughput_ab.py old|static|default [MUTANTS]")
    mode, mutants = argv[0], int(argv[1]) if len(argv) > 1 else 40000
    torch.set_num_threads(1)
    target = builtin_target()
    x, y = load_digits32("test")
    xt, _ = load_digits32("train")
    extra = {"metrics": FIVE, "feedback_patience": 0} if mode == "static" else {}
    cfg = FuzzConfig(seed=0, budget=Budget(mutants=mutants), stats_interval=5.0, checkpoint_interval=60.0, **extra)
    with tempfile.TemporaryDirectory() as d:
        fz = Fuzzer.create(Path(d) / "c", target, x, y, cfg, profile_data=xt)
        t0 = time.perf_counter()
        s = fz.run()
        wall = time.perf_counter() - t0
        fz.close()
    fwd = forward_rate(target, torch.cat([xt] * 2)[:256].contiguous())
    print(json.dumps({"mode": mode, "ratio": round(s["mutants"] / wall / fwd, 4),
                      "loop_mutants_per_sec": round(s["mutants"] / wall), "plain_forward_inputs_per_sec": round(fwd),
                      "queue_size": s["queue_size"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
