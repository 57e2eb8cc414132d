"""NeuronProfile: streamed statistics, accepted data forms, persistence, compatibility checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neurofuzz.coverage import ActivationRecorder, CoverageSuite, NeuronProfile
from neurofuzz.fuzzer import Target
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import model_hash

N = 50


# ----------------------------------------------------------------------------- helpers
class Small(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(3 * 6 * 6, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.relu(self.conv(x))).flatten(1)
        return self.out(torch.relu(self.fc(h)))


def small(seed: int = 0, dropout: float = 0.0) -> Small:
    with torch.random.fork_rng(devices=[]):
        model = Small(dropout)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def data(n: int = N, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2.0 - 0.5


def labels(n: int = N) -> torch.Tensor:
    return torch.arange(n) % 2


def direct(model: nn.Module, x: torch.Tensor, reduction: str = "mean") -> dict[str, torch.Tensor]:
    """min / max / mean / population std over the whole data, in one pass, in float64."""
    with ActivationRecorder(model, reduction=reduction) as rec:
        with torch.no_grad():
            model(x)
        acts = rec.pop()
    v = torch.cat(list(acts.values()), 1).double()
    return {"low": v.min(0).values, "high": v.max(0).values, "mean": v.mean(0), "std": v.std(0, unbiased=False),
            "layers": {k: t.shape[1] for k, t in acts.items()}}


def assert_stats(prof: NeuronProfile, ref: dict, tol: float = 1e-5) -> None:
    assert prof.layers == ref["layers"]
    for k in ("low", "high", "mean", "std"):
        got = getattr(prof, k)
        assert got.dtype == torch.float32 and got.shape == ref[k].shape, k
        torch.testing.assert_close(got.double(), ref[k], rtol=tol, atol=tol, msg=k)


def loader(x: torch.Tensor, batch_size: int) -> DataLoader:
    # a generator keeps the DataLoader's base seed off the global RNG
    return DataLoader(TensorDataset(x, labels(len(x))), batch_size=batch_size,
                      generator=torch.Generator().manual_seed(0))


def profile_equal(a: NeuronProfile, b: NeuronProfile, tol: float = 1e-6) -> None:
    assert a.layers == b.layers and a.count == b.count and a.reduction == b.reduction
    for k in ("low", "high", "mean", "std"):
        torch.testing.assert_close(getattr(a, k), getattr(b, k), rtol=tol, atol=tol, msg=k)


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("batch_size", [1, 7, 16, 49, 50, 256])
@pytest.mark.parametrize("reduction", ["mean", "element"])
def test_streamed_stats_equal_direct(batch_size, reduction):
    model, x = small(), data()
    rec = ActivationRecorder(model, reduction=reduction)
    prof = NeuronProfile.from_data(model, x, batch_size=batch_size, recorder=rec)
    ref = direct(model, x, reduction)
    assert_stats(prof, ref)
    assert prof.count == N and prof.reduction == reduction
    assert prof.model_hash == model_hash(model)
    # the data really vary: a meaningful check of std and bounds
    assert (ref["std"] > 0).all() and (ref["low"] < 0).any()


def test_streamed_stats_on_builtin_lenet(digits_test):
    from neurofuzz.fuzzer.zoo import builtin_target

    target = builtin_target()
    x = digits_test[0][:300]
    prof = NeuronProfile.from_data(target, x, batch_size=64)
    ref = direct(target, x)
    assert prof.layers == {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84, "fc3": 10}
    assert_stats(prof, ref)
    assert prof.model_hash == target.hash()


def test_profile_runs_in_eval_mode_and_restores_mode():
    model = small(dropout=0.5).train()
    x = data()
    prof = NeuronProfile.from_data(model, x, batch_size=8)
    assert model.training and model.drop.training  # the caller's mode is restored
    model.eval()
    assert_stats(prof, direct(model, x))  # dropout was off while profiling
    NeuronProfile.from_data(model, x)
    assert not model.training


def test_profiling_a_target_keeps_it_in_eval_mode():
    target = Target(small(dropout=0.5))
    assert not target.module.training
    NeuronProfile.from_data(target, data())
    assert not target.module.training
    assert not target.module.drop.training


def test_progress_callback():
    seen = []
    NeuronProfile.from_data(small(), data(), batch_size=16, progress=seen.append)
    assert seen == [16, 32, 48, 50]


# ----------------------------------------------------------------------------- data forms
def test_accepts_tensor_numpy_dataloader_and_iterables():
    model, x = small(), data()
    ref = NeuronProfile.from_data(model, x, batch_size=10)
    assert_stats(ref, direct(model, x))
    forms = {
        "numpy": x.numpy(),
        "dataloader": loader(x, 9),
        "xy tuples": [(x[i : i + 13], labels()[i : i + 13]) for i in range(0, N, 13)],
        "xy lists": [[x[i : i + 5], labels()[i : i + 5]] for i in range(0, N, 5)],
        "bare tensors": [x[i : i + 20] for i in range(0, N, 20)],
        "generator": (x[i : i + 8] for i in range(0, N, 8)),
        "numpy tuples": [(x[i : i + 25].numpy(), None) for i in range(0, N, 25)],
    }
    for name, d in forms.items():
        prof = NeuronProfile.from_data(model, d, batch_size=10)
        assert prof.count == N, name
        profile_equal(prof, ref, tol=1e-5)


def test_float64_and_float16_data_are_converted_to_float32():
    # documented (NeuronProfile.from_data): other float dtypes -- numpy's default float64 above
    # all -- are converted to float32 first and give exactly the float32 data's profile; never a
    # bare dtype RuntimeError from inside the model
    model, x = small(), data()
    ref = NeuronProfile.from_data(model, x, batch_size=10)
    x64 = x.double()  # float32 -> float64 -> float32 is exact
    forms = {
        "numpy float64": x64.numpy(),
        "tensor float64": x64,
        "numpy float64 batches": [x64[i : i + 10].numpy() for i in range(0, N, 10)],
        "loader of float64": loader(x64, 10),
    }
    for name, d in forms.items():
        prof = NeuronProfile.from_data(model, d, batch_size=10)
        assert prof.count == N and prof.low.dtype == torch.float32, name
        profile_equal(prof, ref, tol=0.0)
    half = x.half()
    profile_equal(NeuronProfile.from_data(model, half, batch_size=10),
                  NeuronProfile.from_data(model, half.float(), batch_size=10), tol=0.0)
    with pytest.raises(UserError, match=r"profiling data must be float batches \[B, C, H, W\]"):
        NeuronProfile.from_data(model, (x * 100).int().numpy())


@pytest.mark.parametrize(
    "empty",
    [
        torch.empty(0, 1, 8, 8),
        np.zeros((0, 1, 8, 8), dtype=np.float32),
        [],
        "loader",
        "empty batches",
    ],
)
def test_empty_data(empty):
    if isinstance(empty, str) and empty == "loader":
        empty = loader(torch.empty(0, 1, 8, 8), 4)
    elif isinstance(empty, str):
        empty = [torch.empty(0, 1, 8, 8), torch.empty(0, 1, 8, 8)]
    with pytest.raises(UserError, match="empty"):
        NeuronProfile.from_data(small(), empty)


@pytest.mark.parametrize("bad", [torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4), ["not a tensor"]])
def test_bad_data(bad):
    with pytest.raises(UserError, match=r"profiling data must be float batches \[B, C, H, W\]"):
        NeuronProfile.from_data(small(), bad)


def test_constructor_validates():
    z = torch.zeros(3)
    with pytest.raises(UserError, match="low > high"):
        NeuronProfile(layers={"a": 3}, low=torch.ones(3), high=z, mean=z, std=z)
    with pytest.raises(UserError, match=r"profile field low has shape \(3,\), expected \(4,\)"):
        NeuronProfile(layers={"a": 4}, low=z, high=z, mean=z, std=z)


# ----------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("reduction", ["mean", "element"])
def test_save_load_round_trip(tmp_path, reduction):
    model = small()
    prof = NeuronProfile.from_data(model, data(), recorder=ActivationRecorder(model, reduction=reduction))
    path = tmp_path / "profile.pt"
    prof.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["profile.pt"]  # no temp file left behind
    back = NeuronProfile.load(path)
    assert list(back.layers.items()) == list(prof.layers.items())
    assert back.reduction == reduction
    assert back.model_hash == prof.model_hash == model_hash(model)
    assert back.count == N
    for k in ("low", "high", "mean", "std"):
        assert torch.equal(getattr(back, k), getattr(prof, k)), k
    assert back.hash() == prof.hash()
    layout = ActivationRecorder(model, reduction=reduction).layout(data(1))
    back.check_compatible(model=model, layers=layout, reduction=reduction)
    # saving over an existing file replaces it
    other = NeuronProfile.from_data(model, data(seed=7))
    other.save(path)
    assert NeuronProfile.load(path).hash() == other.hash() != prof.hash()


def _state() -> dict:
    return NeuronProfile.from_data(small(), data()).state_dict()


def test_load_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        NeuronProfile.load(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="is a directory; give the profile file"):
        NeuronProfile.load(tmp_path)  # a directory


@pytest.mark.parametrize("content", [{"a": torch.zeros(2)}, [1, 2, 3], {"format": "something-else/1"}])
def test_load_non_profile_file(tmp_path, content):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(UserError, match="not a neurofuzz profile"):
        NeuronProfile.load(path)


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated", "text"])
def test_load_corrupt_file(tmp_path, how):
    path = tmp_path / "p.pt"
    NeuronProfile.from_data(small(), data()).save(path)
    raw = path.read_bytes()
    path.write_bytes({"garbage": bytes(range(256)) * 4, "empty": b"", "truncated": raw[: len(raw) // 2],
                      "text": b"low,high\n0,1\n"}[how])
    with pytest.raises(UserError, match="cannot read profile .*is it a neurofuzz profile"):
        NeuronProfile.load(path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: d.pop("std"), "field std is not a tensor"),
        (lambda d: d.pop("layer_names"), "missing field 'layer_names'"),
        (lambda d: d.update(layer_sizes=d["layer_sizes"][:-1]), "profile is incomplete or corrupted"),
        (lambda d: d.update(low=d["low"][:-1]), r"profile field low has shape \(8,\), expected \(9,\)"),
        (lambda d: d.update(low=d["high"] + 1), "low > high"),  # low > high
    ],
    ids=["no-std", "no-layer-names", "short-sizes", "short-low", "low-above-high"],
)
def test_load_incomplete_profile(tmp_path, damage, match):
    d = _state()
    damage(d)
    torch.save(d, tmp_path / "p.pt")
    with pytest.raises(UserError, match=match):
        NeuronProfile.load(tmp_path / "p.pt")


@pytest.mark.parametrize("field", ["low", "std"])
def test_load_profile_with_non_tensor_field(tmp_path, field):
    d = _state()
    d[field] = "corrupted"
    torch.save(d, tmp_path / "p.pt")
    with pytest.raises(UserError, match=f"field {field} is not a tensor"):
        NeuronProfile.load(tmp_path / "p.pt")


# ----------------------------------------------------------------------------- compatibility
def test_check_compatible_accepts_own_model_and_its_target():
    model = small()
    prof = NeuronProfile.from_data(model, data())
    layout = ActivationRecorder(model).layout(data(1))
    prof.check_compatible(model=model, layers=layout, reduction="mean")
    prof.check_compatible(model=Target(model))
    # a profile made through the Target matches the bare module too
    NeuronProfile.from_data(Target(small()), data()).check_compatible(model=small())


def test_check_compatible_refuses_other_model():
    prof = NeuronProfile.from_data(small(seed=0), data())
    with pytest.raises(UserError, match="different model"):
        prof.check_compatible(model=small(seed=1))
    with pytest.raises(UserError, match="different model"):
        prof.check_compatible(model=Target(small(seed=1)))
    tweaked = small(seed=0)
    with torch.no_grad():
        tweaked.out.bias[0] += 1e-3  # one parameter differs
    with pytest.raises(UserError, match="different model"):
        prof.check_compatible(model=tweaked)


@pytest.mark.parametrize(
    "layers",
    [
        {"conv": 3, "fc": 4},                        # a layer missing
        {"conv": 3, "fc": 4, "out": 2, "extra": 1},  # a layer too many
        {"conv": 3, "fc": 5, "out": 2},              # other neuron count
        {"conv": 3, "fc": 4, "head": 2},             # renamed
    ],
)
def test_check_compatible_refuses_other_layers(layers):
    prof = NeuronProfile.from_data(small(), data())
    assert prof.layers == {"conv": 3, "fc": 4, "out": 2}
    with pytest.raises(UserError, match="profile does not match the recorded layers"):
        prof.check_compatible(layers=layers)


def test_check_compatible_refuses_other_reduction():
    model = small()
    prof = NeuronProfile.from_data(model, data())
    with pytest.raises(UserError, match="reduction"):
        prof.check_compatible(reduction="element")
    elem = NeuronProfile.from_data(model, data(), recorder=ActivationRecorder(model, reduction="element"))
    with pytest.raises(UserError, match="reduction"):
        elem.check_compatible(reduction="mean")


# ----------------------------------------------------------------------------- CoverageSuite.default
def test_suite_default_refuses_profile_of_other_model():
    prof = NeuronProfile.from_data(small(seed=0), data())
    other = Target(small(seed=1))
    with pytest.raises(UserError, match="different model"):
        CoverageSuite.default(other, prof)
    # explicitly skipping the check builds the suite
    suite = CoverageSuite.default(other, prof, check_model=False)
    assert set(suite.metrics) == {"nc", "tknc", "kmnc", "nbc", "snac"}


def test_suite_default_accepts_own_profile_and_measures():
    target = Target(small(seed=0))
    prof = NeuronProfile.from_data(target, data())
    suite = CoverageSuite.default(target, prof)
    with suite:
        ev = suite.evaluate(data(8, seed=3))
        suite.commit(ev)
    assert ev.logits.shape == (8, 2)
    for name, m in suite.metrics.items():
        assert m.covered_count() == int(ev.gains[name].sum()), name
    assert suite.values()["tknc"] > 0


def test_suite_default_refuses_other_reduction_or_layers():
    target = Target(small())
    prof = NeuronProfile.from_data(target, data())
    with pytest.raises(UserError, match="reduction"):
        CoverageSuite.default(target, prof, recorder=ActivationRecorder(target, reduction="element"))
    with pytest.raises(UserError, match="not in this model"):
        CoverageSuite.default(target, prof, recorder=ActivationRecorder(target, names=["conv"]))


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor):
        y = self.lin(x)
        return y, -y


class _NestedPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(_Pair())
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.block(x)
        return self.head(a + 0.5 * b)


def test_suite_default_accepts_nested_tuple_output_layers():
    with torch.random.fork_rng(devices=[]):
        model = _NestedPair().eval()
    x = torch.rand(20, 4, generator=torch.Generator().manual_seed(0))
    prof = NeuronProfile.from_data(model, x, recorder=ActivationRecorder(model, types=[_Pair]))
    assert prof.layers == {"block.0.0": 3, "block.0.1": 3}
    suite = CoverageSuite.default(model, prof, recorder=ActivationRecorder(model, types=[_Pair]))
    with suite:
        ev = suite.evaluate(x[:4])
    assert ev.cells["nc"].shape == (4, 6)
