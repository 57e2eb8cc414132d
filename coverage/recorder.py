"""ActivationRecorder: the observer. Forward hooks that capture layer outputs as neuron values.

Hooks are registered once, on ``__enter__`` (or :meth:`attach`), and always removed on
``__exit__`` (also after an exception) or :meth:`detach`. Each forward pass stores, per chosen
layer, a ``[B, n_neurons]`` float32 tensor, detached:

* ``reduction="mean"`` (default): a conv map ``[B, C, H, W]`` (any ``[B, C, *spatial]``) becomes
  its per-channel spatial mean ``[B, C]``: one neuron per channel (DeepHunter, MindArmour);
* ``reduction="element"``: every element is a neuron, ``[B, C*H*W]``.

The reduction happens *inside* the hook, so an in-place activation that later overwrites the
layer's output (``nn.ReLU(inplace=True)`` after a conv) cannot change what was recorded.

Layer choice: by default every module of type ``nn.Conv1d/2d/3d`` and ``nn.Linear`` (their
pre-activation outputs, so NBC's lower corner is meaningful). Pass ``types=`` to change the types
and/or ``names=`` (fnmatch globs over ``named_modules()`` names, e.g. ``["features.*", "fc?"]``)
to select by name; a module is chosen if it matches a type (when ``types`` is given or
defaulted) *and* a glob (when ``names`` is given). A hooked module that returns a tuple, list or
dict records each tensor item as ``name.0``, ``name.1`` / ``name.key``.

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.zoo import LeNet5
    >>> from neurofuzz.coverage import ActivationRecorder
    >>> model = LeNet5().eval()
    >>> with ActivationRecorder(model) as rec:
    ...     _ = model(torch.rand(4, 1, 32, 32))
    ...     acts = rec.pop()
    >>> {k: tuple(v.shape) for k, v in acts.items()}
    {'conv1': (4, 6), 'conv2': (4, 16), 'fc1': (4, 120), 'fc2': (4, 84), 'fc3': (4, 10)}
    >>> rec.n_hooks   # hooks are gone after the with block
    0
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from neurofuzz.ground.errors import UserError

DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
REDUCTIONS = ("mean", "element")


def reduce_activation(t: torch.Tensor, reduction: str) -> torch.Tensor:
    """``[B, C, *spatial] -> [B, C]`` (mean) or ``[B, prod]`` (element); ``[B, F]`` unchanged."""
    t = t.detach()
    if t.dim() < 2:
        t = t.reshape(t.shape[0] if t.dim() else 1, -1)
    if t.dim() > 2 and reduction == "mean":
        out = t.flatten(2).float().mean(dim=2)
    else:
        out = t.flatten(1).float()
        if out.data_ptr() == t.data_ptr():  # a view of the live output: copy before in-place ops
            out = out.clone()
    return out


class ActivationRecorder:
    """Capture per-neuron values of chosen layers through forward hooks.

    Args:
        model: the ``nn.Module`` to observe (a :class:`~neurofuzz.fuzzer.Target` works too;
            its inner module's names are used without the ``module.`` prefix).
        types: module types to hook (default Conv1d/2d/3d and Linear).
        names: fnmatch globs over module names; ``None`` for all names.
        reduction: ``"mean"`` (per-channel spatial mean) or ``"element"``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        types: Sequence[type[nn.Module]] | None = None,
        names: Iterable[str] | None = None,
        reduction: str = "mean",
    ) -> None:
        if reduction not in REDUCTIONS:
            raise UserError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.model = model
        inner = getattr(model, "module", None)
        self.root = inner if isinstance(inner, nn.Module) and hasattr(model, "bounds") else model
        if isinstance(self.root, torch.jit.ScriptModule):
            raise UserError(
                "a TorchScript model cannot carry Python forward hooks, so its neurons cannot be observed; "
                "give the model as module.path:factory with --weights (TorchScript works for replay and "
                "as --reference-model)"
            )
        self.reduction = reduction
        types_t = tuple(types) if types is not None else DEFAULT_TYPES
        globs = list(names) if names is not None else None
        chosen = []
        for name, mod in self.root.named_modules():
            if not name:
                continue
            if types_t and not isinstance(mod, types_t):
                continue
            if globs is not None and not any(fnmatch.fnmatchcase(name, g) for g in globs):
                continue
            chosen.append((name, mod))
        if not chosen:
            raise UserError(
                "no layer matched the recorder's selection (types="
                f"{[t.__name__ for t in types_t]}, names={globs}); check the module names with "
                "`[n for n, _ in model.named_modules()]`"
            )
        self.modules: list[tuple[str, nn.Module]] = chosen
        self._handles: list[Any] = []
        self._acts: dict[str, torch.Tensor] = {}
        self.enabled = True

    # ------------------------------------------------------------------ hooks
    @property
    def layer_names(self) -> list[str]:
        return [n for n, _ in self.modules]

    @property
    def n_hooks(self) -> int:
        return len(self._handles)

    def _make_hook(self, name: str):
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if not self.enabled:
                return
            self._store(name, out)

        return hook

    def _store(self, name: str, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            self._acts[name] = reduce_activation(out, self.reduction)
        elif isinstance(out, (tuple, list)):
            for i, o in enumerate(out):
                if isinstance(o, torch.Tensor):
                    self._acts[f"{name}.{i}"] = reduce_activation(o, self.reduction)
        elif isinstance(out, dict):
            for k, o in out.items():
                if isinstance(o, torch.Tensor):
                    self._acts[f"{name}.{k}"] = reduce_activation(o, self.reduction)

    def attach(self) -> "ActivationRecorder":
        if not self._handles:
            self._handles = [m.register_forward_hook(self._make_hook(n)) for n, m in self.modules]
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._acts = {}

    def __enter__(self) -> "ActivationRecorder":
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __del__(self) -> None:  # best effort; the context manager is the reliable way
        try:
            self.detach()
        except Exception:
            pass

    # ------------------------------------------------------------------ results
    def pop(self) -> dict[str, torch.Tensor]:
        """Activations of the last forward pass, ``{layer: [B, n]}`` in hook order; clears them."""
        acts, self._acts = self._acts, {}
        return acts

    @torch.no_grad()
    def layout(self, example: torch.Tensor) -> dict[str, int]:
        """Run ``example`` (a small batch) once and return ``{layer: n_neurons}``."""
        attached = bool(self._handles)
        self.attach()
        try:
            self._acts = {}
            self.model(example)
            return {k: v.shape[1] for k, v in self.pop().items()}
        finally:
            if not attached:
                self.detach()
