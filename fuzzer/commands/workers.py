"""``neurofuzz fuzz --workers N``: worker processes on this machine, or Ray actors (``--ray``).

The coordinator (:class:`neurofuzz.fuzzer.workers.Coordinator`) runs in the ``fuzz`` process;
each worker is ``python -m neurofuzz.fuzzer.commands.workers CAMP K ...`` (a process in its own
session, so a Ctrl-C reaches the coordinator, which asks the workers to checkpoint and stop) or
one Ray actor running the same :func:`run_worker`. A worker rebuilds the model from the
campaign's record, exactly as ``--resume`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from neurofuzz.corpus.layout import WORKERS
from neurofuzz.fuzzer.config import Budget
from neurofuzz.ground.errors import UserError

STOP_FILE = "STOP"  # in CAMP/workers/: asks every worker to checkpoint and stop (the Ray backend's signal)


def run_worker(campaign: str, k: int, *, budget: Budget | None, device: str = "cpu", allow_pickle: bool = False,
               parent_pid: int | None = None, threads: int | None = None) -> int:
    """Run worker ``k`` of ``campaign`` to the end of ``budget``; the exit status (0, or 128 + signal)."""
    import torch

    from neurofuzz.fuzzer.campaign import resume_options
    from neurofuzz.fuzzer.commands.options import target_from
    from neurofuzz.fuzzer.workers import open_worker

    if threads:
        torch.set_num_threads(int(threads))
    from neurofuzz.corpus.layout import read_setup

    setup = read_setup(Path(campaign).absolute())
    keys = ("model", "weights", "key_file", "mean", "std", "bounds")
    args = argparse.Namespace(**resume_options(setup, dict.fromkeys(keys)), device=device, allow_pickle=allow_pickle)
    target = target_from(args)
    reference = None
    twin = setup.get("reference_twin")
    if twin:
        from neurofuzz.fuzzer.twins import twin_from_spec

        reference = twin_from_spec(twin["name"], target, input_shape=setup.get("input_shape"), mean=twin["mean"],
                                   std=twin["std"])
    fz = open_worker(campaign, k, target, budget=budget, parent_pid=parent_pid, resources={"reference": reference})
    stop = Path(campaign) / WORKERS / STOP_FILE
    fz.sync.stop_file = stop
    try:
        fz.run()
    finally:
        fz.close()
    return 128 + fz.signal if fz.signal else 0


def _budget_json(b: Budget) -> str:
    return json.dumps(dataclasses.asdict(b))


def require_ray() -> Any:
    """The ``ray`` module, or a one-line ``UserError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray, which is not installed: pip install 'neurofuzz[ray]' "
                        "(or run without --ray: worker processes on this machine)") from None
    return ray


class ProcessLauncher:
    """Workers as child processes of this one (logs in ``CAMP/workers/wK.log``)."""

    restarts_itself = False

    def __init__(self, campaign: Path, n: int, *, device: str, allow_pickle: bool, threads: int) -> None:
        import torch

        self.campaign, self.n, self.allow_pickle, self.threads = Path(campaign), n, allow_pickle, threads
        gpus = torch.cuda.device_count() if device.lower() in ("cuda", "auto") else 0
        from neurofuzz.fuzzer.workers import worker_device

        self.devices = {k: worker_device(device, k, gpus=gpus) for k in range(1, n + 1)}
        self.procs: dict[int, subprocess.Popen] = {}
        (self.campaign / WORKERS).mkdir(exist_ok=True)
        (self.campaign / WORKERS / STOP_FILE).unlink(missing_ok=True)

    def start(self, k: int, budget: Budget) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        cmd = [sys.executable, "-m", "neurofuzz.fuzzer.commands.workers", str(self.campaign), str(k),
               "--budget", _budget_json(budget), "--parent", str(os.getpid()), "--threads", str(self.threads),
               "--device", self.devices[k]] + (["--allow-pickle"] if self.allow_pickle else [])
        log = open(self.campaign / WORKERS / f"w{k}.log", "ab")
        try:
            self.procs[k] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            log.close()

    def poll(self) -> dict[int, int | None]:
        out = {}
        for k, p in self.procs.items():
            rc = p.poll()
            out[k] = None if rc is None else (128 - rc if rc < 0 else rc)  # killed by signal s: 128 + s
        return out

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def close(self) -> None:
        for p in self.procs.values():
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class RayLauncher:
    """Workers as Ray actors (``--ray auto``: a local Ray for the run; ``--ray ADDRESS``: a
    cluster). Ray restarts a dead actor (``max_restarts``) and retries its run, which resumes the
    worker's shard. The campaign directory must be on a file system every node sees."""

    restarts_itself = True

    def __init__(self, campaign: Path, n: int, *, address: str, gpus_per_worker: float, allow_pickle: bool,
                 threads: int, max_restarts: int = 3) -> None:
        ray = require_ray()
        self.ray, self.campaign, self.threads = ray, Path(campaign), threads
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == "auto" else address, include_dashboard=False, log_to_driver=False,
                         num_cpus=max(n, os.cpu_count() or 1) if address == "auto" else None)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserError(f"--ray {address}: cannot start or reach Ray ({str(e).splitlines()[0]}); "
                                "give a running cluster's address or --ray auto") from None
        self.actor = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=max_restarts,
                                max_task_retries=max_restarts)(_RayWorker)
        self.allow_pickle = allow_pickle
        self.refs: dict[int, Any] = {}
        self.actors: dict[int, Any] = {}
        (self.campaign / WORKERS).mkdir(exist_ok=True)
        (self.campaign / WORKERS / STOP_FILE).unlink(missing_ok=True)

    def start(self, k: int, budget: Budget) -> None:
        a = self.actors[k] = self.actor.remote()
        self.refs[k] = a.run.remote(str(self.campaign), k, _budget_json(budget), self.allow_pickle, self.threads)

    def poll(self) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for k, ref in self.refs.items():
            ready, _ = self.ray.wait([ref], timeout=0)
            if not ready:
                out[k] = None
                continue
            try:
                out[k] = int(self.ray.get(ref))
            except Exception:  # the actor died past its restarts
                out[k] = 1
        return out

    def stop(self) -> None:
        (self.campaign / WORKERS / STOP_FILE).touch()

    def close(self) -> None:
        deadline = time.monotonic() + 120
        while any(v is None for v in self.poll().values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.ray.shutdown()


class _RayWorker:
    def run(self, campaign: str, k: int, budget: str, allow_pickle: bool, threads: int) -> int:
        import ray

        import contextlib

        device = "cuda" if ray.get_gpu_ids() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's share
        with open(Path(campaign) / WORKERS / f"w{k}.log", "a") as log, contextlib.redirect_stderr(log), \
                contextlib.redirect_stdout(log):
            try:
                return run_worker(campaign, k, budget=Budget(**json.loads(budget)), device=device,
                                  allow_pickle=allow_pickle, threads=threads)
            except UserError as e:
                print(f"neurofuzz: error: worker {k}: {e}", file=sys.stderr)
                return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="neurofuzz-worker", description="one worker of a --workers campaign")
    p.add_argument("campaign")
    p.add_argument("k", type=int)
    p.add_argument("--budget", required=True)
    p.add_argument("--parent", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--allow-pickle", action="store_true")
    a = p.parse_args(argv)
    try:
        return run_worker(a.campaign, a.k, budget=Budget(**json.loads(a.budget)), device=a.device,
                          allow_pickle=a.allow_pickle, parent_pid=a.parent, threads=a.threads)
    except UserError as e:
        print(f"neurofuzz: error: worker {a.k}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
