"""The attack mutators' defaults against DeepHunter's default validity rule.

The fuzz loop keeps a mutant only if ``L0 < alpha * size or Linf < beta * range`` against its
reference (``mutators/constraints.py``; defaults ``alpha = 0.02``, ``beta = 0.2`` in
``fuzzer/config.py``). A gradient or score attack changes nearly every pixel (L0 ~ 90 % of the
values), so only its L-inf distance can make it valid: a default eps range reaching 0.2 had
every mutant above 0.2 rejected (measured before: 41 % of the L-inf attacks' mutants; all of
JSMA's, whose ``gamma = 0.05`` changed up to 51 values by 1.0).

Measured on the first 64 test digits with the defaults below (accepted / valid and misclassified):
pgd 1.00 / 0.72, bim 1.00 / 0.69, mifgsm 1.00 / 0.69, mdiim 1.00 / 0.69, fgsm 1.00 / 0.62,
square 1.00 / 0.38, rfgsm 1.00 / 0.25, nes 1.00 / 0.12, genattack 1.00 / 0.12, jsma 1.00 / 0.09,
pgd_l2 0.98 / 0.12, cw_l2 0.41 / 0.41, deepfool 0.41 / 0.41, hopskipjump 0.06 / 0.06,
salt_pepper 0.00 / 0.00.
"""

from __future__ import annotations

import pytest
import torch

from neurofuzz.fuzzer.config import Constraint as ConstraintConfig
from neurofuzz.mutators import available, create, get
from neurofuzz.mutators.constraints import DEFAULT_ALPHA, DEFAULT_BETA, Constraint

LINF = ["bim", "fgsm", "genattack", "mdiim", "mifgsm", "nes", "pgd", "rfgsm", "square"]  # ||x_adv - x||_inf <= eps
# Minimal-L2 attacks: the L-inf size of their perturbation is not bounded; most are still accepted.
L2_FLOORS = {"pgd_l2": 0.9, "cw_l2": 0.25, "deepfool": 0.25}  # measured 0.98, 0.41, 0.41
# Rejected by design under the default rule: salt-and-pepper sets whole pixels to 0 or 1 (L0 in
# the hundreds, Linf = 1); HopSkipJump starts from a random image and stays far at these budgets.
REJECTED = {"salt_pepper", "hopskipjump"}


@pytest.fixture(scope="module")
def batch(digits_test):
    x, y = digits_test
    return x[:32], y[:32]


def accepted(name, target, x, y) -> torch.Tensor:
    out = create(name).mutate(x, torch.Generator().manual_seed(0), bounds=target.bounds, target=target, y=y)
    return Constraint().check(x, out.x)


def test_the_fuzzer_uses_the_rule_defaults_checked_here():
    cfg = ConstraintConfig()
    assert (cfg.alpha, cfg.beta) == (DEFAULT_ALPHA, DEFAULT_BETA) == (0.02, 0.2)


def test_every_attack_mutator_is_classified():
    assert set(available("attack")) == set(LINF) | set(L2_FLOORS) | {"jsma"} | REJECTED


@pytest.mark.parametrize("name", LINF)
def test_linf_default_radius_is_below_the_rule(name):
    lo, hi = get(name).schema["eps"].default
    assert hi < DEFAULT_BETA - 1e-3, "a default eps at or above beta gets the mutants rejected"


@pytest.mark.parametrize("name", LINF + ["jsma"])
def test_default_mutants_are_all_accepted(digits_target, batch, name):
    x, y = batch
    ok = accepted(name, digits_target, x, y)
    assert bool(ok.all()), f"{int((~ok).sum())} of {len(ok)} default {name} mutants rejected"


def test_jsma_default_changes_fewer_values_than_the_l0_budget(digits_target, batch):
    lo, hi = get("jsma").schema["gamma"].default
    assert hi <= DEFAULT_ALPHA  # JSMA changes at most gamma * C*H*W values
    x, y = batch
    out = create("jsma").mutate(x, torch.Generator().manual_seed(0), target=digits_target, y=y)
    assert int((out.x != x).flatten(1).sum(1).max()) < DEFAULT_ALPHA * x[0].numel()


@pytest.mark.parametrize("name, floor", list(L2_FLOORS.items()))
def test_l2_attacks_are_mostly_accepted(digits_target, batch, name, floor):
    x, y = batch
    rate = float(accepted(name, digits_target, x, y).float().mean())
    assert rate >= floor, rate


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_known_rejected_attacks_stay_documented(digits_target, batch, name):
    """A documented limitation, not a goal: if these start passing the rule, update the lists
    (and the module docstring)."""
    x, y = batch
    rate = float(accepted(name, digits_target, x, y).float().mean())
    assert rate <= 0.25, rate  # measured 0.00 and 0.06
