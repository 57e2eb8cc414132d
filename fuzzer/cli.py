"""The ``neurofuzz`` command line.

Every error a user can cause ends with one line ``neurofuzz: error: ...`` on stderr and exit
status 2, never a traceback. Run ``neurofuzz COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

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


@command("demo", "the main job on the built-in digits model")(_coverage_args)
def _demo_run(args: argparse.Namespace) -> int:
    # Until the fuzz loop lands, the main job is the coverage report of the built-in model.
    return _coverage_run(args)


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


if __name__ == "__main__":
    raise SystemExit(main())
