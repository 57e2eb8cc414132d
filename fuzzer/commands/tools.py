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
    model_args(p)
    p.add_argument("--data", help="inputs to measure: .npz (x, optional y), .npy (optional --labels) or image folder "
                                  "(default: digits test split for builtin)")
    p.add_argument("--labels", help=".npy labels for .npy --data (for the accuracy line)")
    p.add_argument("--profile", help="neuron profile from `neurofuzz profile` (default: profile --profile-data)")
    p.add_argument("--profile-data", help="data to profile the neurons on (default: --data itself)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _data(path: str, labels: str | None, bounds, what: str):
    """(x, y or None) of a data file, labels checked as integers."""
    import torch

    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor

    x, y = load_seeds(path, labels)
    x = seeds_to_tensor(x, bounds)
    if len(x) == 0:
        raise UserError(f"{what} {path} is empty; give at least one input")
    if y is not None and (y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu"):
        raise UserError(f"{what} {path}: labels must be one integer per input ({len(x)}), "
                        f"got {y.dtype} {list(y.shape)}")
    return x, None if y is None else torch.from_numpy(y.astype("int64"))


def coverage_run(args: argparse.Namespace) -> int:
    check_batch_size(args.batch_size)
    if is_builtin(args.model) and not (args.data or args.profile or args.profile_data) and not any(
            getattr(args, k) for k in ("weights", "mean", "std", "bounds")):
        from neurofuzz.fuzzer.report import builtin_coverage_report

        report = builtin_coverage_report(batch_size=args.batch_size)
    else:
        from neurofuzz.coverage import NeuronProfile
        from neurofuzz.reports.model_coverage import coverage_report

        target = target_from(args)
        if args.data is None:
            if not is_builtin(args.model):
                raise UserError("--data is required unless --model builtin (the inputs to measure coverage on)")
            from neurofuzz.fuzzer.zoo import load_digits32

            x, y = load_digits32("test")
        else:
            x, y = _data(args.data, args.labels, target.bounds, "--data")
        if args.profile and args.profile_data:
            raise UserError("give --profile (a saved profile) or --profile-data (data to profile on), not both")
        profile = NeuronProfile.load(args.profile) if args.profile else None
        pdata = _data(args.profile_data, None, target.bounds, "--profile-data")[0] if args.profile_data else None
        if profile is None and pdata is None and is_builtin(args.model):
            from neurofuzz.fuzzer.zoo import load_digits32

            pdata = load_digits32("train")[0]  # the built-in model's training data
        report = coverage_report(target, x, y, profile=profile, profile_data=pdata, batch_size=args.batch_size,
                                 model=args.model or "builtin")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_coverage_report(report))
    return 0


def format_coverage_report(report: dict) -> str:
    acc = "no labels" if report.get("accuracy") is None else f"accuracy {report['accuracy']:.4f}"
    lines = [f"model {report['model']} ({acc}), "
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
    model_args(p)
    p.add_argument("--data", help="evaluation data with labels: .npz (x, y), .npy with --labels, or image folder "
                                  "(default: digits test split for builtin)")
    p.add_argument("--labels", help=".npy labels for .npy --data")
    p.add_argument("--train-data", help="labelled data the NAD model is trained on from a fresh model of the factory "
                                        "(required with --data; default for builtin: the digits train split)")
    p.add_argument("--epochs", type=int, help="NAD training epochs (default 40, the digits setting)")
    p.add_argument("--seed", type=int, default=0, help="seed of the NAD training (default 0)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM eps (default 0.3)")
    p.add_argument("--json", action="store_true")


def _normalised(net, mean, std):
    """``net`` behind the user's normalisation, as a trainable module (a Target stays in eval
    mode and cannot be trained): NAD then trains a fresh model on raw inputs."""
    import torch
    from torch import nn

    if not (mean or std):
        return net

    class Normalise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean or [0.0], dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std or [1.0], dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    return nn.Sequential(Normalise(), net)


def _user_tutorial(args: argparse.Namespace, progress):
    """The tutorial experiment on the user's model and data; NAD trains a fresh model of the factory."""
    import torch

    from neurofuzz.defenses.adversarial_training import NAD, NAD_DIGITS
    from neurofuzz.evaluators import tutorial
    from neurofuzz.fuzzer.io import load_model
    from neurofuzz.ground.target import check_labels

    if args.data is None or args.train_data is None:
        raise UserError("evaluate with --model needs --data (labelled evaluation data) and --train-data (labelled "
                        "data to train the NAD model on)")
    target = target_from(args)
    x, y = _data(args.data, args.labels, target.bounds, "--data")
    xt, yt = _data(args.train_data, None, target.bounds, "--train-data")
    if y is None or yt is None:
        raise UserError("evaluate needs labels: give .npz files with x and y (or image folders DIR/<label>/)")
    n = int(target.probe(x[:2]).shape[1])
    check_labels(y, n, what="--data input")
    check_labels(yt, n, what="--train-data input")
    if tuple(xt.shape[1:]) != tuple(x.shape[1:]):
        raise UserError(f"--train-data images are {list(xt.shape[1:])}, --data images {list(x.shape[1:])}; "
                        "give data of one shape")
    spec = args.model or "builtin"
    if not is_builtin(spec) and ":" not in spec:
        raise UserError(f"evaluate trains a fresh copy of the model for NAD: give --model module:factory (with "
                        f"--weights), not the TorchScript file {spec}")
    settings = {**NAD_DIGITS, **({"epochs": args.epochs} if args.epochs else {})}

    def train_nad():
        if is_builtin(spec):
            from neurofuzz.fuzzer.tutorial_job import seeded_lenet5

            fresh = seeded_lenet5(args.seed)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed)  # the fresh model's initial weights, from --seed alone
                fresh = load_model(spec, None)
        net = _normalised(fresh, args.mean, args.std)
        return NAD(net, **settings, seed=args.seed).fit(xt, yt)

    data = f"{args.data} ({len(x)} images, {'x'.join(map(str, x.shape[1:]))}); NAD training data {args.train_data}"
    return tutorial.run_tutorial(target, x, y, train_nad, eps=args.eps, seed=args.seed, settings=settings,
                                 data=data, progress=progress)


def evaluate_run(args: argparse.Namespace) -> int:
    from neurofuzz.evaluators.tutorial import format_tutorial

    if not 0 < args.eps <= 1:
        raise UserError(f"--eps must be in (0, 1], got {args.eps}")
    if args.epochs is not None and not 1 <= args.epochs <= 10000:
        raise UserError(f"--epochs must lie in [1, 10000], got {args.epochs}")
    check_seed(args.seed)
    progress = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    own = not is_builtin(args.model) or any(getattr(args, k) for k in ("data", "train_data", "weights", "mean", "std"))
    if own:
        r = _user_tutorial(args, progress)
    else:
        from neurofuzz.fuzzer.tutorial_job import run_tutorial

        r = run_tutorial(seed=args.seed, eps=args.eps, progress=progress,
                         **({"epochs": args.epochs} if args.epochs else {}))
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
