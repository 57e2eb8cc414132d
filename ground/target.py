"""Target: the model under test, with its input bounds and normalisation.

Mutators and attacks work in *raw image space* (``x`` in ``[lower, upper]``, default ``[0, 1]``);
the target applies ``(x - mean) / std`` inside its forward, so callers never normalise by hand.
The wrapped module is put in eval mode and moved to the target's device.

Example::

    >>> import torch
    >>> from neurofuzz.ground import Target
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> t = Target(net, bounds=(0.0, 1.0))
    >>> t(torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from neurofuzz.ground.devices import check_bounds, resolve_device
from neurofuzz.ground.errors import UserError


def _as_channel_tensor(v: float | Sequence[float] | None, name: str) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=torch.float32).flatten()
    if not torch.isfinite(t).all():
        raise UserError(f"{name} must be finite numbers, got {v!r}")
    return t.view(1, -1, 1, 1)


def extract_logits(out: object) -> torch.Tensor:
    """Return the logits tensor from a model output (tensor, tuple/list's first item, or a dict
    with a ``logits`` key)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    raise UserError(
        f"the model returned {type(out).__name__}; return a logits tensor, a tuple whose first "
        "item is the logits, or a dict with a 'logits' key"
    )


def model_hash(module: nn.Module) -> str:
    """SHA-256 (hex, first 16 chars) over parameter and buffer names, shapes and values."""
    h = hashlib.sha256()
    for name, t in list(module.state_dict().items()):
        if not isinstance(t, torch.Tensor):
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class Target(nn.Module):
    """Wrap ``module`` (returning logits) with input bounds and normalisation.

    Args:
        module: the model; its output is a logits tensor ``[B, n_classes]`` (or a tuple / dict,
            see :func:`extract_logits`).
        bounds: ``(lower, upper)`` of valid raw inputs.
        mean, std: per-channel normalisation applied inside ``forward``; ``None`` for identity.
        device: where the model runs (default: where its parameters already are, else CPU).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        lo, hi = check_bounds(bounds)
        if device is None:
            p = next(module.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = resolve_device(device)
        self.module = module.to(self.device)
        self.train(False)
        self.bounds = (lo, hi)
        m = _as_channel_tensor(mean, "mean")
        s = _as_channel_tensor(std, "std")
        if s is not None and (s <= 0).any():
            raise UserError(f"std must be > 0, got {std!r}")
        self.register_buffer("_mean", m.to(self.device) if m is not None else None, persistent=False)
        self.register_buffer("_std", s.to(self.device) if s is not None else None, persistent=False)

    def train(self, mode: bool = True) -> "Target":
        """A Target is always in eval mode (dropout off, batch-norm statistics frozen): ``train``
        is a no-op that keeps it so, and code that restores a previous mode cannot switch it."""
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean is not None:
            x = x - self._mean
        if self._std is not None:
            x = x / self._std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return extract_logits(self.module(self.normalize(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted labels ``[B]`` (int64), evaluated in chunks of ``batch_size``."""
        outs = [self(x[i : i + batch_size].to(self.device)).argmax(1) for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, dtype=torch.long)

    @torch.no_grad()
    def probe(self, x: torch.Tensor, *, finite: bool = True) -> torch.Tensor:
        """Run the model once on a small batch (one or two seeds) and turn any failure into a
        :class:`UserError`: wrong input shape, a model that raises, logits that are not
        ``[B, n_classes]``, and (``finite=True``) NaN or Inf logits. Returns the logits; their
        ``shape[1]`` is the number of classes (see :meth:`n_classes`)."""
        try:
            logits = self(x.to(self.device))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any model failure is reported in one line
            msg = " ".join(str(e).split())
            raise UserError(
                f"the model raised {type(e).__name__} on inputs of shape {list(x.shape)}: {msg[:200]}; "
                "check that the seeds match the model's input shape"
            ) from None
        if logits.dim() != 2 or logits.shape[0] != x.shape[0] or logits.shape[1] < 1:
            raise UserError(f"the model returned shape {list(logits.shape)} for {x.shape[0]} inputs; it must return logits [B, n_classes]")
        if finite and not torch.isfinite(logits).all():
            raise UserError(f"the model returns NaN or Inf logits on inputs of shape {list(x.shape)}; "
                            "fix the model (or its weights, or --mean/--std) before testing it")
        return logits

    def n_classes(self, x: torch.Tensor) -> int:
        """The number of classes: one checked forward pass (:meth:`probe`) on ``x[:2]``."""
        return int(self.probe(x[:2]).shape[1])

    def hash(self) -> str:
        return model_hash(self.module)


def check_labels(y: object, n_classes: int, *, what: str = "seed") -> None:
    """Refuse labels that are not classes of the model: integers in ``[0, n_classes)``.

    ``y`` is any 1-D integer array or tensor (or a list); ``what`` names the inputs in the
    message (``"seed"``, ``"entry"``). Example::

        >>> check_labels(torch.tensor([0, 2, 1]), 3)
        >>> check_labels([0, 3], 3)
        Traceback (most recent call last):
        ...
        neurofuzz.ground.errors.UserError: label 3 of seed 1 is not a class of the model, which has 3 classes (0..2); 1 label(s) are out of range: fix the labels (or the class folder names)
    """
    try:
        t = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"labels must be a 1-D integer array, got {type(y).__name__}") from None
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex() or t.dim() > 1:
        raise UserError(f"labels must be a 1-D integer array, got shape {tuple(t.shape)} dtype {t.dtype}")
    t = t.flatten().to(torch.int64) if t.dtype != torch.uint64 else t.flatten()
    bad = ((t < 0) | (t >= n_classes)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise UserError(f"label {int(t[i])} of {what} {i} is not a class of the model, which has {n_classes} classes "
                        f"(0..{n_classes - 1}); {len(bad)} label(s) are out of range: fix the labels "
                        "(or the class folder names)")
