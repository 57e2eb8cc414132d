"""Option groups and argument checks shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurofuzz.ground.errors import UserError


class RefuseKeyArgument(argparse.Action):
    """A hidden ``--key`` option that refuses any value, without echoing it (keys come from files)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        raise UserError("a key is never taken from the command line (shell history, process list): put it in a "
                        "file (0600) and pass --key-file FILE, or set NEUROFUZZ_KEY_FILE / NEUROFUZZ_KEY")


def model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model",
                   help="'builtin' (LeNet-5 digits), a TorchScript file, an .onnx file, module.path:factory or "
                        "path/to/file.py:factory (the working directory is on the import path; default: builtin)")
    g.add_argument("--weights", help="state_dict for a module:factory model (loaded with weights_only=True)")
    g.add_argument("--key-file", metavar="KEYFILE",
                   help="key of encrypted --weights (else $NEUROFUZZ_KEY_FILE or $NEUROFUZZ_KEY; never the key itself)")
    g.add_argument("--key", action=RefuseKeyArgument)
    g.add_argument("--allow-pickle", action="store_true",
                   help="load --weights with full unpickling (only for files you trust)")
    g.add_argument("--bounds", nargs=2, type=float, metavar=("LO", "HI"),
                   help="valid raw input range (default 0 1; on --resume: the recorded one)")
    g.add_argument("--mean", type=float, nargs="+", help="per-channel normalisation mean applied inside the model")
    g.add_argument("--std", type=float, nargs="+", help="per-channel normalisation std applied inside the model")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (the first accelerator there is, else cpu; default cpu); "
                   "with --workers, cuda and auto spread the workers over the GPUs")


def target_from(args: argparse.Namespace, spec: str | None = None, weights: str | None = None):
    from neurofuzz.fuzzer.io import load_model
    from neurofuzz.ground.devices import check_bounds, resolve_device
    from neurofuzz.ground.target import Target

    device = resolve_device(args.device)  # cheap checks first: refuse before loading a model
    bounds = check_bounds(args.bounds if args.bounds is not None else (0.0, 1.0))
    model = load_model(spec or args.model or "builtin", weights if spec else args.weights, allow_pickle=args.allow_pickle,
                       key_file=getattr(args, "key_file", None))
    return Target(model, bounds=bounds, mean=args.mean, std=args.std, device=device)


def reference_from(args: argparse.Namespace):
    if not args.reference_model:
        return None
    return target_from(args, args.reference_model, args.reference_weights)


def seeds_from(args: argparse.Namespace, bounds):
    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor

    if args.seeds is None:
        from neurofuzz.fuzzer.zoo import load_digits32

        if not is_builtin(args.model):
            raise UserError("--seeds is required unless --model builtin")
        return load_digits32("test")
    x, y = load_seeds(args.seeds, args.labels)
    return seeds_to_tensor(x, bounds), y


def budget_from(args: argparse.Namespace):
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


def is_builtin(spec) -> bool:
    return spec in (None, "builtin")


def model_record(args: argparse.Namespace) -> dict:
    """The model spec as a resume can reload it: file paths made absolute."""
    def absolute(p):
        if p is None or is_builtin(p):
            return p or "builtin"
        path, sep, factory = p.rpartition(":") if ":" in p else (p, "", "")
        path = path or p
        return (str(Path(path).absolute()) + sep + factory) if Path(path).exists() else p

    record = {"model": absolute(args.model), "weights": absolute(args.weights) if args.weights else None}
    if getattr(args, "key_file", None):  # where the key of encrypted weights is (never the key itself)
        record["key_file"] = str(Path(args.key_file).absolute())
    return record


def check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed <= 2**63 - 1:
        raise UserError(f"{flag} must lie in [0, 2**63-1], got {seed}")


def check_batch_size(n: int, flag: str = "--batch-size") -> None:
    if not 1 <= n <= 65536:
        raise UserError(f"{flag} must lie in [1, 65536], got {n}")
