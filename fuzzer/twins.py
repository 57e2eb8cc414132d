"""Differential twins: reference models built from the fuzzed model itself, for the
``disagreement`` oracle, so a campaign hunts for inputs where a deployed form of the model
(half precision, int8, an ONNX export in onnxruntime) disagrees with the trained one.

This is the quantisation differential of TensorFuzz (Odena et al., ICML 2019, section 5.3:
"surfacing disagreements between a model and its quantized version") and DiffChaser (Xie et
al., ISSTA 2019), as a registry: a twin is an ``nn.Module`` class with a ``name``, built by
``TWINS.build(name, target=..., input_shape=..., **params)`` around a copy of the target's
module (the target itself is never changed). :func:`build_twin` wraps it in a
:class:`~neurofuzz.ground.Target` with the fuzzed target's bounds and normalisation (or a
normalisation of its own: ``mean=``/``std=``).

* ``fp16`` / ``bf16``: the module cast to float16 / bfloat16, inputs cast likewise, logits back
  to float32;
* ``int8``: dynamic quantisation of the ``nn.Linear`` layers (weights int8, activations
  quantised per batch; ``torch.ao.quantization.quantize_dynamic``), run on CPU;
* ``onnx``: the module exported to ONNX (opset 17) and run by onnxruntime on CPU;
* ``fault``: a copy with faults injected into weights or activations (bit flips, zeros, NaN,
  sign flips, precision loss; :mod:`neurofuzz.reliability.faults`), so a campaign hunts for
  inputs where a faulty copy of the model disagrees with the healthy one.

Register another twin with ``@TWINS.register`` on a class ``(nn.Module)`` whose ``__init__`` takes
``*, target, input_shape=None`` plus its own keyword parameters.

Example::

    >>> import torch
    >>> from neurofuzz.ground import Target
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> t = Target(net)
    >>> twin = build_twin("fp16", t)
    >>> x = torch.rand(4, 1, 4, 4)
    >>> twin(x).dtype, bool(torch.allclose(twin(x), t(x), atol=1e-2)), TWINS.names()
    (torch.float32, True, ['fp16', 'bf16', 'int8', 'onnx', 'fault'])
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.registry import Registry
from neurofuzz.ground.target import Target, extract_logits

TWINS: Registry[nn.Module] = Registry("reference twin")


def _copy(target: Target) -> nn.Module:
    if isinstance(target.module, torch.jit.ScriptModule):
        raise UserError("a TorchScript model cannot be copied into a twin; give the model as module:factory")
    with torch.random.fork_rng(devices=[]):
        return copy.deepcopy(target.module).eval()


class _CastTwin(nn.Module):
    dtype: torch.dtype = torch.float16

    def __init__(self, *, target: Target, input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.inner = _copy(target).to(self.dtype)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return extract_logits(self.inner(x.to(self.dtype))).float()


@TWINS.register
class Fp16Twin(_CastTwin):
    """The model in IEEE half precision (float16)."""

    name = "fp16"
    dtype = torch.float16


@TWINS.register
class Bf16Twin(_CastTwin):
    """The model in bfloat16 (8 exponent bits, 7 mantissa bits)."""

    name = "bf16"
    dtype = torch.bfloat16


@TWINS.register
class Int8Twin(nn.Module):
    """Dynamic int8 quantisation of the ``nn.Linear`` layers (CPU); other layers stay float32."""

    name = "int8"

    def __init__(self, *, target: Target, input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        from torch.ao.quantization import quantize_dynamic

        inner = _copy(target).to("cpu")
        if not any(isinstance(m, nn.Linear) for m in inner.modules()):
            raise UserError("the int8 twin quantises nn.Linear layers, and this model has none; use fp16 or bf16")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization announces its successor
            self.inner = quantize_dynamic(inner, {nn.Linear}, dtype=torch.qint8)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return extract_logits(self.inner(x.to("cpu", torch.float32))).to(x.device)


@TWINS.register
class OnnxTwin(nn.Module):
    """The model exported to ONNX and run by onnxruntime (needs ``input_shape`` = ``[C, H, W]``)."""

    name = "onnx"

    def __init__(self, *, target: Target, input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        from neurofuzz.fuzzer.onnx_model import OrtModule, export_onnx

        if input_shape is None:
            raise UserError("the onnx twin needs the input shape [C, H, W] of the model (input_shape=...)")
        inner = _copy(target).to("cpu")
        try:
            blob = export_onnx(inner, torch.zeros(1, *[int(s) for s in input_shape]))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporter's failures are the user's model's
            why = " ".join(str(e).split())[:200]
            raise UserError(f"the model cannot be exported to ONNX: {type(e).__name__}: {why}") from None
        self.inner = OrtModule(blob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


@TWINS.register
class FaultTwin(nn.Module):
    """A copy of the model with faults injected (:func:`neurofuzz.reliability.faults.faulty_copy`):
    ``spec`` is ``KIND:rate=R[,layers=G1+G2][,bits=LO-HI][,where=weights|activations][,seed=S]``,
    e.g. ``bitflip:rate=0.001,layers=fc*,bits=23-30``; on the command line
    ``--reference fault:bitflip:rate=0.001``. The faults are fixed by ``seed`` (default 0), so a
    resumed campaign rebuilds the same faulty copy."""

    name = "fault"

    def __init__(self, *, target: Target, input_shape: Sequence[int] | None = None, spec: str = "") -> None:
        super().__init__()
        from neurofuzz.reliability.faults import faulty_copy, parse_fault_spec

        if not spec:
            raise UserError("the fault twin needs a fault spec, e.g. --reference fault:bitflip:rate=0.001,layers=fc*")
        params = {"seed": 0, **parse_fault_spec(spec)}
        if "rate" not in params:
            raise UserError(f"fault spec {spec!r} has no rate; add rate=R (the share of elements faulted, in [0, 1])")
        with torch.random.fork_rng(devices=[]):
            self.inner = faulty_copy(target.module, **params).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return extract_logits(self.inner(x))


def twin_from_spec(spec: str, target: Target, **kwargs: Any) -> Target:
    """:func:`build_twin` from a command-line spec ``NAME`` or ``NAME:PARAMS`` (``PARAMS`` is the
    twin's ``spec`` parameter, e.g. ``fault:bitflip:rate=0.001``)."""
    name, sep, rest = str(spec).partition(":")
    return build_twin(name, target, **({"spec": rest} if sep else {}), **kwargs)


def build_twin(name: str, target: Target, *, input_shape: Sequence[int] | None = None,
               mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
               **params: Any) -> Target:
    """A :class:`~neurofuzz.ground.Target` around twin ``name`` of ``target``: the same bounds and
    device, and ``target``'s normalisation unless ``mean``/``std`` are given.

    Args:
        name: a registered twin (``TWINS.names()``).
        target: the fuzzed model; its module is copied, never changed.
        input_shape: ``[C, H, W]`` of one input (needed by the ``onnx`` twin).
        params: the twin's own parameters (unknown ones are a UserError).
    """
    twin = TWINS.build(name, target=target, input_shape=input_shape, **params)
    own = [None if t is None else t.flatten().tolist() for t in (target._mean, target._std)]
    return Target(twin, bounds=target.bounds, mean=own[0] if mean is None else mean,
                  std=own[1] if std is None else std, device=target.device)
