"""NeuronProfile: per-neuron statistics over profiling (training) data.

For every neuron recorded by an :class:`~neurofuzz.coverage.ActivationRecorder`: ``low`` (min),
``high`` (max), ``mean`` and ``std`` (population std), streamed batch by batch in float64 with
Chan et al.'s parallel update, so the data set is never held in memory. These are the bounds of
KMNC, NBC and SNAC.

A profile remembers the layer names, neuron counts, reduction mode and a hash of the model's
parameters; :meth:`NeuronProfile.check_compatible` turns a mismatch into a clear error.
Profiles are saved with ``torch.save`` and loaded with ``weights_only=True``.

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
    >>> from neurofuzz.coverage import NeuronProfile
    >>> target = builtin_target()
    >>> x, _ = load_digits32("train")
    >>> prof = NeuronProfile.from_data(target, x, batch_size=256)
    >>> prof.n_neurons, prof.layers["conv1"]
    (236, 6)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofuzz.coverage.recorder import ActivationRecorder
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import model_hash

FORMAT = "neurofuzz-profile/1"


def _batches(data: Any, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield input batches from a tensor, numpy array, DataLoader or iterable of batches
    (``x`` or ``(x, y, ...)``)."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield _as_float32(data[i : i + batch_size])
        return
    for b in data:
        if isinstance(b, (tuple, list)):
            b = b[0]
        if isinstance(b, np.ndarray):
            b = torch.from_numpy(b)
        yield _as_float32(b)


def _as_float32(b: Any) -> Any:
    """float64 (numpy's default) and float16 batches are converted to float32."""
    if isinstance(b, torch.Tensor) and b.dtype.is_floating_point and b.dtype != torch.float32:
        return b.float()
    return b


def _inner(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "bounds") else model


class NeuronProfile:
    """Per-neuron ``low``, ``high``, ``mean``, ``std`` (float32 ``[n_neurons]`` each).

    Attributes:
        layers: ordered ``{layer: n_neurons}``; neuron ``j`` of the flat vectors belongs to the
            layer whose slice contains ``j``.
        reduction: the recorder's reduction (``"mean"`` or ``"element"``).
        model_hash: hash of the profiled model's parameters (see ``Target.hash``).
        count: number of inputs profiled.
    """

    def __init__(
        self,
        *,
        layers: dict[str, int],
        low: torch.Tensor,
        high: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        reduction: str = "mean",
        model_hash: str = "",
        count: int = 0,
    ) -> None:
        n = sum(layers.values())
        for name, t in (("low", low), ("high", high), ("mean", mean), ("std", std)):
            if t.shape != (n,):
                raise UserError(f"profile field {name} has shape {tuple(t.shape)}, expected ({n},)")
        if (low > high).any():
            raise UserError("profile has low > high for some neuron; it is corrupted, recompute it")
        self.layers = dict(layers)
        self.low, self.high = low.float(), high.float()
        self.mean, self.std = mean.float(), std.float()
        self.reduction = reduction
        self.model_hash = model_hash
        self.count = int(count)

    @property
    def n_neurons(self) -> int:
        return int(self.low.numel())

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, n in self.layers.items():
            out[name] = slice(start, start + n)
            start += n
        return out

    def to(self, device: str | torch.device) -> "NeuronProfile":
        return NeuronProfile(
            layers=self.layers, low=self.low.to(device), high=self.high.to(device),
            mean=self.mean.to(device), std=self.std.to(device), reduction=self.reduction,
            model_hash=self.model_hash, count=self.count,
        )

    # ------------------------------------------------------------------ building
    @classmethod
    @torch.no_grad()
    def from_data(
        cls,
        model: nn.Module,
        data: torch.Tensor | np.ndarray | Iterable[Any],
        *,
        recorder: ActivationRecorder | None = None,
        batch_size: int = 256,
        progress: Any = None,
    ) -> "NeuronProfile":
        """Profile ``model`` (a Target or nn.Module) over ``data``, batch by batch.

        ``data`` is a tensor, a numpy array, a DataLoader or an iterable of batches (``x`` or
        ``(x, y, ...)``). Floating-point batches of another dtype (numpy's default float64,
        float16) are converted to float32 first, so they give the float32 data's profile;
        non-float batches are refused with a UserError.

        ``progress``, if given, is called as ``progress(n_inputs_done)`` after each batch.
        """
        rec = recorder or ActivationRecorder(model)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        n = 0
        stats: dict[str, list[torch.Tensor]] = {}
        layers: dict[str, int] = {}
        was_training = model.training
        model.eval()
        try:
            with rec:
                for xb in _batches(data, batch_size):
                    if not isinstance(xb, torch.Tensor) or xb.dim() < 2 or not xb.dtype.is_floating_point:
                        raise UserError("profiling data must be float batches [B, C, H, W]")
                    if xb.shape[0] == 0:
                        continue
                    model(xb.to(device))
                    acts = rec.pop()
                    b = xb.shape[0]
                    for name, a in acts.items():
                        a = a.double()
                        bmin, bmax = a.min(0).values, a.max(0).values
                        bmean = a.mean(0)
                        bm2 = ((a - bmean) ** 2).sum(0)
                        if name not in stats:
                            layers[name] = a.shape[1]
                            stats[name] = [bmin, bmax, bmean, bm2]
                            continue
                        lo, hi, mu, m2 = stats[name]
                        tot = n + b
                        delta = bmean - mu
                        stats[name] = [
                            torch.minimum(lo, bmin),
                            torch.maximum(hi, bmax),
                            mu + delta * (b / tot),
                            m2 + bm2 + delta**2 * (n * b / tot),
                        ]
                    n += b
                    if progress is not None:
                        progress(n)
        finally:
            model.train(was_training)
        if n == 0:
            raise UserError("profiling data is empty; give at least one input")
        cat = lambda i: torch.cat([stats[k][i] for k in layers]).cpu()  # noqa: E731
        low, high, mean, m2 = cat(0), cat(1), cat(2), cat(3)
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise UserError("the model produced NaN/Inf activations on the profiling data; check the data's range")
        return cls(
            layers=layers, low=low, high=high, mean=mean, std=(m2 / n).clamp_min(0).sqrt(),
            reduction=rec.reduction, model_hash=model_hash(_inner(model)), count=n,
        )

    # ------------------------------------------------------------------ checks
    def check_compatible(self, *, layers: dict[str, int] | None = None, model: nn.Module | None = None,
                         reduction: str | None = None) -> None:
        """Raise :class:`UserError` if this profile was not made for ``model`` / ``layers``."""
        if reduction is not None and reduction != self.reduction:
            raise UserError(
                f"profile was made with reduction={self.reduction!r}, the recorder uses {reduction!r}; "
                "re-profile or use the same reduction"
            )
        if layers is not None and dict(layers) != self.layers:
            missing = sorted(set(self.layers) ^ set(layers))
            detail = f"layers differ: {missing}" if missing else "neuron counts differ"
            raise UserError(f"profile does not match the recorded layers ({detail}); re-profile this model")
        if model is not None and self.model_hash and model_hash(_inner(model)) != self.model_hash:
            raise UserError(
                "profile was made for a different model (parameter hash "
                f"{self.model_hash} != {model_hash(_inner(model))}); run `neurofuzz profile` for this model"
            )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "layer_names": list(self.layers), "layer_sizes": list(self.layers.values()),
            "low": self.low.cpu(), "high": self.high.cpu(), "mean": self.mean.cpu(), "std": self.std.cpu(),
            "reduction": self.reduction, "model_hash": self.model_hash, "count": self.count,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "NeuronProfile":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise UserError("not a neurofuzz profile (missing format tag); create one with `neurofuzz profile`")
        try:
            for key in ("low", "high", "mean", "std"):
                if not isinstance(d.get(key), torch.Tensor):
                    raise TypeError(f"field {key} is not a tensor")
            layers = dict(zip(d["layer_names"], (int(n) for n in d["layer_sizes"]), strict=True))
            return cls(layers=layers, low=d["low"], high=d["high"], mean=d["mean"], std=d["std"],
                       reduction=d["reduction"], model_hash=d["model_hash"], count=d["count"])
        except KeyError as e:
            raise UserError(f"profile is incomplete (missing field {e}); recompute it with `neurofuzz profile`") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise UserError(f"profile is incomplete or corrupted ({e}); recompute it with `neurofuzz profile`") from None

    def hash(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for t in (self.low, self.high, self.mean, self.std):
            h.update(t.cpu().numpy().tobytes())
        h.update(repr(list(self.layers.items())).encode())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + ``os.replace``)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(self.state_dict(), f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "NeuronProfile":
        path = Path(path)
        if path.is_dir():
            raise UserError(f"profile path {path} is a directory; give the profile file (created by `neurofuzz profile`)")
        if not path.is_file():
            raise UserError(f"profile file {path} not found; create it with `neurofuzz profile`")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling problem is a user-file problem
            raise UserError(f"cannot read profile {path}: {type(e).__name__}; is it a neurofuzz profile?") from None
        return cls.from_state_dict(d)
