"""The ``neurofuzz`` command line.

Every error a user can cause ends with one line ``neurofuzz: error: ...`` on stderr and exit
status 2, never a traceback. Run ``neurofuzz COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from neurofuzz.fuzzer import __version__
from neurofuzz.fuzzer.errors import UserError

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
    g.add_argument("--model", default="builtin",
                   help="'builtin' (LeNet-5 digits), a TorchScript file, or module.path:factory (default: builtin)")
    g.add_argument("--weights", help="state_dict for a module:factory model (loaded with weights_only=True)")
    g.add_argument("--allow-pickle", action="store_true",
                   help="load --weights with full unpickling (only for files you trust)")
    g.add_argument("--bounds", nargs=2, type=float, default=(0.0, 1.0), metavar=("LO", "HI"),
                   help="valid raw input range (default 0 1)")
    g.add_argument("--mean", type=float, nargs="+", help="per-channel normalisation mean applied inside the model")
    g.add_argument("--std", type=float, nargs="+", help="per-channel normalisation std applied inside the model")
    g.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _target_from(args: argparse.Namespace, spec: str | None = None, weights: str | None = None):
    from neurofuzz.fuzzer.io import load_model
    from neurofuzz.fuzzer.target import Target

    model = load_model(spec or args.model, weights if spec else args.weights, allow_pickle=args.allow_pickle)
    return Target(model, bounds=tuple(args.bounds), mean=args.mean, std=args.std, device=args.device)


def _seeds_from(args: argparse.Namespace, bounds):
    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor

    if args.seeds is None:
        from neurofuzz.fuzzer.zoo import load_digits32

        if args.model != "builtin":
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

    from neurofuzz.fuzzer.config import Budget, FuzzConfig
    from neurofuzz.fuzzer.loop import Fuzzer
    from neurofuzz.fuzzer.monitor import Monitor
    from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

    if args.time <= 0:
        raise UserError("--time must be > 0 seconds")
    out = Path(args.out) / time.strftime("run-%Y%m%d-%H%M%S")
    target = builtin_target()
    x, y = load_digits32("test")
    x_train, _ = load_digits32("train")
    cfg = FuzzConfig(seed=args.seed, budget=Budget(seconds=args.time))
    print(f"neurofuzz demo: LeNet-5 on digits, {len(x)} seeds, {len(cfg.mutators)} natural mutators, "
          f"{args.time:g} s -> {out}", flush=True)
    fz = Fuzzer.create(out, target, x, y, cfg, profile_data=x_train,
                       monitor=None if args.quiet else Monitor(interval=5.0), setup_extra={"command": "demo"})
    start = fz.suite.values()
    try:
        summary = fz.run()
    finally:
        fz.close()
    print(format_summary(summary, start))
    return 0


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

    target = _target_from(args)
    if args.data is None:
        if args.model != "builtin":
            raise UserError("--data is required unless --model builtin")
        from neurofuzz.fuzzer.zoo import load_digits32

        x = load_digits32("train")[0]
    else:
        x = seeds_to_tensor(load_seeds(args.data)[0], tuple(args.bounds))
    target.probe(x[:2])
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
    from neurofuzz.fuzzer.config import FuzzConfig
    from neurofuzz.fuzzer.loop import Fuzzer
    from neurofuzz.fuzzer.monitor import Monitor

    target = _target_from(args)
    reference = _target_from(args, args.reference_model, args.reference_weights) if args.reference_model else None
    monitor = None if args.quiet else Monitor()
    if args.resume:
        fixed = [f"--{n}" for n in ("config", "seed", "mutators", "seeds", "labels", "profile")
                 if getattr(args, n) is not None]
        if fixed:
            raise UserError(f"{', '.join(fixed)} cannot change on --resume (the campaign keeps its setup); "
                            "give only budgets, or start a new campaign")
        fz = Fuzzer.resume(args.out, target, reference=reference, monitor=monitor)
        _apply_budget(fz.config, args)
    else:
        cfg = FuzzConfig.from_toml(args.config) if args.config else FuzzConfig()
        _apply_budget(cfg, args)
        if args.seed is not None:
            cfg.seed = args.seed
        if args.mutators:
            cfg.mutators = [{"name": n.strip()} for n in args.mutators.split(",") if n.strip()]
        if reference is not None and "disagreement" not in cfg.oracles:
            cfg.oracles.append("disagreement")
        cfg.validate()
        x, y = _seeds_from(args, tuple(args.bounds))
        profile = NeuronProfile.load(args.profile) if args.profile else None
        profile_data = None
        if profile is None and args.model == "builtin":
            from neurofuzz.fuzzer.zoo import load_digits32

            profile_data = load_digits32("train")[0]  # the built-in model's training data
        fz = Fuzzer.create(args.out, target, x, y, cfg, profile=profile, profile_data=profile_data,
                           force=args.force, reference=reference,
                           monitor=monitor, setup_extra={"command": "fuzz", "model": args.model, "seeds": args.seeds})
    try:
        summary = fz.run()
    finally:
        fz.close()
    print(format_summary(summary))
    return 0


def _apply_budget(cfg, args: argparse.Namespace) -> None:
    for name, field_ in (("time", "seconds"), ("iterations", "iterations"), ("mutants", "mutants"),
                         ("plateau", "plateau_seconds")):
        v = getattr(args, name)
        if v is not None:
            if v < 0:
                raise UserError(f"--{name} must be >= 0")
            setattr(cfg.budget, field_, v)


# ---------------------------------------------------------------------------- status / export / replay
def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    p.add_argument("--json", action="store_true")


@command("status", "the stats of a running or finished campaign")(_status_args)
def _status_run(args: argparse.Namespace) -> int:
    from neurofuzz.corpus import CampaignStore

    with CampaignStore.open(args.dir, readonly=True) as store:
        stats = store.read_stats()
        counts = {"queue": store.count("queue"), "failures": store.count("failure")}
    if args.json:
        print(json.dumps({"stats": stats, "stored": counts}, indent=2))
        return 0
    if not stats:
        print(f"{args.dir}: no stats yet (the campaign has not reported)")
    w = max((len(k) for k in stats), default=0)
    for k, v in stats.items():
        print(f"{k:<{w}} : {v}")
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
    from neurofuzz.corpus import CampaignStore, export_npz, export_png

    fmt = args.format or ("npz" if args.out.endswith(".npz") else "png")
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
    from neurofuzz.evaluators.tutorial import format_tutorial, run_tutorial

    if not 0 < args.eps <= 1:
        raise UserError("--eps must be in (0, 1]")
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
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args)
    except UserError as e:
        print(f"neurofuzz: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neurofuzz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `neurofuzz status DIR | head`
        sys.stderr.close()
        return 0
    except Exception as e:  # noqa: BLE001 - never a bare traceback; saved data stays saved
        if os.environ.get("NEUROFUZZ_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"neurofuzz: error: unexpected {type(e).__name__}: {msg[:300]} "
              "(anything already saved is kept; set NEUROFUZZ_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
