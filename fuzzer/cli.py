"""The ``neurofuzz`` command line: the registry of commands, the parser and :func:`main`.

Every error a user can cause ends with one line ``neurofuzz: error: ...`` on stderr and exit
status 2, never a traceback. Run ``neurofuzz COMMAND --help`` for each command's options. The
commands themselves live in :mod:`neurofuzz.fuzzer.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from neurofuzz.fuzzer import __version__
from neurofuzz.fuzzer.commands import assets, campaign, corpus, privacy, report, tools
from neurofuzz.fuzzer.commands.campaign import format_summary
from neurofuzz.fuzzer.commands.tools import format_coverage_report
from neurofuzz.ground.errors import UserError

__all__ = ["COMMANDS", "build_parser", "format_coverage_report", "format_summary", "main"]

# name -> (help, add_args(parser), run(args) -> exit status), in the order `neurofuzz --help` lists them
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "coverage": ("coverage report of a model on data (default: the built-in digits model on its test set)",
                 tools.coverage_args, tools.coverage_run),
    "demo": ("the main job: a short fuzz campaign on the built-in digits model",
             campaign.demo_args, campaign.demo_run),
    "profile": ("neuron bounds (min/max/mean/std) of a model over training data",
                tools.profile_args, tools.profile_run),
    "fuzz": ("run (or resume) a fuzz campaign", campaign.fuzz_args, campaign.fuzz_run),
    "status": ("the stats of a running or finished campaign", campaign.status_args, campaign.status_run),
    "export": ("export a campaign's corpus to .npz or a PNG folder with a JSONL manifest",
               corpus.export_args, corpus.export_run),
    "replay": ("regression test: run a campaign's corpus through a (new) model", corpus.replay_args, corpus.replay_run),
    "evaluate": ("MindArmour's tutorial experiment (default: the built-in model): FGSM attack metrics, "
                 "NAD defense and defense metrics", tools.evaluate_args, tools.evaluate_run),
    "mutators": ("list the registered mutators and their parameters", tools.mutators_args, tools.mutators_run),
    "faults": ("fault sensitivity map: accuracy drop and prediction changes per fault kind and layer",
               assets.faults_args, assets.faults_run),
    "encrypt": ("encrypt a state_dict with AES-256-GCM (--new-key creates a key file)",
                assets.encrypt_args, assets.encrypt_run),
    "decrypt": ("decrypt a file written by `neurofuzz encrypt` to a plain state_dict",
                assets.decrypt_args, assets.decrypt_run),
    "obfuscate": ("function-preserving obfuscation of a model's weights (permuted, rescaled hidden units)",
                  assets.obfuscate_args, assets.obfuscate_run),
    "privacy": ("the privacy-robustness table on the built-in digits model: normal, DP-trained (eps 1, 3, 8) and "
                "overfit LeNet-5; accuracy, epsilon, membership inference, inversion, FGSM, fuzz failures",
                privacy.privacy_args, privacy.privacy_run),
    "report": ("one self-contained HTML report of a campaign (plots, failing inputs, fault-revealing measures)",
               report.report_args, report.report_run),
    "triage": ("group a campaign's failures, merge near-duplicates; --minimise N shrinks the most interesting",
               report.triage_args, report.triage_run),
}


# ---------------------------------------------------------------------------- errors
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


# ---------------------------------------------------------------------------- parser and main
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
