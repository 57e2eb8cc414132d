"""Image inversion from a representation and gradient inversion from one training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target
from neurofuzz.privacy.gradient_inversion import GradientInversion, infer_labels, step_gradients
from neurofuzz.privacy.inversion import ImageInversion


@pytest.fixture(scope="module")
def digits8():
    from neurofuzz.fuzzer.zoo import load_digits32

    x, y = load_digits32("test")
    return F.avg_pool2d(x[:8], 4), y[:8]


def small_mlp(seed: int = 0, act: type[nn.Module] = nn.Sigmoid) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), act(), nn.Linear(64, 10))


def test_gradient_inversion_recovers_one_image_on_a_small_mlp(digits8):
    x, y = digits8
    r = GradientInversion(small_mlp(), steps=8, seed=0).run(x[:1], y[:1])
    assert r.labels == [int(y[0])] and r.labels_exact  # iDLG: the label from the last bias gradient
    assert r.ssim[0] > 0.9 and r.psnr[0] > 25, (r.ssim, r.psnr)
    assert r.images.shape == x[:1].shape and 0 <= float(r.images.min()) and float(r.images.max()) <= 1


def test_gradient_inversion_matches_a_batch_back_to_its_order(digits8):
    x, y = digits8
    r = GradientInversion(small_mlp(), steps=8, seed=0).run(x[:3], y[:3], labels=y[:3].tolist())
    assert len(r.ssim) == len(r.psnr) == 3
    assert r.ssim[0] > 0.9  # matched: reconstruction i compares with original i
    own = [float(v) for v in r.ssim]
    from neurofuzz.mutators.constraints import ssim

    assert own == pytest.approx([float(ssim(x[i], r.images[i:i + 1])[0]) for i in range(3)])
    with pytest.raises(UserError, match="1 to 8 images"):
        GradientInversion(small_mlp()).run(torch.zeros(9, 1, 8, 8), torch.zeros(9, dtype=torch.long))


def test_label_inference_reads_the_negative_bias_gradient(digits8):
    x, y = digits8
    g = step_gradients(small_mlp(), x[:1], y[:1])
    assert infer_labels(g, 1) == [int(y[0])]
    assert infer_labels(g, 3) == [int(y[0])] * 3  # one class present: repeated


def test_image_inversion_from_the_first_layer_reconstructs_and_reports(digits8):
    x, y = digits8
    net = small_mlp(act=nn.ReLU)
    inv = ImageInversion(Target(net), layer="module.1", steps=150, lr=0.1, tv_weight=0.0, seed=0)
    rec, r = inv.run(x[:2], y[:2])
    assert rec.shape == x[:2].shape and r.ssim > 0.9 and r.l2 < 1.0, r
    assert 0 <= r.confidence <= 1 and len(r.per_image_ssim) == 2
    with pytest.raises(UserError, match="not a module of the model"):
        ImageInversion(net, layer="nope")


def test_the_evaluators_run_on_a_target_with_normalisation(digits8):
    x, y = digits8
    t = Target(small_mlp(), mean=[0.5], std=[0.25])
    r = GradientInversion(t, steps=3, seed=0).run(x[:1], y[:1])
    assert len(r.ssim) == 1 and r.gradient_distance >= 0
    frozen = small_mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(UserError, match="no trainable parameters"):
        GradientInversion(frozen)


def test_an_inversion_reconstruction_seeds_a_fuzz_campaign(tmp_path, digits_target, digits_test):
    from neurofuzz.fuzzer.campaign import Campaign
    from neurofuzz.fuzzer.config import Budget, FuzzConfig

    x, y = digits_test
    inv = ImageInversion(digits_target, layer="module.pool1", steps=40, tv_weight=0.5, seed=0)
    rec, r = inv.run(x[:4], y[:4])
    assert r.ssim > 0.5
    cfg = FuzzConfig(seed=0, mutators=[{"name": "gaussian_noise"}], budget=Budget(iterations=1))
    fz = Campaign.create(tmp_path / "camp", digits_target, rec, y[:4], cfg, profile_data=rec)
    try:
        summary = fz.run()
    finally:
        fz.close()
    assert summary["iterations"] == 1 and summary["mutants"] > 0
