"""Membership inference: clearly above chance on an overfit model, near chance on unseen members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy.membership import ShadowAttack, train_shadows
from neurofuzz.privacy.membership_calibrated import LiRAOffline, train_references
from neurofuzz.privacy.membership_threshold import LossThresholdAttack
from neurofuzz.privacy.metrics import membership_metrics


@pytest.fixture(scope="module")
def digits8():
    from neurofuzz.fuzzer.zoo import load_digits32

    x, y = load_digits32("all")
    return F.avg_pool2d(x, 4), y  # 8x8: small, fast models


def overfit_mlp(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    """Full-batch Adam, 200 epochs: memorises a small training set."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def setting(digits8):
    x, y = digits8
    members, nonmembers, pool = (x[:60], y[:60]), (x[100:200], y[100:200]), (x[200:600], y[200:600])
    return overfit_mlp(*members, seed=0), members, nonmembers, pool


QUICK_GRIDS = {"lr": {"C": [1.0]}, "knn": {"n_neighbors": [7]}, "rf": {"n_estimators": [20], "max_depth": [5]},
               "mlp": {"hidden_layer_sizes": [(16,)], "max_iter": [200]}}


@pytest.mark.parametrize("grids", [QUICK_GRIDS, pytest.param(None, marks=pytest.mark.slow)], ids=["quick", "full"])
def test_every_attack_is_clearly_above_chance_on_an_overfit_model(setting, grids):
    target, members, nonmembers, (px, py) = setting
    thr = LossThresholdAttack().evaluate(target, members, nonmembers)
    lira = LiRAOffline(train_references(lambda a, b, s: overfit_mlp(a[:60], b[:60], s), px[:120], py[:120], k=2)
                       ).evaluate(target, members, nonmembers)
    shadow = ShadowAttack(seed=0, grids=grids).fit(train_shadows(lambda a, b, s: overfit_mlp(a, b, s), px[:120],
                                                                 py[:120], n_shadows=2))
    shadow = shadow.evaluate(target, members, nonmembers)
    aucs = {"threshold": thr.auc, "lira": lira.auc, **{m: r.auc for m, r in shadow.items()}}
    assert all(a > 0.65 for a in aucs.values()), aucs
    assert sorted(shadow) == ["knn", "lr", "mlp", "rf"]


def test_attacks_are_near_chance_on_members_the_model_never_saw(digits8):
    x, y = digits8
    members, nonmembers = (x[:200], y[:200]), (x[200:400], y[200:400])
    blind = overfit_mlp(x[600:700], y[600:700], seed=1)  # trained on neither set
    lira = LiRAOffline(train_references(lambda a, b, s: overfit_mlp(a[:60], b[:60], s), x[700:820], y[700:820], k=2))
    for r in (LossThresholdAttack().evaluate(blind, members, nonmembers), lira.evaluate(blind, members, nonmembers)):
        assert abs(r.auc - 0.5) < 0.1, r.auc


def test_metrics_tpr_at_low_fpr_and_roc_as_data():
    scores = np.r_[np.linspace(1, 2, 50), np.linspace(0, 1.5, 200)]  # 50 members, 200 non-members
    truth = np.r_[np.ones(50), np.zeros(200)]
    m = membership_metrics(scores, truth)
    top_nonmember = scores[50:].max()
    expected = float((scores[:50] > np.sort(scores[50:])[-3]).mean())  # FPR <= 1%: at most 2 non-members above
    assert m.tpr_at_fpr[0.01] == pytest.approx(expected)
    assert m.tpr_at_fpr[0.001] == pytest.approx(float((scores[:50] > top_nonmember).mean()))
    assert m.resolvable == {0.01: True, 0.001: False}
    assert len(m.roc["fpr"]) == len(m.roc["tpr"]) == len(m.roc["thresholds"]) and m.roc["tpr"][-1] == 1.0
    assert 0.5 < m.auc < 1 and 0 < m.precision <= 1 and 0 < m.recall <= 1
    fixed = membership_metrics(scores, truth, threshold=1.0)
    assert fixed.recall == 1.0 and fixed.threshold == 1.0
    with pytest.raises(UserError, match="both members and non-members"):
        membership_metrics(scores, np.ones(250))


def test_too_little_data_for_shadow_or_reference_models_is_refused(digits8):
    x, y = digits8
    with pytest.raises(UserError, match="too few to train"):
        train_shadows(lambda a, b, s: overfit_mlp(a, b, s), x[:18], y[:18], n_shadows=2)
    with pytest.raises(UserError, match="too few to train"):
        train_references(lambda a, b, s: overfit_mlp(a, b, s), x[:15], y[:15], k=1)
    with pytest.raises(UserError, match="methods must be among"):
        ShadowAttack(methods=("svm",))
