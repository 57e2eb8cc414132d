"""DP-SGD training: clipping, the stop at a target epsilon, checkpoints, refusals, accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy.accounting import rdp_epsilon
from neurofuzz.privacy.dp_training import DPTrainer, noise_for_epsilon
from neurofuzz.privacy.noise_schedule import AdaptiveNoise


def _data(n=96, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, d // 4, generator=g)
    return x, (x.flatten(1).sum(1) > d / 2).long()


def _net(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(inplace=True), nn.Linear(8, 2))


@pytest.mark.filterwarnings("ignore:Full backward hook")  # opacus' hooks on the first layer
@pytest.mark.parametrize("clipping", ["flat", "adaptive"])
def test_clipping_bounds_every_per_example_gradient(clipping):
    x, y = _data()
    tr = DPTrainer(_net(), noise=1.0, max_grad_norm=0.05, batch_size=8, clipping=clipping, seed=0)
    tr._build(len(x))
    opt, mod = tr.optimizer, tr.module
    raw = []
    for i in range(12):
        opt.zero_grad(set_to_none=True)
        (1000 * nn.functional.cross_entropy(mod(x[i : i + 1]), y[i : i + 1])).backward()
        raw.append(float(torch.cat([p.grad_sample.flatten() for p in tr.model.parameters()]).norm()))
        opt.clip_and_accumulate()  # the batch has one example: the summed gradient is its clipped gradient
        clipped = float(torch.cat([p.summed_grad.flatten() for p in tr.model.parameters()]).norm())
        assert clipped <= opt.max_grad_norm * (1 + 1e-5)
    assert min(raw) > 0.05  # clipping had something to do


def test_training_reports_both_epsilons_and_stops_at_the_target():
    x, y = _data()
    r = DPTrainer(_net(), noise=2.0, batch_size=16, target_epsilon=3.0, seed=0).fit(x, y, epochs=50)
    assert r.stop_reason == "target_epsilon" and r.epsilon_rdp <= 3.0 < r.epsilon_zcdp and r.steps > 6
    assert r.history and all(h["epsilon_rdp"] <= 3.0 for h in r.history)
    assert all(not hasattr(p, "grad_sample") for p in r.model.parameters())
    assert r.model(x[:2]).shape == (2, 2)  # a plain module again: no opacus hooks


def test_a_resumed_training_carries_the_budget_and_equals_an_uninterrupted_one(tmp_path):
    x, y = _data()
    ck = tmp_path / "dp.pt"
    kw = dict(noise=AdaptiveNoise(sigma=1.5, decay=0.1, policy="exp", min_sigma=1.0), batch_size=16,
              optimizer="adam", lr=0.01, seed=3)
    once = DPTrainer(_net(), **kw).fit(x, y, epochs=4)
    DPTrainer(_net(), **kw).fit(x, y, epochs=2, checkpoint=ck)
    resumed = DPTrainer(_net(), **kw).fit(x, y, epochs=4, checkpoint=ck, resume=True)
    assert resumed.steps == once.steps == 24 and resumed.epsilon_rdp == pytest.approx(once.epsilon_rdp, rel=1e-12)
    for a, b in zip(once.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    tr = DPTrainer(_net(), **kw)
    tr.fit(x, y, epochs=4, checkpoint=ck, resume=True)
    hist = tr.monitor.history
    assert len(hist) > 1 and rdp_epsilon(hist, 1e-5) == pytest.approx(once.epsilon_rdp)  # one run per sigma
    with pytest.raises(UserError, match="already exceeded"):
        DPTrainer(_net(), **{**kw, "noise": 1.0}, target_epsilon=0.5).fit(x, y, epochs=8, checkpoint=ck, resume=True)
    with pytest.raises(UserError, match="delta"):
        DPTrainer(_net(), **kw, delta=1e-3).fit(x, y, epochs=8, checkpoint=ck, resume=True)


def test_models_opacus_cannot_train_are_fixed_or_refused():
    x, y = _data(32)
    with torch.random.fork_rng():
        bn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(UserError, match="BatchNorm.*fix_batchnorm=True"):
        DPTrainer(bn)
    r = DPTrainer(bn, fix_batchnorm=True, batch_size=8).fit(x, y, epochs=1)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in r.model.modules())
    frozen = _net()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(UserError, match="no trainable parameters"):
        DPTrainer(frozen)
    for bad in (dict(delta=1.0), dict(target_epsilon=0.0), dict(batch_size=0), dict(clipping="per_layer")):
        with pytest.raises(UserError):
            DPTrainer(_net(), **bad)


@pytest.mark.slow
def test_dp_training_at_epsilon_8_stays_within_the_documented_accuracy_drop():
    from neurofuzz.fuzzer.commands.privacy import Settings, _seeded
    from neurofuzz.fuzzer.zoo import LeNet5, builtin_target, load_digits32

    st = Settings()
    x, y = load_digits32("train")
    xt, yt = load_digits32("test")
    q = st.dp_batch / len(y)
    sigma = noise_for_epsilon(target_epsilon=8.0, delta=1e-5, sample_rate=q, steps=round(1 / q) * st.dp_epochs)
    r = DPTrainer(_seeded(LeNet5, 1), noise=sigma, batch_size=st.dp_batch, lr=st.dp_lr, optimizer="adam",
                  target_epsilon=8.0, seed=1).fit(x, y, epochs=st.dp_epochs)
    acc = float((r.model(xt).argmax(1) == yt).float().mean())
    base = float((builtin_target().predict(xt) == yt).float().mean())
    assert r.epsilon_rdp <= 8.0 and base - acc <= 0.12, (base, acc)
