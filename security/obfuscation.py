"""Function-preserving obfuscation of a model's parameters: permute hidden units, rescale them.

A ReLU network computes the same function after (a) any permutation of the hidden units
(channels) between two layers, applied to the producer's outputs and the consumer's inputs, and
(b) a positive per-unit scale ``s`` on the producer's outputs undone by ``1/s`` on the consumer's
inputs, because ``relu(s * z) = s * relu(z)`` for ``s > 0`` (the symmetries of Hecht-Nielsen 1990,
"On the algebraic structure of feedforward network weight spaces", and of Neyshabur et al. 2015,
"Path-SGD"). Max/average pooling and flattening commute with both.

Supported pattern (found by tracing the model with ``torch.fx``; a model that cannot be traced is
refused by name): a *link* ``P -> ops -> C`` where ``P`` is a ``Conv2d`` or ``Linear`` (groups 1),
``C`` the next ``Conv2d`` or ``Linear`` (groups 1), and ``ops`` a chain of ReLU, BatchNorm2d/1d
(eval statistics), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Dropout, Identity and
``flatten(start_dim=1)`` in which every value has exactly one user (a ``Conv2d -> Linear`` link
needs that flatten; ``view`` / ``reshape`` are not followed). So in a sequential chain such
as LeNet-5 every hidden layer is permuted and rescaled; in a ResNet only the channels *internal to
a residual block* (conv1 -> bn1 -> relu -> conv2) are: a value that also feeds a residual sum has
two users and is left alone, as are the stem, the residual stream and the logits. The scale is put
on the last per-channel affine op of the chain (``P``, or a BatchNorm's weight and bias), so
BatchNorm statistics stay exact. A model with no link is refused by name.

What it protects against: naive reuse and diffing of stolen weights: the obfuscated state_dict has
the same keys and shapes, but no hidden layer's tensor equals (or, after the scaling, correlates
row by row with) the original, so a hash, a layer-by-layer diff or a fine-tuning-provenance check
on raw weights does not match. What it does NOT protect against: anyone who runs the model
(functional extraction, distillation, adversarial transfer: the function is unchanged, by design),
nor re-alignment by matching (sorting units by normalised weight vectors or activation
correlations recovers the permutation; normalising rows undoes the scales), nor the first layer's
input weights or the last layer's outputs, which are not permuted. It is a deterrent, not
encryption: see :mod:`neurofuzz.security.encryption` for that.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    >>> obf = obfuscate(net, seed=0)
    >>> x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    >>> bool((obf(x) - net(x)).abs().max() < 1e-5), torch.equal(obf[0].weight, net[0].weight)
    (True, False)
    >>> [str(link) for link in find_links(net)]
    ['0 -> 2 (8 units, scaled at 0)']
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from neurofuzz.ground.errors import UserError, one_line

_CHANNELWISE = (nn.ReLU, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.Dropout, nn.Identity, nn.Flatten)
_HOMOGENEOUS_FUNCS = {torch.relu, torch.nn.functional.relu, torch.flatten, torch.nn.functional.max_pool2d,
                      torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_avg_pool2d}
SUPPORTED = ("Sequential-style chains of Conv2d/Linear with ReLU, pooling, BatchNorm and flatten between them "
             "(e.g. LeNet-5), and ResNet-style models (channels inside a residual block)")
__all__ = ["Link", "SUPPORTED", "find_links", "obfuscate"]


@dataclass(frozen=True)
class Link:
    """Units ``P -> C`` that may be permuted and rescaled together (module names)."""

    producer: str
    consumer: str
    units: int
    bns: tuple[str, ...]  # BatchNorms in the chain (permuted with the units)
    scale_at: str  # the module whose per-unit output is rescaled: the producer or the last BatchNorm

    def __str__(self) -> str:
        return f"{self.producer} -> {self.consumer} ({self.units} units, scaled at {self.scale_at})"


def _is_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv2d, nn.Linear)) and getattr(m, "groups", 1) == 1


def _flatten_ok(node) -> bool:
    if node.op == "call_module":
        return True  # nn.Flatten: checked by type below (start_dim 1 is its default)
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    return start == 1


def find_links(model: nn.Module) -> list[Link]:
    """Every supported link of ``model`` (see the module docstring); a UserError if it cannot be traced."""
    import torch.fx

    name = type(model).__name__
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError(f"cannot obfuscate {name}: a TorchScript model; give a module:factory model. Supported: {SUPPORTED}")
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - any tracing failure means: not a supported architecture
        raise UserError(f"cannot obfuscate {name}: torch.fx cannot trace it ({type(e).__name__}: {one_line(e, 120)}). "
                        f"Supported: {SUPPORTED}") from None
    mods = dict(model.named_modules())
    return [link for node in graph.nodes if node.op == "call_module" and _is_layer(mods[node.target])
            for link in [_follow(node, mods)] if link is not None]


def _follow(node, mods: dict[str, nn.Module]) -> Link | None:
    """The link that starts at layer ``node``, or None: walk its single-user chain to the next layer."""
    p = mods[node.target]
    units = p.out_channels if isinstance(p, nn.Conv2d) else p.out_features
    bns, scale_at, cur, flat = [], node.target, node, False
    while True:
        users = list(cur.users)
        if len(users) != 1:
            return None
        nxt = users[0]
        m = mods.get(nxt.target) if nxt.op == "call_module" else None
        if m is not None and _is_layer(m):
            fan = m.in_channels if isinstance(m, nn.Conv2d) else m.in_features
            if isinstance(p, nn.Conv2d) and isinstance(m, nn.Linear):  # channel-major blocks after flatten(1)
                ok = flat and fan % units == 0
            else:
                ok = not flat and fan == units and isinstance(m, type(p))
            return Link(node.target, nxt.target, units, tuple(bns), scale_at) if ok else None
        if m is not None and isinstance(m, _CHANNELWISE):
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if flat or not m.affine or not m.track_running_stats or m.num_features != units:
                    return None
                bns.append(nxt.target)
                scale_at = nxt.target
            if isinstance(m, nn.Flatten):
                if m.start_dim != 1:
                    return None
                flat = True
        elif nxt.op == "call_function" and nxt.target in _HOMOGENEOUS_FUNCS and nxt.args[0] is cur:
            if nxt.target is torch.flatten:
                if not _flatten_ok(nxt):
                    return None
                flat = True
        elif nxt.op == "call_method" and nxt.target in ("relu", "flatten") and nxt.args[0] is cur:
            if nxt.target == "flatten":
                if not _flatten_ok(nxt):
                    return None
                flat = True
        else:
            return None
        cur = nxt


@torch.no_grad()
def obfuscate(model: nn.Module, *, seed: int, scale_range: tuple[float, float] = (0.25, 4.0),
              exact_scales: bool = True) -> nn.Module:
    """A deep copy of ``model`` with every :func:`find_links` link permuted and rescaled.

    Args:
        model: an ``nn.Module`` (a :class:`~neurofuzz.ground.Target` works too: its module is used).
        seed: seeds the permutations and scales (a ``torch.Generator``; the global RNG is untouched).
        scale_range: per-unit scales are drawn log-uniformly from this range ``(lo, hi)``, ``0 < lo <= hi``.
        exact_scales: round each scale to a power of two (inside the range), so that rescaling is
            exact in floating point and the outputs differ only by the summation order of the
            permuted units (max 7e-6 on the built-in model's logits, whose magnitude reaches 15).
            ``False`` keeps real scales, which also change every weight's mantissa, at a cost of
            one rounding per weight (max 1.4e-5 there).

    Returns:
        the obfuscated copy, same class, same state_dict keys and shapes; ``model`` is not changed.
    """
    lo, hi = scale_range
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise UserError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
    if exact_scales and math.floor(math.log2(hi)) < math.ceil(math.log2(lo)):
        raise UserError(f"scale_range {scale_range} holds no power of two; widen it or pass exact_scales=False")
    inner = model.module if hasattr(model, "bounds") and isinstance(getattr(model, "module", None), nn.Module) else model
    links = find_links(inner)
    if not links:
        raise UserError(f"cannot obfuscate {type(inner).__name__}: no permutable pair of layers found. Supported: {SUPPORTED}")
    out = copy.deepcopy(model)
    mods = dict((out if inner is model else out.module).named_modules())
    g = torch.Generator().manual_seed(int(seed))
    for link in links:
        n = link.units
        perm = torch.randperm(n, generator=g)
        if exact_scales:
            s = 2.0 ** torch.randint(math.ceil(math.log2(lo)), math.floor(math.log2(hi)) + 1, (n,), generator=g).double()
        else:
            s = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(math.log(lo), math.log(hi), generator=g))
        p, c = mods[link.producer], mods[link.consumer]
        p.weight.copy_(p.weight[perm])
        if p.bias is not None:
            p.bias.copy_(p.bias[perm])
        for b in link.bns:
            bn = mods[b]
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[perm])
        at = mods[link.scale_at]
        shape = (-1,) + (1,) * (at.weight.dim() - 1)
        at.weight.copy_((at.weight.double() * s.view(shape)).to(at.weight.dtype))
        if at.bias is not None:
            at.bias.copy_((at.bias.double() * s).to(at.bias.dtype))
        w = c.weight  # [out, in, ...]; a Linear after flatten sees each unit as a block of in/n features
        blocks = w.double().reshape(w.shape[0], n, -1)
        w.copy_((blocks[:, perm] / s.view(1, n, 1)).reshape(w.shape).to(w.dtype))
    return out
