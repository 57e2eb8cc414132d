"""Fault injection: a faulty copy of a model, with faults in its weights or its activations.

After MindArmour's ``FaultInjector`` (bit flips, zeros, random values, NaN, anti-activation and
precision loss, with the accuracy drop reported) and the soft-error studies it follows (Li et al.
2017, "Understanding error propagation in deep learning neural network accelerators", SC'17).

Kinds (each changes exactly the chosen elements, and only as it says):

* ``bitflip``: flips one bit per element, drawn uniformly from ``bits=(lo, hi)`` of the float32
  word (0-22 mantissa, 23-30 exponent, 31 sign); float32 tensors only;
* ``zero``, ``nan``: the element becomes 0 / NaN;
* ``random``: a value drawn uniformly from the tensor's own ``[min, max]`` (for activations: the
  sample's);
* ``sign``: the element is negated (on activations: MindArmour's anti-activation);
* ``fp16``, ``bf16``: rounded through that format (values beyond fp16's range become +-inf);
* ``int8``: symmetric int8 quantisation, scale ``max|t| / 127`` over the tensor (activations:
  over the sample).

Where: ``where="weights"`` changes the parameters of the chosen layers once, in the copy;
``where="activations"`` changes their outputs on every forward pass (forward hooks). Layers are
the modules that own parameters (Conv, Linear, BatchNorm, ...), chosen by fnmatch globs over
``named_modules()`` names. Of each chosen tensor, ``floor(rate * numel + 1/2)`` elements are faulted
(for activations: of each sample, at the same positions for every sample, like a stuck hardware
fault, so the faulty model is a pure function of its input). Positions and draws are fixed by
``seed`` and the layer and tensor names: the same arguments give the same faulty model.
The caller's model is never changed (the faults go into a deep copy).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 3)).eval()
    >>> bad = faulty_copy(net, kind="zero", layers="0", rate=0.5, seed=0)
    >>> int((bad[0].weight == 0).sum()), int((net[0].weight == 0).sum())
    (6, 0)
    >>> parse_fault_spec("bitflip:rate=0.001,layers=conv*+fc1,bits=23-30")
    {'kind': 'bitflip', 'rate': 0.001, 'layers': ['conv*', 'fc1'], 'bits': (23, 30)}
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from neurofuzz.ground.errors import UserError

KINDS = ("bitflip", "zero", "random", "nan", "sign", "fp16", "bf16", "int8")
WHERE = ("weights", "activations")
_BIT = torch.tensor([(1 << b) if b < 31 else -(1 << 31) for b in range(32)], dtype=torch.int32)
__all__ = ["KINDS", "WHERE", "corrupt", "fault_layers", "faulty_copy", "parse_fault_spec"]


def _inner(model: nn.Module) -> nn.Module:
    m = getattr(model, "module", None)
    return m if isinstance(m, nn.Module) and hasattr(model, "bounds") else model


def fault_layers(model: nn.Module, layers: str | Sequence[str] = "*") -> list[str]:
    """Names of the layers (modules owning parameters) matched by the fnmatch glob(s) ``layers``."""
    globs = [layers] if isinstance(layers, str) else list(layers)
    names = [n for n, m in _inner(model).named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    missing = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if missing or not chosen:
        raise UserError(f"no layer with weights matches {', '.join(missing or globs)}; layers: {', '.join(names) or 'none'}")
    return chosen


def check_fault(kind: str, rate: float, bits: tuple[int, int], where: str) -> None:
    if kind not in KINDS:
        raise UserError(f"unknown fault kind {kind!r}; choose from: {', '.join(KINDS)}")
    if where not in WHERE:
        raise UserError(f"fault location {where!r}: choose weights or activations")
    if not (isinstance(rate, (int, float)) and 0.0 <= float(rate) <= 1.0):
        raise UserError(f"fault rate must lie in [0, 1], got {rate}")
    lo, hi = bits
    if not 0 <= lo <= hi <= 31:
        raise UserError(f"bit range must satisfy 0 <= lo <= hi <= 31 (bits of a float32), got {lo}-{hi}")


def _draws(shape: tuple[int, ...], *, rate: float, bits: tuple[int, int], seed: int, key: str):
    """Fixed positions (bool mask), bits and uniforms for one tensor, from ``seed`` and ``key``."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    n = 1
    for d in shape:
        n *= d
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=g)[: int(rate * n + 0.5)]] = True  # round half up
    bit = torch.randint(bits[0], bits[1] + 1, (n,), generator=g)
    u = torch.rand(n, generator=g)
    return mask.view(shape), bit.view(shape), u.view(shape)


def corrupt(t: torch.Tensor, *, kind: str, mask: torch.Tensor, bit: torch.Tensor, u: torch.Tensor,
            dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """A copy of ``t`` with ``kind`` applied where ``mask`` is True (``mask``/``bit``/``u``
    broadcast to ``t``); ranges and int8 scales are taken over ``dims`` (``None``: all)."""
    mask = mask.to(t.device)
    if kind == "zero":
        new = torch.zeros_like(t)
    elif kind == "nan":
        new = torch.full_like(t, float("nan"))
    elif kind == "sign":
        new = -t
    elif kind == "random":
        lo = t.amin(dim=dims, keepdim=True) if dims else t.min()
        hi = t.amax(dim=dims, keepdim=True) if dims else t.max()
        new = lo + u.to(t.device, t.dtype) * (hi - lo)
    elif kind == "bitflip":
        if t.dtype != torch.float32:
            raise UserError(f"bitflip faults need float32 tensors, got {t.dtype}")
        new = (t.contiguous().view(torch.int32) ^ _BIT.to(t.device)[bit.to(t.device)]).view(torch.float32)
    elif kind in ("fp16", "bf16"):
        new = t.to(torch.float16 if kind == "fp16" else torch.bfloat16).to(t.dtype)
    elif kind == "int8":
        amax = t.abs().amax(dim=dims, keepdim=True) if dims else t.abs().max()
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        new = (t / scale).round().clamp(-127, 127) * scale
    else:
        raise UserError(f"unknown fault kind {kind!r}; choose from: {', '.join(KINDS)}")
    return torch.where(mask, new, t)


def _hook(kind: str, rate: float, bits: tuple[int, int], seed: int, key: str):
    cache: dict[tuple[int, ...], tuple[torch.Tensor, ...]] = {}

    def hook(_module, _inputs, out):
        if not isinstance(out, torch.Tensor) or out.dim() == 0:
            return out
        shape = tuple(out.shape[1:])
        if shape not in cache:
            cache[shape] = _draws(shape, rate=rate, bits=bits, seed=seed, key=f"{key}:{shape}")
        mask, bit, u = cache[shape]
        return corrupt(out, kind=kind, mask=mask, bit=bit, u=u, dims=tuple(range(1, out.dim())))

    return hook


@torch.no_grad()
def faulty_copy(model: nn.Module, *, kind: str, layers: str | Sequence[str] = "*", rate: float, seed: int,
                where: str = "weights", bits: tuple[int, int] = (0, 31)) -> nn.Module:
    """A deep copy of ``model`` (an ``nn.Module`` or a Target) with faults injected (see the module
    docstring). Bad arguments (unknown kind or layer, rate outside [0, 1]) raise a UserError."""
    bits = (int(bits[0]), int(bits[1]))
    check_fault(kind, rate, bits, where)
    names = fault_layers(model, layers)
    if where == "activations" and isinstance(_inner(model), torch.jit.ScriptModule):
        raise UserError("activation faults need forward hooks, which a TorchScript model cannot carry; fault its "
                        "weights, or give the model as module:factory with --weights")
    out = copy.deepcopy(model)
    mods = dict(_inner(out).named_modules())
    for name in names:
        m = mods[name]
        if where == "activations":
            m.register_forward_hook(_hook(kind, float(rate), bits, seed, f"act:{kind}:{name}"))
            continue
        for pname, p in m.named_parameters(recurse=False):
            mask, bit, u = _draws(tuple(p.shape), rate=float(rate), bits=bits, seed=seed, key=f"w:{kind}:{name}.{pname}")
            p.copy_(corrupt(p.detach(), kind=kind, mask=mask, bit=bit, u=u))
    return out


def parse_fault_spec(text: str) -> dict:
    """``"KIND:key=value,..."`` -> keyword arguments of :func:`faulty_copy` (without ``model``).

    Keys: ``rate`` (float), ``layers`` (globs joined by ``+``), ``bits`` (``lo-hi`` or one bit),
    ``where`` (weights / activations), ``seed`` (int). Missing keys keep faulty_copy's defaults
    (``rate`` and ``seed`` must then be given separately).
    """
    kind, _, rest = str(text).strip().partition(":")
    out: dict = {"kind": kind.strip()}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        try:
            if not eq or not value:
                raise ValueError
            if key == "rate":
                out["rate"] = float(value)
            elif key == "seed":
                out["seed"] = int(value)
            elif key == "layers":
                out["layers"] = [g for g in value.split("+") if g]
            elif key == "bits":
                lo, _, hi = value.partition("-")
                out["bits"] = (int(lo), int(hi or lo))
            elif key == "where":
                out["where"] = value
            else:
                raise UserError(f"fault spec {text!r}: unknown key {key!r}; keys: rate, layers, bits, where, seed")
        except UserError:
            raise
        except ValueError:
            raise UserError(f"fault spec {text!r}: bad {key}={value!r} (e.g. bitflip:rate=0.001,layers=conv*,bits=23-30)") from None
    check_fault(out["kind"], out.get("rate", 0.0), out.get("bits", (0, 31)), out.get("where", "weights"))
    return out
