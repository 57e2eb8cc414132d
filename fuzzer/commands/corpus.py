"""Corpus commands: ``export`` a campaign's inputs, ``replay`` them through a (new) model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neurofuzz.fuzzer.commands.options import model_args, target_from
from neurofuzz.ground.errors import UserError

_KINDS = {"queue": "queue", "failures": "failure", "all": None}  # --which -> store entry kind


# ---------------------------------------------------------------------------- export
def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    p.add_argument("--out", required=True, help="an .npz file, or a folder for --format png")
    p.add_argument("--format", choices=["npz", "png"], help="default: from --out's suffix")
    p.add_argument("--which", choices=["queue", "failures", "all"], default="all")
    p.add_argument("--overwrite", action="store_true")


def export_run(args: argparse.Namespace) -> int:
    import neurofuzz.corpus as corpus
    from neurofuzz.corpus import CampaignStore

    fmt = args.format or ("npz" if args.out.endswith(".npz") else "png")
    _refuse_inside_campaign(args.out, args.dir)
    export_npz, export_png = corpus.export_npz, corpus.export_png
    with CampaignStore.open(args.dir, readonly=True) as store:
        n = store.count(_KINDS[args.which])
        if fmt == "npz":
            out = export_npz(store, args.out, which=args.which, overwrite=args.overwrite)
        else:
            out = export_png(store, args.out, which=args.which, overwrite=args.overwrite)
    print(f"exported {n} inputs ({args.which}) to {out}")
    return 0


def _refuse_inside_campaign(out: str, campaign: str) -> None:
    """An export must not write into the campaign it reads (the campaign is left as it was)."""
    o, c = Path(out).absolute().resolve(), Path(campaign).absolute().resolve()
    if o == c or c in o.parents:
        raise UserError(f"--out {out} is inside the campaign {campaign}; export to a path outside it")


# ---------------------------------------------------------------------------- replay
def replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="campaign directory")
    model_args(p)
    p.add_argument("--which", choices=["queue", "failures", "all"], default="all")
    p.add_argument("--json", action="store_true")


def replay_run(args: argparse.Namespace) -> int:
    from neurofuzz.corpus import CampaignStore, replay

    target = target_from(args)
    with CampaignStore.open(args.dir, readonly=True) as store:
        _check_replay_target(store, target, args)
        report = replay(store, target, which=args.which)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def _check_replay_target(store, target, args: argparse.Namespace) -> None:
    """One forward pass on a stored input (shape, logits, finite), and the campaign's labels
    against the model's classes, before anything is replayed."""
    import torch

    from neurofuzz.ground.target import check_labels

    entries = store.entries(_KINDS[args.which])
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
