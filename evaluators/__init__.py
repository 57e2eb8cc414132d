"""neurofuzz.evaluators: attack, defense and fuzz-campaign evaluation metrics.

* :mod:`~neurofuzz.evaluators.attack` — after MindArmour's ``AttackEvaluate`` and DEEPSEC:
  MR, ACAC, ACTC, relative and absolute L0/L2/Linf, SSIM, NTE, RGB, RIC
  (:func:`evaluate_attack`, streaming :class:`AttackEvaluator`, :class:`AttackReport`).
* :mod:`~neurofuzz.evaluators.defense` — after MindArmour's ``DefenseEvaluate``: CAV, CRR, CSR,
  CCV, COS (:func:`defense_metrics`, :func:`evaluate_defense`, :class:`DefenseReport`).
* :mod:`~neurofuzz.evaluators.fuzz` — a campaign's accuracy per group, attack success rate,
  per-mutator yield, per-class failures and coverage (:func:`evaluate_campaign`, :class:`FuzzReport`).

Every report is a frozen dataclass with ``to_dict()``; each module's docstring states the formulas.
"""

from neurofuzz.evaluators.attack import AttackEvaluator, AttackReport, evaluate_attack, gaussian_blur
from neurofuzz.evaluators.defense import DefenseEvaluator, DefenseReport, defense_metrics, evaluate_defense, js_divergence
from neurofuzz.evaluators.fuzz import FuzzReport, GroupAccuracy, MutatorYield, evaluate_campaign, evaluate_store

__all__ = [
    "AttackEvaluator", "AttackReport", "evaluate_attack", "gaussian_blur",
    "DefenseEvaluator", "DefenseReport", "defense_metrics", "evaluate_defense", "js_divergence",
    "FuzzReport", "GroupAccuracy", "MutatorYield", "evaluate_campaign", "evaluate_store",
]
