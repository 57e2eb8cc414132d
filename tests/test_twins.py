"""Differential twins of the built-in model (fp16, bf16, int8, onnx): they agree with it on the
seeds (no more often apart than their accuracy change allows), disagree near its decision
boundary, and drive the disagreement oracle of ``fuzz --reference`` (recorded, restored on
--resume, refused when changed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofuzz.corpus import CampaignStore
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.twins import TWINS, build_twin
from neurofuzz.ground import Target
from neurofuzz.ground.errors import UserError


@pytest.fixture(scope="module")
def twins(digits_target):
    return {name: build_twin(name, digits_target, input_shape=[1, 32, 32]) for name in ("fp16", "bf16", "int8", "onnx")}


@torch.no_grad()
def boundary_inputs(target: Target, x: torch.Tensor, steps: int = 30) -> torch.Tensor:
    """Blends of seed pairs the model classifies differently, bisected onto its decision boundary
    (both sides of it): where a twin's rounding can tip the class."""
    p = target.predict(x)
    j = torch.tensor([int((p != p[i]).nonzero()[0]) for i in range(len(x))])
    a, b = x, x[j]
    lo, hi = torch.zeros(len(x), 1, 1, 1), torch.ones(len(x), 1, 1, 1)
    for _ in range(steps):
        mid = (lo + hi) / 2
        same = (target.predict(a * (1 - mid) + b * mid) == p).view(-1, 1, 1, 1)
        lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
    return torch.cat([a * (1 - lo) + b * lo, a * (1 - hi) + b * hi])


def test_twins_agree_on_the_seeds_within_their_accuracy_change(digits_target, digits_test, twins):
    x, y = digits_test
    p = digits_target.predict(x)
    acc = (p == y).float().mean().item()
    for name, twin in twins.items():
        q = twin.predict(x)
        apart = int((q != p).sum())
        drop = abs(acc - (q == y).float().mean().item())
        # each seed on which the twin changes class moves the accuracy by at most 1/n: apart >= drop * n
        assert apart >= round(drop * len(x)), name
        assert apart <= 0.01 * len(x) and drop <= 0.01, (name, apart, drop)
    # the ONNX export in onnxruntime reproduces the logits closely
    assert torch.allclose(twins["onnx"](x[:50]), digits_target(x[:50]), atol=1e-4)


def test_fp16_bf16_int8_twins_disagree_near_the_decision_boundary(digits_target, digits_test, twins):
    xb = boundary_inputs(digits_target, digits_test[0][:40])
    p = digits_target.predict(xb)
    apart = {name: int((twins[name].predict(xb) != p).sum()) for name in ("fp16", "bf16", "int8")}
    assert all(v >= 1 for v in apart.values()), apart


def test_twins_copy_the_model_and_take_their_own_normalisation(digits_target):
    before = digits_target.hash()
    t = build_twin("fp16", digits_target, mean=[0.5], std=[0.5])
    assert digits_target.hash() == before and digits_target.module.conv1.weight.dtype == torch.float32
    assert t._mean.flatten().tolist() == [0.5] and t.bounds == digits_target.bounds
    assert "fp16" in TWINS and set(TWINS.names()) >= {"fp16", "bf16", "int8", "onnx"}


def test_twin_errors_are_user_errors(digits_target):
    with pytest.raises(UserError, match="unknown reference twin 'fp8'; choose from: fp16, bf16, int8, onnx"):
        build_twin("fp8", digits_target)
    with pytest.raises(UserError, match="input shape"):
        build_twin("onnx", digits_target)
    with torch.random.fork_rng(devices=[]):
        conv_only = Target(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()))
    with pytest.raises(UserError, match="nn.Linear"):
        build_twin("int8", conv_only)


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fuzz_reference_twin_recorded_and_restored_on_resume(tmp_path, capsys, digits_test):
    x, y = digits_test
    np.savez(tmp_path / "s.npz", x=x[:12].numpy(), y=y[:12].numpy())
    camp = tmp_path / "camp"
    model = ["--model", "neurofuzz.fuzzer.zoo:load_lenet5_digits"]  # not builtin: profiled on the 12 seeds (fast)
    rc, _, err = _run(capsys, "fuzz", *model, "--seeds", tmp_path / "s.npz", "--out", camp, "--iterations", "2", "--quiet",
                      "--mutators", "contrast", "--reference", "fp16", "--reference-mean", "0")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.setup["reference_twin"] == {"name": "fp16", "mean": [0.0], "std": None}
        assert "disagreement" in [o["name"] for o in s.setup["config"]["oracles"]]
    rc, out, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "3", "--quiet")
    assert rc == 0 and "disagreement" in out, err
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "4", "--quiet", "--reference", "int8")
    assert rc == 2 and "--reference fp16" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, needle", [
    (["--reference", "fp8"], "unknown reference twin 'fp8'"),
    (["--reference", "fp16", "--reference-model", "builtin"], "not both"),
    (["--reference-std", "0.5"], "apply to a --reference"),
], ids=["unknown", "both", "std-alone"])
def test_fuzz_reference_errors_are_one_line(tmp_path, capsys, extra, needle):
    rc, _, err = _run(capsys, "fuzz", "--out", tmp_path / "c", "--iterations", "1", "--quiet", *extra)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_an_int8_campaign_finds_disagreeing_mutants(tmp_path, capsys):
    # measured 2026-12-02: 16 disagreeing mutants in 10,240 (fp16 and onnx: 0, bf16: 7)
    camp = tmp_path / "tw"
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--mutants", "10000", "--seed", "0", "--quiet", "--reference", "int8")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.read_stats()["failures_disagreement"] >= 1 and s.count("failure", "disagreement") >= 1


def test_fault_twin_disagrees_where_its_faults_bite_and_resumes_with_the_same_faults(tmp_path, capsys):
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.fuzzer.cli import main
    from neurofuzz.fuzzer.twins import twin_from_spec
    from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

    t = builtin_target()
    x, _ = load_digits32("test")
    a = twin_from_spec("fault:sign:rate=0.5,layers=fc3,where=activations,seed=1", t)
    b = twin_from_spec("fault:sign:rate=0.5,layers=fc3,where=activations,seed=1", t)
    with torch.no_grad():
        pa, pb, p0 = a(x).argmax(1), b(x).argmax(1), t(x).argmax(1)
    assert torch.equal(pa, pb) and (pa != p0).any()  # same spec, same faults; and they change predictions
    assert torch.equal(t(x).argmax(1), p0)  # the fuzzed model itself is untouched
    spec = "fault:bitflip:rate=0.02,layers=fc2,bits=20-30"
    camp = tmp_path / "camp"
    base = ["--iterations", "2", "--quiet"]
    assert main(["fuzz", "--out", str(camp), "--reference", spec, *base]) == 0, capsys.readouterr().err
    assert main(["fuzz", "--out", str(camp), "--resume", *base]) == 0, capsys.readouterr().err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.setup["reference_twin"]["name"] == spec
    rc = main(["fuzz", "--out", str(camp), "--resume", "--reference", "fault:zero:rate=0.1", *base])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "fault:bitflip" in err, err
    for bad, needle in [("fault", "fault spec"), ("fault:bitflip", "no rate"), ("fault:melt:rate=0.1", "melt")]:
        rc = main(["fuzz", "--out", str(tmp_path / "new"), "--reference", bad, *base])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and err.count("\n") == 1, (bad, err)
        assert not (tmp_path / "new").exists()
