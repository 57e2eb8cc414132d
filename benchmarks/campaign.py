"""Campaign benchmark on the built-in LeNet-5 / digits, all measured in one run. Prints JSON.

(a) throughput: mutants evaluated per second inside the loop (natural mutators, validity
    rule, coverage, oracles, disk store) / plain forward throughput of the same model at the
    same batch size (seeds_per_batch * mutants_per_seed), both timed in this run;
(b) guidance: coverage (KMNC, NBC, NC, ...) after the same number of mutants for the guided
    loop (default: adaptive mutator choice), the guided loop with uniform mutator choice (an
    ablation), and an unguided baseline with the same mutators (nothing retained, mutators drawn
    uniformly: every mutant comes from an original seed), for each RNG seed in ``--repeats`` and for two seed sets:
    all 360 test digits, and the first 20 (``--few-seeds``);
(c) memory: a soak run (``--soak-seconds``, default 900) whose corpus keeps growing (a
    permissive feedback: KMNC with k = 5000, so nearly every mutant adds a section) with the
    queue's image cache at ``--cache-mb`` (default 16); prints (seconds, queue size, RSS)
    samples every ``--sample-seconds`` and the least-squares RSS slope (MB/min) after the first
    2 minutes (target < 1 MB/min: resident memory independent of the queue's size).

    python benchmarks/campaign.py [--sections a,b,c] [--mutants 20000] [--soak-seconds 900] [--threads 1]
                                  [--static-feedback]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from neurofuzz.coverage import DEFAULT_SPEC
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.campaign import Campaign as Fuzzer
from neurofuzz.fuzzer.zoo import builtin_target, load_digits32


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_forward_per_sec(target, x: torch.Tensor, repeats: int = 30) -> float:
    with torch.no_grad():
        for _ in range(3):
            target(x)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            target(x)
            ts.append(time.perf_counter() - t0)
    return len(x) / statistics.median(ts)


def campaign(tmp: Path, name: str, target, cfg: FuzzConfig, x, y, x_train) -> tuple[dict, float]:
    fz = Fuzzer.create(tmp / name, target, x, y, cfg, profile_data=x_train)
    t0 = time.perf_counter()
    summary = fz.run()
    wall = time.perf_counter() - t0
    fz.close()
    return summary, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=20000, help="mutants for (a) and (b)")
    ap.add_argument("--sections", default="a,b,c", help="which of a (throughput), b (guidance), c (soak) to run")
    ap.add_argument("--soak-seconds", type=float, default=900.0)
    ap.add_argument("--sample-seconds", type=float, default=30.0)
    ap.add_argument("--cache-mb", type=float, default=16.0, help="queue image cache of the soak run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="RNG seeds per guidance comparison")
    ap.add_argument("--few-seeds", type=int, default=20, help="size of the small seed set for (b)")
    ap.add_argument("--static-feedback", action="store_true",
                    help="(a) with the five metrics and no widening feedback: the configuration of the versions "
                         "before feedback_patience and kmnc_fine became defaults, for A/B runs against them")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rss_start = rss_mb()
    target = builtin_target()
    x, y = load_digits32("test")
    x_train, _ = load_digits32("train")
    base = dict(seed=args.seed, budget=Budget(mutants=args.mutants), stats_interval=5.0, checkpoint_interval=60.0)
    batch = FuzzConfig().seeds_per_batch * FuzzConfig().mutants_per_seed
    result: dict = {"benchmark": "campaign", "torch": torch.__version__, "threads": args.threads,
                    "machine": platform.machine(), "batch": batch, "mutants": args.mutants,
                    "mutators": [m["name"] for m in FuzzConfig().mutators]}
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "a" in sections:
            static = dict(metrics={n: dict(p) for n, p in DEFAULT_SPEC.items()}, feedback_patience=0)
            cfg = FuzzConfig(**base, **(static if args.static_feedback else {}))
            result["a_throughput"] = {**throughput(tmp, target, cfg, x, y, x_train, batch),
                                      "metrics": sorted(cfg.metrics), "feedback_patience": cfg.feedback_patience}
        if "b" in sections:
            result["b_guidance"] = guidance(tmp, target, base, x, y, x_train, args)
        if "c" in sections:
            result["c_memory"] = soak(tmp, target, x, y, x_train, args, rss_start)
    print(json.dumps(result, indent=2))


def throughput(tmp: Path, target, cfg: FuzzConfig, x, y, x_train, batch: int) -> dict:
    guided, wall = campaign(tmp, "guided", target, cfg, x, y, x_train)
    fwd = plain_forward_per_sec(target, torch.cat([x_train] * 2)[:batch].contiguous())
    loop_rate = guided["mutants"] / wall
    return {
        "loop_mutants_per_sec": round(loop_rate, 1),
        "plain_forward_inputs_per_sec": round(fwd, 1),
        "ratio": round(loop_rate / fwd, 4),
        "target_min_ratio": 0.25,
    }


def guidance(tmp: Path, target, base: dict, x, y, x_train, args) -> dict:
    cov = lambda s: {k[4:]: s[k] for k in s if k.startswith("cov_")}  # noqa: E731
    guidance: dict = {}
    for label, n_seeds in (("all_seeds", len(x)), ("few_seeds", args.few_seeds)):
        runs = []
        for rep in range(args.repeats):
            kw = dict(base, seed=args.seed + rep)
            g, _ = campaign(tmp, f"g-{label}-{rep}", target, FuzzConfig(**kw), x[:n_seeds], y[:n_seeds], x_train)
            gu, _ = campaign(tmp, f"gu-{label}-{rep}", target, FuzzConfig(**kw, mutator_choice="uniform"),
                             x[:n_seeds], y[:n_seeds], x_train)
            u, _ = campaign(tmp, f"u-{label}-{rep}", target, FuzzConfig(**kw, guided=False), x[:n_seeds],
                            y[:n_seeds], x_train)
            runs.append({"seed": args.seed + rep, "guided": cov(g), "guided_uniform_mutators": cov(gu),
                         "unguided": cov(u),
                         "guided_queue": g["queue_size"], "guided_failing": g["failing_mutants"],
                         "unguided_failing": u["failing_mutants"]})
        metrics = list(runs[0]["guided"])
        mean = lambda key, m: round(statistics.mean(r[key][m] for r in runs), 4)  # noqa: E731
        guidance[label] = {
            "n_seeds": n_seeds,
            "runs": runs,
            "mean_guided": {m: mean("guided", m) for m in metrics},
            "mean_guided_uniform_mutators": {m: mean("guided_uniform_mutators", m) for m in metrics},
            "mean_unguided": {m: mean("unguided", m) for m in metrics},
            "guided_ahead_in_every_run_on": [m for m in metrics
                                             if all(r["guided"][m] > r["unguided"][m] for r in runs)],
        }
    return {"feedback": FuzzConfig().feedback, **guidance}


def soak(tmp: Path, target, x, y, x_train, args, rss_start: float) -> dict:
    cfg = FuzzConfig(seed=args.seed, budget=Budget(seconds=args.sample_seconds), stats_interval=5.0,
                     checkpoint_interval=60.0, metrics={"kmnc": {"k": 5000}, "nbc": {}}, feedback=["kmnc"],
                     cache_mb=args.cache_mb)
    fz = Fuzzer.create(tmp / "soak", target, x, y, cfg, profile_data=x_train)
    samples = [{"t": 0.0, "queue": len(fz.scheduler), "rss_mb": round(rss_mb(), 1)}]
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.soak_seconds:
        s = fz.run()
        samples.append({"t": round(time.monotonic() - t0, 1), "queue": s["queue_size"], "rss_mb": round(rss_mb(), 1),
                        "mutants": s["mutants"]})
    fz.close()
    late = [p for p in samples if p["t"] >= 120.0]
    slope = None
    if len(late) >= 2:
        ts = [p["t"] / 60.0 for p in late]
        rs = [p["rss_mb"] for p in late]
        mt, mr = statistics.mean(ts), statistics.mean(rs)
        slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rs)) / sum((t - mt) ** 2 for t in ts)
    return {"rss_at_start_mb": round(rss_start, 1), "cache_mb": args.cache_mb, "samples": samples,
            "rss_slope_mb_per_min_after_2min": None if slope is None else round(slope, 3),
            "target_max_slope_mb_per_min": 1.0}


if __name__ == "__main__":
    main()
