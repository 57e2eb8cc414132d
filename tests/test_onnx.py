"""ONNX models as targets, on small ONNX files the tests export themselves: the converted torch
module (layers named after the ONNX nodes, observed by the recorder) and onnxruntime both
reproduce the torch model; ``--model x.onnx`` replays in onnxruntime and fuzzes with coverage;
unsupported operators, damaged files and a missing onnxruntime are one-line errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from neurofuzz.corpus import CampaignStore
from neurofuzz.coverage import ActivationRecorder
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.onnx_model import OnnxModule, OrtModule, export_onnx


class Block(nn.Module):
    """Conv (stride, padding) + BatchNorm + residual Add + pooling + Gemm + Softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        h = self.pool(torch.relu(h + self.conv(h)))
        return torch.softmax(self.fc(torch.flatten(self.gap(h), 1)), 1)


class CumSum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x.flatten(1), 1)[:, :3]


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_target, digits_test):
    d = tmp_path_factory.mktemp("onnx")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = Block().eval()
        with torch.no_grad():
            block.bn.running_mean.uniform_(-0.5, 0.5), block.bn.running_var.uniform_(0.5, 2.0)
    export_onnx(block, torch.zeros(1, 1, 8, 8), d / "block.onnx")
    export_onnx(digits_target.module, torch.zeros(1, 1, 32, 32), d / "lenet.onnx")
    export_onnx(CumSum(), torch.zeros(1, 1, 32, 32), d / "cumsum.onnx")
    (d / "bad.onnx").write_bytes(b"this is not a protobuf")
    x, y = digits_test
    np.savez(d / "seeds.npz", x=x[:10].numpy(), y=y[:10].numpy())
    store = CampaignStore.create(d / "camp", setup={"bounds": [0.0, 1.0], "mean": None, "std": None}, fsync=False)
    pred = digits_target.predict(x[:30])
    for i in range(30):
        store.add(x[i], kind="queue", label=int(y[i]), pred=int(pred[i]))
    store.close()
    return d, block


def test_converted_module_and_onnxruntime_reproduce_the_model(files):
    d, block = files
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    m = OnnxModule(d / "block.onnx")
    with torch.no_grad():
        want = block(x)
        assert torch.allclose(m(x), want, atol=1e-5) and torch.allclose(OrtModule(d / "block.onnx")(x), want, atol=1e-5)
    kinds = {type(c).__name__ for c in m.children()}
    assert {"Conv2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Softmax", "ReLU"} <= kinds  # BN folded by the exporter


def test_hand_built_graph_batchnorm_matmul_reshape_constant(tmp_path):
    """Operators torch's exporter folds away or does not emit, in a graph written with onnx.helper,
    against onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper, save

    r = np.random.default_rng(0)
    init = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("s", r.uniform(0.5, 2, 2)), ("b", r.normal(size=2)), ("m", r.normal(size=2)), ("v", r.uniform(0.5, 2, 2)),
        ("W", r.normal(size=(8, 3))), ("c", r.normal(size=3))]]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["h"], name="bn", epsilon=1e-3),
             helper.make_node("MaxPool", ["h"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Constant", [], ["shape"], name="k",
                              value=numpy_helper.from_array(np.array([0, -1], np.int64))),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "W"], ["z"], name="fc"),
             helper.make_node("Add", ["z", "c"], ["y"], name="bias")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], init)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    m = OnnxModule(tmp_path / "g.onnx")
    assert [n for n, _ in m.named_children()] == ["bn", "pool", "fc"]
    x = torch.rand(5, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(m(x), OrtModule(tmp_path / "g.onnx")(x), atol=1e-5)


def test_lenet_layers_are_named_after_the_onnx_nodes_and_observed(files, digits_target, digits_test):
    d, _ = files
    m = OnnxModule(d / "lenet.onnx")
    x = digits_test[0][:20]
    with ActivationRecorder(m) as rec, torch.no_grad():
        out = m(x)
        acts = rec.pop()
    assert list(acts) == ["conv1_Conv", "conv2_Conv", "fc1_Gemm", "fc2_Gemm", "fc3_Gemm"]
    assert torch.equal(out.argmax(1), digits_target.predict(x)) and torch.allclose(out, digits_target(x), atol=1e-4)


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_replays_an_onnx_model_in_onnxruntime_and_fuzzes_it(files, capsys, tmp_path):
    d, _ = files
    rc, out, err = _run(capsys, "replay", d / "camp", "--model", d / "lenet.onnx", "--baseline", "builtin")
    assert rc == 0 and "new regression 0" in out and "stable 30" in out, err
    rc, out, err = _run(capsys, "fuzz", "--model", d / "lenet.onnx", "--seeds", d / "seeds.npz", "--out", tmp_path / "c",
                        "--iterations", "2", "--quiet", "--mutators", "contrast")
    assert rc == 0 and "nc" in out, err


@pytest.mark.parametrize("name, extra, needle", [
    ("cumsum.onnx", [], "CumSum"),
    ("bad.onnx", [], "not a valid ONNX model"),
    ("missing.onnx", [], "not found"),
    ("lenet.onnx", ["--weights", "w.pt"], "--weights does not apply"),
], ids=["unsupported-op", "damaged", "missing", "weights"])
def test_cli_onnx_errors_are_one_line(files, capsys, tmp_path, name, extra, needle):
    d, _ = files
    rc, _, err = _run(capsys, "fuzz", "--model", d / name, *extra, "--seeds", d / "seeds.npz", "--out", tmp_path / "c",
                      "--iterations", "1", "--quiet")
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_missing_onnxruntime_says_how_to_install(files, capsys, monkeypatch):
    d, _ = files
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    rc, _, err = _run(capsys, "replay", d / "camp", "--model", d / "lenet.onnx")
    assert rc == 2 and "pip install 'neurofuzz[onnx]'" in err and len(err.strip().splitlines()) == 1
