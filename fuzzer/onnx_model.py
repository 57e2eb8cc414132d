"""ONNX models as targets: run in onnxruntime (replay, the ``onnx`` twin), or converted to a torch
module whose layers are named after the ONNX nodes (fuzzing with coverage: forward hooks need
torch modules).

The converter covers the operator set of common image classifiers (ONNX operator specs,
https://onnx.ai/onnx/operators/): Conv (2-D), Gemm, MatMul, Relu, LeakyRelu, Sigmoid, Tanh,
MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, Add, Sub, Mul, Div, Flatten, Reshape
(constant shape), Softmax, Identity, Dropout and Constant; any other operator is refused by name
in one line. Node ``/conv1/Conv`` becomes the module ``conv1_Conv`` (a Conv a ``nn.Conv2d``, a
Gemm a ``nn.Linear``: the recorder hooks them as it hooks a hand-written model). Files are read
without external data (a model that points at other files is refused) and checked by
``onnx.checker`` first.

Example::

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    >>> blob = export_onnx(net.eval(), torch.zeros(1, 1, 4, 4))
    >>> m = OnnxModule(blob)
    >>> [n for n, _ in m.named_children()]
    ['0_Conv', '1_Relu', '3_Gemm']
    >>> x = torch.rand(5, 1, 4, 4)
    >>> bool(torch.allclose(m(x), net(x), atol=1e-5)), bool(torch.allclose(OrtModule(blob)(x), net(x), atol=1e-5))
    (True, True)
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofuzz.ground.errors import UserError, one_line

INSTALL = "pip install 'neurofuzz[onnx]'"
_ELEMENTWISE = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}
_ACTIVATIONS = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}


def require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or say in one line how to install them."""
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"ONNX support needs the packages onnx and onnxruntime ({module} is missing): "
                        f"{INSTALL}") from None


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path | None = None) -> bytes:
    """Export ``module`` (eval mode) with a dynamic batch axis (TorchScript-based exporter, opset
    17, no onnxscript needed); returns the bytes and writes them to ``path`` if given."""
    require("onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    blob = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(blob)
    return blob


def load_proto(src: str | Path | bytes) -> Any:
    """The checked ``onnx.ModelProto`` of a file or bytes (one-line UserError otherwise)."""
    onnx = require("onnx")
    name = "the ONNX bytes" if isinstance(src, bytes) else str(src)
    if not isinstance(src, bytes) and not Path(src).is_file():
        raise UserError(f"ONNX model file {src} not found")
    try:
        proto = onnx.load_from_string(src) if isinstance(src, bytes) else onnx.load(str(src), load_external_data=False)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            raise UserError(f"{name} keeps weights in external files; save it as one file (onnx.save with "
                            "save_as_external_data=False)")
        onnx.checker.check_model(proto)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file is reported in one line
        raise UserError(f"{name} is not a valid ONNX model: {type(e).__name__}: {one_line(e, 200)}") from None
    return proto


class OrtModule(nn.Module):
    """An ONNX model run by onnxruntime on CPU behind a module interface: ``logits = m(x)`` (no
    gradients, no hooks; for replay and the ``onnx`` twin)."""

    def __init__(self, src: str | Path | bytes) -> None:
        super().__init__()
        ort = require("onnxruntime")
        proto = load_proto(src)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).numpy()})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def ort_target(path: str | Path, *, bounds: Any = None, mean: Any = None, std: Any = None) -> Any:
    """A :class:`~neurofuzz.ground.Target` around :class:`OrtModule` (recorded normalisation inside)."""
    from neurofuzz.ground.target import Target

    return Target(OrtModule(path), bounds=tuple(bounds) if bounds is not None else (0.0, 1.0), mean=mean, std=std)


def _attrs(node: Any) -> dict[str, Any]:
    onnx = require("onnx")
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _layer_name(node: Any, i: int, taken: set[str]) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", (node.name or f"{node.op_type}_{i}").strip("/")) or f"node_{i}"
    name, k = base, 1
    while name in taken or hasattr(nn.Module, name):
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


class OnnxModule(nn.Module):
    """A torch module built from an ONNX graph (see the module docstring for the operators).

    Args:
        src: an ``.onnx`` path or its bytes. The graph must have one input and one output.
    """

    def __init__(self, src: str | Path | bytes) -> None:
        super().__init__()
        from onnx import numpy_helper

        g = load_proto(src).graph
        self._consts: dict[str, torch.Tensor] = {t.name: torch.from_numpy(np.array(numpy_helper.to_array(t)))
                                                 for t in g.initializer}
        inputs = [i.name for i in g.input if i.name not in self._consts]
        if len(inputs) != 1 or len(g.output) < 1:
            raise UserError(f"the ONNX graph has inputs {inputs}; neurofuzz needs a model with one input image batch")
        self.input_name, self.output_name = inputs[0], g.output[0].name
        unknown = sorted({n.op_type for n in g.node} - set(_CONVERTERS))
        if unknown:
            raise UserError(f"the ONNX model uses operator(s) {', '.join(unknown)}, which neurofuzz cannot convert "
                            f"to torch (it converts {', '.join(sorted(_CONVERTERS))}); replay it in onnxruntime instead")
        self._steps: list[tuple[str, Any, list[str], list[str]]] = []
        taken: set[str] = set()
        for i, node in enumerate(g.node):
            try:
                with torch.random.fork_rng(devices=[]):  # a new layer's throw-away init draws from it
                    made = _CONVERTERS[node.op_type](self, node, _attrs(node))
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001
                raise UserError(f"cannot convert ONNX node {node.name or i} ({node.op_type}): {one_line(e, 200)}") from None
            if made is None:  # a Constant: its value is one of the module's constants
                continue
            if isinstance(made, nn.Module):
                name = _layer_name(node, i, taken)
                self.add_module(name, made)
                made = getattr(self, name)
            self._steps.append((node.op_type, made, list(node.input), list(node.output)))
        for k, v in self._consts.items():  # constants move with the module (.to(device))
            self.register_buffer(f"_c{len(self._buffers)}", v, persistent=False)
        self._const_keys = {k: f"_c{i}" for i, k in enumerate(self._consts)}

    def const(self, name: str) -> torch.Tensor:
        if name not in self._consts:
            raise UserError(f"ONNX input {name!r} must be a constant (initializer) for neurofuzz's converter")
        return self._consts[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {k: getattr(self, b) for k, b in self._const_keys.items()}
        env[self.input_name] = x
        for _op, fn, ins, outs in self._steps:
            if isinstance(fn, nn.Module):
                env[outs[0]] = fn(env[ins[0]])
            else:
                env[outs[0]] = fn(*[env[n] if n else None for n in ins])
        return env[self.output_name]


def _pads(a: dict[str, Any], rank: int = 2) -> tuple[int, ...]:
    p = list(a.get("pads", [0] * 2 * rank))
    if p[:rank] != p[rank:]:
        raise UserError(f"asymmetric padding {p} is not supported")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise UserError(f"auto_pad={a['auto_pad']!r} is not supported; export with explicit pads")
    return tuple(p[:rank])


def _conv(m: OnnxModule, node: Any, a: dict[str, Any]) -> nn.Module:
    w = m.const(node.input[1])
    if w.dim() != 4:
        raise UserError(f"Conv with a {w.dim() - 2}-D kernel is not supported (2-D only)")
    groups = int(a.get("group", 1))
    conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(a.get("strides", (1, 1))),
                     padding=_pads(a), dilation=tuple(a.get("dilations", (1, 1))), groups=groups,
                     bias=len(node.input) > 2 and bool(node.input[2]))
    with torch.no_grad():
        conv.weight.copy_(w)
        if conv.bias is not None:
            conv.bias.copy_(m.const(node.input[2]))
    return conv


def _linear(w: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b.reshape(-1).expand(w.shape[0]))
    return lin


def _gemm(m: OnnxModule, node: Any, a: dict[str, Any]) -> nn.Module:
    if a.get("transA", 0):
        raise UserError("Gemm with transA=1 is not supported")
    w = m.const(node.input[1])
    w = w if a.get("transB", 0) else w.t()
    b = m.const(node.input[2]) * float(a.get("beta", 1.0)) if len(node.input) > 2 and node.input[2] else None
    return _linear(w * float(a.get("alpha", 1.0)), b)


def _matmul(m: OnnxModule, node: Any, a: dict[str, Any]) -> Any:
    if node.input[1] in m._consts and m._consts[node.input[1]].dim() == 2:
        return _linear(m.const(node.input[1]).t(), None)
    return torch.matmul


def _pool(kind: str):
    def make(m: OnnxModule, node: Any, a: dict[str, Any]) -> nn.Module:
        k = tuple(a["kernel_shape"])
        if len(k) != 2:
            raise UserError(f"{node.op_type} over {len(k)} dimensions is not supported (2-D only)")
        kw = dict(kernel_size=k, stride=tuple(a.get("strides", k)), padding=_pads(a), ceil_mode=bool(a.get("ceil_mode", 0)))
        if kind == "max":
            return nn.MaxPool2d(dilation=tuple(a.get("dilations", (1, 1))), **kw)
        return nn.AvgPool2d(count_include_pad=bool(a.get("count_include_pad", 0)), **kw)
    return make


def _batchnorm(m: OnnxModule, node: Any, a: dict[str, Any]) -> nn.Module:
    scale, bias, mean, var = (m.const(n) for n in node.input[1:5])
    bn = nn.BatchNorm2d(len(scale), eps=float(a.get("epsilon", 1e-5))).eval()
    with torch.no_grad():
        bn.weight.copy_(scale), bn.bias.copy_(bias), bn.running_mean.copy_(mean), bn.running_var.copy_(var)
    return bn


def _flatten(m: OnnxModule, node: Any, a: dict[str, Any]) -> Any:
    axis = int(a.get("axis", 1))
    return lambda x: x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape(m: OnnxModule, node: Any, a: dict[str, Any]) -> Any:
    shape = [int(v) for v in m.const(node.input[1]).tolist()]
    return lambda x, _s=None: x.reshape([x.shape[i] if v == 0 else v for i, v in enumerate(shape)])


def _constant(m: OnnxModule, node: Any, a: dict[str, Any]) -> Any:
    from onnx import numpy_helper

    if "value" not in a:
        raise UserError("Constant without a 'value' tensor is not supported")
    m._consts[node.output[0]] = torch.from_numpy(np.array(numpy_helper.to_array(a["value"])))
    return None


_CONVERTERS: dict[str, Any] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda m, n, a: nn.AdaptiveAvgPool2d(1), "BatchNormalization": _batchnorm,
    "Flatten": _flatten, "Reshape": _reshape, "Constant": _constant,
    "Softmax": lambda m, n, a: nn.Softmax(dim=int(a.get("axis", -1))),
    "LeakyRelu": lambda m, n, a: nn.LeakyReLU(float(a.get("alpha", 0.01))),
    "Identity": lambda m, n, a: nn.Identity(), "Dropout": lambda m, n, a: (lambda x, *_: x),
    **{op: (lambda m, n, a, _c=cls: _c()) for op, cls in _ACTIVATIONS.items()},
    **{op: (lambda m, n, a, _f=f: _f) for op, f in _ELEMENTWISE.items()},
}
