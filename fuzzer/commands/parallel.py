"""The ``fuzz`` command's multi-worker path: create or resume the main campaign, then coordinate."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from neurofuzz.ground.errors import UserError


def _wait_for_old_workers(path: Path, n: int, timeout: float = 60.0) -> None:
    """After a coordinator was killed its workers checkpoint and stop on their own; wait for that."""
    from neurofuzz.corpus import live_writer
    from neurofuzz.corpus.lock import recorded_pid
    from neurofuzz.corpus.shards import shard_dir

    deadline = time.monotonic() + timeout
    for k in range(1, n + 1):
        d = shard_dir(path, k)
        while live_writer(d):
            if time.monotonic() > deadline:
                raise UserError(f"worker {k} of campaign {path} is still running (pid {recorded_pid(d) or '?'}); "
                                "stop it first")
            time.sleep(0.2)


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_parallel(args: argparse.Namespace, monitor: Any, budget: Any, make: Callable[..., Any]) -> int:
    import torch

    from neurofuzz.corpus.layout import WORKERS
    from neurofuzz.fuzzer.commands.campaign import format_summary
    from neurofuzz.fuzzer.commands.workers import ProcessLauncher, RayLauncher, require_ray
    from neurofuzz.fuzzer.workers import Coordinator, threads_per_worker

    if getattr(args, "reference_model", None):
        raise UserError("--reference-model is not supported with --workers yet; use --reference TWIN, or fuzz "
                        "in one process")
    if not 1 <= args.sync_every <= 10**6:
        raise UserError(f"--sync-every must lie in [1, 1000000] iterations, got {args.sync_every}")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise UserError(f"--threads must lie in [1, 1024], got {args.threads}")
    if not 0 <= args.gpus_per_worker <= 64:
        raise UserError(f"--gpus-per-worker must lie in [0, 64], got {args.gpus_per_worker}")
    if args.ray:
        require_ray()  # before the campaign is made
    if args.resume:
        fz = make(args, monitor, budget)
        n = int(fz.store.setup["workers"]["count"])
        try:
            _wait_for_old_workers(fz.store.path, n)
        except BaseException:
            fz.close()
            raise
    else:
        n = args.workers
        fz = make(args, monitor, budget, workers={"count": n, "sync_every": args.sync_every})
    try:
        threads = args.threads or threads_per_worker(n)
        if args.ray:
            launcher = RayLauncher(fz.store.path, n, address=args.ray, gpus_per_worker=args.gpus_per_worker,
                                   allow_pickle=args.allow_pickle, threads=threads)
        else:
            launcher = ProcessLauncher(fz.store.path, n, device=args.device, allow_pickle=args.allow_pickle,
                                       threads=threads)
        if monitor is not None:
            monitor.budget = fz.config.budget
        coord = Coordinator(fz, n, launcher, budget=fz.config.budget)
        torch.set_num_threads(1)  # the coordinator mostly waits: the cores are the workers'
        summary = coord.run()
    finally:
        fz.close()
    print(format_summary(summary))
    for name, w in summary["workers"].items():
        print(f"  worker {name}: {w['mutants']} mutants, {w['retained']} found, {w['imported']} imported from "
              f"peers, {w['syncs']} syncs ({w['sync_seconds']:.1f} s, {w['wait_seconds']:.1f} s waiting), "
              f"{w['restarts']} restarts")
    if coord.signal:
        print(f"neurofuzz: stopped by signal {coord.signal} after the workers' checkpoints; continue with "
              f"neurofuzz fuzz --out {args.out} --resume", file=sys.stderr)
        return 128 + coord.signal
    bad = {k: rc for k, rc in coord.exit.items() if rc not in (0, None)}
    for k, rc in bad.items():
        log = Path(fz.store.path) / WORKERS / f"w{k}.log"
        why = _last_line(log)
        print(f"neurofuzz: worker {k} stopped with exit status {rc}" + (f": {why}" if why else "") + f" (log: {log})",
              file=sys.stderr)
    if bad:
        return 2 if 2 in bad.values() else 1
    return 0
