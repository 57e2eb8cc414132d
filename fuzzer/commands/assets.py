"""Model asset commands: ``faults`` (sensitivity map), ``encrypt`` / ``decrypt`` (checkpoints),
``obfuscate`` (function-preserving permutation and rescaling of a model's weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neurofuzz.fuzzer.commands.options import RefuseKeyArgument, check_seed, is_builtin, model_args, target_from
from neurofuzz.ground.errors import UserError

FAULT_KINDS = ("bitflip", "zero", "random", "nan", "sign", "fp16", "bf16", "int8")  # reliability.faults.KINDS, without importing torch


def _out_path(out: str, *, force: bool, source: str | None = None) -> Path:
    p = Path(out)
    if p.is_dir():
        raise UserError(f"--out {p} is a directory; give a file name")
    if not p.absolute().parent.is_dir():
        raise UserError(f"--out {p}: the folder {p.absolute().parent} does not exist; create it first")
    if source is not None and p.exists() and p.resolve() == Path(source).resolve():
        raise UserError(f"--out {p} is the input file; write to another file")
    if p.exists() and not force:
        raise UserError(f"--out {p} already exists; pass --force to replace it")
    return p


def _save_plain(state_dict, path: Path) -> None:
    import os
    import tempfile

    import torch

    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state_dict, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------- faults
def faults_args(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--data", help=".npz with x and y (or .npy / image folder; default: digits test split for builtin)")
    p.add_argument("--labels", help="labels .npy for .npy --data")
    p.add_argument("--kinds", nargs="+", metavar="KIND", help=f"fault kinds (default all: {' '.join(FAULT_KINDS)})")
    p.add_argument("--layers", nargs="+", default=["*"], metavar="GLOB",
                   help="fnmatch globs of layers (modules with weights) to fault one at a time (default all)")
    p.add_argument("--where", choices=["weights", "activations", "both"], default="both")
    p.add_argument("--rate", type=float, default=0.05, help="share of each tensor's elements faulted, in [0, 1] (default 0.05)")
    p.add_argument("--bits", default="0-31", help="bit range of bitflip faults, LO-HI of a float32 (default 0-31)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def faults_run(args: argparse.Namespace) -> int:
    from neurofuzz.fuzzer.io import load_seeds, seeds_to_tensor
    from neurofuzz.reliability.faults import check_fault, fault_layers
    from neurofuzz.reliability.sensitivity import format_sensitivity, sensitivity_report

    check_seed(args.seed)
    lo, sep, hi = args.bits.partition("-")
    if not (lo.strip().isdigit() and (not sep or hi.strip().isdigit())):
        raise UserError(f"--bits {args.bits!r}: give a bit range LO-HI (e.g. 23-30 for the exponent) or one bit")
    bits = (int(lo), int(hi if sep else lo))
    where = ["weights", "activations"] if args.where == "both" else [args.where]
    args.kinds = args.kinds or list(FAULT_KINDS)
    for kind in args.kinds:
        check_fault(kind, args.rate, bits, where[0])
    target = target_from(args)
    fault_layers(target, args.layers)  # an unknown layer is refused before any data is read
    if args.data is None:
        if not is_builtin(args.model):
            raise UserError("--data is required unless --model builtin (an .npz with x and y)")
        from neurofuzz.fuzzer.zoo import load_digits32

        x, y = load_digits32("test")
    else:
        import torch

        xa, ya = load_seeds(args.data, args.labels)
        if ya is None:
            raise UserError(f"--data {args.data} has no labels; save it with np.savez(path, x=..., y=...) or pass --labels")
        x, y = seeds_to_tensor(xa, target.bounds), torch.as_tensor(ya).long()
    target.probe(x[:2])
    report = sensitivity_report(target, x.to(target.device), y, kinds=args.kinds, layers=args.layers, rate=args.rate,
                                seed=args.seed, where=where, bits=bits)
    print(json.dumps(report, indent=2) if args.json else format_sensitivity(report))
    return 0


# ---------------------------------------------------------------------------- encrypt / decrypt
def encrypt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", nargs="?", help="the state_dict file to encrypt (omit with --new-key to only create a key)")
    p.add_argument("--out", help="the encrypted file (default: WEIGHTS.enc)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key-file", metavar="KEYFILE", help="an existing key file (else $NEUROFUZZ_KEY_FILE or $NEUROFUZZ_KEY)")
    keys.add_argument("--new-key", metavar="KEYFILE", help="create a new random key in KEYFILE (permissions 0600) and use it")
    p.add_argument("--key", action=RefuseKeyArgument)
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def encrypt_run(args: argparse.Namespace) -> int:
    from neurofuzz.fuzzer.io import load_state_dict
    from neurofuzz.security.encryption import is_encrypted, key_from, new_key_file, save_encrypted

    if args.weights is None and args.new_key is None:
        raise UserError("give the weights file to encrypt (or only --new-key KEYFILE to create a key)")
    if args.weights is not None:
        if is_encrypted(args.weights):
            raise UserError(f"{args.weights} is already encrypted")
        out = _out_path(args.out or f"{args.weights}.enc", force=args.force, source=args.weights)
        state = load_state_dict(args.weights)
    if args.new_key is not None:
        key = new_key_file(args.new_key)
        print(f"created key file {args.new_key} (32 random bytes, permissions 0600); keep it apart from the weights")
    else:
        key = key_from(args.key_file)
    if args.weights is not None:
        save_encrypted(state, out, key=key)
        print(f"encrypted {len(state)} tensors of {args.weights} -> {out} (AES-256-GCM)")
    return 0


def decrypt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("encrypted", help="a file written by `neurofuzz encrypt`")
    p.add_argument("--out", required=True, help="where to write the plain state_dict")
    p.add_argument("--key-file", metavar="KEYFILE", help="the key file (else $NEUROFUZZ_KEY_FILE or $NEUROFUZZ_KEY)")
    p.add_argument("--key", action=RefuseKeyArgument)
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def decrypt_run(args: argparse.Namespace) -> int:
    from neurofuzz.security.encryption import key_from, load_encrypted

    if not Path(args.encrypted).is_file():
        raise UserError(f"encrypted weights file {args.encrypted} not found")
    out = _out_path(args.out, force=args.force, source=args.encrypted)
    state = load_encrypted(args.encrypted, key=key_from(args.key_file))
    _save_plain(state, out)
    print(f"decrypted {len(state)} tensors of {args.encrypted} -> {out}")
    return 0


# ---------------------------------------------------------------------------- obfuscate
def obfuscate_args(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--out", required=True, help="where to write the obfuscated state_dict")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations and scales")
    p.add_argument("--real-scales", action="store_true",
                   help="real-valued scales instead of powers of two (changes every mantissa too; ~1e-6 relative error)")
    p.add_argument("--input-shape", type=int, nargs=3, default=[1, 32, 32], metavar=("C", "H", "W"),
                   help="input shape for the equality check on random inputs (default 1 32 32)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def obfuscate_run(args: argparse.Namespace) -> int:
    import torch

    from neurofuzz.security.obfuscation import find_links, obfuscate

    check_seed(args.seed)
    if min(args.input_shape) < 1:
        raise UserError(f"--input-shape must be positive, got {args.input_shape}")
    out = _out_path(args.out, force=args.force)
    target = target_from(args)
    obf = obfuscate(target, seed=args.seed, exact_scales=not args.real_scales)
    lo, hi = target.bounds
    x = lo + (hi - lo) * torch.rand(64, *args.input_shape, generator=torch.Generator().manual_seed(args.seed))
    target.probe(x[:2])
    with torch.no_grad():
        diff = float((obf(x.to(target.device)) - target(x.to(target.device))).abs().max())
    before, after = target.module.state_dict(), obf.module.state_dict()
    changed = sum(not torch.equal(before[k], after[k]) for k in before)
    _save_plain({k: v.detach().cpu() for k, v in after.items()}, out)
    links = find_links(target.module)
    print(f"obfuscated {len(links)} links ({', '.join(str(link) for link in links)})")
    print(f"{changed} of {len(before)} tensors changed; max |logit difference| on 64 random inputs {diff:.2e}; -> {out}")
    if is_builtin(args.model):
        print(f"load it with --model neurofuzz.fuzzer.zoo:LeNet5 --weights {out}")
    return 0
