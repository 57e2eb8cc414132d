"""Attacks declared once: one parameter declaration serves the standalone attack and its mutator
(same names, defaults, limits and documentation), one iteration serves the PGD family, and
black-box query counts come back explicitly."""

from __future__ import annotations

import contextvars
import inspect

import pytest
import torch

import neurofuzz.mutators.attacks.base as attack_base
import neurofuzz.mutators.attacks.blackbox as blackbox
from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import available, create, describe, get
from neurofuzz.mutators.attacks import (
    BIM, MDIIM, MIFGSM, NES, PGD, PGDL2, RFGSM, AttackMutator, IterativeAttack, Square,
)
from neurofuzz.mutators.base import Choice, Range

ATTACKS = available("attack")
COMMON = {"targeted", "bounds", "seed"}
# small budgets: every attack runs on a few digits in well under a second
SMALL = {"cw_l2": {"steps": 5, "search_steps": 1}, "deepfool": {"steps": 5}, "genattack": {"max_queries": 30},
         "hopskipjump": {"max_queries": 30, "init_evals": 5, "max_evals": 10, "init_tries": 5}, "nes": {"max_queries": 45},
         "salt_pepper": {"max_queries": 30}, "square": {"max_queries": 30}, "bim": {"steps": 3}, "pgd": {"steps": 3},
         "pgd_l2": {"steps": 3}, "mifgsm": {"steps": 3}, "mdiim": {"steps": 3}}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch(digits_test):
    x, y = digits_test
    return x[:4].clone(), y[:4].clone()


@pytest.mark.parametrize("name", ATTACKS)
def test_one_declaration_gives_the_same_names_defaults_and_docs(name):
    m = get(name)
    assert issubclass(m, AttackMutator) and m.attack.name == name
    declared = m.attack.params
    signature = inspect.signature(m.attack.__init__).parameters
    assert set(m.schema) - {"targeted"} == set(declared) == set(signature) - {"self", "model"} - COMMON
    info = describe(name)["params"]
    for key, p in declared.items():
        assert signature[key].default == p.default
        spec = m.schema[key]
        if p.choices is not None:
            assert isinstance(spec, Choice) and spec.options == p.choices and spec.default == p.default
        else:
            assert isinstance(spec, Range) and (spec.limit_lo, spec.limit_hi) == p.limits
            assert spec.default == (p.draw or (p.default, p.default)) and spec.integer == p.integer
        assert info[key]["doc"] == p.doc and p.doc
        assert p.describe(key) in m.__doc__ and p.describe(key) in m.attack.__doc__


@pytest.mark.parametrize("name", ATTACKS)
def test_standalone_and_mutator_run_the_same_code(digits_target, batch, name):
    """A standalone call equals the mutator's replay of the same values and seeds, bit for bit."""
    x, y = batch
    attack_cls = get(name).attack
    attack = attack_cls(digits_target, **SMALL.get(name, {}))
    result = attack.run(x, y, rng=gen(3))
    params = {k: torch.full((len(x),), v) for k, v in attack.values.items() if attack_cls.params[k].choices is None}
    if attack_cls.randomized:
        params["seed"] = attack_cls.draw_seeds(len(x), gen(3))
    options = {k: v for k, v in attack.values.items() if attack_cls.params[k].choices is not None}
    m = create(name, targeted="next" if attack.targeted else "no", **options)
    assert torch.equal(m.replay(x, params, target=digits_target, y=y), result.x)
    assert result.outcomes.keys() == set(attack_cls.outcome_keys)


def test_the_pgd_family_shares_one_iteration():
    for cls in (PGD, PGDL2, BIM, MIFGSM, MDIIM, NES):
        assert issubclass(cls, IterativeAttack) and "perturb" not in cls.__dict__, cls
    assert not hasattr(attack_base, "step_mask")


def test_query_counts_are_returned_explicitly(digits_target, batch):
    x, y = batch
    assert not any(isinstance(v, contextvars.ContextVar) for v in vars(blackbox).values())
    attack = NES(digits_target, samples=5, max_queries=60)
    result = attack.run(x, y, rng=gen(0))
    q = result.outcomes["queries"]
    assert q.dtype == torch.int64 and q.shape == (4,) and bool((q > 0).all()) and bool((q <= 60).all())
    assert attack.last_queries is q
    out = create("square", max_queries=40).mutate(x, gen(1), target=digits_target, y=y)
    assert out.params["queries"].shape == (4,) and bool((out.params["queries"] <= 40).all())
    empty = Square(digits_target, max_queries=5).run(x[:0], y[:0])
    assert empty.outcomes["queries"].shape == (0,)


def test_unknown_and_tied_parameters_are_user_errors_in_both_uses(digits_target):
    with pytest.raises(UserError, match=r"pgd: unknown parameter\(s\) \['epsilon'\]"):
        PGD(digits_target, epsilon=0.1)
    with pytest.raises(UserError, match="epsilon"):
        create("pgd", epsilon=0.1)
    with pytest.raises(UserError, match="ratio"):
        RFGSM(digits_target, eps=0.1, ratio=1.5)
    with pytest.raises(UserError, match="ratio"):
        create("rfgsm", ratio=(0.5, 1.5))
    assert RFGSM(digits_target, ratio=1.5, start="uniform").ratio == 1.5
    assert RFGSM(digits_target).ratio == 0.5 and RFGSM(digits_target, start="uniform").ratio == 1.25
    with pytest.raises(UserError, match="steps must be a whole number"):
        PGD(digits_target, steps=2.5)
    with pytest.raises(UserError, match="max_evals"):
        get("hopskipjump").attack(digits_target, init_evals=100, max_evals=10)
    create("hopskipjump", init_evals=100, max_evals=10)  # as a mutator, max_evals caps each estimate


def test_scaled_limits_follow_the_bounds(digits_target):
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.utils.skip_init(torch.nn.Linear, 4, 3))  # no global RNG
    assert PGD(wide, eps=8.0, alpha=2.0, bounds=(0.0, 255.0)).eps == 8.0  # raw units
    with pytest.raises(UserError, match=r"eps must be a number in \[0, 255\]"):
        PGD(wide, eps=300.0, bounds=(0.0, 255.0))
    with pytest.raises(UserError, match=r"eps must be a number in \[0, 1\]"):
        PGD(digits_target, eps=1.5)
