"""The ``neurofuzz`` command line.

Every error a user can cause ends with one line ``neurofuzz: error: ...`` on stderr and exit
status 2, never a traceback. Run ``neurofuzz COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from neurofuzz.fuzzer import __version__
from neurofuzz.ground.errors import UserError

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register ``add_args`` / ``run`` pairs for a subcommand."""

    def deco(add_args):
        def with_run(run):
            COMMANDS[name] = (help, add_args, run)
            return run

        return with_run

    return deco


# ---------------------------------------------------------------------------- coverage report
def _coverage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command("coverage", "coverage report of the built-in digits model on its test set")(_coverage_args)
def _coverage_run(args: argparse.Namespace) -> int:
    from neurofuzz.fuzzer.report import builtin_coverage_report

    report = builtin_coverage_report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_coverage_report(report))
    return 0


def format_coverage_report(report: dict) -> str:
    lines = [f"model {report['model']} (test accuracy {report['accuracy']:.4f}), "
             f"profiled on {report['profiled_inputs']} inputs, measured on {report['inputs']} inputs"]
    metrics = list(report["coverage"])
    layers = list(next(iter(report["per_layer"].values())))
    w = max(len(n) for n in layers + ["total"]) + 2
    lines.append("layer".ljust(w) + "".join(m.rjust(10) for m in metrics))
    for layer in layers:
        lines.append(layer.ljust(w) + "".join(f"{report['per_layer'][m][layer]:10.4f}" for m in metrics))
    lines.append("total".ljust(w) + "".join(f"{report['coverage'][m]:10.4f}" for m in metrics))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- shared options
def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model",
                   help="'builtin' (LeNet-5 digits), a TorchScript file, module.path:factory or path/to/file.py:factory "
                        "(the working directory is on the import path; default: builtin)")
    g.add_argument("--weights", help="state_dict for a module:factory model (loaded with weights_only=True)")
    g.add_argument("--allow-pickle", action="store_true",
                   help="load --weights with full unpickling (only for files you trust)")
    g.add_argument("--bounds", nargs=2, type=float, metavar=("LO", "HI"),
                   help="valid raw input range (default 0 1; on --resume: the recorded one)")
    g.add_argument("--mean", type=float, nargs="+", help="per-channel normalisation mean applied inside the model")
    g.add_argument("--std", type=float, nargs="+", help="per-channel normalisation std applied inside the model")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")


def _target_from(args: argparse.Namespace, spec: str | None = None, weights: str | None = None):
    from neurofuzz.fuzzer.io import load_model
    from neurofuzz.ground.devices import check_bounds, resolve_device
    from neurofuzz.ground.target import Target

    device = resolve_device(args.device)  # cheap checks first: refuse before loading a model
    bounds = check_bounds(args.bounds if args.bounds is not None else (0.0, 1.0))
    model = load_model(spec or args.model or "builtin", weights if spec else args.weights, allow_pickle=args.allow_pickle)
    return Target(model, bounds=bounds, mean=args.mean, std=args.std, device=device)


def _seeds_from(args: argparse.Namespace, bounds):
    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor

    if args.seeds is None:
        from neurofuzz.fuzzer.zoo import load_digits32

        if not _is_builtin(args.model):
            raise UserError("--seeds is required unless --model builtin")
        return load_digits32("test")
    x, y = load_seeds(args.seeds, args.labels)
    return seeds_to_tensor(x, bounds), y


# ---------------------------------------------------------------------------- demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="neurofuzz-demo", help="parent folder of the demo campaigns (default ./neurofuzz-demo)")
    p.add_argument("--time", type=float, default=30.0, help="seconds to fuzz (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no live status")


@command("demo", "the main job: a short fuzz campaign on the built-in digits model")(_demo_args)
def _demo_run(args: argparse.Namespace) -> int:
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
                       monitor=None if args.quiet else Monitor(interval=5.0), setup_extra={"command": "demo"})
    start = fz.suite.values()
    try:
        summary = fz.run()
    finally:
        fz.close()
    print(format_summary(summary, start))
    return 128 + fz.signal if fz.signal else 0


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
    lines.append(f"  queue {summary['queue_size']} inputs ({summary['retained']} found), failures: {fails} "
                 f"({summary['failures_stored']} stored)")
    lines.append(f"results: {summary['path']}  (neurofuzz status {summary['path']}; neurofuzz export {summary['path']} --out corpus.npz)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- profile
def _profile_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--data", help="profiling data: .npz (x), .npy or image folder (default: digits train split for builtin)")
    p.add_argument("--out", required=True, help="where to write the profile (.pt)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reduction", choices=["mean", "element"], default="mean")
    p.add_argument("--layers", nargs="+", help="fnmatch globs of layer names to record (default: all Conv/Linear)")


@command("profile", "neuron bounds (min/max/mean/std) of a model over training data")(_profile_args)
def _profile_run(args: argparse.Namespace) -> int:
    from neurofuzz.coverage import ActivationRecorder, NeuronProfile
    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor

    _check_batch_size(args.batch_size)
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name for the profile, e.g. {out / 'profile.pt'}")
    if not out.absolute().parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.absolute().parent} does not exist; create it first")
    target = _target_from(args)
    if args.data is None:
        if not _is_builtin(args.model):
            raise UserError("--data is required unless --model builtin")
        from neurofuzz.fuzzer.zoo import load_digits32

        x = load_digits32("train")[0]
    else:
        x = seeds_to_tensor(load_seeds(args.data)[0], target.bounds)
    if len(x) == 0:
        raise UserError(f"the profiling data {args.data} is empty; give at least one input")
    target.probe(x[:2])  # shape, logits [B, n_classes], finite
    rec = ActivationRecorder(target, names=args.layers, reduction=args.reduction)
    prof = NeuronProfile.from_data(target, x, recorder=rec, batch_size=args.batch_size)
    prof.save(args.out)
    print(f"profiled {prof.count} inputs, {prof.n_neurons} neurons in {len(prof.layers)} layers -> {args.out}")
    return 0


# ---------------------------------------------------------------------------- fuzz
def _fuzz_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
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
    p.add_argument("--quiet", action="store_true", help="no status output")


@command("fuzz", "run (or resume) a fuzz campaign")(_fuzz_args)
def _fuzz_run(args: argparse.Namespace) -> int:
    from neurofuzz.coverage import NeuronProfile
    from neurofuzz.fuzzer.campaign import Campaign, resume_options
    from neurofuzz.fuzzer.config import FuzzConfig
    from neurofuzz.fuzzer.monitor import Monitor

    monitor = None if args.quiet else Monitor()
    budget = _budget_from(args)
    if args.resume:
        fixed = [f"--{n}" for n in ("config", "seed", "mutators", "seeds", "labels", "profile")
                 if getattr(args, n) is not None]
        if fixed:
            raise UserError(f"{', '.join(fixed)} cannot change on --resume (the campaign keeps its setup); "
                            "give only budgets, or start a new campaign")
        from neurofuzz.corpus import CampaignStore

        with CampaignStore.open(args.out, readonly=True) as store:
            setup = store.setup
        given = {k: getattr(args, k) for k in ("model", "weights", "mean", "std", "bounds")}
        for k, v in resume_options(setup, given).items():
            setattr(args, k, v)
        target = _target_from(args)
        reference = _reference_from(args)
        fz = Campaign.resume(args.out, target, reference=reference, monitor=monitor, budget=budget)
    else:
        target = _target_from(args)
        reference = _reference_from(args)
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
        x, y = _seeds_from(args, target.bounds)
        profile = NeuronProfile.load(args.profile) if args.profile else None
        profile_data = None
        if profile is None and _is_builtin(args.model):
            from neurofuzz.fuzzer.zoo import load_digits32

            profile_data = load_digits32("train")[0]  # the built-in model's training data
        fz = Campaign.create(args.out, target, x, y, cfg, profile=profile, profile_data=profile_data,
                             force=args.force, reference=reference, monitor=monitor,
                             setup_extra={"command": "fuzz", **_model_record(args), "seeds": args.seeds})
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


def _is_builtin(spec) -> bool:
    return spec in (None, "builtin")


def _model_record(args: argparse.Namespace) -> dict:
    """The model spec as a resume can reload it: file paths made absolute."""
    def absolute(p):
        if p is None or _is_builtin(p):
            return p or "builtin"
        path, sep, factory = p.rpartition(":") if ":" in p else (p, "", "")
        path = path or p
        return (str(Path(path).absolute()) + sep + factory) if Path(path).exists() else p

    return {"model": absolute(args.model), "weights": absolute(args.weights) if args.weights else None}


def _reference_from(args: argparse.Namespace):
    if not args.reference_model:
        return None
    return _target_from(args, args.reference_model, args.reference_weights)


def _budget_from(args: argparse.Namespace):
    """A Budget from --time/--iterations/--mutants/--plateau, or None if none was given. On
    --resume it replaces the recorded budget entirely (whatever kind that was)."""
    from neurofuzz.fuzzer.config import Budget

    given = {f: getattr(args, n) for n, f in (("time", "seconds"), ("iterations", "iterations"),
                                              ("mutants", "mutants"), ("plateau", "plateau_seconds"))
             if getattr(args, n) is not None}
    if not given:
        return None
    try:
        return Budget(**given)
    except UserError as e:
        flag = {"seconds": "--time", "plateau_seconds": "--plateau"}
        msg = str(e)
        for f, opt in flag.items():
            msg = msg.replace(f"budget.{f}", opt)
        raise UserError(msg) from None


# ---------------------------------------------------------------------------- status / export / replay
def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    p.add_argument("--json", action="store_true")


@command("status", "the stats of a running or finished campaign")(_status_args)
def _status_run(args: argparse.Namespace) -> int:
    from neurofuzz.corpus import CampaignStore, campaign_status
    from neurofuzz.fuzzer.stats import CampaignStats

    with CampaignStore.open(args.dir, readonly=True) as store:
        raw = store.read_stats()
        status = campaign_status(store)
        counts = {"queue": store.count("queue"), "failures": store.count("failure")}
    stats = CampaignStats.from_flat(raw)
    stats.status = status  # a killed writer reads "crashed (pid N not running)", not "running"
    if args.json:
        print(json.dumps({"status": status, "stats": stats.to_dict() if raw else {}, "stored": counts}, indent=2))
        return 0
    if not raw:
        print(f"{args.dir}: no stats yet (the campaign has not reported)")
    flat = {k: v for k, v in stats.to_flat().items() if k != "per_mutator"} if raw else {"status": status}
    w = max(len(k) for k in [*flat, "stored", "per mutator"])
    for k, v in flat.items():
        print(f"{k:<{w}} : {v}")
    if stats.per_mutator:
        print(f"{'per mutator':<{w}} : " + ", ".join(f"{n} {m.mutants}/{m.retained}/{m.failures}"
                                                   for n, m in stats.per_mutator.items()) + " (mutants/retained/failing)")
    print(f"{'stored':<{w}} : {counts['queue']} queue, {counts['failures']} failures")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    p.add_argument("--out", required=True, help="an .npz file, or a folder for --format png")
    p.add_argument("--format", choices=["npz", "png"], help="default: from --out's suffix")
    p.add_argument("--which", choices=["queue", "failures", "all"], default="all")
    p.add_argument("--overwrite", action="store_true")


@command("export", "export a campaign's corpus to .npz or a PNG folder with a JSONL manifest")(_export_args)
def _export_run(args: argparse.Namespace) -> int:
    import neurofuzz.corpus as corpus
    from neurofuzz.corpus import CampaignStore

    fmt = args.format or ("npz" if args.out.endswith(".npz") else "png")
    _refuse_inside_campaign(args.out, args.dir)
    export_npz, export_png = corpus.export_npz, corpus.export_png
    with CampaignStore.open(args.dir, readonly=True) as store:
        n = store.count({"queue": "queue", "failures": "failure", "all": None}[args.which])
        if fmt == "npz":
            out = export_npz(store, args.out, which=args.which, overwrite=args.overwrite)
        else:
            out = export_png(store, args.out, which=args.which, overwrite=args.overwrite)
    print(f"exported {n} inputs ({args.which}) to {out}")
    return 0


def _replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    _model_args(p)
    p.add_argument("--which", choices=["queue", "failures", "all"], default="all")
    p.add_argument("--json", action="store_true")


@command("replay", "regression test: run a campaign's corpus through a (new) model")(_replay_args)
def _replay_run(args: argparse.Namespace) -> int:
    from neurofuzz.corpus import CampaignStore, replay

    target = _target_from(args)
    with CampaignStore.open(args.dir, readonly=True) as store:
        _check_replay_target(store, target, args)
        report = replay(store, target, which=args.which)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


# ---------------------------------------------------------------------------- evaluate
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the NAD training (default 0)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM eps (default 0.3)")
    p.add_argument("--json", action="store_true")


@command("evaluate", "MindArmour's tutorial experiment on the built-in model: FGSM attack metrics, "
         "NAD defense and defense metrics")(_evaluate_args)
def _evaluate_run(args: argparse.Namespace) -> int:
    from neurofuzz.evaluators.tutorial import format_tutorial
    from neurofuzz.fuzzer.tutorial_job import run_tutorial

    if not 0 < args.eps <= 1:
        raise UserError(f"--eps must be in (0, 1], got {args.eps}")
    _check_seed(args.seed)
    r = run_tutorial(seed=args.seed, eps=args.eps,
                     progress=None if args.json else (lambda m: print(m, file=sys.stderr, flush=True)))
    print(json.dumps(r, indent=2, default=float) if args.json else format_tutorial(r))
    return 0


# ---------------------------------------------------------------------------- mutators
def _mutators_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one mutator's parameter schema")
    p.add_argument("--json", action="store_true")


@command("mutators", "list the registered mutators and their parameters")(_mutators_args)
def _mutators_run(args: argparse.Namespace) -> int:
    from neurofuzz.mutators import available, describe

    names = [args.name] if args.name else available()
    infos = [describe(n) for n in names]
    if args.json:
        print(json.dumps(infos, indent=2, default=str))
        return 0
    for info in infos:
        params = ", ".join(
            f"{k}={tuple(v['default']) if isinstance(v.get('default'), (list, tuple)) else v.get('default')!r}"
            for k, v in info["params"].items()
        )
        print(f"{info['name']:<22} {info['kind']:<8} {params}")
    return 0


# ---------------------------------------------------------------------------- checks shared by commands
def _check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed <= 2**63 - 1:
        raise UserError(f"{flag} must lie in [0, 2**63-1], got {seed}")


def _check_batch_size(n: int, flag: str = "--batch-size") -> None:
    if not 1 <= n <= 65536:
        raise UserError(f"{flag} must lie in [1, 65536], got {n}")


def _refuse_inside_campaign(out: str, campaign: str) -> None:
    """An export must not write into the campaign it reads (the campaign is left as it was)."""
    o, c = Path(out).absolute().resolve(), Path(campaign).absolute().resolve()
    if o == c or c in o.parents:
        raise UserError(f"--out {out} is inside the campaign {campaign}; export to a path outside it")


def _check_replay_target(store, target, args: argparse.Namespace) -> None:
    """One forward pass on a stored input (shape, logits, finite), and the campaign's labels
    against the model's classes, before anything is replayed."""
    import torch

    from neurofuzz.ground.target import check_labels

    kind = {"queue": "queue", "failures": "failure", "all": None}[args.which]
    entries = store.entries(kind)
    if not entries:
        return
    seeds = store.entries("queue")
    first = seeds[0] if seeds else entries[0]
    # a failure may be a non-finite one: only a queue input must give finite logits
    n = int(target.probe(torch.as_tensor(first.load())[None], finite=first.kind == "queue").shape[1])
    labels = [e.label for e in entries]
    try:
        check_labels(labels, n, what="entry")
    except UserError:
        raise UserError(f"the campaign {args.dir} has labels {min(labels)}..{max(labels)}, but this model has {n} "
                        f"classes (0..{n - 1}); replay it with a model of the same classes") from None


def _usage_error(parser: argparse.ArgumentParser, message: str):
    raise UserError(f"{message} (see {parser.prog} --help)")


def _one_line_usage(parser: argparse.ArgumentParser) -> None:
    """argparse prints a usage block and exits on a bad option: make it the one-line UserError."""
    import functools

    parser.error = functools.partial(_usage_error, parser)  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _one_line_usage(sub)


def _campaign_of(args: argparse.Namespace | None) -> str | None:
    if args is None:
        return None
    if getattr(args, "dir", None):
        return args.dir
    return args.out if getattr(args, "command", None) == "fuzz" else None


def _os_error_line(e: OSError, args: argparse.Namespace | None) -> str | None:
    """One line for an operating-system error a user can fix (disk full, read-only, permissions,
    missing file); None for the others."""
    import contextlib
    import errno

    where = e.filename if e.filename is not None else ""
    what = f"{e.strerror or type(e).__name__}{': ' + str(where) if where else ''}"
    camp = _campaign_of(args)
    writes = getattr(args, "command", None) in ("fuzz", "demo")
    inside = False
    if camp and where:
        with contextlib.suppress(OSError, ValueError):
            c = Path(camp).absolute().resolve()
            w = Path(str(where)).absolute().resolve()
            inside = w == c or c in w.parents
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        if getattr(args, "command", None) == "fuzz":
            again = ("run the same command again to continue" if getattr(args, "resume", False)
                     else "run the same command with --resume to continue")
        else:
            again = "run the same command again"
        return f"the disk is full ({what}); free space and {again}"
    if e.errno == errno.EROFS:
        if inside:
            return f"campaign directory {camp} is read-only ({what}); copy it to a writable disk"
        return f"cannot write {where or 'a file'}: the file system is read-only; choose a path on a writable disk"
    if e.errno in (errno.EACCES, errno.EPERM):
        if inside and writes:
            return f"campaign directory {camp} is not writable ({what}); fix its permissions or copy it somewhere writable"
        return f"permission denied ({what}); check the permissions of that path"
    if e.errno == errno.ENOENT and where:
        return f"{where} not found ({e.strerror})"
    if e.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP) and where:
        return f"cannot use {where}: {e.strerror}"
    if e.errno in (errno.EMFILE, errno.ENFILE):
        return f"too many open files ({what}); raise the limit (ulimit -n) and run the same command again"
    return None


def _show_held_warnings(held: list) -> None:
    seen = set()
    for w in held:
        text = " ".join(str(w.message).split())[:300]
        if text in seen:
            continue
        seen.add(text)
        print(f"neurofuzz: warning: {w.category.__name__}: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="neurofuzz",
        description="Coverage-guided fuzzing of PyTorch models.",
        epilog="Example: neurofuzz demo  (a short fuzz campaign on the built-in digits model)",
    )
    ap.add_argument("--version", action="version", version=f"neurofuzz {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_args, _run) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every error a user can cause is one line ``neurofuzz: error: ...`` on
    stderr and exit status 2; warnings of the libraries are held back and shown (once each) only
    if the command succeeds; Ctrl-C is 130."""
    import sqlite3
    import warnings

    args = None
    held: list = []

    def hold(message, category, filename, lineno, file=None, line=None):
        if len(held) < 100:
            held.append(warnings.WarningMessage(message, category, filename, lineno, file, line))

    def error(message: str, status: int = 2) -> int:
        print(f"neurofuzz: error: {' '.join(message.split())}", file=sys.stderr)
        return status

    with warnings.catch_warnings():
        warnings.showwarning = hold
        try:
            ap = build_parser()
            _one_line_usage(ap)
            args = ap.parse_args(argv)
            if not args.command:
                raise UserError(f"no command given; choose one of: {', '.join(COMMANDS)} (see neurofuzz --help)")
            status = COMMANDS[args.command][2](args)
        except UserError as e:
            return error(str(e))
        except KeyboardInterrupt:
            print("neurofuzz: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `neurofuzz status DIR | head`
            sys.stderr.close()
            return 0
        except sqlite3.DatabaseError as e:
            camp = _campaign_of(args) or "the campaign"
            return error(f"the index of campaign {camp} (index.sqlite) is damaged or not a neurofuzz index ({e}); "
                         "restore it from a backup or start anew with --force")
        except OSError as e:
            line = _os_error_line(e, args)
            if line is None:
                if os.environ.get("NEUROFUZZ_DEBUG"):
                    raise
                return error(f"unexpected {type(e).__name__}: {str(e)[:300]} (anything already saved is kept; "
                             "set NEUROFUZZ_DEBUG=1 for the traceback)", 1)
            return error(line)
        except MemoryError:
            return error("out of memory; use fewer or smaller seeds, or lower seeds_per_batch / mutants_per_seed "
                         "in the config (anything already saved is kept)")
        except Exception as e:  # noqa: BLE001 - never a bare traceback; saved data stays saved
            if os.environ.get("NEUROFUZZ_DEBUG"):
                raise
            return error(f"unexpected {type(e).__name__}: {str(e)[:300]} "
                         "(anything already saved is kept; set NEUROFUZZ_DEBUG=1 for the traceback)", 1)
    _show_held_warnings(held)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
