"""Gradient attacks: balls and bounds, closed forms, determinism, success rates, side effects."""

from __future__ import annotations

import re
import sys

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import available, create, get
from neurofuzz.mutators.attacks import BIM, FGSM, MDIIM, MIFGSM, PGD, PGDL2, RFGSM
from neurofuzz.mutators.attacks.base import target_labels_from

ATTACK_NAMES = ["bim", "fgsm", "mdiim", "mifgsm", "pgd", "pgd_l2", "rfgsm"]
LINF_ATTACKS = [
    (FGSM, {}),
    (RFGSM, {"start": "sign"}),
    (RFGSM, {"start": "uniform"}),
    (BIM, {"steps": 5}),
    (PGD, {"steps": 5}),
    (PGD, {"steps": 5, "random_start": False}),
    (MIFGSM, {"steps": 5}),
    (MDIIM, {"steps": 5}),
]
ALL_ATTACKS = LINF_ATTACKS + [(PGDL2, {"steps": 5, "eps": 1.0})]


def _ids(cases):
    return [f"{c.__name__}{'-' + '-'.join(f'{k}={v}' for k, v in kw.items()) if kw else ''}" for c, kw in cases]


@pytest.fixture(scope="module")
def batch(digits_test):
    x, y = digits_test
    return x[:32], y[:32]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(seed: int, n_in: int, n_out: int) -> nn.Linear:
    """nn.Linear initialised from a seeded generator (its default init would use the global RNG)."""
    lin = torch.nn.utils.skip_init(nn.Linear, n_in, n_out)
    g = _generator(seed)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_out, n_in, generator=g) / n_in**0.5)
        lin.bias.copy_(torch.randn(n_out, generator=g))
    return lin


def _linear_model(seed: int, n_in: int, n_out: int, zero_cols: list[int] = ()) -> nn.Module:
    lin = _linear(seed, n_in, n_out)
    with torch.no_grad():
        lin.weight.mul_(n_in**0.5)
        for c in zero_cols:
            lin.weight[:, c] = 0.0
    return nn.Sequential(nn.Flatten(), lin).eval()


# ---------------------------------------------------------------------------- registry
def test_all_attacks_registered_as_attack_mutators():
    more = ["cw_l2", "deepfool", "genattack", "hopskipjump", "jsma", "nes", "salt_pepper", "square"]
    assert available("attack") == sorted(ATTACK_NAMES + more)  # the others: tests/test_attacks_more.py
    for name in ATTACK_NAMES:
        cls = get(name)
        assert cls.kind == "attack" and cls.needs_model
        assert re.search(r"(ICLR|CVPR)[ ,]+20\d\d", sys.modules[cls.__module__].__doc__)  # paper reference
        assert cls.attack.__doc__ and "Example" in cls.attack.__doc__


# ---------------------------------------------------------------------------- balls and bounds
@pytest.mark.parametrize("cls,kw", LINF_ATTACKS, ids=_ids(LINF_ATTACKS))
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_linf_ball_and_bounds(digits_target, batch, cls, kw, eps):
    x, y = batch
    x_adv = cls(digits_target, eps=eps, **kw)(x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    if eps > 0:
        assert float((x_adv - x).abs().max()) >= min(eps, 0.05) - 1e-6  # it did move (5 steps of 0.01)


@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("eps", [0.25, 1.0, 3.0])
def test_l2_ball_and_bounds(digits_target, batch, eps, random_start):
    x, y = batch
    x_adv = PGDL2(digits_target, eps=eps, alpha=eps / 4, steps=8, random_start=random_start)(x, y)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert float(norms.max()) <= eps * (1 + 1e-5) + 1e-6
    assert float(norms.min()) > 0
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_balls_respected_with_other_bounds_and_per_input_eps():
    """Plain module on bounds (-1, 1): the mutators' eps is a fraction of the range (2)."""
    model = _linear_model(0, 48, 5)
    x = torch.rand(16, 3, 4, 4, generator=_generator(1)) * 2 - 1
    y = torch.arange(16) % 5
    for name in ("fgsm", "pgd", "bim", "mifgsm", "mdiim", "rfgsm"):
        m = create(name, eps=(0.05, 0.2))
        out = m.mutate(x, _generator(2), bounds=(-1.0, 1.0), target=model, y=y)
        eps = out.params["eps"].float().view(-1, 1, 1, 1) * 2.0
        assert bool(((out.x - x).abs() <= eps + 1e-6).all()), name
        assert float(out.x.min()) >= -1.0 and float(out.x.max()) <= 1.0
    out = create("pgd_l2", eps=(0.5, 1.5), alpha=0.2, steps=5).mutate(x, _generator(3), bounds=(-1.0, 1.0), target=model, y=y)
    norms = (out.x - x).flatten(1).norm(dim=1).double()
    assert bool((norms <= out.params["eps"] * 2.0 * (1 + 1e-5)).all())


# ---------------------------------------------------------------------------- closed forms
def _ce_input_grad_by_hand(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d CE(Wx + b, y) / dx = W^T (softmax(Wx + b) - onehot(y)), per input."""
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    p = torch.softmax(x.flatten(1).double() @ w.T + b, dim=1)
    return ((p - F.one_hot(labels, w.shape[0]).double()) @ w).view_as(x)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3])
def test_fgsm_matches_closed_form_on_linear_model(eps):
    zero_cols = [0, 5, 7]
    model = _linear_model(0, 12, 4, zero_cols)
    x = torch.rand(32, 3, 2, 2, generator=_generator(1))
    y = torch.randint(0, 4, (32,), generator=_generator(2))
    g = _ce_input_grad_by_hand(model, x, y)
    assert float(g.abs().flatten(1)[:, [c for c in range(12) if c not in zero_cols]].min()) > 1e-4  # signs unambiguous
    expected = (x + eps * torch.sign(g).float()).clamp(0, 1)
    got = FGSM(model, eps=eps)(x, y)
    assert torch.equal(got, expected)
    # sign(0) = 0: pixels with a zero gradient do not move
    assert torch.equal(got.flatten(1)[:, zero_cols], x.flatten(1)[:, zero_cols])
    # targeted: descend the loss of the target label
    t = (y + 1) % 4
    expected_t = (x - eps * torch.sign(_ce_input_grad_by_hand(model, x, t)).float()).clamp(0, 1)
    assert torch.equal(FGSM(model, eps=eps)(x, y, target_labels=t), expected_t)
    assert torch.equal(FGSM(model, eps=eps, targeted=True)(x, y), expected_t)


def test_pgd_matches_torchattacks_style_reference_bit_for_bit(digits_target, digits_test):
    """PGD without random start equals the usual loop (mean-reduced CE, sign step, project the
    difference, clip) -- the form torchattacks' PGD computes -- on a power-of-two batch."""
    x, y = digits_test[0][:128], digits_test[1][:128]
    eps, alpha, steps = 0.3, 0.01, 10
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(digits_target(adv), y), adv)
        adv = adv.detach() + alpha * g.sign()
        adv = torch.clamp(x + torch.clamp(adv - x, min=-eps, max=eps), 0, 1).detach()
    assert torch.equal(PGD(digits_target, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y), adv)
    assert torch.equal(BIM(digits_target, eps=eps, alpha=alpha, steps=steps)(x, y), adv)


def test_mifgsm_special_cases(digits_target, batch):
    x, y = batch
    # no momentum: the normalised gradient has the sign of the gradient, so MI-FGSM == BIM
    mi = MIFGSM(digits_target, eps=0.2, alpha=0.02, steps=6, decay=0.0)(x, y)
    assert torch.equal(mi, BIM(digits_target, eps=0.2, alpha=0.02, steps=6)(x, y))
    # input diversity that never fires is plain MI-FGSM
    a = MDIIM(digits_target, eps=0.2, steps=6, prob=0.0)(x, y, rng=_generator(0))
    assert torch.equal(a, MIFGSM(digits_target, eps=0.2, steps=6)(x, y))
    # and when it fires, it changes the result
    b = MDIIM(digits_target, eps=0.2, steps=6, prob=1.0, resize_rate=0.7)(x, y, rng=_generator(0))
    assert not torch.equal(b, a)


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize(
    "cls,kw",
    [(FGSM, {}), (PGD, {"random_start": False, "steps": 10}), (BIM, {"steps": 10}), (MIFGSM, {}),
     (PGDL2, {"random_start": False, "steps": 10})],
    ids=["fgsm", "pgd", "bim", "mifgsm", "pgd_l2"],
)
def test_deterministic_attacks_repeat_bit_for_bit(digits_target, batch, cls, kw):
    x, y = batch
    attack = cls(digits_target, **kw)
    a = attack(x, y)
    assert torch.equal(a, attack(x, y))
    assert torch.equal(a, cls(digits_target, **kw)(x.clone(), y.clone()))


@pytest.mark.parametrize("cls", [PGD, PGDL2, RFGSM, MDIIM])
def test_random_attacks_reproducible_from_generator(digits_target, batch, cls):
    x, y = batch
    attack = cls(digits_target, **({"steps": 3} if cls is not RFGSM else {}))
    a = attack(x, y, rng=_generator(5))
    assert torch.equal(a, attack(x, y, rng=_generator(5)))
    assert not torch.equal(a, attack(x, y, rng=_generator(6)))
    # the attack's own generator (seeded at construction) advances from call to call
    own = cls(digits_target, seed=1, **({"steps": 3} if cls is not RFGSM else {}))
    first, second = own(x, y), own(x, y)
    assert not torch.equal(first, second)
    assert torch.equal(first, cls(digits_target, seed=1, **({"steps": 3} if cls is not RFGSM else {}))(x, y))


# ---------------------------------------------------------------------------- success rates
def test_pgd_defaults_misclassify_at_least_99_percent(digits_target, digits_test):
    x, y = digits_test[0][:256], digits_test[1][:256]  # 256 of the 360 test images
    attack = PGD(digits_target)
    assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (0.3, 0.01, 40, True)
    x_adv = attack(x, y)
    success = float((digits_target.predict(x_adv) != y).float().mean())
    assert success >= 0.99, success  # observed: 1.000


def test_targeted_attacks_hit_their_targets(digits_target, digits_test):
    x, y = digits_test[0][:128], digits_test[1][:128]
    nxt = (y + 1) % 10
    hit = float((digits_target.predict(PGD(digits_target, targeted=True)(x, y)) == nxt).float().mean())
    assert hit >= 0.95, hit  # observed: 1.000
    other = (y + torch.randint(1, 10, y.shape, generator=_generator(0))) % 10
    hit = float((digits_target.predict(PGD(digits_target)(x, y, target_labels=other)) == other).float().mean())
    assert hit >= 0.95, hit  # observed: 0.984
    hit = float((digits_target.predict(MIFGSM(digits_target, targeted=True)(x, y)) == nxt).float().mean())
    assert hit >= 0.8, hit  # observed: 0.891


def test_weaker_attacks_still_beat_clean_accuracy(digits_target, digits_test):
    x, y = digits_test[0][:128], digits_test[1][:128]
    clean = float((digits_target.predict(x) != y).float().mean())
    for attack, floor in [(FGSM(digits_target), 0.9), (RFGSM(digits_target), 0.75), (MDIIM(digits_target), 0.95),
                          (PGDL2(digits_target, eps=2.0, alpha=0.2, steps=20), 0.6)]:
        err = float((digits_target.predict(attack(x, y)) != y).float().mean())
        assert err >= max(floor, clean), (attack, err)  # observed: 0.98, 0.88, 1.00, 0.76


def test_target_labels_never_equal_true_labels():
    y = torch.arange(10).repeat(50)
    shift = torch.randint(0, 2**31 - 1, (500,), generator=_generator(0))
    for n in (2, 3, 10):
        yy = y % n
        t = target_labels_from(yy, n, shift)
        assert bool((t != yy).all()) and int(t.min()) >= 0 and int(t.max()) < n
        assert torch.equal(target_labels_from(yy, n), (yy + 1) % n)
    # with 10 classes the random offsets reach every other class
    assert set(((target_labels_from(y, 10, shift) - y) % 10).tolist()) == set(range(1, 10))


# ---------------------------------------------------------------------------- side effects
@pytest.mark.parametrize("cls,kw", ALL_ATTACKS, ids=_ids(ALL_ATTACKS))
def test_no_parameter_grads_eval_mode_input_untouched(digits_target, batch, cls, kw):
    x, y = batch
    x_copy, y_copy = x.clone(), y.clone()
    cls(digits_target, **kw)(x, y)
    assert all(p.grad is None for p in digits_target.parameters())
    assert all(p.requires_grad for p in digits_target.parameters())
    assert not any(m.training for m in digits_target.module.modules())  # the wrapped model
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)


def test_train_mode_model_is_attacked_in_eval_mode_and_restored():
    model = nn.Sequential(nn.Flatten(), _linear(0, 16, 32), nn.ReLU(), nn.Dropout(0.5), _linear(1, 32, 3))
    model.train()
    x = torch.rand(8, 1, 4, 4, generator=_generator(0))
    y = torch.zeros(8, dtype=torch.long)
    # dropout in train mode would draw from the global RNG (the conftest fixture would fail)
    a = PGD(model, eps=0.1, steps=3, random_start=False)(x, y)
    assert torch.equal(a, PGD(model, eps=0.1, steps=3, random_start=False)(x, y))
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_works_under_no_grad_and_inference_mode(digits_target, batch):
    x, y = batch
    ref = FGSM(digits_target, eps=0.1)(x, y)
    with torch.no_grad():
        assert torch.equal(FGSM(digits_target, eps=0.1)(x, y), ref)
    with torch.inference_mode():
        assert torch.equal(FGSM(digits_target, eps=0.1)(x, y), ref)


# ---------------------------------------------------------------------------- as mutators
@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("targeted", ["no", "random"])
def test_mutators_replay_exactly_and_keep_the_contract(digits_target, batch, name, targeted):
    x, y = batch[0][:16], batch[1][:16]
    kw = {"steps": (2, 6)} if "steps" in get(name).schema else {}
    m = create(name, targeted=targeted, **kw)
    x_copy = x.clone()
    out = m.mutate(x, _generator(7), bounds=(0.0, 1.0), target=digits_target, y=y)
    assert out.x.shape == x.shape and out.x.dtype == x.dtype and out.x.device == x.device
    assert torch.equal(x, x_copy)
    assert ("shift" in out.params) == (targeted == "random")
    assert torch.equal(m.replay(x, out.params, target=digits_target, y=y), out.x)
    again = m.mutate(x, _generator(7), bounds=(0.0, 1.0), target=digits_target, y=y)
    assert torch.equal(again.x, out.x)
    assert all(p.grad is None for p in digits_target.parameters())


def test_mutator_per_input_steps_equal_standalone_runs(digits_target, batch):
    x, y = batch[0][:32], batch[1][:32]
    m = create("bim", eps=0.2, alpha=0.02, steps=(1, 5))
    out = m.mutate(x, _generator(3), target=digits_target, y=y)
    steps = out.params["steps"]
    assert len(set(steps.tolist())) > 1
    for s in set(steps.tolist()):
        rows = steps == s
        full = BIM(digits_target, eps=0.2, alpha=0.02, steps=s)(x, y)
        assert torch.equal(out.x[rows], full[rows])


def test_mutator_targeted_modes_hit_their_targets(digits_target, digits_test):
    x, y = digits_test[0][:64], digits_test[1][:64]
    out = create("pgd", eps=0.3, alpha=0.02, steps=20, targeted="next").mutate(x, _generator(0), target=digits_target, y=y)
    hit = float((digits_target.predict(out.x) == (y + 1) % 10).float().mean())
    assert hit >= 0.9, hit  # observed: 0.953
    out = create("pgd", eps=0.3, alpha=0.02, steps=20, targeted="random").mutate(x, _generator(0), target=digits_target, y=y)
    t = target_labels_from(y, 10, out.params["shift"])
    assert len(set(((t - y) % 10).tolist())) >= 5  # various targets, never the true label
    hit = float((digits_target.predict(out.x) == t).float().mean())
    assert hit >= 0.9, hit  # observed: 0.953


def test_mdiim_single_input_replay_matches_batch(digits_target, batch):
    x, y = batch[0][:8], batch[1][:8]
    m = create("mdiim", prob=1.0)
    out = m.mutate(x, _generator(4), target=digits_target, y=y)
    assert len(set(out.params["seed"].tolist())) == 1  # one transform per step for the batch
    for i in (0, 5):
        alone = m.replay(x[i : i + 1], out.params_of(i), target=digits_target, y=y[i : i + 1])
        assert torch.allclose(alone, out.x[i : i + 1], atol=1e-6)


# ---------------------------------------------------------------------------- validation
def test_bad_input_raises_user_errors(digits_target, batch):
    x, y = batch
    with pytest.raises(UserError, match="eps"):
        PGD(digits_target, eps=-0.1)
    with pytest.raises(UserError, match="alpha"):
        RFGSM(digits_target, eps=0.1, alpha=0.2)
    with pytest.raises(UserError, match="outside the bounds"):
        FGSM(digits_target)(x * 2, y)
    with pytest.raises(UserError, match="labels"):
        FGSM(digits_target)(x, y.float())
    with pytest.raises(UserError, match="must lie in"):
        FGSM(digits_target)(x, y + 10)
    with pytest.raises(UserError, match="target_labels"):
        FGSM(digits_target)(x, y, target_labels=y[:3])
    with pytest.raises(UserError, match="pass target"):
        create("pgd").mutate(x, _generator(0))
    with pytest.raises(UserError, match="ratio"):
        create("rfgsm", ratio=(0.5, 1.5))
    with pytest.raises(UserError):
        create("pgd", targeted="sometimes")
