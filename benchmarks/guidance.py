"""Held-out guidance benchmark (issue 11, item 1). Prints JSON.

For each architecture, seed set, guidance variant and RNG seed, one campaign is run for
``max(--times)`` seconds (capped by ``--max-seconds``); its output corpus (the seeds, plus queue
and failure entries) is then judged at each checkpoint ``t`` by reconstructing the corpus as it
was at ``t`` from the entries' ``time_found`` (no re-run):

* coverage by an independent *referee* the guide never sees: hooks on every named module of the
  model (conv, BN, ReLU, pool, blocks, flatten, linear, logits; a module called twice records
  its last call), in two granularities, ``mean`` (a channel's spatial mean is a neuron) and
  ``element`` (every output element is a neuron), each with KMNC(k=100), NBC, SNAC, NC(0.5,
  scaled) and TKNC(2), bounds profiled on the training split;
* fault-revealing measures of :func:`neurofuzz.evaluators.faults_found.fault_measures` on the
  entries found by ``t``: seeds with a failure, distinct (root, predicted) and (true, predicted)
  pairs, time to first failure.

Variants: ``default`` (the default FuzzConfig), ``unguided`` (``guided = false``), ``adaptive``
(the default with ``feedback_patience = 25``: saturated feedback widens, fuzzer/feedback.py), and feedback
``kmnc``, ``nlc``, ``tknp``, ``bknc``, ``lsa``, ``dsa`` (the metric added to the default metric
set; LSA / DSA fit on the penultimate layer's training traces). Architectures: ``lenet``
(the built-in LeNet-5 on digits) and ``resnet``: a small ResNet (3 stages of one basic block,
8-16-32 channels) trained here, seeded, on *coloured digits*: each 32x32 digit of scikit-learn's
``load_digits`` painted in a random light colour over a random darker background colour with a
little noise (3x32x32, 10 classes, same train / test split as the digits; nothing downloaded).
Seed sets: the first ``n`` test images for each ``n`` in ``--seed-sets`` (default 20 and 360).

    python benchmarks/guidance.py                     # the full measurement (hours: use a quiet machine)
    python benchmarks/guidance.py --times 2,5 --repeats 1 --variants default,unguided --archs lenet
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from neurofuzz.corpus import BaseStore, CampaignStore  # noqa: F401 (BaseStore: type hints)
from neurofuzz.coverage import DEFAULT_SPEC, ActivationRecorder, NeuronProfile, SurpriseFit, build_metric
from neurofuzz.evaluators.faults_found import fault_measures
from neurofuzz.fuzzer.campaign import Campaign
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.zoo import N_TRAIN, _BasicBlock, builtin_target, load_digits32
from neurofuzz.ground.target import Target

TIMES = (5, 10, 30, 60, 120, 300)
# the default and its ablations (one part each), the unguided baseline, single-criterion feedbacks
VARIANTS = ("default", "fine", "unguided", "static", "no_fine", "fine_first", "yield_per_mutant", "kmnc", "nlc", "tknp",
            "bknc", "lsa", "dsa")
ADAPTIVE_PATIENCE = 25  # iterations without a retained input before the feedback widens
FINE = {"metric": "kmnc", "k": 1000}  # the finer-cell candidate
REFEREE = {"kmnc": {"k": 100}, "nbc": {}, "snac": {}, "nc": {"threshold": 0.5}, "tknc": {"k": 2}}
SA_LAYERS = {"lenet": ("fc2", "fc3"), "resnet": ("stage3.conv2", "fc")}  # (traces, logits)


# ----------------------------------------------------------------------------- second architecture
def coloured_digits(*, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ``float32 [N, 3, 32, 32]`` in [0, 1]: the digit's stroke painted in a
    random light colour (each channel uniform in [0.45, 1]) over a random dark background colour
    (each channel in [0, 0.55], and at least 0.15 below the stroke's): the polarity is fixed, hue
    and contrast vary; plus Gaussian noise (std 0.03)."""
    x, y = load_digits32("all")
    rng = np.random.default_rng(seed)
    n = len(y)
    fg = rng.uniform(0.45, 1.0, (n, 3))
    bg = rng.uniform(0.0, 0.55, (n, 3))
    bg = np.minimum(bg, fg - 0.15)  # at least 0.15 of contrast in every channel
    m = x.expand(-1, 3, -1, -1)
    f, b = (torch.from_numpy(c).float()[:, :, None, None] for c in (fg, bg))
    noise = torch.from_numpy(rng.normal(0, 0.03, m.shape)).float()
    return (b * (1 - m) + f * m + noise).clamp_(0, 1), y


_Block = _BasicBlock  # the zoo's residual block (identity shortcut when the shape allows)


class SmallResNet(nn.Module):
    """Stem conv, three basic blocks (8, 16, 32 channels; strides 1, 2, 2), global pool, linear."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.stage1, self.stage2, self.stage3 = _Block(8, 8, 1), _Block(8, 16, 2), _Block(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        return self.fc(self.flat(self.pool(self.stage3(self.stage2(self.stage1(x))))))


def train_resnet(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, epochs: int = 7) -> SmallResNet:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # layer init draws from the global RNG: keep it untouched
        torch.manual_seed(seed)
        model = SmallResNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    steps = epochs * -(-len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    return model.eval()


def arch(name: str, seed: int) -> tuple[Target, tuple, tuple, dict]:
    """``(target, (x_train, y_train), (x_test, y_test), info)`` for ``lenet`` or ``resnet``."""
    if name == "lenet":
        return builtin_target(), load_digits32("train"), load_digits32("test"), {"data": "load_digits 1x32x32"}
    if name != "resnet":
        raise SystemExit(f"unknown arch {name!r}; choose lenet, resnet")
    x, y = coloured_digits(seed=seed)
    t0 = time.perf_counter()
    model = train_resnet(x[:N_TRAIN], y[:N_TRAIN], seed=seed)
    target = Target(model, bounds=(0.0, 1.0))
    with torch.no_grad():
        acc = float((target(x[N_TRAIN:]).argmax(1) == y[N_TRAIN:]).float().mean())
    info = {"data": "coloured digits 3x32x32", "train_seconds": round(time.perf_counter() - t0, 1),
            "test_accuracy": round(acc, 4)}
    return target, (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:]), info


# ----------------------------------------------------------------------------- referee
class AtTime:
    """Read-only view of a store holding only the entries found by time ``t`` (seeds always)."""

    def __init__(self, store: BaseStore, t: float) -> None:
        self.store, self.t = store, t

    def entries(self, kind: str | None = None, oracle: str | None = None) -> list:
        return [e for e in self.store.entries(kind=kind, oracle=oracle) if e.depth == 0 or e.time_found <= self.t]

    def read_stats(self) -> dict:
        return {}


class Referee:
    """Coverage of a corpus by metrics over every named module of ``target`` (both reductions),
    profiled on ``x_train``; independent of any campaign's own coverage suite."""

    def __init__(self, target: nn.Module, x_train: torch.Tensor, *, reductions: tuple[str, ...] = ("mean", "element"),
                 batch_size: int = 128) -> None:
        self.target, self.batch_size = target, batch_size
        self.parts = []
        for red in reductions:
            rec = ActivationRecorder(target, types=(), names=["*"], reduction=red)
            prof = NeuronProfile.from_data(target, x_train, recorder=rec, batch_size=batch_size)
            self.parts.append((red, rec, prof))
        self.neurons = {red: prof.n_neurons for red, _, prof in self.parts}

    def curve(self, images: list[torch.Tensor], times: list[float], checkpoints: list[float]) -> dict[float, dict]:
        """Coverage after the inputs found by each checkpoint: ``images`` in ``times`` order."""
        out: dict[float, dict] = {t: {} for t in checkpoints}
        for red, rec, prof in self.parts:
            metrics = {n: build_metric(n, profile=prof, **p) for n, p in REFEREE.items()}
            cuts = [int(np.searchsorted(times, t, side="right")) for t in checkpoints]
            done = 0
            with rec, torch.no_grad():
                for t, cut in zip(checkpoints, cuts):
                    for i in range(done, cut, self.batch_size):
                        rec.pop()
                        self.target(torch.stack(images[i : min(cut, i + self.batch_size)]))
                        acts = rec.pop()
                        for m in metrics.values():
                            m.update(acts)
                    done = max(done, cut)
                    out[t].update({f"{n}_{red}": round(m.value(), 4) for n, m in metrics.items()})
        return out


def judge(store: BaseStore, referee: Referee, checkpoints: list[float]) -> dict[str, dict]:
    """Referee coverage and fault measures of ``store``'s corpus at each checkpoint."""
    entries = sorted(store.entries(), key=lambda e: (0.0 if e.depth == 0 else e.time_found, e.id))
    seen, images, times = set(), [], []
    for e in entries:  # one image once (an input flagged by two oracles is stored twice)
        if e.sha not in seen:
            seen.add(e.sha)
            images.append(e.load().float())
            times.append(0.0 if e.depth == 0 else float(e.time_found))
    cov = referee.curve(images, times, checkpoints)
    out = {}
    for t in checkpoints:
        view = AtTime(store, t)
        fm = fault_measures(view, naturalness=False)
        out[str(t)] = {**cov[t], "inputs": int(np.searchsorted(times, t, side="right")),
                       "queue": len(view.entries(kind="queue")), "failing_seeds": fm.failing_seeds,
                       "failing_pairs": fm.failing_pairs, "confusions": fm.confusions,
                       "time_to_first_failure": fm.time_to_first_failure}
    return out


# ----------------------------------------------------------------------------- campaigns
def config(variant: str, rep: int, seconds: float, sa_fit: Path | None) -> FuzzConfig:
    """The campaign configuration of ``variant``; each ablation removes one part of the default:
    ``static`` the widening feedback (feedback_patience = 0, no finer cells), ``no_fine`` the
    finer-cell candidate, ``fine_first`` the coarse-before-fine order (the k = 1000 KMNC may join
    first), ``yield_per_mutant`` the cost-aware mutator yield (the per-mutant rule before it)."""
    base: dict[str, Any] = {"seed": rep, "budget": Budget(seconds=seconds)}
    five = {n: dict(p) for n, p in DEFAULT_SPEC.items()}
    if variant == "default":
        return FuzzConfig(**base)
    if variant == "unguided":
        return FuzzConfig(**base, guided=False)
    if variant == "static":
        return FuzzConfig(**base, metrics=five, feedback_patience=0)
    if variant == "no_fine":
        return FuzzConfig(**base, metrics=five, feedback_patience=ADAPTIVE_PATIENCE)
    if variant == "fine_first":  # the order is dropped after creation (see run_one)
        return FuzzConfig(**base, metrics={**five, "kmnc_fine": dict(FINE)}, feedback_patience=ADAPTIVE_PATIENCE)
    if variant == "fine":
        return FuzzConfig(**base, metrics={**five, "kmnc_fine": dict(FINE)}, feedback_patience=ADAPTIVE_PATIENCE)
    if variant == "yield_per_mutant":
        return FuzzConfig(**base, mutator_choice="adaptive-per-mutant")
    params: dict[str, Any] = {"fit": str(sa_fit)} if variant in ("lsa", "dsa") else {}
    metrics = {**five, variant: DEFAULT_SPEC.get(variant, params)}
    return FuzzConfig(**base, metrics=metrics, feedback=[variant])


def mean_curve(runs: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for t in runs[0]:
        keys = [k for k, v in runs[0][t].items() if isinstance(v, (int, float))]
        out[t] = {}
        for k in keys:
            vals = [r[t][k] for r in runs if r[t][k] is not None]
            out[t][k] = round(statistics.mean(vals), 4) if vals else None
    return out


TABLE_KEYS = ("kmnc_mean", "kmnc_element", "nbc_mean", "queue", "failing_seeds", "failing_pairs")


def _fmt(v: float | None, key: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if key.endswith(("_mean", "_element")) else f"{v:.1f}".removesuffix(".0")


def table(result: dict) -> str:
    """The means as markdown: one row per (arch, seed set, variant), a column per measure and
    checkpoint (the measures of ``TABLE_KEYS`` that the run has)."""
    lines = []
    for a, res in result["archs"].items():
        for sset, per_variant in ((k, v) for k, v in res.items() if k.startswith("seeds_")):
            first = next(iter(per_variant.values()))["mean"]
            ts = list(first)
            keys = [k for k in TABLE_KEYS if k in first[ts[0]]]
            lines.append(f"\n{a}, {sset.split('_')[1]} seeds ({len(next(iter(per_variant.values()))['runs'])} runs each); "
                         f"columns: {', '.join(keys)} at t = {' / '.join(ts)} s")
            lines.append("| variant | " + " | ".join(keys) + " |")
            lines.append("|---" * (len(keys) + 1) + "|")
            for v, d in per_variant.items():
                cells = [" / ".join(_fmt(d["mean"][t].get(k), k) for t in ts) for k in keys]
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", default=",".join(map(str, TIMES)), help="checkpoints in seconds")
    ap.add_argument("--repeats", type=int, default=3, help="RNG seeds per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--archs", default="lenet,resnet")
    ap.add_argument("--seed-sets", default="20,360", help="numbers of test images used as seeds")
    ap.add_argument("--max-seconds", type=float, default=None, help="cap on each campaign's length")
    ap.add_argument("--reductions", default="mean,element", help="referee granularities")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="first RNG seed (and the ResNet's training seed)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--table", nargs="*", metavar="JSON", default=None,
                    help="print the markdown table of these result files (no campaign is run)")
    args = ap.parse_args(argv)
    if args.table:
        for f in args.table:
            print(table(json.loads(Path(f).read_text())))
        return {}
    torch.set_num_threads(args.threads)
    checkpoints = sorted(float(t) for t in args.times.split(","))
    seconds = min(checkpoints[-1], args.max_seconds or checkpoints[-1])
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    result: dict[str, Any] = {
        "setup": {"times": checkpoints, "campaign_seconds": seconds, "repeats": args.repeats, "variants": variants,
                  "referee": REFEREE, "python": platform.python_version(), "torch": torch.__version__,
                  "threads": args.threads, "default_feedback": FuzzConfig().feedback},
        "archs": {}}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for a in [s for s in args.archs.split(",") if s]:
            target, (xt, yt), (xs, ys), info = arch(a, args.seed)
            referee = Referee(target, xt, reductions=tuple(args.reductions.split(",")))
            info["referee_neurons"] = referee.neurons
            sa_fit = None
            if {"lsa", "dsa"} & set(variants):
                layer, logits = SA_LAYERS[a]
                sa_fit = tmp / f"{a}-sa.pt"
                SurpriseFit.from_data(target, xt, yt, layers=[layer], logits_layer=logits).save(sa_fit)
                info["surprise_layers"] = [layer, logits]
            res: dict[str, Any] = {"info": info}
            for n_seeds in [int(s) for s in args.seed_sets.split(",")]:
                n_seeds = min(n_seeds, len(xs))
                per_variant = {}
                for v in variants:
                    runs = []
                    for rep in range(args.seed, args.seed + args.repeats):
                        path = tmp / f"{a}-{n_seeds}-{v}-{rep}"
                        fz = Campaign.create(path, target, xs[:n_seeds], ys[:n_seeds], config(v, rep, seconds, sa_fit),
                                             profile_data=xt)
                        if v == "fine_first":
                            fz.loop.adaptive.requires.clear()  # ablation: the finer KMNC may join first
                        fz.run()
                        fz.close()
                        with CampaignStore.open(path, readonly=True) as store:
                            runs.append(judge(store, referee, checkpoints))
                    per_variant[v] = {"mean": mean_curve(runs), "runs": runs}
                res[f"seeds_{n_seeds}"] = per_variant
            result["archs"][a] = res
    result["setup"]["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    print(table(result), file=sys.stderr)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
