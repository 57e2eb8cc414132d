"""Campaign commands: ``demo``, ``fuzz`` (new or ``--resume``) and ``status``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from neurofuzz.fuzzer.commands.options import (budget_from, is_builtin, model_args, model_record, reference_from,
                                               seeds_from, target_from)
from neurofuzz.ground.errors import UserError


def format_summary(summary: dict, start: dict | None = None) -> str:
    lines = [f"campaign {summary['path']} stopped ({summary['stop_reason'] or 'done'}) after "
             f"{summary['run_time']:.1f} s: {summary['iterations']} iterations, {summary['mutants']} mutants "
             f"({summary['mutants_per_sec']:.0f}/s), {summary['invalid_mutants']} rejected as invalid"]
    for k, v in summary.items():
        if k.startswith("cov_"):
            before = f"{start[k[4:]]:.4f} -> " if start and k[4:] in start else ""
            lines.append(f"  {k[4:]:<6} {before}{v:.4f}")
    fails = ", ".join(f"{k[9:]} {v}" for k, v in summary.items()
                      if k.startswith("failures_") and k not in ("failures_total", "failures_stored"))
    seeds = summary.get("seed_failures", 0)
    lines.append(f"  queue {summary['queue_size']} inputs ({summary['retained']} found), failing mutants: {fails} "
                 f"({summary['failures_stored']} failures stored" +
                 (f", {seeds} of them seeds the model got wrong before any mutation)" if seeds else ")"))
    if "failing_seeds" in summary:
        first = summary.get("time_to_first_failure", -1.0)
        lines.append(f"  failures reveal: {summary['failing_seeds']} seeds broken, {summary['failing_pairs']} distinct "
                     f"(seed, predicted class), {summary['confusions']} class confusions; first failure "
                     + (f"at {first:.1f} s" if first >= 0 else "not yet"))
    lines.append(f"results: {summary['path']}  (neurofuzz status {summary['path']}; neurofuzz export {summary['path']} --out corpus.npz)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- demo
def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="neurofuzz-demo", help="parent folder of the demo campaigns (default ./neurofuzz-demo)")
    p.add_argument("--time", type=float, default=30.0, help="seconds to fuzz (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no live status")


def demo_run(args: argparse.Namespace) -> int:
    import time

    from neurofuzz.fuzzer.campaign import Campaign
    from neurofuzz.fuzzer.config import Budget, FuzzConfig
    from neurofuzz.fuzzer.monitor import Monitor
    from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

    if not 0 < args.time < float("inf"):
        raise UserError(f"--time must be a number of seconds > 0, got {args.time}")
    out = Path(args.out) / time.strftime("run-%Y%m%d-%H%M%S")
    target = builtin_target()
    x, y = load_digits32("test")
    x_train, _ = load_digits32("train")
    cfg = FuzzConfig(seed=args.seed, budget=Budget(seconds=args.time))
    print(f"neurofuzz demo: LeNet-5 on digits, {len(x)} seeds, {len(cfg.mutators)} natural mutators, "
          f"{args.time:g} s -> {out}", flush=True)
    fz = Campaign.create(out, target, x, y, cfg, profile_data=x_train,
                       monitor=None if args.quiet else Monitor(interval=5.0, budget=cfg.budget),
                       setup_extra={"command": "demo"})
    start = fz.suite.values()
    try:
        summary = fz.run()
    finally:
        fz.close()
    print(format_summary(summary, start))
    from neurofuzz.fuzzer.commands.report import demo_report

    print(demo_report(out))
    return 128 + fz.signal if fz.signal else 0


# ---------------------------------------------------------------------------- fuzz
def fuzz_args(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--seeds", help=".npz (x, y), .npy (with --labels) or image folder DIR/<label>/*.png "
                                   "(default: digits test split for builtin)")
    p.add_argument("--labels", help=".npy labels for .npy seeds")
    p.add_argument("--profile", help="neuron profile from `neurofuzz profile` (default: the training split for "
                                     "the builtin model, else the seeds themselves)")
    p.add_argument("--out", required=True, help="campaign directory")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the campaign in --out")
    mode.add_argument("--force", action="store_true", help="delete the campaign in --out and start anew")
    p.add_argument("--config", help="TOML campaign config (mutators, metrics, scheduler, oracles, budget)")
    p.add_argument("--seed", type=int, help="RNG seed (overrides the config)")
    p.add_argument("--time", type=float, help="budget in seconds")
    p.add_argument("--iterations", type=int, help="budget in iterations")
    p.add_argument("--mutants", type=int, help="budget in mutants")
    p.add_argument("--plateau", type=float, help="stop after this many seconds without a retained input")
    p.add_argument("--mutators", help="comma-separated mutator names (default parameters; overrides the config)")
    p.add_argument("--reference-model", help="second model for the disagreement oracle (same forms as --model)")
    p.add_argument("--reference-weights", help="state_dict of the reference model")
    p.add_argument("--reference", metavar="TWIN",
                   help="a reference built from the fuzzed model itself for the disagreement oracle: fp16, bf16, "
                        "int8 (dynamic quantisation of the linear layers), onnx (an ONNX export in onnxruntime) or "
                        "fault:SPEC (a faulty copy, e.g. fault:bitflip:rate=0.001,layers=fc*)")
    p.add_argument("--reference-mean", type=float, nargs="+", help="normalisation mean of the reference "
                                                                  "(default: the fuzzed model's)")
    p.add_argument("--reference-std", type=float, nargs="+", help="normalisation std of the reference")
    p.add_argument("--quiet", action="store_true", help="no status output")
    w = p.add_argument_group("parallel workers")
    w.add_argument("--workers", type=int, metavar="N",
                   help="N worker processes fuzz this campaign, sharing their finds every --sync-every iterations "
                        "(a new campaign; --resume resumes all the recorded workers)")
    w.add_argument("--worker", type=int, metavar="K", help="with --resume: resume only worker K, in this process")
    w.add_argument("--sync-every", type=int, default=50, metavar="ITER",
                   help="iterations between two syncs of a worker with its peers (default 50)")
    w.add_argument("--ray", metavar="ADDRESS", help="run the workers as Ray actors: auto (a local Ray for this run) "
                                                    "or a cluster's address (needs pip install 'neurofuzz[ray]')")
    w.add_argument("--threads", type=int, metavar="T",
                   help="torch threads (per worker with --workers; default: torch's choice for one process, the "
                        "cores divided by N for N workers; 1 is often fastest for small models on shared cores)")
    w.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F",
                   help="with --ray: GPUs each worker actor reserves (fractions allowed; default 0)")


def fuzz_run(args: argparse.Namespace) -> int:
    from neurofuzz.fuzzer.monitor import Monitor

    monitor = None if args.quiet else Monitor()
    budget = budget_from(args)
    if args.worker is not None:
        return _one_worker(args, budget)
    if _multi_worker(args):
        from neurofuzz.fuzzer.commands.parallel import run_parallel

        return run_parallel(args, monitor, budget, _resumed if args.resume else _created)
    if args.ray or args.gpus_per_worker:
        raise UserError("--ray and --gpus-per-worker run the workers of a campaign: give --workers N too")
    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise UserError(f"--threads must lie in [1, 1024], got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    fz = _resumed(args, monitor, budget) if args.resume else _created(args, monitor, budget)
    if monitor is not None:
        monitor.budget = fz.config.budget  # this run's budget: the progress bar and its ETA
    try:
        summary = fz.run()
    finally:
        fz.close()
    print(format_summary(summary))
    if fz.signal:
        print(f"neurofuzz: stopped by signal {fz.signal} after a checkpoint; continue with "
              f"neurofuzz fuzz --out {args.out} --resume", file=sys.stderr)
        return 128 + fz.signal
    return 0


def _multi_worker(args: argparse.Namespace) -> bool:
    """Whether this fuzz run is one of several workers (a new --workers campaign or the resume of one)."""
    if args.workers is not None and args.resume:
        raise UserError("--workers cannot change on --resume (the campaign keeps its worker count); leave it out")
    if args.workers is not None:
        return True
    if args.resume:
        from neurofuzz.corpus.layout import read_setup

        try:
            return bool(read_setup(Path(args.out).absolute()).get("workers"))
        except UserError:
            return False  # the resume itself reports what is wrong with the directory
    return False


def _one_worker(args: argparse.Namespace, budget) -> int:
    """``--resume --worker K``: one worker of a multi-worker campaign, in this process."""
    from neurofuzz.fuzzer.commands.workers import run_worker

    if not args.resume:
        raise UserError("--worker K resumes one worker of a --workers campaign: give --resume too")
    rc = run_worker(str(Path(args.out).absolute()), args.worker, budget=budget, device=args.device,
                    allow_pickle=args.allow_pickle)
    print(f"worker {args.worker} of {args.out} stopped (exit {rc}); neurofuzz status {args.out} shows the campaign")
    return rc


def _resumed(args: argparse.Namespace, monitor, budget):
    """The campaign in --out, reopened with its recorded setup (only budgets may change)."""
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.fuzzer.campaign import Campaign, resume_options

    fixed = [f"--{n}" for n in ("config", "seed", "mutators", "seeds", "labels", "profile")
             if getattr(args, n) is not None]
    if fixed:
        raise UserError(f"{', '.join(fixed)} cannot change on --resume (the campaign keeps its setup); "
                        "give only budgets, or start a new campaign")
    with CampaignStore.open(args.out, readonly=True) as store:
        setup = store.setup
    given = {k: getattr(args, k, None) for k in ("model", "weights", "key_file", "mean", "std", "bounds")}
    for k, v in resume_options(setup, given).items():
        setattr(args, k, v)
    target = target_from(args)
    reference = _reference(args, target, setup.get("input_shape"), recorded=setup.get("reference_twin"))
    return Campaign.resume(args.out, target, reference=reference, monitor=monitor, budget=budget)


def _created(args: argparse.Namespace, monitor, budget, workers: dict | None = None):
    """A new campaign in --out from the config file and the options that override it."""
    from neurofuzz.coverage import NeuronProfile
    from neurofuzz.fuzzer.campaign import Campaign
    from neurofuzz.fuzzer.config import FuzzConfig

    target = target_from(args)
    x, y = seeds_from(args, target.bounds)
    reference = _reference(args, target, list(x.shape[1:]))
    cfg = FuzzConfig.from_toml(args.config) if args.config else FuzzConfig()
    overrides: dict = {}
    if budget is not None:
        overrides["budget"] = budget
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.mutators:
        overrides["mutators"] = [{"name": n.strip()} for n in args.mutators.split(",") if n.strip()]
    if reference is not None and "disagreement" not in cfg.oracle_names():
        overrides["oracles"] = [*cfg.oracles, {"name": "disagreement"}]
    cfg = dataclasses.replace(cfg, **overrides) if overrides else cfg
    if workers is not None:
        from neurofuzz.fuzzer.workers import check_workers

        check_workers(workers["count"], cfg)
    profile = NeuronProfile.load(args.profile) if args.profile else None
    profile_data = None
    if profile is None and is_builtin(args.model):
        from neurofuzz.fuzzer.zoo import load_digits32

        profile_data = load_digits32("train")[0]  # the built-in model's training data
    return Campaign.create(args.out, target, x, y, cfg, profile=profile, profile_data=profile_data,
                           force=args.force, reference=reference, monitor=monitor,
                           setup_extra={"command": "fuzz", **model_record(args), "seeds": args.seeds,
                                        "reference_twin": _twin_record(args),
                                        **({"workers": workers} if workers is not None else {})})


def _twin_record(args: argparse.Namespace) -> dict | None:
    """What a resume needs to rebuild a --reference twin (None without one)."""
    if not args.reference:
        return None
    return {"name": args.reference, "mean": args.reference_mean, "std": args.reference_std}


def _reference(args: argparse.Namespace, target, input_shape, recorded: dict | None = None):
    """The disagreement oracle's reference: a --reference twin of ``target`` (on --resume: the
    recorded one, which a different --reference cannot replace), a --reference-model, or None."""
    from neurofuzz.ground.target import Target

    if args.reference and args.reference_model:
        raise UserError("give --reference (a twin of the fuzzed model) or --reference-model (another model), not both")
    if (args.reference_mean or args.reference_std) and not (args.reference or args.reference_model or recorded):
        raise UserError("--reference-mean/--reference-std apply to a --reference or --reference-model; give one")
    if recorded is not None:
        if args.reference_model:
            raise UserError(f"campaign {args.out} was run with the reference twin {recorded['name']!r}; resume it "
                            "without --reference-model")
        given = None
        if args.reference or args.reference_mean or args.reference_std:
            given = {"name": args.reference or recorded["name"], "mean": args.reference_mean, "std": args.reference_std}
        if given is not None and given != recorded:
            raise UserError(f"campaign {args.out} was run with --reference {recorded['name']} (mean "
                            f"{recorded['mean']}, std {recorded['std']}), not {given['name']} (mean {given['mean']}, "
                            f"std {given['std']}); leave --reference out to resume with the recorded twin")
        args.reference, args.reference_mean, args.reference_std = recorded["name"], recorded["mean"], recorded["std"]
    elif args.resume and args.reference:
        raise UserError(f"campaign {args.out} was run without a reference twin; --reference cannot be added on "
                        "--resume (start a new campaign)")
    if args.reference:
        from neurofuzz.fuzzer.twins import twin_from_spec

        return twin_from_spec(args.reference, target, input_shape=input_shape, mean=args.reference_mean,
                              std=args.reference_std)
    ref = reference_from(args)
    if ref is not None and (args.reference_mean or args.reference_std):
        ref = Target(ref.module, bounds=ref.bounds, mean=args.reference_mean or args.mean,
                     std=args.reference_std or args.std, device=ref.device)
    return ref


# ---------------------------------------------------------------------------- status
def status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    p.add_argument("--json", action="store_true")


def status_run(args: argparse.Namespace) -> int:
    from neurofuzz.corpus import CampaignStore, campaign_status
    from neurofuzz.fuzzer.stats import CampaignStats

    with CampaignStore.open(args.dir, readonly=True) as store:
        raw = store.read_stats()
        status = campaign_status(store)
        counts = {"queue": store.count("queue"), "failures": store.count("failure")}
        workers = store.get_meta("workers", None) if store.setup.get("workers") else None
    stats = CampaignStats.from_flat(raw)
    stats.status = status  # a killed writer reads "crashed (pid N not running)", not "running"
    if args.json:
        print(json.dumps({"status": status, "stats": stats.to_dict() if raw else {}, "stored": counts,
                          **({"workers": workers} if workers is not None else {})}, indent=2))
        return 0
    if not raw:
        print(f"{args.dir}: no stats yet (the campaign has not reported)")
    flat = {k: v for k, v in stats.to_flat().items() if k != "per_mutator"} if raw else {"status": status}
    w = max(len(k) for k in [*flat, "stored", "per mutator"])
    for k, v in flat.items():
        print(f"{k:<{w}} : {v}")
    if stats.per_mutator:
        print(f"{'per mutator':<{w}} : " + ", ".join(f"{n} {m.mutants}/{m.retained}/{m.failures}/{m.new_pairs}/{m.spent}"
                                                   for n, m in stats.per_mutator.items())
              + " (mutants/retained/failing/new failing pairs/cost in forward passes)")
    print(f"{'stored':<{w}} : {counts['queue']} queue, {counts['failures']} failures")
    for name, v in (workers or {}).items():
        print(f"{'worker ' + name:<{w}} : {v['mutants']} mutants, {v['retained']} found, {v['imported']} imported, "
              f"{v['syncs']} syncs, {v['restarts']} restarts (pid {v['pid']})")
    return 0
