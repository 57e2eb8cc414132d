"""neurofuzz.evaluators: attack, defense and fuzz-campaign metrics against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from neurofuzz.corpus import CampaignStore, MemoryStore
from neurofuzz.evaluators import (
    AttackEvaluator,
    DefenseEvaluator,
    defense_metrics,
    evaluate_attack,
    evaluate_campaign,
    evaluate_defense,
    evaluate_store,
    gaussian_blur,
    js_divergence,
)
from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import create
from neurofuzz.mutators.constraints import ssim

F64 = torch.float64
LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------ attack
def _attack_case():
    """3 inputs [1, 2, 2]; inputs 0 and 1 are successes (untargeted), input 2 is not."""
    x = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2]]).view(3, 1, 2, 2)
    d = torch.tensor([[0.25, 0.0, 0.5, 0.0], [-0.5, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]]).view(3, 1, 2, 2)
    p = torch.tensor([[0.1, 0.7, 0.2], [0.3, 0.1, 0.6], [0.5, 0.25, 0.25]], dtype=F64)
    return x, x + d, torch.tensor([0, 1, 0]), p


def test_attack_metrics_by_hand():
    x, xa, y, p = _attack_case()
    r = evaluate_attack(x, y, xa, probs_adv=p)
    assert (r.n, r.successes, r.targeted) == (3, 2, False)
    assert r.misclassification_rate == pytest.approx(2 / 3)
    assert r.acac == pytest.approx((0.7 + 0.6) / 2)
    assert r.actc == pytest.approx((0.1 + 0.1) / 2)
    assert r.nte == pytest.approx(((0.7 - 0.2) + (0.6 - 0.3)) / 2)
    # absolute: input 0 changes 2 elements (0.25, 0.5), input 1 one element (-0.5)
    assert r.l0_abs == pytest.approx(1.5)
    assert r.l2_abs == pytest.approx((math.sqrt(0.25**2 + 0.5**2) + 0.5) / 2, abs=1e-7)
    assert r.linf_abs == pytest.approx(0.5, abs=1e-7)
    # relative: L0 / 4 elements; L2 / ||x||_2; Linf / ||x||_inf; L0 / ||x||_0
    assert r.l0_rel == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert r.l2_rel == pytest.approx((math.sqrt(0.3125) / math.sqrt(0.5) + 0.5 / 1.0) / 2, abs=1e-7)
    assert r.linf_rel == pytest.approx((0.5 / 0.5 + 0.5 / 1.0) / 2, abs=1e-7)
    assert r.l0_rel_support == pytest.approx((2 / 2 + 1 / 1) / 2)
    assert r.ssim == pytest.approx(float(ssim(x[:2], xa[:2]).mean()), abs=1e-12)
    assert r.rgb is None and r.ric is None and r.clean_accuracy is None
    d = r.to_dict()
    assert d["misclassification_rate"] == r.misclassification_rate and d["rgb"] is None and len(d) == 21
    assert "acac                    0.65" in r.format()


def test_attack_streaming_equals_one_batch_and_accepts_one_hot():
    x, xa, y, p = _attack_case()
    whole = evaluate_attack(x, y, xa, probs_adv=p, batch_size=256)
    one_by_one = evaluate_attack(x, y, xa, probs_adv=p, batch_size=1)
    assert whole.to_dict() == pytest.approx(one_by_one.to_dict(), nan_ok=True)
    one_hot = torch.nn.functional.one_hot(y, 3)
    assert evaluate_attack(x, one_hot, xa, probs_adv=p).to_dict() == whole.to_dict()
    ev = AttackEvaluator()
    ev.update(x[:2], y[:2], xa[:2], probs_adv=p[:2])
    ev.update(x[2:], y[2:], xa[2:], probs_adv=p[2:])
    assert ev.result().to_dict() == pytest.approx(whole.to_dict(), nan_ok=True)


def test_attack_no_success_gives_nan_and_zero_mr():
    x, xa, y, _ = _attack_case()
    p = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]], dtype=F64)  # all correct
    r = evaluate_attack(x, y, xa, probs_adv=p, probs_clean=p)
    assert r.successes == 0 and r.misclassification_rate == 0.0 and r.clean_accuracy == 1.0
    averaged = ("acac", "actc", "l0_rel", "l2_rel", "linf_rel", "l0_rel_support", "l0_abs", "l2_abs", "linf_abs", "ssim", "nte")
    for k in averaged:
        assert math.isnan(getattr(r, k)), k


def test_attack_all_success():
    x, xa, y, _ = _attack_case()
    p = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.1, 0.2, 0.7]], dtype=F64)
    r = evaluate_attack(x, y, xa, probs_adv=p)
    # input 1 ties classes 0 and 2: argmax takes the first maximum (class 0), NTE = 0.5 - 0.5 = 0
    assert r.successes == 3 and r.misclassification_rate == 1.0
    assert r.acac == pytest.approx((1.0 + 0.5 + 0.7) / 3)
    assert r.actc == pytest.approx((0.0 + 0.0 + 0.1) / 3)
    assert r.nte == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert r.linf_abs == pytest.approx((0.5 + 0.5 + 0.1) / 3, abs=1e-7)
    assert r.linf_rel == pytest.approx((1.0 + 0.5 + 0.1 / 0.2) / 3, abs=1e-6)


def test_attack_targeted_success_means_target_reached():
    x, xa, y, p = _attack_case()  # predictions are [1, 2, 0]
    t = torch.tensor([2, 2, 1])  # only input 1 reaches its target (input 0 is misclassified, not targeted)
    r = evaluate_attack(x, y, xa, probs_adv=p, target_labels=t)
    assert r.targeted and r.successes == 1
    assert r.misclassification_rate == pytest.approx(1 / 3)
    assert r.acac == pytest.approx(0.6) and r.actc == pytest.approx(0.1) and r.nte == pytest.approx(0.3)
    assert r.l0_abs == 1.0 and r.l2_abs == pytest.approx(0.5)
    with pytest.raises(UserError, match="target_labels"):
        AttackEvaluator(targeted=True).update(x, y, xa, probs_adv=p)
    with pytest.raises(UserError, match="target_labels"):
        AttackEvaluator().update(x, y, xa, probs_adv=p, target_labels=t)


def test_attack_blank_image_has_no_relative_distance():
    x = torch.zeros(2, 1, 2, 2)
    x[1, 0, 0, 0] = 0.5
    xa = x.clone()
    xa[:, 0, 1, 1] = 0.25
    p = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=F64)
    r = evaluate_attack(x, torch.tensor([0, 0]), xa, probs_adv=p)
    assert r.successes == 2 and r.l0_rel == pytest.approx(0.25)  # element count: defined for both
    assert r.linf_rel == pytest.approx(0.25 / 0.5) and r.l2_rel == pytest.approx(0.25 / 0.5)  # input 1 only
    assert r.l0_rel_support == pytest.approx(1.0)


class _Spike(nn.Module):
    """Hand-made linear model on 1x8x8 images: logits (0, 10 * (x[3, 3] - 0.5)), i.e. class 1
    iff the pixel at (3, 3) exceeds 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.utils.skip_init(nn.Linear, 64, 2)  # no random init: the global RNG stays untouched
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1, 3 * 8 + 3] = 10.0
            self.fc.bias.copy_(torch.tensor([0.0, -5.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _spike_case():
    x = torch.zeros(3, 1, 8, 8)
    xa = x.clone()
    xa[0, 0, 3, 3] = 1.0  # a single-pixel spike: class 1
    xa[1] = 1.0  # a white image: class 1, unchanged by blur and JPEG
    xa[2, 0, 0, 0] = 1.0  # pixel elsewhere: still class 0 (not a success)
    return x, torch.zeros(3, dtype=torch.long), xa


@pytest.mark.parametrize(("sigma", "quality", "rgb", "ric"), [(1.0, 10, 0.5, 0.5), (0.5, 90, 1.0, 1.0)])
def test_attack_robustness_to_blur_and_jpeg(sigma, quality, rgb, ric):
    x, y, xa = _spike_case()
    model = _Spike()
    # by hand: sigma 1 spreads the spike to 1/(2 pi) ~ 0.16 < 0.5, sigma 0.5 keeps ~0.62; JPEG q10 leaves ~0.18, q90 1.0
    spike = xa[:1]
    assert (gaussian_blur(spike, sigma)[0, 0, 3, 3] > 0.5) == (rgb == 1.0)
    assert (create("jpeg").replay(spike, {"quality": quality})[0, 0, 3, 3] > 0.5) == (ric == 1.0)
    r = evaluate_attack(x, y, xa, model=model, blur_sigma=sigma, jpeg_quality=quality)
    assert r.successes == 2 and r.clean_accuracy == 1.0
    assert r.rgb == pytest.approx(rgb) and r.ric == pytest.approx(ric)
    assert (r.blur_sigma, r.blur_kernel, r.jpeg_quality) == (sigma, 2 * math.ceil(3 * sigma) + 1, quality)
    # the model path gives the same metrics as passing its probabilities
    with torch.no_grad():
        p = torch.softmax(model(xa).double(), dim=1)
    r2 = evaluate_attack(x, y, xa, probs_adv=p, model=model, blur_sigma=sigma, jpeg_quality=quality)
    assert r2.to_dict() == pytest.approx(r.to_dict(), nan_ok=True)
    assert evaluate_attack(x, y, xa, model=model, robustness=False).rgb is None


def test_attack_robustness_nan_without_success_and_kernel_option():
    x, y, xa = _spike_case()
    r = evaluate_attack(x[2:], y[2:], xa[2:], model=_Spike())
    assert r.successes == 0 and math.isnan(r.rgb) and math.isnan(r.ric)
    # a 1-pixel kernel is the identity: the spike survives any sigma
    r = evaluate_attack(x, y, xa, model=_Spike(), blur_sigma=3.0, blur_kernel=1)
    assert r.rgb == 1.0 and r.blur_kernel == 1


def test_gaussian_blur_matches_the_blur_mutator():
    x = torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    for sigma in (0.5, 1.25):
        ours = gaussian_blur(x, sigma)
        theirs = create("gaussian_blur").replay(x, {"sigma": sigma})
        assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    const = torch.full((1, 1, 5, 5), 0.3)
    assert torch.allclose(gaussian_blur(const, 2.0), const)  # replicated borders keep a flat image flat


def test_attack_rejects_bad_input():
    x, xa, y, p = _attack_case()
    with pytest.raises(UserError, match="softmax"):
        evaluate_attack(x, y, xa, probs_adv=torch.log(p + 1e-3))  # logits, not probabilities
    with pytest.raises(UserError, match="same shape"):
        evaluate_attack(x, y, xa[:, :, :1], probs_adv=p)
    with pytest.raises(UserError, match="probs_adv"):
        evaluate_attack(x, y, xa)
    with pytest.raises(UserError, match=r"\[0, 2\]"):
        evaluate_attack(x, torch.tensor([0, 1, 3]), xa, probs_adv=p)
    with pytest.raises(UserError, match="rows"):
        evaluate_attack(x, y[:2], xa, probs_adv=p)
    with pytest.raises(UserError, match="jpeg_quality"):
        AttackEvaluator(jpeg_quality=0)
    with pytest.raises(UserError, match="odd"):
        AttackEvaluator(blur_kernel=4)
    with pytest.raises(UserError, match="no inputs"):
        AttackEvaluator().result()


def test_attack_fgsm_on_builtin_model(digits_target, digits_test):
    from neurofuzz.mutators.attacks import FGSM

    x, y = digits_test[0][:64], digits_test[1][:64]
    eps = 0.3
    xa = FGSM(digits_target, eps=eps)(x, y)
    r = evaluate_attack(x, y, xa, model=digits_target, batch_size=32)
    assert r.misclassification_rate > 0.8
    assert r.clean_accuracy > 0.9
    succ = digits_target.predict(xa) != y
    assert r.successes == int(succ.sum())
    # every successful example moved some pixel by the full eps: relative Linf = eps / max|x_i|
    expected = float((eps / x[succ].flatten(1).abs().amax(dim=1).double()).mean())
    assert r.linf_rel == pytest.approx(expected, abs=1e-5)
    assert r.linf_abs == pytest.approx(eps, abs=1e-5)
    assert 0.0 < r.l0_rel <= 1.0 and 0.0 < r.ssim < 1.0
    assert r.acac > r.actc and 0.0 <= r.nte <= 1.0
    assert 0.0 <= r.rgb <= 1.0 and 0.0 <= r.ric <= 1.0


# ------------------------------------------------------------------------------------ defense
def test_js_divergence_by_hand_and_against_scipy():
    p = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]], dtype=F64)
    q = torch.tensor([[0.0, 1.0], [0.3, 0.7], [1.0, 0.0]], dtype=F64)
    js = js_divergence(p, q)
    assert js[0] == pytest.approx(LN2) and js[1] == pytest.approx(0.0, abs=1e-15)
    assert js[2] == pytest.approx(0.75 * math.log(4 / 3))
    from scipy.spatial.distance import jensenshannon

    g = torch.Generator().manual_seed(1)
    a = torch.softmax(torch.randn(5, 4, generator=g, dtype=F64), 1)
    b = torch.softmax(torch.randn(5, 4, generator=g, dtype=F64), 1)
    ref = [jensenshannon(a[i].numpy(), b[i].numpy()) ** 2 for i in range(5)]
    assert np.allclose(js_divergence(a, b).numpy(), ref, atol=1e-12)


def test_defense_metrics_by_hand():
    y = torch.tensor([0, 1, 2, 0, 1])
    raw = torch.tensor([[0.6, 0.3, 0.1],   # right
                        [0.5, 0.4, 0.1],   # wrong
                        [0.1, 0.1, 0.8],   # right
                        [0.9, 0.1, 0.0],   # right
                        [0.2, 0.3, 0.5]], dtype=F64)  # wrong
    dfd = torch.tensor([[0.8, 0.1, 0.1],   # right
                        [0.2, 0.7, 0.1],   # right  -> rectified
                        [0.5, 0.2, 0.3],   # wrong  -> sacrificed
                        [0.9, 0.1, 0.0],   # right
                        [0.2, 0.2, 0.6]], dtype=F64)  # wrong
    r = defense_metrics(raw, dfd, y)
    assert (r.n, r.n_both_correct) == (5, 2)
    assert r.acc_raw == pytest.approx(3 / 5) and r.acc_def == pytest.approx(3 / 5)
    assert r.cav == pytest.approx(0.0) and r.crr == pytest.approx(1 / 5) and r.csr == pytest.approx(1 / 5)
    assert r.cav == pytest.approx(r.crr - r.csr)
    # both right: inputs 0 and 3; |0.8 - 0.6| and |0.9 - 0.9|
    assert r.ccv == pytest.approx((0.2 + 0.0) / 2)
    m = np.array([0.7, 0.2, 0.1])
    kl = lambda a: float(np.sum(a * np.log(a / m)))  # noqa: E731
    js0 = 0.5 * kl(np.array([0.6, 0.3, 0.1])) + 0.5 * kl(np.array([0.8, 0.1, 0.1]))
    assert r.cos == pytest.approx(js0 / 2)
    d = r.to_dict()
    assert set(d) == {"n", "acc_raw", "acc_def", "cav", "crr", "csr", "ccv", "cos", "n_both_correct"}


def test_defense_improvement_and_no_common_correct():
    y = torch.tensor([0, 0])
    raw = torch.tensor([[0.2, 0.8], [0.3, 0.7]], dtype=F64)  # both wrong
    dfd = torch.tensor([[0.9, 0.1], [0.6, 0.4]], dtype=F64)  # both right
    r = defense_metrics(raw, dfd, y)
    assert r.cav == 1.0 and r.crr == 1.0 and r.csr == 0.0
    assert r.n_both_correct == 0 and math.isnan(r.ccv) and math.isnan(r.cos)
    same = defense_metrics(dfd, dfd, y)
    assert same.cav == 0.0 and same.ccv == 0.0 and same.cos == pytest.approx(0.0, abs=1e-15)
    ev = DefenseEvaluator()
    ev.update(raw[:1], dfd[:1], y[:1])
    ev.update(raw[1:], dfd[1:], y[1:])
    assert ev.result().to_dict() == pytest.approx(r.to_dict(), nan_ok=True)


def test_evaluate_defense_runs_both_models():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(7, 1, 4, 4, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    raw, dfd = nn.utils.skip_init(nn.Linear, 16, 3), nn.utils.skip_init(nn.Linear, 16, 3)
    with torch.no_grad():
        for m in (raw, dfd):
            m.weight.copy_(torch.randn(3, 16, generator=g))
            m.bias.zero_()
    raw_m, dfd_m = nn.Sequential(nn.Flatten(), raw), nn.Sequential(nn.Flatten(), dfd)
    with torch.no_grad():
        expected = defense_metrics(torch.softmax(raw_m(x).double(), 1), torch.softmax(dfd_m(x).double(), 1), y)
    got = evaluate_defense(raw_m, dfd_m, x, y, batch_size=3)
    assert got.to_dict() == pytest.approx(expected.to_dict(), nan_ok=True)


def test_defense_rejects_bad_input():
    p = torch.tensor([[0.5, 0.5]], dtype=F64)
    with pytest.raises(UserError, match="same shape"):
        defense_metrics(p, torch.tensor([[0.2, 0.3, 0.5]], dtype=F64), torch.tensor([0]))
    with pytest.raises(UserError, match="softmax"):
        defense_metrics(p, torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
    with pytest.raises(UserError, match="labels"):
        defense_metrics(p, p, torch.tensor([2]))
    with pytest.raises(UserError, match="no inputs"):
        DefenseEvaluator().result()


# ------------------------------------------------------------------------------------ fuzz
STATS = {"mutants": 100, "valid_mutants": 80, "failures_total": 4, "failures_stored": 4,
         "failures_misclassified": 3, "failures_nonfinite": 1, "cov_nc": 0.5, "cov_kmnc": 0.125, "status": "finished"}


def _step(name: str) -> dict:
    return {"mutator": name, "params": {"v": 1.0}, "config": {}}


def _fill(s) -> None:
    """Seeds 1 (label 0) and 2 (label 1); queue 3 <- noise, 4 <- noise, blur; failing images
    A (label 0 -> 7, flagged by two oracles, last step fgsm), B (1 -> 7, blur), C (1 -> 4, fgsm).
    Every image is a constant 1x2x2 image whose value is 0.1 * (a class the test model reads)."""
    img = lambda v: torch.full((1, 2, 2), v)  # noqa: E731
    s.add(img(0.0), kind="queue", label=0, pred=0)
    s.add(img(0.1), kind="queue", label=1, pred=1)
    s.add(img(0.01), kind="queue", label=0, pred=0, parent=1, chain=[_step("gaussian_noise")])
    s.add(img(0.02), kind="queue", label=0, pred=0, parent=3, chain=[_step("gaussian_noise"), _step("gaussian_blur")])
    a = [_step("gaussian_noise"), _step("fgsm")]
    s.add(img(0.7), kind="failure", oracle="misclassified", label=0, pred=7, parent=3, chain=a)
    s.add(img(0.7), kind="failure", oracle="nonfinite", label=0, pred=7, parent=3, chain=a)
    s.add(img(0.75), kind="failure", oracle="misclassified", label=1, pred=7, parent=2, chain=[_step("gaussian_blur")])
    s.add(img(0.4), kind="failure", oracle="misclassified", label=1, pred=4, parent=2, chain=[_step("fgsm")])


def _typed_stats() -> dict:
    """STATS plus what the campaign writes since the typed stats: distinct failing mutants and
    the per-mutator counters (one JSON line)."""
    return {**STATS, "failing_mutants": 3,
            "per_mutator": json.dumps({"gaussian_noise": [50, 1, 0], "gaussian_blur": [30, 1, 1], "fgsm": [20, 0, 2]})}


def test_fuzz_evaluation_from_entries_and_stats():
    s = MemoryStore()
    _fill(s)
    s.write_stats(STATS)
    r = evaluate_store(s)
    acc = {k: (g.n, g.correct) for k, g in r.accuracy.items()}
    assert acc == {"seeds": (2, 2), "queue_mutants": (2, 2), "queue": (4, 4), "failures": (3, 0),
                   "failures/misclassified": (3, 0), "failures/nonfinite": (1, 0)}
    assert r.accuracy["queue"].accuracy == 1.0 and r.accuracy["failures"].accuracy == 0.0
    assert (r.mutants, r.valid_mutants, r.failures_total) == (100, 80, 4)
    assert r.failures_by_oracle == {"misclassified": 3, "nonfinite": 1}
    # two oracles reported failures and no checkpoint: failures_total (4) is an upper bound
    assert r.asr_source == "stats-upper-bound" and r.failing_mutants == 4
    assert r.attack_success_rate == pytest.approx(0.04) and r.valid_success_rate == pytest.approx(0.05)
    pm = {k: (m.queue, m.failures, m.mutants, m.failing) for k, m in r.per_mutator.items()}
    assert pm == {"fgsm": (0, 2, None, None), "gaussian_blur": (1, 1, None, None), "gaussian_noise": (1, 0, None, None)}
    assert math.isnan(r.per_mutator["fgsm"].success_rate)
    assert r.failures_by_class == {0: 1, 1: 2}
    assert r.confusion == {0: {7: 1}, 1: {4: 1, 7: 1}}
    assert r.coverage == {"nc": 0.5, "kmnc": 0.125}
    assert r.preds_source == "stored" and r.path is None
    json.dumps(r.to_dict())  # JSON-ready
    text = r.format()
    assert "attack success rate 0.0400" in text and "stats-upper-bound" in text
    assert "fgsm" in text and "failures/nonfinite" in text and "nc 0.5000" in text


def test_fuzz_evaluation_reads_failing_mutants_and_per_mutator_from_the_stats():
    s = MemoryStore()
    _fill(s)
    s.write_stats(_typed_stats())
    r = evaluate_store(s)
    assert r.asr_source == "stats" and r.failing_mutants == 3
    assert r.attack_success_rate == pytest.approx(0.03) and r.valid_success_rate == pytest.approx(3 / 80)
    fg = r.per_mutator["fgsm"]
    assert (fg.queue, fg.failures, fg.mutants, fg.failing) == (0, 2, 20, 2) and fg.success_rate == pytest.approx(0.1)
    assert r.per_mutator["gaussian_noise"].success_rate == 0.0
    # a checkpoint blob is not read: the stats are the one source
    s.save_state("fuzzer", {"counters": {"mutants": 7}})
    assert evaluate_store(s).mutants == 100


def test_fuzz_evaluation_without_stats():
    s = MemoryStore()
    _fill(s)
    r = evaluate_store(s)
    assert r.asr_source == "none" and r.failing_mutants is None and r.mutants is None
    assert math.isnan(r.attack_success_rate) and r.coverage == {}
    assert "n/a" in r.format()
    single = MemoryStore()
    _fill(single)
    single.write_stats({"mutants": 50, "failures_total": 5, "failures_misclassified": 5, "failures_nonfinite": 0})
    r = evaluate_store(single)  # one oracle reported: failures_total counts distinct mutants
    assert r.asr_source == "stats" and r.attack_success_rate == pytest.approx(0.1) and math.isnan(r.valid_success_rate)


def test_fuzz_evaluation_with_a_new_model():
    s = MemoryStore()
    _fill(s)

    def always_zero(x: torch.Tensor) -> torch.Tensor:  # a "new" model predicting class 0 everywhere
        return torch.tensor([[1.0] + [0.0] * 9]).expand(len(x), 10)

    r = evaluate_store(s, target=always_zero, batch_size=3)
    acc = {k: (g.n, g.correct) for k, g in r.accuracy.items()}
    # right now: seed 1, queue 3 and 4 (label 0), failure A (label 0, both oracles' entries)
    assert acc == {"seeds": (2, 1), "queue_mutants": (2, 2), "queue": (4, 3), "failures": (3, 1),
                   "failures/misclassified": (3, 1), "failures/nonfinite": (1, 1)}
    assert r.preds_source == "model"
    assert r.confusion == {0: {7: 1}, 1: {4: 1, 7: 1}}  # failures as found, not as the new model sees them

    def reads_value(x: torch.Tensor) -> torch.Tensor:  # predicts class round(10 * mean): the stored preds
        return torch.nn.functional.one_hot((x.mean((1, 2, 3)) * 10).round().long(), 10).float()

    r = evaluate_store(s, target=reads_value)
    assert {k: g.correct for k, g in r.accuracy.items()} == {k: g.correct for k, g in evaluate_store(s).accuracy.items()}


def test_fuzz_evaluation_of_a_campaign_directory(tmp_path):
    mem = MemoryStore()
    _fill(mem)
    mem.write_stats(_typed_stats())
    with CampaignStore.create(tmp_path / "c", setup={"t": 1}, mode="new", fsync=False) as disk:
        _fill(disk)
        disk.write_stats(_typed_stats())
    r = evaluate_campaign(tmp_path / "c")
    expected = evaluate_campaign(mem).to_dict()
    got = r.to_dict()
    assert got.pop("path") == str(tmp_path / "c") and expected.pop("path") is None
    assert got == expected
    assert evaluate_campaign(str(tmp_path / "c")).failing_mutants == 3
    with pytest.raises(UserError, match="not a neurofuzz campaign"):
        evaluate_campaign(tmp_path)
    with pytest.raises(UserError, match="campaign directory"):
        evaluate_campaign(42)  # type: ignore[arg-type]
