"""Model tools: ``coverage`` report, neuron ``profile``, the ``evaluate`` tutorial, ``mutators`` list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neurofuzz.fuzzer.commands.options import check_batch_size, check_seed, is_builtin, model_args, target_from
from neurofuzz.ground.errors import UserError


# ---------------------------------------------------------------------------- coverage report
def coverage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def coverage_run(args: argparse.Namespace) -> int:
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


# ---------------------------------------------------------------------------- profile
def profile_args(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--data", help="profiling data: .npz (x), .npy or image folder (default: digits train split for builtin)")
    p.add_argument("--out", required=True, help="where to write the profile (.pt)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reduction", choices=["mean", "element"], default="mean")
    p.add_argument("--layers", nargs="+", help="fnmatch globs of layer names to record (default: all Conv/Linear)")


def profile_run(args: argparse.Namespace) -> int:
    from neurofuzz.coverage import ActivationRecorder, NeuronProfile
    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor

    check_batch_size(args.batch_size)
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name for the profile, e.g. {out / 'profile.pt'}")
    if not out.absolute().parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.absolute().parent} does not exist; create it first")
    target = target_from(args)
    if args.data is None:
        if not is_builtin(args.model):
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


# ---------------------------------------------------------------------------- evaluate
def evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the NAD training (default 0)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM eps (default 0.3)")
    p.add_argument("--json", action="store_true")


def evaluate_run(args: argparse.Namespace) -> int:
    from neurofuzz.evaluators.tutorial import format_tutorial
    from neurofuzz.fuzzer.tutorial_job import run_tutorial

    if not 0 < args.eps <= 1:
        raise UserError(f"--eps must be in (0, 1], got {args.eps}")
    check_seed(args.seed)
    r = run_tutorial(seed=args.seed, eps=args.eps,
                     progress=None if args.json else (lambda m: print(m, file=sys.stderr, flush=True)))
    print(json.dumps(r, indent=2, default=float) if args.json else format_tutorial(r))
    return 0


# ---------------------------------------------------------------------------- mutators
def mutators_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one mutator's parameter schema")
    p.add_argument("--json", action="store_true")


def mutators_run(args: argparse.Namespace) -> int:
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
