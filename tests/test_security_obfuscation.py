"""Obfuscation: same function, different weights, on LeNet-5 and a ResNet-style model; refusals."""

from __future__ import annotations

import doctest
import textwrap

import pytest
import torch
from torch import nn

import neurofuzz.security.obfuscation as obf_mod
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.io import load_model
from neurofuzz.fuzzer.zoo import ResNet18, _BasicBlock, load_digits32, load_lenet5_digits
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import model_hash
from neurofuzz.security.obfuscation import find_links, obfuscate


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


Block = _BasicBlock  # the zoo's residual block (conv-bn-relu-conv-bn + shortcut, relu)


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 1, 1)
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(torch.relu(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def small_resnet() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SmallResNet()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # BatchNorm statistics and affine parameters that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    return net.eval()


@pytest.mark.allow_global_rng  # the example builds a layer with torch's default (global) init
def test_docstring_example():
    assert doctest.testmod(obf_mod, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize("exact", [True, False])
def test_lenet5_same_function_different_weights(exact):
    net = load_lenet5_digits()
    before = model_hash(net)
    out = obfuscate(net, seed=3, exact_scales=exact)
    assert model_hash(net) == before  # the caller's model is untouched
    x = rand(256, 1, 32, 32)
    with torch.no_grad():
        diff = float((out(x) - net(x)).abs().max())
    assert diff < (1e-5 if exact else 3e-5)
    a, b = net.state_dict(), out.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed == set(a) - {"fc3.bias"}  # every hidden tensor; the logits' bias keeps its order
    for name in ("conv1.weight", "fc1.weight", "fc2.weight"):  # not even a row in common
        rows_a, rows_b = a[name].flatten(1), b[name].flatten(1)
        assert not any(torch.equal(r, s) for r in rows_a for s in rows_b)
    xt, _ = load_digits32("test")
    assert torch.equal(out(xt).argmax(1), net(xt).argmax(1))


def test_deterministic_for_a_seed():
    net = load_lenet5_digits()
    a, b, c = (obfuscate(net, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])


def test_resnet_style_permutes_only_inside_residual_blocks():
    net = small_resnet()
    links = find_links(net)
    assert [(link.producer, link.consumer, link.scale_at) for link in links] == [
        ("layer1.0.conv1", "layer1.0.conv2", "layer1.0.bn1"), ("layer1.1.conv1", "layer1.1.conv2", "layer1.1.bn1")]
    out = obfuscate(net, seed=0, exact_scales=False)
    x = rand(16, 1, 12, 12)
    with torch.no_grad():
        assert float((out(x) - net(x)).abs().max()) < 1e-5
    a, b = net.state_dict(), out.state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    inside = {f"layer1.{i}.{p}" for i in (0, 1) for p in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                                          "bn1.running_var", "conv2.weight")}
    assert changed == inside  # the stem, the residual stream, the shortcuts and fc are left alone


@pytest.mark.slow
def test_zoo_resnet18():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ResNet18(in_channels=1).eval()
    out = obfuscate(net, seed=0)
    x = rand(4, 1, 32, 32)
    with torch.no_grad():
        assert float((out(x) - net(x)).abs().max()) < 1e-5
    assert len(find_links(net)) == 8


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x.flatten(1))
        if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            h = h * 2
        return self.b(h)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_unsupported_models_are_refused_by_name():
    with torch.random.fork_rng(devices=[]):
        branchy, single = Branchy(), nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        script = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
        sig = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))  # sigmoid is not positively homogeneous
        last_dim = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Linear(8, 3))  # on [B, 4, H, 8]: fan 8 = 2 x 4
    assert find_links(last_dim) == []  # a Linear over the width of a conv map is not a channel consumer
    with pytest.raises(UserError, match="cannot obfuscate Branchy: torch.fx cannot trace it"):
        obfuscate(branchy, seed=0)
    with pytest.raises(UserError, match="cannot obfuscate Sequential: no permutable pair"):
        obfuscate(single, seed=0)
    with pytest.raises(UserError, match="cannot obfuscate .*TorchScript"):
        obfuscate(script, seed=0)
    assert find_links(sig) == []
    with pytest.raises(UserError, match="scale_range"):
        obfuscate(load_lenet5_digits(), seed=0, scale_range=(0.6, 0.9))


def test_cli_obfuscate_builtin_and_refusal(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["obfuscate", "--out", "obf.pt", "--seed", "5"]) == 0
    assert "--model neurofuzz.fuzzer.zoo:LeNet5 --weights obf.pt" in capsys.readouterr().out
    net, ref = load_model("neurofuzz.fuzzer.zoo:LeNet5", "obf.pt"), load_lenet5_digits()
    x = rand(32, 1, 32, 32)
    with torch.no_grad():
        assert float((net(x) - ref(x)).abs().max()) < 1e-5
    assert not torch.equal(net.fc1.weight, ref.fc1.weight)
    (tmp_path / "branchy.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

            def forward(self, x):
                h = self.a(x.flatten(1))
                if h.sum() > 0:
                    h = h * 2
                return self.b(h)
    """))
    for argv, what in ((["obfuscate", "--model", "branchy.py:Branchy", "--out", "b.pt", "--input-shape", "1", "2", "2"],
                        "cannot obfuscate Branchy"),
                       (["obfuscate", "--out", "obf.pt"], "already exists")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("neurofuzz: error: ") and what in err[0], err
    assert not (tmp_path / "b.pt").exists()
