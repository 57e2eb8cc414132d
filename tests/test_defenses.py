"""Defenses: adversarial training, input transformations, detectors and the detector oracle.

Every accuracy / detection-rate bound below was measured on the built-in digits LeNet-5 (360 test
images) and is asserted with a margin; the measured values are in the comments. Model training
runs a short setting in the default run; the measured reference settings are ``slow`` siblings
(``pytest -m slow``).
"""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

from neurofuzz.defenses import (
    NAD, PAD, AdversarialTrainer, BitDepthReduction, DetectorMiss, EnsembleAdversarialTraining, EpochStats,
    FeatureSqueezing, JpegCompression, MagNet, MedianSmoothing, SimilarityDetector, SpatialSmoothing,
    TransformDefense,
)
from neurofuzz.defenses.adversarial_training import linear_ramp
from neurofuzz.defenses.detectors import Detector
from neurofuzz.fuzzer.oracles import ORACLES, OracleContext, build_oracle
from neurofuzz.fuzzer.tutorial_job import nad_digits
from neurofuzz.fuzzer.tutorial_job import seeded_lenet5 as _seeded_lenet5
from neurofuzz.fuzzer.zoo import load_digits32, load_lenet5_digits, train_lenet5_digits
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target
from neurofuzz.mutators import create
from neurofuzz.mutators.attacks import FGSM, PGD


def _acc(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    t = model if isinstance(model, Target) else Target(model)
    return float((t.predict(x) == y).float().mean())


def _fgsm_acc(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    t = model if isinstance(model, Target) else Target(model)
    return _acc(t, FGSM(t, eps=eps)(x, y), y)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Run this module on one intra-op thread: on a shared 2-core machine, OpenMP's 2-thread
    barriers made the median filter ~150x slower (3.4 s vs 0.023 s for 400 digits) under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_data():
    return load_digits32("train")


@pytest.fixture(scope="module")
def adv(digits_target, digits_test):
    """Gray-box adversarial examples crafted on the undefended model."""
    x, y = digits_test
    return {
        "fgsm_0.05": FGSM(digits_target, eps=0.05)(x, y),
        "fgsm_0.1": FGSM(digits_target, eps=0.1)(x, y),
        "pgd_0.1": PGD(digits_target, eps=0.1, alpha=0.01, steps=20, seed=0)(x, y),
    }


# ---------------------------------------------------------------------------- adversarial training
@pytest.mark.slow
def test_nad_digits_reaches_the_reference_setting(digits_target, digits_test):
    # measured (seed 0): clean 0.9917 (undefended 0.9944), FGSM-0.3 0.9472 (undefended 0.0250), 10-22 s
    x, y = digits_test
    model = nad_digits(seed=0)
    assert not model.training
    clean, robust = _acc(model, x, y), _fgsm_acc(model, x, y, 0.3)
    assert clean >= _acc(digits_target, x, y) - 0.03
    assert robust >= 0.80
    assert robust - _fgsm_acc(digits_target, x, y, 0.3) >= 0.6


def test_nad_fast_variant_improves_fgsm_accuracy(digits_target, digits_test):
    # measured: 6 epochs -> clean 0.894, FGSM-0.3 0.197 (undefended 0.025), ~3-6 s
    # (12 epochs: clean 0.944, FGSM-0.3 0.517; the 40-epoch setting is the slow test above)
    x, y = digits_test
    stats: list[EpochStats] = []
    model = nad_digits(seed=0, epochs=6, callback=stats.append)
    assert [s.epoch for s in stats] == list(range(1, 7)) and all(s.epochs == 6 for s in stats)
    assert stats[-1].adv_acc > stats[0].adv_acc and stats[-1].loss < stats[0].loss
    assert _acc(model, x, y) >= 0.85
    assert _fgsm_acc(model, x, y, 0.3) >= _fgsm_acc(digits_target, x, y, 0.3) + 0.1


def test_training_is_deterministic_and_seed_dependent(train_data):
    x, y = train_data[0][:192], train_data[1][:192]

    def run(seed: int) -> dict[str, torch.Tensor]:
        return NAD(_seeded_lenet5(0), epochs=2, seed=seed).fit(x, y).state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


class _CountingAttack:
    """Records the batches it is asked to attack and returns them unchanged."""

    def __init__(self, log: list, tag: str) -> None:
        self.log, self.tag = log, tag

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.log.append((self.tag, x.shape[0]))
        return x.clone()


def test_ratio_sets_the_adversarial_share_of_each_batch(train_data):
    x, y = train_data[0][:100], train_data[1][:100]
    for ratio, expected in [(0.0, []), (0.5, [20, 20, 10]), (1.0, [40, 40, 20])]:
        log: list = []
        AdversarialTrainer(_seeded_lenet5(0), lambda m, epoch: _CountingAttack(log, "a"), ratio=ratio,
                           epochs=1, batch_size=40).fit(x, y)
        assert [n for _, n in log] == expected
    with pytest.raises(UserError, match="ratio"):
        AdversarialTrainer(_seeded_lenet5(0), lambda m, e: _CountingAttack([], "a"), ratio=1.5)


def test_attack_factory_sees_the_epoch_and_eps_schedule():
    seen: list = []
    ramp = linear_ramp(0.1, 0.3, 3)
    assert [round(ramp(e), 6) for e in range(5)] == [0.1, 0.2, 0.3, 0.3, 0.3]
    x, y = load_digits32("train")
    AdversarialTrainer(_seeded_lenet5(0), lambda m, epoch: seen.append(epoch) or _CountingAttack([], "a"),
                       epochs=3).fit(x[:64], y[:64])
    assert seen == [0, 1, 2]


def test_trainer_accepts_a_dataloader_and_a_target(train_data):
    x, y = train_data[0][:128], train_data[1][:128]
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)  # shuffles under the trainer's forked RNG
    target = Target(_seeded_lenet5(0), mean=0.5, std=0.5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    out = NAD(target, eps=0.1, epochs=1, seed=0).fit(loader)
    assert out is target and not target.training and not target.module.training
    assert any(not torch.equal(before[k], v) for k, v in target.state_dict().items())
    with pytest.raises(UserError, match="labels"):
        NAD(_seeded_lenet5(0), epochs=1).fit(loader, y)


def test_ensemble_alternates_between_current_and_static_sources(train_data):
    x, y = train_data[0][:128], train_data[1][:128]
    log: list = []
    static = load_lenet5_digits()
    names = {id(static): "static"}
    trainer = EnsembleAdversarialTraining(
        _seeded_lenet5(0), sources=[static], epochs=1, batch_size=32,
        attacks=[lambda m, e: _CountingAttack(log, names.get(id(m), "self"))],
    )
    before = {k: v.clone() for k, v in static.state_dict().items()}
    trainer.fit(x, y)
    assert [tag for tag, _ in log] == ["self", "static", "self", "static"]
    assert all(torch.equal(before[k], v) for k, v in static.state_dict().items())  # sources are never trained


@pytest.mark.parametrize(
    "holdout_epochs, epochs, min_gain, min_gap, min_clean",
    [
        # measured: undefended 0.000, NAD 0.439, ensemble 0.628 (ensemble clean 0.936), ~12 s
        pytest.param(15, 10, 0.4, 0.08, 0.9, marks=pytest.mark.slow, id="10-epochs"),
        # measured: undefended 0.000, NAD 0.061, ensemble 0.169 (ensemble clean 0.856), ~4 s
        pytest.param(5, 3, 0.1, 0.05, 0.8, id="3-epochs"),
    ],
)
def test_ensemble_training_resists_transfer_attacks_better_than_nad(
    holdout_epochs, epochs, min_gain, min_gap, min_clean, digits_target, digits_test, train_data
):
    # Tramer et al.'s claim (fine-tuning the shipped model, FGSM-0.3 from itself and from a static
    # copy of it; PGD-0.3 transferred from an independently trained LeNet-5)
    x, y = digits_test
    holdout = Target(train_lenet5_digits(seed=7, epochs=holdout_epochs))
    x_tr = PGD(holdout, eps=0.3, alpha=0.02, steps=20, seed=0)(x, y)
    common = dict(eps=0.3, ratio=0.7, epochs=epochs, lr=2e-3, seed=0)
    ens = EnsembleAdversarialTraining(load_lenet5_digits(), sources=[load_lenet5_digits()], **common).fit(*train_data)
    nad = NAD(load_lenet5_digits(), **common).fit(*train_data)
    assert _acc(ens, x_tr, y) >= _acc(digits_target, x_tr, y) + min_gain
    assert _acc(ens, x_tr, y) >= _acc(nad, x_tr, y) + min_gap
    assert _acc(ens, x, y) >= min_clean


@pytest.mark.parametrize(
    "steps, epochs, min_gain",
    [
        # measured: PGD-0.1 (20 steps) accuracy 0.256 -> 0.622, clean 0.994 -> 0.978, ~5-10 s of training
        pytest.param(5, 5, 0.25, marks=pytest.mark.slow, id="5x5"),
        # measured: 0.256 -> 0.522, clean 0.978, ~2 s of training
        pytest.param(3, 2, 0.2, id="3x2"),
    ],
)
def test_pad_improves_pgd_accuracy(steps, epochs, min_gain, digits_target, digits_test, adv, train_data):
    # fine-tuning the shipped model with PGD eps 0.1; both models face the same white-box PGD-20
    # (the undefended model's examples are the module's shared ones, random start seed 0)
    x, y = digits_test
    pad = Target(PAD(load_lenet5_digits(), eps=0.1, steps=steps, epochs=epochs, lr=2e-3, seed=0).fit(*train_data))
    pad_acc = _acc(pad, PGD(pad, eps=0.1, alpha=0.01, steps=20, seed=0)(x, y), y)
    assert pad_acc >= _acc(digits_target, adv["pgd_0.1"], y) + min_gain
    assert _acc(pad, x, y) >= 0.95


# ---------------------------------------------------------------------------- input transformations
def test_transforms_keep_shape_bounds_and_input():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g)
    x0 = x.clone()
    for t in (JpegCompression(50), BitDepthReduction(3), MedianSmoothing(3), MedianSmoothing(2)):
        out = t(x)
        assert out.shape == x.shape and out.dtype == x.dtype and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(x, x0)
    assert BitDepthReduction(1)(torch.tensor([0.1, 0.49, 0.51, 0.9]).view(1, 1, 2, 2)).flatten().tolist() == [0, 0, 1, 1]
    assert len(torch.unique(BitDepthReduction(3)(x))) <= 8
    spike = torch.zeros(1, 1, 7, 7)
    spike[0, 0, 3, 3] = 1.0
    assert float(MedianSmoothing(3)(spike).abs().max()) == 0.0  # an isolated pixel is removed
    assert torch.equal(MedianSmoothing(3)(torch.full((1, 2, 5, 5), 0.25)), torch.full((1, 2, 5, 5), 0.25))
    smooth = torch.linspace(0, 1, 16).expand(1, 3, 16, 16).contiguous()  # JPEG subsamples colour noise away
    assert float((JpegCompression(100)(smooth) - smooth).abs().max()) < 0.02
    assert float((JpegCompression(100)(x[:, :1]) - x[:, :1]).abs().max()) < 0.02
    lo_hi = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1  # other bounds
    assert float(BitDepthReduction(1)(lo_hi, (-1.0, 1.0)).abs().min()) == 1.0
    for bad, match in ((lambda: JpegCompression(0), "quality must be an integer in \\[1, 100\\]"),
                       (lambda: BitDepthReduction(0), "bits must be an integer in \\[1, 16\\]"),
                       (lambda: MedianSmoothing(2.5), "size must be an integer in \\[1, 15\\]")):
        with pytest.raises(UserError, match=match):
            bad()


def test_transform_defense_is_a_target(digits_target, digits_test):
    x, y = digits_test
    d = TransformDefense(digits_target, [BitDepthReduction(3), MedianSmoothing(3)])
    assert isinstance(d, Target) and d.bounds == digits_target.bounds and not d.training
    assert d.probe(x[:2]).shape == (2, 10)
    assert d.hash() != digits_target.hash() and d.hash() == TransformDefense(digits_target, [BitDepthReduction(3), MedianSmoothing(3)]).hash()
    assert torch.equal(d(x[:4]), digits_target(d.transform(x[:4])))
    # gradients pass straight through (BPDA), so a white-box attack runs on the defense itself
    x_adv = FGSM(d, eps=0.1)(x[:32], y[:32])
    assert float((x_adv - x[:32]).abs().amax()) == pytest.approx(0.1, abs=1e-6)
    assert _acc(d, x, y) >= 0.98  # measured 0.992
    normed = TransformDefense(Target(load_lenet5_digits(), mean=0.5, std=0.5), [MedianSmoothing(2)])
    assert normed._mean is not None and float(normed._std.flatten()[0]) == 0.5


def test_transform_defense_runs_in_a_campaign(tmp_path, digits_target, digits_test):
    from neurofuzz.fuzzer.config import Budget, FuzzConfig
    from neurofuzz.fuzzer.campaign import Campaign as Fuzzer

    x, y = digits_test
    cfg = FuzzConfig(seed=0, seeds_per_batch=2, mutants_per_seed=8, mutators=[{"name": "gaussian_noise"}],
                     budget=Budget(iterations=2), stats_interval=0.0, checkpoint_interval=1e9)
    fz = Fuzzer.create(tmp_path / "c", TransformDefense(digits_target, [MedianSmoothing(2)]), x[:8], y[:8], cfg,
                       profile_data=load_digits32("train")[0][:128])
    summary = fz.run()
    fz.close()
    assert summary["iterations"] == 2 and summary["mutants"] == 32


def test_bit_depth_reduction_restores_accuracy_under_small_fgsm(digits_target, digits_test, adv):
    # measured: FGSM-0.1 crafted on the undefended model 0.403 -> 0.633 with 1 bit; clean 0.972
    x, y = digits_test
    d = TransformDefense(digits_target, [BitDepthReduction(1)])
    assert _acc(d, adv["fgsm_0.1"], y) >= _acc(digits_target, adv["fgsm_0.1"], y) + 0.15
    assert _acc(d, x, y) >= 0.95


def test_median_smoothing_restores_accuracy_under_salt_and_pepper(digits_target, digits_test):
    # measured: salt-and-pepper density 0.4: 0.847 -> 0.981 (3x3 median)
    x, y = digits_test
    noisy = create("salt_and_pepper_noise", density=(0.4, 0.4)).mutate(x, torch.Generator().manual_seed(0)).x
    d = TransformDefense(digits_target, [MedianSmoothing(3)])
    assert _acc(d, noisy, y) >= _acc(digits_target, noisy, y) + 0.08
    assert _acc(d, x, y) >= 0.99


def test_jpeg_removes_part_of_the_perturbation(digits_target, digits_test, adv):
    # measured (quality 20): L2 of the FGSM-0.1 perturbation 53.6 -> 50.0; FGSM-0.05 accuracy 0.794 -> 0.811
    x, y = digits_test
    j = JpegCompression(20)
    assert float((j(adv["fgsm_0.1"]) - x).norm()) <= 0.97 * float((adv["fgsm_0.1"] - x).norm())
    d = TransformDefense(digits_target, [j])
    assert _acc(d, adv["fgsm_0.05"], y) >= _acc(digits_target, adv["fgsm_0.05"], y)
    assert _acc(d, x, y) >= 0.99


# ---------------------------------------------------------------------------- detectors
def _rates(det: Detector, clean: torch.Tensor, bad: torch.Tensor) -> tuple[float, float, float]:
    s_clean, s_bad = det.score(clean), det.score(bad)
    fpr = float((s_clean > det.threshold).float().mean())
    tpr = float((s_bad > det.threshold).float().mean())
    auc = roc_auc_score([0] * len(s_clean) + [1] * len(s_bad), torch.cat([s_clean, s_bad]).numpy())
    return tpr, fpr, float(auc)


@pytest.mark.parametrize(
    "make, attack, min_gap, min_auc",
    [
        # measured (fit on train at 5% FPR; test FPR / TPR on successful adversarial examples / AUROC)
        (lambda t: FeatureSqueezing(t), "fgsm_0.1", 0.3, 0.85),  # FPR 0.081, TPR 0.609, AUROC 0.897
        (lambda t: FeatureSqueezing(t), "pgd_0.1", 0.3, 0.85),  # FPR 0.081, TPR 0.619, AUROC 0.899
        (lambda t: SpatialSmoothing(t, size=3), "fgsm_0.1", 0.3, 0.85),  # FPR 0.078, TPR 0.577, AUROC 0.893
    ],
    ids=["squeezing-fgsm", "squeezing-pgd", "smoothing-fgsm"],
)
def test_model_based_detectors_beat_chance(make, attack, min_gap, min_auc, digits_target, digits_test, adv, train_data):
    x, y = digits_test
    det = make(digits_target).fit(train_data[0], fpr=0.05)
    hit = digits_target.predict(adv[attack]) != y
    tpr, fpr, auc = _rates(det, x, adv[attack][hit])
    assert fpr <= 0.12 and tpr >= fpr + min_gap and auc >= min_auc


@pytest.mark.parametrize(
    "epochs, bounds",
    [
        # measured: FPR 0.050; TPR 1.000 on FGSM-0.1 and PGD-0.1 (all 360 inputs), 0.975 on FGSM-0.05; fit ~4-9 s
        pytest.param(10, {"fgsm_0.1": (0.95, 0.95), "pgd_0.1": (0.95, 0.95), "fgsm_0.05": (0.8, 0.95)},
                     marks=pytest.mark.slow, id="10-epochs"),
        # measured: FPR 0.067; TPR / AUROC 1.000 / 1.000 on FGSM-0.1, 0.967 / 0.996 on PGD-0.1,
        # 0.519 / 0.895 on FGSM-0.05; reform error 0.040; fit ~2-4 s
        pytest.param(4, {"fgsm_0.1": (0.95, 0.95), "pgd_0.1": (0.9, 0.95), "fgsm_0.05": (0.4, 0.85)}, id="4-epochs"),
    ],
)
def test_magnet_detects_gradient_attacks_and_noise(epochs, bounds, digits_target, digits_test, adv, train_data):
    x, y = digits_test
    det = MagNet(seed=0, epochs=epochs).fit(train_data[0], fpr=0.05)
    for name, (min_tpr, min_auc) in bounds.items():
        tpr, fpr, auc = _rates(det, x, adv[name])
        assert fpr <= 0.1 and tpr >= min_tpr and auc >= min_auc, name
    reformed = det.reform(x)
    assert reformed.shape == x.shape and float((reformed - x).abs().mean()) < 0.05


def test_magnet_training_is_deterministic(train_data):
    x = train_data[0][:128]
    a = MagNet(epochs=1, seed=3).fit(x)
    b = MagNet(epochs=1, seed=3).fit(x)
    c = MagNet(epochs=1, seed=4).fit(x)
    assert torch.equal(a.score(x), b.score(x)) and a.threshold == b.threshold
    assert not torch.equal(a.score(x), c.score(x))


def test_threshold_is_placed_at_the_false_positive_rate(digits_target, train_data):
    x = train_data[0][:400]
    det = FeatureSqueezing(digits_target)
    with pytest.raises(UserError, match="fit"):
        det.detect(x)
    for fpr in (0.01, 0.05, 0.2):
        det.fit(x, fpr=fpr)
        assert float(det.detect(x).float().mean()) <= fpr
    det.fit(x[:100], fpr=0.1, calibration=x[100:])
    assert float(det.detect(x[100:]).float().mean()) <= 0.1
    with pytest.raises(UserError, match="fpr"):
        det.fit(x, fpr=1.0)


def _query_attack(x0: torch.Tensor, n: int, sigma: float, seed: int) -> torch.Tensor:
    """Queries of a score-based attack (NES-style): the image plus small Gaussian probes."""
    g = torch.Generator().manual_seed(seed)
    return (x0 + sigma * torch.randn((n, *x0.shape[1:]), generator=g)).clamp(0, 1)


def test_similarity_detector_flags_query_attacks_not_clean_streams(digits_test, train_data):
    # measured: 99/100 queries flagged (all but the first) for sigma 0.01-0.2; 0/360 clean test images
    x, _ = digits_test
    det = SimilarityDetector(k=10).fit(train_data[0], fpr=0.05)
    assert float(det.detect(x).float().mean()) <= 0.05  # a stream of distinct clean images
    for sigma in (0.01, 0.1):
        det.reset()
        flags = det.detect(_query_attack(x[:1], 100, sigma, seed=1))
        assert not bool(flags[0]) and float(flags[1:].float().mean()) >= 0.9
    det.reset()
    walk = [x[5:6]]  # a boundary-attack-like random walk
    g = torch.Generator().manual_seed(2)
    for _ in range(59):
        walk.append((walk[-1] + 0.02 * torch.randn(walk[-1].shape, generator=g)).clamp(0, 1))
    assert float(det.detect(torch.cat(walk))[1:].float().mean()) >= 0.9
    # after a clean stream, the attack is caught once k of its own queries are stored
    # (measured: from its 5th query on)
    det.reset()
    det.detect(x[:200])
    assert bool(det.detect(_query_attack(x[300:301], 30, 0.05, seed=3))[det.k :].all())


def test_similarity_stream_semantics():
    det = SimilarityDetector(k=2, size=1, buffer_size=3)
    vals = [0.0, 0.5, 0.6, 0.9, 0.1]
    x = torch.tensor(vals).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()  # features = the value
    s = det.score(x).tolist()
    assert s[0] == float("-inf")
    assert s[1] == pytest.approx(-0.5) and s[2] == pytest.approx(-(0.1 + 0.6) / 2)
    assert s[3] == pytest.approx(-(0.3 + 0.4) / 2)
    assert s[4] == pytest.approx(-(0.4 + 0.5) / 2)  # 0.0 has left the 3-query buffer
    det.reset()
    one_by_one = [float(det.score(x[i : i + 1])) for i in range(len(vals))]
    assert one_by_one == pytest.approx(s)
    proj = SimilarityDetector(encoding="projection", dim=16, seed=0)
    assert proj.encode(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))).shape == (2, 16)


# ---------------------------------------------------------------------------- the detector oracle
class _FlagOdd:
    def detect(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(len(x)) % 2 == 1


def test_detector_miss_is_a_ready_built_oracle_not_a_registered_one():
    # importing neurofuzz.defenses (done above) registers nothing: the oracle needs a detector object
    assert "detector_miss" not in ORACLES
    with pytest.raises(UserError, match="unknown oracle 'detector_miss'"):
        build_oracle("detector_miss", detector=_FlagOdd())
    for not_a_detector in (None, object(), torch.zeros(2)):
        with pytest.raises(UserError, match="DetectorMiss needs a fitted detector with detect"):
            DetectorMiss(not_a_detector)


def test_detector_miss_oracle_on_a_hand_made_context():
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # preds 1, 1, 0, 0
    ctx = OracleContext(x=torch.zeros(4, 1, 2, 2), logits=logits, labels=torch.tensor([0, 0, 0, 1]),
                        root_preds=torch.zeros(4, dtype=torch.long))
    # misclassified: T T F T; detected: F T F T -> missed: T F F F
    oracle = DetectorMiss(_FlagOdd())
    assert oracle.name == "detector_miss"  # the campaign files its failures under failures/detector_miss/
    assert oracle.check(ctx).tolist() == [True, False, False, False]

    class _WrongShape:
        def detect(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x) + 1, dtype=torch.bool)

    with pytest.raises(UserError, match=r"detector returned shape \[5\] for 4 inputs"):
        DetectorMiss(_WrongShape()).check(ctx)


def test_detector_miss_with_a_fitted_detector(digits_target, digits_test, adv, train_data):
    x, y = digits_test
    det = FeatureSqueezing(digits_target).fit(train_data[0], fpr=0.05)
    xa = adv["fgsm_0.1"]
    logits = digits_target(xa).detach()
    ctx = OracleContext(x=xa, logits=logits, labels=y, root_preds=y)
    missed = DetectorMiss(det).check(ctx)
    wrong = logits.argmax(1) != y
    assert torch.equal(missed, wrong & ~det.detect(xa))
    assert 0 < int(missed.sum()) < int(wrong.sum())
