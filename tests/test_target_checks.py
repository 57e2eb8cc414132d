"""neurofuzz.ground: devices, bounds, the probing forward pass and labels -- each bad value is one
UserError line saying what is available or how to fix it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurofuzz.ground import Target, UserError, available_devices, check_bounds, check_labels, resolve_device


def net(n_classes: int = 3) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, n_classes))


@pytest.fixture
def no_cuda_build(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ---------------------------------------------------------------------------- devices
@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu ", torch.device("cpu"), None])
def test_cpu_is_always_available(spec):
    assert resolve_device(spec) == torch.device("cpu")
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("spec, match", [
    ("nonsense", r"device 'nonsense' is not a device name \(use cpu, cuda, cuda:N or mps\); available: cpu"),
    ("", r"device '' is not a device name"),
    ("cuda:x", r"device 'cuda:x' is not a device name"),
    ("cuda:-1", r"device 'cuda:-1' is not a device name"),
    ("meta", r"device 'meta' cannot run a model here.*available: cpu"),
    ("cuda", r"device 'cuda' is not available: this torch build has no CUDA .*; available: cpu$"),
    ("cuda:7", r"device 'cuda:7' is not available: this torch build has no CUDA .*; available: cpu$"),
])
def test_devices_on_a_cpu_build(no_cuda_build, spec, match):
    with pytest.raises(UserError, match=match):
        resolve_device(spec)


def test_cuda_build_without_a_visible_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UserError, match=r"'cuda' is not available: no CUDA GPU is visible \(CUDA_VISIBLE_DEVICES=''\)"):
        resolve_device("cuda")


def test_device_index_beyond_the_gpus(two_gpus):
    assert available_devices()[:4] == ["cpu", "cuda", "cuda:0", "cuda:1"]
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(UserError, match=r"'cuda:7' is not available: there are only 2 cuda devices \(cuda:0..cuda:1\); "
                                        r"available: cpu, cuda, cuda:0, cuda:1"):
        resolve_device("cuda:7")


def test_target_refuses_an_unavailable_device(no_cuda_build):
    with pytest.raises(UserError, match="device 'cuda' is not available"):
        Target(net(), device="cuda")


# ---------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("bounds", [(1.0, 0.0), (0.5, 0.5), (0.0, float("nan")), (float("-inf"), 1.0),
                                    (0.0, float("inf")), ("a", 1), (0.0,), (0, 1, 2)])
def test_bad_bounds(bounds):
    with pytest.raises(UserError, match=r"bounds must be two (finite )?numbers lower < upper \(e.g. --bounds 0 1\)"):
        check_bounds(bounds)
    with pytest.raises(UserError, match="bounds must be"):
        Target(net(), bounds=bounds)


def test_good_bounds_are_floats():
    assert check_bounds([0, 255]) == (0.0, 255.0)
    assert Target(net(), bounds=(-1, 1)).bounds == (-1.0, 1.0)


# ---------------------------------------------------------------------------- probe
class Nan(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


class Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("shape mismatch\n  at line 3\n  in layer fc")


def test_probe_returns_logits_and_n_classes():
    t = Target(net(5))
    x = torch.zeros(3, 1, 4, 4)
    assert t.probe(x).shape == (3, 5)
    assert t.n_classes(x) == 5


def test_probe_refuses_nan_logits():
    with torch.random.fork_rng(devices=[]):
        t = Target(Nan())
    with pytest.raises(UserError, match=r"the model returns NaN or Inf logits on inputs of shape \[2, 1, 4, 4\]"):
        t.probe(torch.zeros(2, 1, 4, 4))
    assert t.probe(torch.zeros(2, 1, 4, 4), finite=False).shape == (2, 4)  # a failure may be non-finite on purpose


def test_probe_error_is_one_line():
    with pytest.raises(UserError, match=r"the model raised RuntimeError .*shape mismatch at line 3 in layer fc") as e:
        Target(Raises()).probe(torch.zeros(1, 1, 4, 4))
    assert "\n" not in str(e.value)


class NoClasses(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :0]


@pytest.mark.parametrize("module", [nn.Identity(), NoClasses()])
def test_probe_refuses_outputs_that_are_not_logits(module):
    with pytest.raises(UserError, match=r"must return logits \[B, n_classes\]"):
        Target(module).probe(torch.zeros(2, 1, 4, 4))


# ---------------------------------------------------------------------------- labels
@pytest.mark.parametrize("y", [[0, 1, 9], np.array([9], dtype=np.uint8), torch.tensor([3]), np.zeros(0, np.int64)])
def test_labels_in_range(y):
    check_labels(y, 10)


@pytest.mark.parametrize("y, match", [
    ([0, 10], r"label 10 of seed 1 is not a class of the model, which has 10 classes \(0..9\); 1 label\(s\)"),
    ([-1, 3, -1], r"label -1 of seed 0 .* 2 label\(s\) are out of range"),
    (np.array([10**12]), r"label 1000000000000 of seed 0"),
    (np.array([0.0, 1.0]), r"labels must be a 1-D integer array, got shape \(2,\) dtype torch.float64"),
    (np.zeros((2, 2), np.int64), r"labels must be a 1-D integer array, got shape \(2, 2\)"),
    (np.array([True]), r"labels must be a 1-D integer array"),
    (np.array(["a"]), r"labels must be a 1-D integer array, got ndarray"),
])
def test_labels_out_of_range_or_not_integers(y, match):
    with pytest.raises(UserError, match=match):
        check_labels(y, 10)


def test_labels_message_names_the_inputs():
    with pytest.raises(UserError, match="label 5 of entry 0"):
        check_labels([5], 3, what="entry")
