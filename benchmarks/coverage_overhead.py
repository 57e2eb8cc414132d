"""Coverage overhead: forward + recording + all five metrics vs a plain forward pass.

Both are timed in the same run, interleaved, on the same batch (median over repeats), so the
ratio is robust to a noisy shared machine. Metrics: NC(0.5, scaled), TKNC(2), KMNC(k), NBC,
SNAC, each doing measure + novelty + commit. Prints JSON.

    python benchmarks/coverage_overhead.py [--threads 1] [--repeats 30] [--kmnc-k 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from neurofuzz.coverage import KMNC, CoverageSuite, NeuronProfile
from neurofuzz.ground.target import Target
from neurofuzz.fuzzer.zoo import ResNet18, builtin_target, load_digits32


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench(target: Target, profile: NeuronProfile, x: torch.Tensor, repeats: int, k: int) -> dict:
    spec = {"nc": {"threshold": 0.5}, "tknc": {"k": 2}, "kmnc": {"k": k}, "nbc": {}, "snac": {}}
    suite = CoverageSuite.default(target, profile, spec)

    @torch.no_grad()
    def plain():
        target(x)

    def covered():
        ev = suite.evaluate(x)
        suite.commit(ev)

    with suite:
        for _ in range(3):  # warm-up
            plain()
            covered()
        tp, tc = [], []
        for _ in range(repeats):  # interleave so both see the same machine load
            tp += _time(plain, 1)
            tc += _time(covered, 1)
    fwd, cov = statistics.median(tp), statistics.median(tc)
    return {
        "batch": int(x.shape[0]),
        "neurons": profile.n_neurons,
        "forward_ms": round(fwd * 1e3, 3),
        "forward_plus_coverage_ms": round(cov * 1e3, 3),
        "ratio": round(cov / fwd, 3),
        "coverage_after": {n: round(v, 4) for n, v in suite.values().items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--kmnc-k", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    lenet = builtin_target()
    x_train, _ = load_digits32("train")
    lenet_profile = NeuronProfile.from_data(lenet, x_train)
    x_lenet = torch.cat([x_train, x_train])[:256].contiguous()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        resnet = Target(ResNet18())
    x_res_profile = torch.rand(256, 3, 32, 32, generator=g)
    res_profile = NeuronProfile.from_data(resnet, x_res_profile, batch_size=128)
    x_res = torch.rand(128, 3, 32, 32, generator=g)

    kmnc1000 = KMNC(lenet_profile, k=1000)
    kmnc1000_res = KMNC(res_profile, k=1000)
    result = {
        "benchmark": "coverage_overhead",
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "kmnc_k": args.kmnc_k,
        "lenet5_digits": bench(lenet, lenet_profile, x_lenet, args.repeats, args.kmnc_k),
        "resnet18_3x32x32": bench(resnet, res_profile, x_res, max(5, args.repeats // 3), args.kmnc_k),
        "kmnc_k1000_state_bytes": {
            "lenet5_digits": kmnc1000.covered.numel() * kmnc1000.covered.element_size(),
            "resnet18_3x32x32": kmnc1000_res.covered.numel() * kmnc1000_res.covered.element_size(),
        },
        "targets": {"lenet5_ratio_max": 3.0, "resnet18_ratio_max": 1.5},
    }
    result["meets_targets"] = (
        result["lenet5_digits"]["ratio"] <= 3.0 and result["resnet18_3x32x32"]["ratio"] <= 1.5
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
