"""The privacy-robustness table: one row per model, privacy and robustness side by side.

:func:`evaluate_case` measures one model (a :class:`Case`) with attacks the caller has already
fitted, so shadow and reference models are trained once per training recipe and shared by the
rows that use it. Columns (``members`` / ``nonmembers`` are disjoint, equally many):

* ``test_acc``: accuracy on the test images; ``eps_rdp`` / ``eps_zcdp``: the DP guarantee at
  ``delta`` (``None`` for a model trained without DP: no guarantee, not "infinite" by measurement);
* ``mia``: per attack (``threshold``, ``lira``, ``lr``, ``knn``, ``rf``, ``mlp``) the AUC and the
  TPR at 1% FPR (:mod:`~neurofuzz.privacy.metrics`);
* ``inversion_ssim``: mean SSIM of :class:`~neurofuzz.privacy.inversion.ImageInversion` from
  ``inversion_layer`` on ``inversion_n`` test images;
* ``fgsm_acc``: accuracy under FGSM at ``fgsm_eps`` on the test images;
* ``fuzz_failures_per_10k``: what the caller's ``fuzz(target)`` returns (failing mutants per
  10,000 mutants of a short campaign, in the CLI), or ``None``.

Example::

    >>> rows = [{"name": "m", "note": "", "n_train": 10, "test_acc": 0.9, "eps_rdp": None, "eps_zcdp": None,
    ...          "mia": {"threshold": {"auc": 0.5, "tpr@1%": 0.01}}, "inversion_ssim": 0.8, "fgsm_acc": 0.1,
    ...          "fuzz_failures_per_10k": None}]
    >>> print(format_table(rows, delta=1e-5).splitlines()[0].split()[:3])
    ['model', 'n_train', 'test_acc']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from neurofuzz.ground.target import Target
from neurofuzz.privacy.inversion import ImageInversion
from neurofuzz.privacy.membership import ShadowAttack
from neurofuzz.privacy.membership_calibrated import LiRAOffline
from neurofuzz.privacy.membership_threshold import LossThresholdAttack

ATTACKS = ("threshold", "lira", "lr", "knn", "rf", "mlp")


@dataclass
class Case:
    name: str
    model: nn.Module
    n_train: int
    eps_rdp: float | None = None
    eps_zcdp: float | None = None
    note: str = ""


def evaluate_case(case: Case, *, members: tuple[torch.Tensor, torch.Tensor],
                  nonmembers: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                  shadow: ShadowAttack, lira: LiRAOffline,
                  fgsm_eps: float = 0.3, inversion_layer: str = "module.pool2", inversion_n: int = 8,
                  inversion_steps: int = 300, fuzz: Callable[[Target], float] | None = None, seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from neurofuzz.mutators.attacks.fgsm import FGSM

    say = progress or (lambda _m: None)
    target = Target(case.model)
    xt, yt = test
    acc = float((target.predict(xt) == yt).float().mean())
    say(f"[{case.name}] membership inference (threshold, LiRA, shadow LR/KNN/RF/MLP)")
    mia = {"threshold": LossThresholdAttack().evaluate(target, members, nonmembers),
           "lira": lira.evaluate(target, members, nonmembers), **shadow.evaluate(target, members, nonmembers)}
    say(f"[{case.name}] image inversion from {inversion_layer}, FGSM eps {fgsm_eps:g}")
    inv = ImageInversion(target, layer=inversion_layer, steps=inversion_steps, tv_weight=0.5, seed=seed)
    _rec, inv_r = inv.run(xt[:inversion_n], yt[:inversion_n])
    x_adv = FGSM(target, eps=fgsm_eps)(xt, yt)
    fgsm_acc = float((target.predict(x_adv) == yt).float().mean())
    fails = None
    if fuzz is not None:
        say(f"[{case.name}] fuzz campaign")
        fails = fuzz(target)
    return {"name": case.name, "note": case.note, "n_train": case.n_train, "test_acc": acc, "eps_rdp": case.eps_rdp,
            "eps_zcdp": case.eps_zcdp,
            "mia": {a: {"auc": m.auc, "tpr@1%": m.tpr_at_fpr[0.01], "tpr@0.1%": m.tpr_at_fpr[0.001],
                        "accuracy": m.accuracy, "precision": m.precision, "recall": m.recall}
                    for a, m in mia.items()},
            "n_members": len(members[0]), "n_nonmembers": len(nonmembers[0]),
            "inversion_ssim": inv_r.ssim, "inversion_l2": inv_r.l2, "inversion_confidence": inv_r.confidence,
            "fgsm_acc": fgsm_acc, "fuzz_failures_per_10k": fails}


def _f(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: list[dict[str, Any]], *, delta: float) -> str:
    """Rows as a fixed-width text table; each MIA cell is ``AUC/TPR@1%FPR``; notes follow below."""
    attacks = [a for a in ATTACKS if a in rows[0]["mia"]]
    head = ["model", "n_train", "test_acc", "eps_rdp", "eps_zcdp"] + [f"{a}" for a in attacks] + \
        ["inv_ssim", "fgsm_acc", "fuzz_fail/10k"]
    w = max(len(r["name"]) for r in rows + [{"name": "model"}]) + 2
    widths = [w, 8, 9, 8, 9] + [12] * len(attacks) + [9, 9, 14]
    lines = ["".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(head))]
    for r in rows:
        cells = [r["name"], str(r["n_train"]), _f(r["test_acc"]), _f(r["eps_rdp"], ".2f"), _f(r["eps_zcdp"], ".1f")]
        cells += [f"{r['mia'][a]['auc']:.2f}/{r['mia'][a]['tpr@1%']:.2f}" for a in attacks]
        cells += [_f(r["inversion_ssim"]), _f(r["fgsm_acc"]), _f(r["fuzz_failures_per_10k"], ".0f")]
        lines.append("".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)))
    lines.append(f"MIA cells: AUC/TPR at 1% FPR on {rows[0].get('n_members', '?')} members vs "
                 f"{rows[0].get('n_nonmembers', '?')} non-members; epsilon at delta {delta:g} "
                 "(zCDP: without amplification by subsampling, an upper bound); '-' = trained without DP.")
    lines += [f"{r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines)
