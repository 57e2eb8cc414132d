"""Corpus commands: ``export`` a campaign's inputs, ``replay`` them through a (new) model."""

from __future__ import annotations

import argparse
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
    p.add_argument("--baseline", help="the old model to compare with (same forms as --model; default: the "
                                      "predictions stored in the campaign); it gets the recorded normalisation")
    p.add_argument("--baseline-weights", help="state_dict of the --baseline model")
    p.add_argument("--fail-on", choices=["new-regressions", "failures", "none"],
                   help="exit 1 on any new regression (the default with --baseline), on any input wrong now, "
                        "or never (the default without --baseline)")
    p.add_argument("--max-new", type=int, help="exit 1 if more than N inputs newly regress")
    p.add_argument("--min-accuracy", type=float, help="exit 1 if the new model's accuracy on the replayed inputs "
                                                      "is below X")
    p.add_argument("--top", type=int, default=10, help="largest confidence drops to list (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one test case per input)")


def replay_run(args: argparse.Namespace) -> int:
    """Exit 0 when the gate holds, 1 when it does not (2: a user error, raised as UserError)."""
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.corpus.regression import regression_report
    from neurofuzz.corpus.regression_out import Gate, format_text, junit_xml, to_json

    gate = Gate(fail_on=args.fail_on or ("new-regressions" if args.baseline else "none"),
                max_new=args.max_new, min_accuracy=args.min_accuracy)
    if args.top < 0:
        raise UserError(f"--top must be >= 0, got {args.top}")
    if args.junit:
        _refuse_inside_campaign(args.junit, args.dir)
    with CampaignStore.open(args.dir, readonly=True) as store:
        notes = _recorded_options(args, store.setup)
        target = _replay_target(args, args.model, args.weights)
        _check_replay_target(store, target, args)
        baseline = None
        if args.baseline:
            recorded = argparse.Namespace(**{**vars(args), **{k: store.setup.get(k) for k in ("mean", "std")}})
            baseline = _replay_target(recorded, args.baseline, args.baseline_weights)
            _check_replay_target(store, baseline, args)
        report = regression_report(store, target, baseline=baseline, which=args.which,
                                   baseline_name=f"baseline {args.baseline}" if args.baseline else None)
    report.notes.extend(notes)
    if args.junit:
        Path(args.junit).write_text(junit_xml(report))
    print(to_json(report, gate=gate) if args.json else format_text(report, top=args.top, gate=gate))
    return 0 if gate.holds(report) else 1


def _recorded_options(args: argparse.Namespace, setup: dict) -> list[str]:
    """Fill --mean/--std/--bounds left out from the campaign's record; return one note per given
    value that differs from the record."""
    notes = []
    for key in ("mean", "std", "bounds"):
        given, rec = getattr(args, key), setup.get(key)
        if given is None:
            setattr(args, key, rec)
        elif rec is not None and [float(v) for v in given] != [float(v) for v in rec]:
            notes.append(f"--{key} {' '.join(f'{v:g}' for v in given)} overrides the campaign's recorded "
                         f"{key} {' '.join(f'{v:g}' for v in rec)}")
        elif rec is None and key != "bounds":
            notes.append(f"--{key} {' '.join(f'{v:g}' for v in given)} is applied; the campaign recorded no {key}")
    return notes


def _replay_target(args: argparse.Namespace, spec: str | None, weights: str | None):
    """The model to replay: an ``.onnx`` file runs in onnxruntime, anything else as ``--model``."""
    if spec and str(spec).endswith(".onnx"):
        from neurofuzz.fuzzer.onnx_model import ort_target

        if weights:
            raise UserError(f"--weights does not apply to an ONNX model ({spec} carries its own weights)")
        return ort_target(spec, bounds=args.bounds, mean=args.mean, std=args.std)
    return target_from(args, spec or "builtin", weights)


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
