"""Report commands: ``report`` (one self-contained HTML file) and ``triage`` (failure groups,
``--minimise N``). Both read the campaign read-only, so they work on a running campaign."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from neurofuzz.fuzzer.commands.options import model_args, target_from
from neurofuzz.ground.errors import UserError

REPORT = "report.html"


def _merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge-linf", type=float, default=0.05,
                   help="merge failures of one (seed, predicted class) closer than this Linf (default 0.05)")


def _check_merge(v: float) -> None:
    if not v >= 0:
        raise UserError(f"--merge-linf must be a number >= 0, got {v}")


def _open(path: str):
    from neurofuzz.corpus import CampaignStore

    return CampaignStore.open(path, readonly=True)


# ---------------------------------------------------------------------------- report
def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory (running, finished or crashed)")
    p.add_argument("--out", help=f"the HTML file to write (default: DIR/{REPORT})")
    p.add_argument("--png", metavar="DIR", help="also write each plot as DIR/<name>.png")
    p.add_argument("--max-failures", type=int, default=48, help="failing inputs shown in the grid (default 48)")
    _merge(p)


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name, e.g. {out / REPORT}")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {out}: the folder {parent} is not writable; pass --out elsewhere")


def write_campaign_report(path: str | Path, out: str | Path | None = None, *, png: str | None = None,
                          max_failures: int = 48, merge_linf: float = 0.05) -> Path:
    """Write the report of campaign ``path`` (default ``path/report.html``); returns its path."""
    from neurofuzz.reports.html import write_report

    with _open(str(path)) as store:  # first: a path that is not a campaign is the error to report
        out = Path(out) if out else Path(path) / REPORT
        _check_out(out)
        if png is not None and Path(png).exists() and not Path(png).is_dir():
            raise UserError(f"--png {png} is a file; give a folder for the PNG files")
        return write_report(store, out, png_dir=png, max_failures=max_failures, merge_linf=merge_linf)


def report_run(args: argparse.Namespace) -> int:
    if args.max_failures < 0:
        raise UserError(f"--max-failures must be >= 0, got {args.max_failures}")
    _check_merge(args.merge_linf)
    out = write_campaign_report(args.dir, args.out, png=args.png, max_failures=args.max_failures,
                                merge_linf=args.merge_linf)
    print(f"report: {out}")
    if args.png:
        print(f"plots: {Path(args.png) / '*.png'}")
    return 0


def demo_report(campaign: str | Path) -> str:
    """The last line of ``neurofuzz demo``: the report it wrote, or why there is none."""
    try:
        return f"report: {write_campaign_report(campaign)}  (open it in a browser)"
    except UserError as e:
        return f"no report: {e}"


# ---------------------------------------------------------------------------- triage
def triage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory (running, finished or crashed)")
    p.add_argument("--minimise", type=int, default=0, metavar="N",
                   help="minimise the N most interesting failures (stored in DIR/minimised/; needs the model: "
                        "the recorded one unless --model is given)")
    p.add_argument("--top", type=int, default=10, help="rows per group in the text output (default 10)")
    p.add_argument("--json", action="store_true")
    _merge(p)
    model_args(p)


def _campaign_target(args: argparse.Namespace, setup: dict):
    """The campaign's model: the recorded spec, weights and normalisation unless given; refused
    when it is not the model the campaign was run with (its weights hash)."""
    from neurofuzz.fuzzer.campaign import check_resume_target, resume_options

    given = {k: getattr(args, k) for k in ("model", "weights", "mean", "std", "bounds")}
    for k, v in resume_options(setup, given).items():
        setattr(args, k, v)
    target = target_from(args)
    check_resume_target(setup, target, args.dir)
    return target


def triage_run(args: argparse.Namespace) -> int:
    from neurofuzz.evaluators.faults_found import fault_measures
    from neurofuzz.reports.minimise import minimise, save_minimised
    from neurofuzz.reports.triage import triage

    if args.minimise < 0:
        raise UserError(f"--minimise must be >= 0, got {args.minimise}")
    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    _check_merge(args.merge_linf)
    with _open(args.dir) as store:
        tri = triage(store, merge_linf=args.merge_linf)
        measures = fault_measures(store, distances=tri.distances)
        done = []
        if args.minimise and tri.failures:
            target = _campaign_target(args, store.setup)
            done = [minimise(store, f.id, target) for f in tri.failures[: args.minimise]]
    manifest = save_minimised(args.dir, done) if any(m.x is not None for m in done) else None
    if args.json:
        print(json.dumps({"measures": measures.to_dict(), "triage": tri.to_dict(),
                          "minimised": [m.record() for m in done]}, indent=2, default=float))
        return 0
    print(measures.format())
    print()
    print(tri.format(top=args.top))
    if args.minimise and not tri.failures:
        print("\nnothing to minimise: no failure found")
    if done:
        from neurofuzz.reports.html import chain_text

        print(f"\nminimised {len(done)} failure(s) -> {manifest or 'nothing stored'}")
        for m in done:
            print(f"  id {m.id:<7} {m.status:<17} {chain_text(m.original_chain)}  ->  {chain_text(m.chain)}  "
                  f"SSIM {m.original_ssim:.3f} -> {m.ssim:.3f}  Linf {m.original_linf:.3f} -> {m.linf:.3f}")
    return 0
