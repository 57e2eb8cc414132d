"""Scaling benchmark of ``neurofuzz fuzz --workers N`` (issue 14, item 4). Prints one JSON object.

Every measurement is a subprocess ``python -m neurofuzz.fuzzer.cli fuzz ... --quiet`` (what users
run), on the built-in LeNet-5 / digits unless said otherwise, all with the same ``--seed``:

* ``throughput``: mutants/s of ``plain`` (no ``--workers``), ``workers_1`` and ``workers_2``, each
  for ``--time T`` (per worker), interleaved and repeated ``--repeats`` times (odd repeats in
  reverse order); plus ``plain_1thread`` (the plain campaign with ``OMP_NUM_THREADS=1``: on a
  shared 2-core machine torch's default 2 threads can be far slower than one). Three rates per
  run: ``stats`` (``mutants_per_sec`` of the campaign's ``fuzzer_stats``, as the fuzzer defines it:
  for ``plain`` the fuzzing loop only; for ``--workers`` the coordinator's figure, which has been
  both "from the start of the workers", i.e. with their start-up, and "each worker's mutants over
  its own fuzzing time, summed", i.e. without), ``wall`` (mutants / the wall clock around the
  subprocess: *includes all start-up*: interpreter, torch import, campaign creation, profiling,
  the workers' start-up and shut-down), and ``loop`` (computed here; for ``--workers``: the sum
  over workers of mutants / the worker's own campaign time, *excluding* start-up; for ``plain``:
  = ``stats``).
  ``workers_1`` and ``workers_2`` run with ``--threads 1`` (one torch thread per worker).
  Medians per variant, the ratios ``workers_2 / plain`` and ``workers_2 / workers_1``, and the
  headline ``workers_2_loop/best_single_loop``: 2 workers' fuzzing rate over the best of the
  single-process rates (issue target >= 1.7).
* ``coverage_equal_mutants``: ``--mutants M`` (the campaign's total, split over the workers) for
  ``plain``, ``workers_1``, ``workers_2``: the final ``cov_*`` and their differences.
* ``sync_overhead``: per worker of every multi-worker run, ``sync_seconds / time`` and
  ``wait_seconds / time`` from its last sync publication (``time``: the worker's campaign time;
  waiting is part of the sync time).
* ``ray``: the ``workers_2`` throughput run again with ``--ray auto`` (or ``skipped: ...``).
* ``simulated``: 1 / 2 / 4 / 8 workers against ``benchmarks/scale_mock.py:make_net`` (a forward
  that sleeps ``--sim-forward-ms`` per batch, then a tiny MLP on 64 random 1x8x8 seeds, 4 classes,
  four natural mutators) for ``--sim-time`` s each, syncing every ``--sim-sync-every`` iterations:
  throughput and per-worker sync cost as the worker count grows.

The machine is shared: the load average (``os.getloadavg()``) is recorded before and after each
run. Temp campaigns live in a fresh folder under ``--work`` (deleted at the end unless ``--keep``).

    python benchmarks/scale.py                 # defaults: T = 60 s, 2 repeats, M = 60000, 20 s per simulated point
    python benchmarks/scale.py --quick         # T = 15 s, M = 20000, 8 s per simulated point
    python benchmarks/scale.py --sections throughput,ray --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECTIONS = ("throughput", "coverage", "ray", "simulated")  # sync_overhead: from the runs of the others
VARIANTS = ("plain", "plain_1thread", "workers_1", "workers_2")
MOCK = Path(__file__).resolve().parent / "scale_mock.py"
MOCK_MUTATORS = ("translate", "contrast", "gaussian_noise", "uniform_noise")
TARGET_RATIO = 1.7


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs: --time 15, --mutants 20000, --sim-time 8")
    ap.add_argument("--time", type=float, help="seconds per throughput run (default 60; --quick 15)")
    ap.add_argument("--repeats", type=int, default=2, help="repeats of the interleaved throughput runs")
    ap.add_argument("--mutants", type=int, help="campaign total for the coverage runs (default 60000; --quick 20000)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {', '.join(SECTIONS)}")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="throughput variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sync-every", type=int, help="--sync-every of the built-in runs (default: the CLI's)")
    ap.add_argument("--sim-time", type=float, help="seconds per simulated point (default 20; --quick 8)")
    ap.add_argument("--sim-workers", default="1,2,4,8", help="worker counts of the simulated run")
    ap.add_argument("--sim-forward-ms", type=float, default=50.0, help="mock forward's sleep per batch")
    ap.add_argument("--sim-sync-every", type=int, default=10, help="--sync-every of the simulated runs")
    ap.add_argument("--work", help="parent folder of the temp campaigns (default: the system temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the campaigns")
    ap.add_argument("--out", help="also write the JSON here")
    return ap


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on ``--quick``; check the lists."""
    q = args.quick
    args.time = args.time if args.time is not None else (15.0 if q else 60.0)
    args.mutants = args.mutants if args.mutants is not None else (20000 if q else 60000)
    args.sim_time = args.sim_time if args.sim_time is not None else (8.0 if q else 20.0)
    args.sections = [s for s in args.sections.split(",") if s]
    args.variants = [v for v in args.variants.split(",") if v]
    args.sim_workers = [int(n) for n in args.sim_workers.split(",") if n]
    for what, got, known in (("section", args.sections, SECTIONS), ("variant", args.variants, VARIANTS)):
        bad = sorted(set(got) - set(known))
        if bad:
            raise SystemExit(f"unknown {what}(s) {bad}; choose from {', '.join(known)}")
    if args.repeats < 1 or args.time <= 0 or args.sim_time <= 0 or args.mutants < 1:
        raise SystemExit("--repeats, --time, --sim-time and --mutants must be positive")
    return args


# ----------------------------------------------------------------------------- one run
def fuzz_cmd(out: Path, *, workers: int | None, seed: int, budget: list[str], extra: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "neurofuzz.fuzzer.cli", "fuzz", "--out", str(out), "--force", "--seed", str(seed),
           "--quiet", *budget, *extra]
    return cmd + (["--workers", str(workers)] if workers is not None else [])


def read_campaign(camp: Path, workers: int | None) -> tuple[dict, dict[str, dict]]:
    """``(fuzzer_stats, {wK: last publication without its coverage maps})`` of a finished campaign."""
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.corpus.shards import shard_dir
    from neurofuzz.fuzzer.sync import latest_publication

    with CampaignStore.open(camp, readonly=True) as store:
        stats = store.read_stats()
    pubs = {}
    for k in range(1, (workers or 0) + 1):
        p = latest_publication(shard_dir(camp, k))
        if p is not None:
            pubs[f"w{k}"] = {"time": float(p["time"]), "mutants": int(p["counters"]["mutants"]),
                             "iterations": int(p["counters"]["iterations"]), "final": bool(p["final"]), **p["sync"]}
    return stats, pubs


def worker_figures(pubs: dict[str, dict]) -> dict[str, dict]:
    """Per worker: its sync figures and their shares of its run time."""
    out = {}
    for name, p in pubs.items():
        t = max(float(p["time"]), 1e-9)
        out[name] = {**p, "time": round(p["time"], 3), "sync_share": round(p["sync_seconds"] / t, 5),
                     "wait_share": round(p["wait_seconds"] / t, 5)}
    return out


def loop_rate(pubs: dict[str, dict]) -> float | None:
    """Sum over workers of mutants / the worker's own campaign time (start-up excluded)."""
    rates = [p["mutants"] / p["time"] for p in pubs.values() if p["time"] > 0]
    return round(sum(rates), 2) if rates else None


def run_fuzz(label: str, cmd: list[str], camp: Path, *, workers: int | None, env: dict[str, str] | None = None,
             timeout: float = 3600.0) -> dict[str, Any]:
    """Run one campaign; its figures (or its error) as a dict."""
    load0 = os.getloadavg()
    log(f"{label}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=camp.parent,
                           timeout=timeout)
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = "timeout", str(e.stdout or ""), str(e.stderr or "")
    wall = time.perf_counter() - t0
    rec: dict[str, Any] = {"label": label, "rc": rc, "wall_seconds": round(wall, 2),
                           "load_before": [round(v, 2) for v in load0],
                           "load_after": [round(v, 2) for v in os.getloadavg()]}
    if env:
        rec["env"] = env
    if rc != 0:
        rec["error"] = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["(no output)"])[-5:]
        rec["command"] = " ".join(cmd)
        log(f"{label}: FAILED rc={rc}: {rec['error'][-1]}")
        return rec
    stats, pubs = read_campaign(camp, workers)
    mutants = int(stats.get("mutants", 0))
    rec.update({"mutants": mutants, "stats_mutants_per_sec": float(stats.get("mutants_per_sec", 0.0)),
                "wall_mutants_per_sec": round(mutants / wall, 2),
                "loop_mutants_per_sec": loop_rate(pubs) if workers else float(stats.get("mutants_per_sec", 0.0)),
                "run_time": stats.get("run_time"), "retained": stats.get("retained"),
                "coverage": {k[4:]: v for k, v in stats.items() if k.startswith("cov_")}})
    if workers:
        rec["workers"] = worker_figures(pubs)
    log(f"{label}: {mutants} mutants, {rec['stats_mutants_per_sec']:.0f}/s (stats), "
        f"{rec['wall_mutants_per_sec']:.0f}/s (wall), load {rec['load_after'][0]}")
    return rec


# ----------------------------------------------------------------------------- summaries
RATES = ("stats_mutants_per_sec", "wall_mutants_per_sec", "loop_mutants_per_sec")


def _median(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return round(statistics.median(vals), 2) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarise_throughput(runs: dict[str, list[dict]]) -> dict[str, Any]:
    """Medians of each rate per variant (failed runs left out) and the 2-worker ratios."""
    med = {v: {r: _median([x.get(r) for x in rs if x.get("rc") == 0]) for r in RATES} for v, rs in runs.items()}
    ratios = {}
    for base in ("plain", "plain_1thread", "workers_1"):
        if "workers_2" in med and base in med:
            ratios[f"workers_2/{base}"] = {r: _ratio(med["workers_2"][r], med[base][r]) for r in RATES}
    # like for like: the workers' loop rate against the plain loop (its stats rate is loop-only)
    if "workers_2" in med and "plain" in med:
        ratios["workers_2_loop/plain_loop"] = _ratio(med["workers_2"]["loop_mutants_per_sec"],
                                                     med["plain"]["stats_mutants_per_sec"])
    # the headline: 2 workers' fuzzing rate against the best single-process rate measured (any variant)
    singles = [med[v]["loop_mutants_per_sec"] for v in ("plain", "plain_1thread", "workers_1")
               if v in med and med[v]["loop_mutants_per_sec"] is not None]
    best = max(singles) if singles else None
    head = _ratio(med.get("workers_2", {}).get("loop_mutants_per_sec"), best)
    return {"median": med, "ratios": ratios, "target_ratio": TARGET_RATIO,
            "workers_2_loop/best_single_loop": head, "target_met": None if head is None else head >= TARGET_RATIO}


def coverage_diff(cov: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Differences ``workers_2 - workers_1`` and ``workers_2 - plain`` per metric; the metrics lower with 2."""
    out: dict[str, Any] = {}
    w2 = cov.get("workers_2")
    for base in ("workers_1", "plain"):
        b = cov.get(base)
        if w2 and b:
            d = {m: round(w2[m] - b[m], 6) for m in w2 if m in b}
            out[f"workers_2-{base}"] = d
            out[f"lower_with_2_workers_than_{base}"] = sorted(m for m, v in d.items() if v < 0)
    return out


def sync_summary(runs: list[dict]) -> dict[str, Any]:
    """Per run and worker: sync and wait shares; the mean shares over all workers of all runs."""
    per_run = [{"label": r["label"], "workers": {k: {f: w[f] for f in ("time", "syncs", "sync_seconds", "sync_share",
                                                                         "wait_seconds", "wait_share", "imported",
                                                                         "timeouts")}
                                                 for k, w in r["workers"].items()}}
               for r in runs if r.get("rc") == 0 and r.get("workers")]
    ws = [w for r in per_run for w in r["workers"].values()]
    mean = lambda f: round(statistics.mean(w[f] for w in ws), 5) if ws else None  # noqa: E731
    return {"runs": per_run, "mean_sync_share": mean("sync_share"), "mean_wait_share": mean("wait_share"),
            "max_sync_share": max((w["sync_share"] for w in ws), default=None),
            "note": "share = seconds / the worker's campaign time; wait_seconds is part of sync_seconds"}


def simulated_point(rec: dict, n: int, base: dict | None) -> dict[str, Any]:
    """One simulated point: rates, speed-up over the first point, mean per-worker sync cost."""
    if rec.get("rc") != 0:
        return {"workers": n, "error": rec.get("error"), "command": rec.get("command")}
    ws = list(rec["workers"].values())
    mean = lambda f: round(statistics.mean(w[f] for w in ws), 4) if ws else None  # noqa: E731
    syncs = sum(w["syncs"] for w in ws)
    return {"workers": n, **{r: rec[r] for r in RATES}, "mutants": rec["mutants"],
            "speedup_stats": _ratio(rec["stats_mutants_per_sec"], base and base.get("stats_mutants_per_sec")),
            "speedup_loop": _ratio(rec["loop_mutants_per_sec"], base and base.get("loop_mutants_per_sec")),
            "mean_sync_seconds": mean("sync_seconds"), "mean_wait_seconds": mean("wait_seconds"),
            "mean_imported": mean("imported"), "mean_syncs": mean("syncs"), "mean_sync_share": mean("sync_share"),
            "mean_wait_share": mean("wait_share"),
            "seconds_per_sync": round(sum(w["sync_seconds"] for w in ws) / syncs, 5) if syncs else None,
            "timeouts": sum(w["timeouts"] for w in ws), "load_before": rec["load_before"],
            "load_after": rec["load_after"], "per_worker": rec["workers"]}


def ray_status() -> str | None:
    """None if ``import ray`` works, else why the Ray part is skipped."""
    try:
        importlib.import_module("ray")
    except ImportError as e:
        return f"skipped: ray not installed ({e})"
    return None


# ----------------------------------------------------------------------------- sections
def variant_cmd(v: str, out: Path, args, budget: list[str]) -> tuple[list[str], int | None, dict | None]:
    extra = ["--sync-every", str(args.sync_every)] if args.sync_every else []
    if v == "plain":
        return fuzz_cmd(out, workers=None, seed=args.seed, budget=budget), None, None
    if v == "plain_1thread":
        return (fuzz_cmd(out, workers=None, seed=args.seed, budget=budget), None,
                {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    n = int(v.split("_")[1])
    # one torch thread per worker in both (2 workers on 2 cores get 1 each by default): like for like
    return fuzz_cmd(out, workers=n, seed=args.seed, budget=budget, extra=[*extra, "--threads", "1"]), n, None


def throughput(work: Path, args) -> dict[str, Any]:
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    budget = ["--time", str(args.time)]
    for rep in range(args.repeats):
        order = args.variants if rep % 2 == 0 else args.variants[::-1]
        for v in order:
            camp = work / f"tp-{v}-{rep}"
            cmd, n, env = variant_cmd(v, camp, args, budget)
            runs[v].append({**run_fuzz(f"throughput {v} #{rep}", cmd, camp, workers=n, env=env,
                                       timeout=20 * args.time + 600), "repeat": rep})
    return {"seconds": args.time, "repeats": args.repeats, "runs": runs, **summarise_throughput(runs),
            "rates": {"stats_mutants_per_sec": "fuzzer_stats mutants_per_sec (plain: loop only; --workers: the "
                                               "coordinator's definition, see the docstring)",
                      "wall_mutants_per_sec": "mutants / wall clock of the subprocess: includes all start-up",
                      "loop_mutants_per_sec": "--workers: sum of each worker's mutants / its campaign time "
                                              "(start-up excluded); plain: = stats"}}


def coverage(work: Path, args) -> dict[str, Any]:
    runs, cov = {}, {}
    for v in ("plain", "workers_1", "workers_2"):
        camp = work / f"cov-{v}"
        cmd, n, env = variant_cmd(v, camp, args, ["--mutants", str(args.mutants)])
        if n is not None and not args.sync_every:
            cmd += ["--sync-every", "10"]  # enough sync points in a run of this length
        runs[v] = run_fuzz(f"coverage {v}", cmd, camp, workers=n, env=env, timeout=7200)
        if runs[v].get("rc") == 0:
            cov[v] = runs[v]["coverage"]
    return {"mutants_budget": args.mutants, "coverage": cov, **coverage_diff(cov),
            "mutants_done": {v: r.get("mutants") for v, r in runs.items()},
            "syncs": {v: {k: w["syncs"] for k, w in r.get("workers", {}).items()} for v, r in runs.items()
                      if v != "plain"},
            "note": "syncs 0: each worker did fewer than --sync-every iterations, so nothing was exchanged",
            "runs": runs}


def ray(work: Path, args) -> dict[str, Any]:
    why = ray_status()
    if why:
        return {"skipped": why}
    camp = work / "ray-workers_2"
    cmd, n, env = variant_cmd("workers_2", camp, args, ["--time", str(args.time)])
    rec = run_fuzz("ray workers_2", cmd + ["--ray", "auto"], camp, workers=n, env=env, timeout=20 * args.time + 900)
    return {"seconds": args.time, "run": rec, **({r: rec.get(r) for r in RATES})}


def simulated(work: Path, args) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(args.seed)
    seeds = work / "mock-seeds.npz"
    np.savez(seeds, x=rng.random((64, 1, 8, 8), dtype=np.float32), y=(np.arange(64) % 4).astype(np.int64))
    config = work / "mock.toml"
    config.write_text("".join(f'[[mutators]]\nname = "{m}"\n' for m in MOCK_MUTATORS))
    env = {"SCALE_MOCK_MS": str(args.sim_forward_ms)}
    points, base = [], None
    for n in args.sim_workers:
        camp = work / f"sim-{n}"
        cmd = fuzz_cmd(camp, workers=n, seed=args.seed, budget=["--time", str(args.sim_time)],
                       extra=["--model", f"{MOCK}:make_net", "--seeds", str(seeds), "--config", str(config),
                              "--sync-every", str(args.sim_sync_every), "--threads", "1"])
        rec = run_fuzz(f"simulated {n} workers", cmd, camp, workers=n, env=env, timeout=20 * args.sim_time + 600)
        base = base or (rec if rec.get("rc") == 0 else None)
        points.append(simulated_point(rec, n, base))
    return {"forward_ms": args.sim_forward_ms, "seconds": args.sim_time, "sync_every": args.sim_sync_every,
            "mutators": list(MOCK_MUTATORS), "seeds": "64 random 1x8x8, labels 0..3", "points": points}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = resolve(build_parser().parse_args(argv))
    import torch

    parent = Path(args.work) if args.work else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="neurofuzz-scale-", dir=parent)).resolve()
    result: dict[str, Any] = {
        "benchmark": "scale", "setup": {
            "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads_default": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "time": args.time, "repeats": args.repeats, "mutants": args.mutants, "seed": args.seed,
            "sync_every": args.sync_every or "CLI default", "quick": args.quick, "sections": args.sections,
            "work": str(work), "load_start": [round(v, 2) for v in os.getloadavg()]}}
    t0 = time.perf_counter()
    try:
        if "throughput" in args.sections:
            result["throughput"] = throughput(work, args)
        if "coverage" in args.sections:
            result["coverage_equal_mutants"] = coverage(work, args)
        multi = [r for v, rs in result.get("throughput", {}).get("runs", {}).items() if v.startswith("workers")
                 for r in rs] + [r for v, r in result.get("coverage_equal_mutants", {}).get("runs", {}).items()
                                 if v.startswith("workers")]
        if "ray" in args.sections:
            result["ray"] = ray(work, args)
            if "run" in result["ray"]:
                multi.append(result["ray"]["run"])
        result["sync_overhead"] = sync_summary(multi)
        if "simulated" in args.sections:
            result["simulated"] = simulated(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["setup"]["load_end"] = [round(v, 2) for v in os.getloadavg()]
    result["setup"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
