"""ActivationRecorder: hook lifetime, layer selection, reductions, in-place safety, odd outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.coverage import ActivationRecorder
from neurofuzz.fuzzer import Target
from neurofuzz.ground.errors import UserError


# ----------------------------------------------------------------------------- helpers
def seeded(factory, seed: int = 0) -> nn.Module:
    """Build a module without touching the global RNG, then set its weights from a generator."""
    with torch.random.fork_rng(devices=[]):
        model = factory()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


class Nested(nn.Module):
    """features.0 conv, features.1 relu, features.2.{0 conv, 1 relu}, head.{0 flatten, 1 fc, 2 relu, 3 fc}."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def manual_nested(model: Nested, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pre-activation outputs of Nested's conv/linear layers, computed without the model's forward."""
    f0, f2 = model.features[0], model.features[2][0]
    h1, h3 = model.head[1], model.head[3]
    c1 = F.conv2d(x, f0.weight, f0.bias)
    c2 = F.conv2d(c1.clamp_min(0), f2.weight, f2.bias)
    l1 = F.linear(c2.clamp_min(0).mean((2, 3)), h1.weight, h1.bias)
    l2 = F.linear(l1.clamp_min(0), h3.weight, h3.bias)
    return {"features.0": c1, "features.2.0": c2, "head.1": l1, "head.3": l2}


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture
def nested() -> Nested:
    return seeded(Nested)


# ----------------------------------------------------------------------------- hook lifetime
def test_hooks_removed_after_with(nested):
    rec = ActivationRecorder(nested)
    assert all_hooks(nested) == 0 and rec.n_hooks == 0  # nothing registered before entering
    with rec:
        assert rec.n_hooks == 4
        for name, mod in nested.named_modules():
            assert len(mod._forward_hooks) == (1 if name in rec.layer_names else 0), name
        nested(rand(2, 1, 8, 8))
    assert rec.n_hooks == 0
    assert all(len(m._forward_hooks) == 0 for m in nested.modules())


def test_hooks_removed_after_exception(nested):
    rec = ActivationRecorder(nested)
    with pytest.raises(RuntimeError, match="boom"):
        with rec:
            nested(rand(2, 1, 8, 8))
            raise RuntimeError("boom")
    assert rec.n_hooks == 0
    assert all(len(m._forward_hooks) == 0 for m in nested.modules())
    # a forward pass that itself fails inside the block (wrong input shape)
    with pytest.raises(RuntimeError, match="channels"):
        with rec:
            nested(rand(2, 3, 8, 8))
    assert all(len(m._forward_hooks) == 0 for m in nested.modules())


def test_attach_is_idempotent_and_detach_removes(nested):
    rec = ActivationRecorder(nested)
    rec.attach()
    rec.attach()
    assert rec.n_hooks == 4 and all_hooks(nested) == 4
    rec.detach()
    assert all_hooks(nested) == 0
    # after detach, forward passes record nothing
    nested(rand(2, 1, 8, 8))
    assert rec.pop() == {}


def test_layout_leaves_no_hooks(nested):
    rec = ActivationRecorder(nested)
    assert rec.layout(rand(1, 1, 8, 8)) == {"features.0": 3, "features.2.0": 4, "head.1": 5, "head.3": 2}
    assert all_hooks(nested) == 0
    with rec:
        rec.layout(rand(1, 1, 8, 8))
        assert rec.n_hooks == 4  # an attached recorder stays attached
    assert all_hooks(nested) == 0


def test_pop_clears_and_disabled_records_nothing(nested):
    with ActivationRecorder(nested) as rec:
        nested(rand(2, 1, 8, 8))
        assert set(rec.pop()) == {"features.0", "features.2.0", "head.1", "head.3"}
        assert rec.pop() == {}
        rec.enabled = False
        nested(rand(2, 1, 8, 8))
        assert rec.pop() == {}


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("reduction", ["mean", "element"])
def test_inplace_relu_does_not_change_recorded_values(nested, reduction):
    x = rand(3, 1, 8, 8, seed=5)
    ref = manual_nested(nested, x)
    # the pre-activations are partly negative, so an in-place ReLU would visibly change them
    assert all((t < 0).any() for t in ref.values())
    with ActivationRecorder(nested, reduction=reduction) as rec:
        with torch.no_grad():
            nested(x)
        acts = rec.pop()
    for name, t in ref.items():
        expect = t.mean((2, 3)) if (t.dim() == 4 and reduction == "mean") else t.flatten(1)
        torch.testing.assert_close(acts[name], expect, rtol=1e-5, atol=1e-6, msg=name)
        assert (acts[name] < 0).any(), name


def test_reduction_shapes_and_values(nested):
    x = rand(2, 1, 8, 8, seed=3)
    ref = manual_nested(nested, x)
    with ActivationRecorder(nested, reduction="mean") as rm:
        nested(x)
        mean = rm.pop()
    with ActivationRecorder(nested, reduction="element") as re_:
        nested(x)
        elem = re_.pop()
    assert {k: tuple(v.shape) for k, v in mean.items()} == {
        "features.0": (2, 3), "features.2.0": (2, 4), "head.1": (2, 5), "head.3": (2, 2)}
    assert {k: tuple(v.shape) for k, v in elem.items()} == {
        "features.0": (2, 3 * 6 * 6), "features.2.0": (2, 4 * 4 * 4), "head.1": (2, 5), "head.3": (2, 2)}
    for k, v in elem.items():
        assert v.dtype == torch.float32 and not v.requires_grad
    # per-channel spatial mean vs per element (channel-major flatten)
    torch.testing.assert_close(mean["features.0"], ref["features.0"].mean((2, 3)))
    torch.testing.assert_close(elem["features.0"].view(2, 3, 36).mean(2), mean["features.0"])
    torch.testing.assert_close(elem["features.2.0"], ref["features.2.0"].reshape(2, -1))
    torch.testing.assert_close(mean["head.1"], elem["head.1"])


def test_conv1d_mean_reduction():
    model = seeded(lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(inplace=True)))
    x = rand(4, 2, 10)
    with ActivationRecorder(model) as rec:
        model(x)
        acts = rec.pop()
    expect = F.conv1d(x, model[0].weight, model[0].bias)
    torch.testing.assert_close(acts["0"], expect.mean(2))
    with ActivationRecorder(model, reduction="element") as rec:
        model(x)
        assert rec.pop()["0"].shape == (4, 3 * 8)


def test_invalid_reduction(nested):
    with pytest.raises(UserError, match=r"reduction must be one of \('mean', 'element'\), got 'max'"):
        ActivationRecorder(nested, reduction="max")


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["features.0", "features.2.0", "head.1", "head.3"]),
        ({"names": ["features.*"]}, ["features.0", "features.2.0"]),
        ({"names": ["features.2.*"]}, ["features.2.0"]),
        ({"names": ["head.?"]}, ["head.1", "head.3"]),
        ({"names": ["*.0"]}, ["features.0", "features.2.0"]),
        ({"names": ["head.3", "features.0"]}, ["features.0", "head.3"]),
        ({"types": [nn.Linear]}, ["head.1", "head.3"]),
        ({"types": [nn.ReLU]}, ["features.1", "features.2.1", "head.2"]),
        ({"types": [nn.ReLU], "names": ["features.*"]}, ["features.1", "features.2.1"]),
        ({"types": [nn.Sequential]}, ["features", "features.2", "head"]),
        ({"types": [nn.Conv2d, nn.Flatten]}, ["features.0", "features.2.0", "head.0"]),
    ],
)
def test_layer_selection(nested, kwargs, expected):
    rec = ActivationRecorder(nested, **kwargs)
    assert rec.layer_names == expected
    with rec:
        nested(rand(2, 1, 8, 8))
        assert sorted(rec.pop()) == sorted(expected)


def test_selected_by_glob_records_values(nested):
    x = rand(2, 1, 8, 8)
    with ActivationRecorder(nested, names=["features.2.*"]) as rec:
        nested(x)
        acts = rec.pop()
    assert list(acts) == ["features.2.0"]
    torch.testing.assert_close(acts["features.2.0"], manual_nested(nested, x)["features.2.0"].mean((2, 3)))


@pytest.mark.parametrize("kwargs", [{"names": ["nope*"]}, {"types": [nn.LSTM]},
                                    {"types": [nn.ReLU], "names": ["head.1"]}, {"names": []}])
def test_no_matching_layer_is_a_user_error(nested, kwargs):
    with pytest.raises(UserError, match="no layer matched"):
        ActivationRecorder(nested, **kwargs)


# ----------------------------------------------------------------------------- odd outputs
class PairOut(nn.Module):
    def forward(self, x: torch.Tensor):
        return x * 2.0, x - 1.0, "not a tensor"


class DictOut(nn.Module):
    def forward(self, x: torch.Tensor):
        return {"double": x * 2.0, "neg": -x, "meta": 3}


class Multi(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = PairOut()
        self.dct = DictOut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, _ = self.pair(x)
        d = self.dct(a)
        return d["double"] + b


@pytest.mark.parametrize("reduction", ["mean", "element"])
def test_tuple_and_dict_outputs(reduction):
    model = Multi()
    x = rand(2, 3, 4, 4)
    with ActivationRecorder(model, types=[PairOut, DictOut], reduction=reduction) as rec:
        model(x)
        acts = rec.pop()
    assert sorted(acts) == ["dct.double", "dct.neg", "pair.0", "pair.1"]
    red = (lambda t: t.mean((2, 3))) if reduction == "mean" else (lambda t: t.flatten(1))
    torch.testing.assert_close(acts["pair.0"], red(x * 2.0))
    torch.testing.assert_close(acts["pair.1"], red(x - 1.0))
    torch.testing.assert_close(acts["dct.double"], red(x * 4.0))
    torch.testing.assert_close(acts["dct.neg"], red(-(x * 2.0)))


# ----------------------------------------------------------------------------- Target
def test_target_uses_unprefixed_names(nested):
    target = Target(nested, bounds=(0.0, 1.0), mean=0.5, std=0.25)
    rec = ActivationRecorder(target)
    assert rec.layer_names == ["features.0", "features.2.0", "head.1", "head.3"]
    assert ActivationRecorder(target, names=["features.*"]).layer_names == ["features.0", "features.2.0"]
    x = rand(3, 1, 8, 8)
    with rec:
        with torch.no_grad():
            logits = target(x)
        acts = rec.pop()
    assert all(not k.startswith("module") for k in acts)
    # the recorded values are those of the inner model on the normalised input
    ref = manual_nested(nested, (x - 0.5) / 0.25)
    for name, t in ref.items():
        torch.testing.assert_close(acts[name], t.mean((2, 3)) if t.dim() == 4 else t, msg=name)
    torch.testing.assert_close(acts["head.3"], logits)
    assert all(len(m._forward_hooks) == 0 for m in target.modules())


# ----------------------------------------------------------------------------- built-in LeNet-5
def test_builtin_lenet5(digits_target, digits_test):
    target = digits_target
    x = digits_test[0][:8]
    rec = ActivationRecorder(target)
    assert rec.layer_names == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    with rec:
        with torch.no_grad():
            logits = target(x)
        acts = rec.pop()
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "conv1": (8, 6), "conv2": (8, 16), "fc1": (8, 120), "fc2": (8, 84), "fc3": (8, 10)}
    m = target.module
    with torch.no_grad():
        c1 = F.conv2d(x, m.conv1.weight, m.conv1.bias)
        c2 = F.conv2d(F.max_pool2d(c1.clamp_min(0), 2), m.conv2.weight, m.conv2.bias)
        f1 = F.linear(F.max_pool2d(c2.clamp_min(0), 2).flatten(1), m.fc1.weight, m.fc1.bias)
        f2 = F.linear(f1.clamp_min(0), m.fc2.weight, m.fc2.bias)
    torch.testing.assert_close(acts["conv1"], c1.mean((2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts["conv2"], c2.mean((2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts["fc1"], f1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts["fc2"], f2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts["fc3"], logits)
    # pre-activation (the model's ReLUs are in place): negative values survive
    assert (acts["fc1"] < 0).any() and (acts["fc2"] < 0).any()
    assert all(len(mod._forward_hooks) == 0 for mod in target.modules())
