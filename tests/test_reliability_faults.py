"""Fault injection: each kind changes what it says and nothing else; the sensitivity report; CLI."""

from __future__ import annotations

import doctest
import json

import pytest
import torch
from torch import nn

import neurofuzz.reliability.faults as faults_mod
import neurofuzz.reliability.sensitivity as sens_mod
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.zoo import load_lenet5_digits
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import model_hash
from neurofuzz.reliability.faults import KINDS, faulty_copy, parse_fault_spec
from neurofuzz.reliability.sensitivity import sensitivity_report


@pytest.fixture(scope="module")
def net():
    return load_lenet5_digits()


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def int8_round_trip(t: torch.Tensor, dims=None) -> torch.Tensor:
    amax = t.abs().amax(dim=dims, keepdim=True) if dims else t.abs().max()
    return (t / (amax / 127)).round().clamp(-127, 127) * (amax / 127)


def check_kind(kind: str, old: torch.Tensor, new: torch.Tensor, k: int, dims=None) -> None:
    """``new`` differs from ``old`` in at most ``k`` places (exactly ``k`` for the kinds that always
    change a value), each changed as ``kind`` says."""
    changed = old.contiguous().view(torch.int32) != new.contiguous().view(torch.int32)  # bitwise: -0.0 != 0.0
    if kind in ("nan", "bitflip", "sign"):
        assert int(changed.sum()) == k
    elif kind == "zero":  # an element that already was +0.0 cannot change
        assert k - int((old.contiguous().view(torch.int32) == 0).sum()) <= int(changed.sum()) <= k
    else:
        assert 0 < int(changed.sum()) <= k
    o, n = old[changed], new[changed]
    if kind == "zero":
        assert (n == 0).all()
    elif kind == "nan":
        assert torch.isnan(n).all()
    elif kind == "sign":
        assert torch.equal(n, -o)
    elif kind == "bitflip":
        x = (o.contiguous().view(torch.int32) ^ n.contiguous().view(torch.int32)).long() & 0xFFFFFFFF
        bits = torch.log2(x.double())
        assert torch.equal(bits, bits.round()) and bits.min() >= 23 and bits.max() <= 30  # one exponent bit each
    elif kind == "random":
        lo = old.amin(dim=dims, keepdim=True) if dims else old.min()
        hi = old.amax(dim=dims, keepdim=True) if dims else old.max()
        assert ((new >= lo) & (new <= hi)).all()
    elif kind == "fp16":
        assert torch.equal(n, o.half().float())
    elif kind == "bf16":
        assert torch.equal(n, o.bfloat16().float())
    elif kind == "int8":
        assert torch.allclose(n, int8_round_trip(old, dims)[changed])


@pytest.mark.allow_global_rng  # the examples build layers with torch's default (global) init
def test_docstring_examples():
    for mod in (faults_mod, sens_mod):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize("kind", KINDS)
def test_weight_faults_change_what_they_say_and_nothing_else(net, kind):
    before = model_hash(net)
    bad = faulty_copy(net, kind=kind, layers="fc2", rate=0.1, seed=0, bits=(23, 30))
    assert model_hash(net) == before  # the caller's model is untouched
    a, b = net.state_dict(), bad.state_dict()
    for name in a:
        if name.startswith("fc2."):
            check_kind(kind, a[name], b[name], int(0.1 * a[name].numel() + 0.5))
        else:
            assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("kind", KINDS)
def test_activation_faults_change_what_they_say_and_nothing_else(net, kind):
    bad = faulty_copy(net, kind=kind, layers="conv2", rate=0.05, seed=1, where="activations", bits=(23, 30))
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), bad.state_dict().values()))
    x = rand(6, 1, 32, 32)
    got: dict[str, torch.Tensor] = {}
    h1 = net.conv2.register_forward_hook(lambda m, i, o: got.__setitem__("healthy", o.clone()))
    h2 = bad.relu2.register_forward_pre_hook(lambda m, i: got.__setitem__("faulty", i[0].clone()))
    try:
        with torch.no_grad():
            net(x)
            bad(x)
    finally:
        h1.remove()
        h2.remove()
    per_sample = int(0.05 * got["healthy"][0].numel() + 0.5)
    for old, new in zip(got["healthy"], got["faulty"]):
        check_kind(kind, old, new, per_sample, dims=tuple(range(old.dim())) if kind in ("random", "int8") else None)
    # the same positions for every sample, and a pure function of the input (batch-independent)
    with torch.no_grad():
        assert torch.allclose(bad(x[:2]).nan_to_num(), bad(x)[:2].nan_to_num(), atol=1e-5)


def test_deterministic_for_a_seed_and_rate_zero(net):
    a, b, c = (faulty_copy(net, kind="bitflip", layers=["conv*"], rate=0.01, seed=s).state_dict() for s in (4, 4, 5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k].nan_to_num(), c[k].nan_to_num()) for k in a)
    same = faulty_copy(net, kind="nan", rate=0.0, seed=0)
    x = rand(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(same(x), net(x))


def test_sign_of_all_logits_and_targets(digits_target):
    bad = faulty_copy(digits_target, kind="sign", layers="fc3", rate=1.0, seed=0, where="activations")
    x = rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(bad(x), -digits_target(x))
    assert type(bad) is type(digits_target) and bad.bounds == digits_target.bounds


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "flip", "rate": 0.1}, "unknown fault kind 'flip'"),
    ({"kind": "zero", "rate": 1.5}, r"rate must lie in \[0, 1\]"),
    ({"kind": "zero", "rate": -0.1}, r"rate must lie in \[0, 1\]"),
    ({"kind": "zero", "rate": 0.1, "layers": "nope*"}, "no layer with weights matches nope"),
    ({"kind": "bitflip", "rate": 0.1, "bits": (5, 40)}, "bit range"),
    ({"kind": "zero", "rate": 0.1, "where": "inputs"}, "choose weights or activations"),
])
def test_bad_arguments(net, kwargs, match):
    with pytest.raises(UserError, match=match):
        faulty_copy(net, seed=0, **kwargs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_models(net):
    scripted = torch.jit.script(net)
    bad = faulty_copy(scripted, kind="nan", layers="fc3", rate=1.0, seed=0)
    x = rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.isnan(bad(x)).all() and torch.isfinite(scripted(x)).all()
    with pytest.raises(UserError, match="TorchScript"):
        faulty_copy(scripted, kind="nan", layers="fc3", rate=1.0, seed=0, where="activations")


def test_parse_fault_spec(net):
    spec = parse_fault_spec("bitflip:rate=0.001,layers=conv*+fc1,bits=23-30,where=activations,seed=7")
    assert spec == {"kind": "bitflip", "rate": 0.001, "layers": ["conv*", "fc1"], "bits": (23, 30),
                    "where": "activations", "seed": 7}
    assert isinstance(faulty_copy(net, **spec), nn.Module)
    assert parse_fault_spec("nan:bits=31")["bits"] == (31, 31)
    for text, match in (("zero:rate=abc", "bad rate"), ("zero:colour=red", "unknown key 'colour'"),
                        ("melt:rate=0.1", "unknown fault kind"), ("zero:rate=2", r"\[0, 1\]")):
        with pytest.raises(UserError, match=match):
            parse_fault_spec(text)


def test_sensitivity_report(digits_target, digits_test):
    x, y = digits_test[0][:120], digits_test[1][:120]
    r = sensitivity_report(digits_target, x, y, kinds=["nan", "zero"], layers=["fc2", "fc3"], rate=0.05, seed=0,
                           where=["weights", "activations"])
    at = {(c["where"], c["kind"], c["layer"]): c for c in r["cells"]}
    assert set(at) == {(w, k, layer) for w in ("weights", "activations") for k in ("nan", "zero")
                       for layer in ("fc2", "fc3", "*")}
    assert r["accuracy"] > 0.95
    nan = at["weights", "nan", "fc3"]  # NaN weights in the logits' layer: every prediction is lost
    assert nan["accuracy"] == 0.0 and nan["changed"] == 1.0 and nan["nonfinite"] == 1.0
    assert nan["drop"] == pytest.approx(r["accuracy"])
    for c in r["cells"]:
        assert c["drop"] == pytest.approx(r["accuracy"] - c["accuracy"]) and 0 <= c["changed"] <= 1


# ---------------------------------------------------------------------------- CLI
def test_cli_faults_json(capsys):
    assert main(["faults", "--kinds", "nan", "sign", "--layers", "fc3", "--where", "weights", "--rate", "0.2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["inputs"] == 360 and r["layers"] == ["fc3"] and {c["kind"] for c in r["cells"]} == {"nan", "sign"}
    assert main(["faults", "--kinds", "zero", "--layers", "fc*", "--where", "activations", "--rate", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "activations" in out and "fc1" in out and "zero" in out


@pytest.mark.parametrize("argv,match", [
    (["--rate", "1.5"], "rate must lie in [0, 1]"),
    (["--rate", "nan"], "rate must lie in [0, 1]"),
    (["--layers", "conv9"], "no layer with weights matches conv9"),
    (["--kinds", "melt"], "unknown fault kind 'melt'"),
    (["--bits", "20-40"], "bit range"),
    (["--bits", "x"], "--bits 'x'"),
    (["--model", "neurofuzz.fuzzer.zoo:LeNet5"], "--data is required"),
])
def test_cli_faults_bad_input_is_one_line(capsys, argv, match):
    assert main(["faults", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurofuzz: error: ") and match in err[0], err


def test_cli_kind_list_matches_the_library():
    from neurofuzz.fuzzer.commands.assets import FAULT_KINDS

    assert FAULT_KINDS == KINDS
