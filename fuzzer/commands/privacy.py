"""``neurofuzz privacy``: the privacy-robustness table on the built-in digits data.

Rows: the normally trained LeNet-5 (the shipped weights, or ``--model`` with ``--weights``),
LeNet-5 trained with DP-SGD at each ``--epsilons`` (delta ``--delta``), and a deliberately
overfit LeNet-5 (a small training subset, many epochs: the case where membership inference has
something to find). The library pieces (:mod:`neurofuzz.privacy`) take models and data as
arguments; this module, on the CLI's side of the layers, supplies the zoo's data, the training
recipes and the fuzz campaigns.

Split (the zoo's fixed permutation): members under attack = the first ``n_eval`` training
images (every model saw them), non-members = the first ``n_eval`` test images; the attacker's
pool (shadow and reference models) = the remaining training and test images, so LiRA's
reference models are OUT models for every attacked example. Shadow / reference models are
trained with the *non-private* recipe for the normal and DP rows (the attacker does not pay for
DP training) and with the overfit recipe for the overfit row.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from neurofuzz.fuzzer.commands.options import check_seed
from neurofuzz.ground.errors import UserError


@dataclass(frozen=True)
class Settings:
    n_eval: int = 180
    normal_epochs: int = 30
    dp_epochs: int = 30
    dp_batch: int = 128
    dp_lr: float = 5e-3
    overfit_n: int = 200
    overfit_epochs: int = 100
    shadows: int = 2
    references: int = 4
    mutants: int = 2048
    fuzz_seeds: int = 360
    inversion_n: int = 8
    inversion_steps: int = 300
    profile_n: int = 1437  # training images the fuzz campaigns' neuron profile is built from


QUICK = Settings(n_eval=50, normal_epochs=2, dp_epochs=1, overfit_n=100, overfit_epochs=20, shadows=1, references=1,
                 mutants=128, fuzz_seeds=32, inversion_n=2, inversion_steps=30, profile_n=256)


QUICK_GRIDS = {"lr": {"C": [1.0]}, "knn": {"n_neighbors": [5]}, "rf": {"n_estimators": [20], "max_depth": [5]},
               "mlp": {"hidden_layer_sizes": [(32,)], "max_iter": [200]}}


def privacy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a tiny version (seconds): fewer epochs, models, mutants")
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0], help="DP targets (default 1 3 8)")
    p.add_argument("--delta", type=float, default=1e-5, help="delta of every epsilon (default 1e-5)")
    p.add_argument("--model", help="the normally trained model: 'builtin' (default) or module:factory with --weights; "
                                   "its architecture is also trained with DP and overfit")
    p.add_argument("--weights", help="state_dict for a module:factory --model (weights_only=True)")
    p.add_argument("--pool-size", type=int, help="examples the attacker holds for shadow/reference models "
                                                 "(default: all that are not attacked)")
    p.add_argument("--checkpoint-dir", help="save each DP training here (dp1.pt, ...) and resume from it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def _say(msg: str) -> None:
    print(f"neurofuzz privacy: {msg}", file=sys.stderr, flush=True)


def _seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A fresh model from ``factory`` initialised from ``seed`` only (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = factory()
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return model


def train_normal(factory: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, *, seed: int, epochs: int,
                 lr: float = 2e-3, batch_size: int = 64) -> nn.Module:
    """Plain Adam training with a seeded init and seeded batches."""
    from neurofuzz.fuzzer.zoo import fit_classifier

    return fit_classifier(_seeded(factory, seed), x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                          generator=torch.Generator().manual_seed(int(seed)))


def _architecture(args: argparse.Namespace) -> tuple[nn.Module, Callable[[], nn.Module], str]:
    from neurofuzz.fuzzer.io import load_model

    spec = args.model or "builtin"
    model = load_model(spec, args.weights)
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError("neurofuzz privacy trains the model's architecture with DP: give 'builtin' or a "
                        "module:factory model, not a TorchScript file")
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError(f"the model {spec} has no trainable parameters; DP training and gradient-based "
                        "attacks need some")
    template = copy.deepcopy(model)
    return model.eval(), (lambda: copy.deepcopy(template)), spec


def _check(args: argparse.Namespace) -> None:
    from neurofuzz.privacy.accounting import check_delta

    check_seed(args.seed)
    check_delta(args.delta)
    bad = [e for e in args.epsilons if not (0 < e < 1e3)]
    if bad:
        raise UserError(f"--epsilons must be numbers in (0, 1000), got {bad[0]:g}")
    if args.pool_size is not None and args.pool_size < 1:
        raise UserError(f"--pool-size must be a whole number >= 1, got {args.pool_size}")


def fuzz_failures(target: Any, x: torch.Tensor, y: torch.Tensor, profile_x: torch.Tensor, *, mutants: int,
                  seed: int) -> float:
    """Failing mutants per 10,000 of a campaign of about ``mutants`` mutants (default natural mutators)."""
    from neurofuzz.fuzzer.campaign import Campaign
    from neurofuzz.fuzzer.config import Budget, FuzzConfig

    with tempfile.TemporaryDirectory() as d:
        cfg = FuzzConfig(seed=seed, budget=Budget(mutants=mutants), checkpoint_interval=3600.0, stats_interval=60.0)
        fz = Campaign.create(Path(d) / "camp", target, x, y, cfg, profile_data=profile_x)
        try:
            s = fz.run()
        finally:
            fz.close()
    return 1e4 * s["failing_mutants"] / max(int(s["mutants"]), 1)


def run_table(args: argparse.Namespace) -> dict[str, Any]:
    from neurofuzz.fuzzer.zoo import load_digits32
    from neurofuzz.privacy.dp_training import DPTrainer, noise_for_epsilon
    from neurofuzz.privacy._common import check_pool
    from neurofuzz.privacy.membership import MIN_PER_SIDE, ShadowAttack, train_shadows
    from neurofuzz.privacy.membership_calibrated import LiRAOffline, train_references
    from neurofuzz.privacy.table import Case, evaluate_case

    _check(args)
    st = QUICK if args.quick else Settings()
    t0 = time.monotonic()
    normal, factory, spec = _architecture(args)
    x_tr, y_tr = load_digits32("train")
    x_te, y_te = load_digits32("test")
    n = st.n_eval
    members, nonmembers = (x_tr[:n], y_tr[:n]), (x_te[:n], y_te[:n])
    px, py = torch.cat([x_tr[n:], x_te[n:]]), torch.cat([y_tr[n:], y_te[n:]])
    perm = torch.randperm(len(py), generator=torch.Generator().manual_seed(args.seed))
    px, py = px[perm], py[perm]
    if args.pool_size is not None:
        px, py = px[: args.pool_size], py[: args.pool_size]
    if args.quick:
        px, py = px[:300], py[:300]
    for size in (len(py), min(len(py), 2 * st.overfit_n)):  # refuse before anything is trained
        check_pool(size, k=max(st.shadows, st.references), n_classes=int(y_tr.max()) + 1, minimum=MIN_PER_SIDE,
                   what="shadow and reference models")

    def normal_fn(x, y, s):
        return train_normal(factory, x, y, seed=s, epochs=st.normal_epochs)

    def overfit_fn(x, y, s):
        return train_normal(factory, x[: st.overfit_n], y[: st.overfit_n], seed=s, epochs=st.overfit_epochs)

    cases = [(Case("normal", normal, len(y_tr), note=f"{spec}: normally trained on the {len(y_tr)} training images"),
              "normal")]
    q = st.dp_batch / len(y_tr)
    steps = max(1, round(1 / q)) * st.dp_epochs
    ckdir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    if ckdir is not None:
        ckdir.mkdir(parents=True, exist_ok=True)
    for i, eps in enumerate(args.epsilons, 1):
        sigma = noise_for_epsilon(target_epsilon=eps, delta=args.delta, sample_rate=q, steps=steps)
        _say(f"DP-SGD at epsilon {eps:g}: sigma {sigma:.3f}, clip 1, batch {st.dp_batch} (Poisson), "
             f"{st.dp_epochs} epochs")
        ck = ckdir / f"dp{i}.pt" if ckdir else None
        tr = DPTrainer(_seeded(factory, args.seed + i), noise=sigma, max_grad_norm=1.0, batch_size=st.dp_batch,
                       lr=st.dp_lr, optimizer="adam", delta=args.delta, target_epsilon=eps, seed=args.seed + i)
        r = tr.fit(x_tr, y_tr, epochs=st.dp_epochs, checkpoint=ck, resume=bool(ck and ck.is_file()),
                   progress=lambda m, e=eps: _say(f"  eps {e:g} {m}"))
        cases.append((Case(f"dp_eps{eps:g}", r.model, len(y_tr), r.epsilon_rdp, r.epsilon_zcdp,
                           note=f"DP-SGD, sigma {sigma:.3f}, {r.steps} steps, stopped by {r.stop_reason}"), "normal"))
        _say(f"DP-SGD at epsilon {eps:g} done: epsilon {r.epsilon_rdp:.3f} ({time.monotonic() - t0:.0f} s)")
    _say(f"overfit model: {st.overfit_n} training images, {st.overfit_epochs} epochs ({time.monotonic() - t0:.0f} s)")
    over = train_normal(factory, x_tr[: st.overfit_n], y_tr[: st.overfit_n], seed=args.seed, epochs=st.overfit_epochs)
    cases.append((Case("overfit", over, st.overfit_n, note=f"deliberately overfit: only {st.overfit_n} training "
                       f"images, {st.overfit_epochs} epochs (members are among them)"), "overfit"))

    _say(f"attacker: {st.shadows} shadow + {st.references} reference model(s) on a pool of {len(py)} images")
    attacks = {}
    for recipe, fn, pool in (("normal", normal_fn, (px, py)), ("overfit", overfit_fn,
                                                              (px[: 2 * st.overfit_n], py[: 2 * st.overfit_n]))):
        shadows = train_shadows(fn, *pool, n_shadows=st.shadows, seed=args.seed)
        attacks[recipe] = (ShadowAttack(seed=args.seed, grids=QUICK_GRIDS if args.quick else None).fit(shadows),
                           LiRAOffline(train_references(fn, *pool, k=st.references, seed=args.seed)))
        _say(f"attack models fitted for the {recipe} recipe ({time.monotonic() - t0:.0f} s)")

    rows = []
    fz_x, fz_y = x_te[: st.fuzz_seeds], y_te[: st.fuzz_seeds]
    for case, recipe in cases:
        shadow, lira = attacks[recipe]
        rows.append(evaluate_case(
            case, members=members, nonmembers=nonmembers, test=(x_te, y_te), shadow=shadow, lira=lira,
            inversion_n=st.inversion_n, inversion_steps=st.inversion_steps, seed=args.seed, progress=_say,
            fuzz=lambda t: fuzz_failures(t, fz_x, fz_y, x_tr[: st.profile_n], mutants=st.mutants, seed=args.seed)))
        _say(f"[{case.name}] done ({time.monotonic() - t0:.0f} s)")
    return {"rows": rows, "delta": args.delta, "quick": bool(args.quick), "seconds": time.monotonic() - t0,
            "settings": st.__dict__}


def privacy_run(args: argparse.Namespace) -> int:
    from neurofuzz.privacy.table import format_table

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on a shared 2-core machine: one thread is faster and steadier
    try:
        res = run_table(args)
    finally:
        torch.set_num_threads(threads)
    if args.json:
        print(json.dumps(res, indent=2, default=float))
    else:
        print(format_table(res["rows"], delta=res["delta"]))
        print(f"({'quick version, ' if res['quick'] else ''}measured in {res['seconds']:.0f} s)")
    return 0
