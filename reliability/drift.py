"""Drift check over a stream of inputs: window means of every neuron against its profile.

The stream is cut into consecutive windows of ``window`` inputs. For each window and neuron ``j``
the window mean ``m_j`` of the neuron's value is compared with the profiled mean ``mu_j`` and std
``sd_j`` of a :class:`~neurofuzz.coverage.NeuronProfile` (built on training data):
``z_j = (m_j - mu_j) / (sd_j / sqrt(n))``, the z-test of a mean (by the central limit theorem,
``z_j`` is about standard normal while the stream follows the training distribution). A neuron
drifts in a window when ``|z_j|`` exceeds the two-sided Bonferroni threshold for ``alpha`` over
all ``N`` neurons, ``z* = Phi^-1(1 - alpha / (2N))``, *and* the shift is at least ``min_shift``
profiled stds (so a huge window does not flag shifts too small to matter). A window with any
drifting neuron is reported with its neurons. The family-wise false-alarm rate is at most
``alpha`` per window; over ``W`` windows at most ``W * alpha`` (set ``alpha`` accordingly). The
normal approximation wants windows of at least about 50 inputs: with 30, a skewed neuron of the
built-in model already crossed the threshold of ``alpha = 0.01`` once on the clean test split.

This is the window-statistics flavour of MindArmour's ``ConceptDriftCheckTimeSeries`` (which fits
echo-state networks on a time series); here the profile the coverage engine already builds is the
reference, so a drift names the neurons (layer and index) that moved.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import NeuronProfile
    >>> prof = NeuronProfile(layers={"fc": 2}, low=torch.full((2,), -5.), high=torch.full((2,), 5.),
    ...                      mean=torch.zeros(2), std=torch.ones(2))
    >>> mon = DriftMonitor(prof, window=100)
    >>> g = torch.Generator().manual_seed(0)
    >>> mon.update(torch.randn(100, 2, generator=g))
    []
    >>> shifted = torch.randn(100, 2, generator=g) + torch.tensor([0.0, 1.0])
    >>> [(e.window, e.neurons[0][:2]) for e in mon.update(shifted)]
    [(1, ('fc', 1))]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from neurofuzz.coverage.profile import NeuronProfile
from neurofuzz.coverage.recorder import ActivationRecorder
from neurofuzz.ground.errors import UserError

__all__ = ["DriftEvent", "DriftMonitor", "check_stream"]


@dataclass
class DriftEvent:
    """A window in which some neurons drifted: its index, its inputs ``[start, end)`` of the
    stream, the threshold, and ``neurons`` as ``(layer, index in layer, z, shift in stds)``, largest |z| first."""

    window: int
    start: int
    end: int
    z_threshold: float
    neurons: list[tuple[str, int, float, float]] = field(default_factory=list)


class DriftMonitor:
    """Feed neuron values ``[B, n_neurons]`` (the profile's layout) with :meth:`update`.

    Args:
        profile: the reference ``NeuronProfile`` (its ``mean`` and ``std``).
        window: inputs per window (>= 2).
        alpha: family-wise false-alarm probability per window (Bonferroni over the neurons).
        min_shift: the least |m - mu| / sd that counts as drift.
    """

    def __init__(self, profile: NeuronProfile, *, window: int = 100, alpha: float = 0.01, min_shift: float = 0.1) -> None:
        if window < 2:
            raise UserError(f"the drift window must hold at least 2 inputs, got {window}")
        if not 0.0 < alpha < 1.0:
            raise UserError(f"alpha must lie in (0, 1), got {alpha}")
        self.profile, self.window, self.alpha, self.min_shift = profile, int(window), float(alpha), float(min_shift)
        n = profile.n_neurons
        self.z_threshold = math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(1.0 - alpha / n, dtype=torch.float64)))
        sd = profile.std.double()
        self._sd = sd.clamp_min(max(1e-6, 1e-3 * float(sd.median())))  # a constant neuron cannot divide by 0
        self._names = [(name, i) for name, k in profile.layers.items() for i in range(k)]
        self._buf: list[torch.Tensor] = []
        self._buffered = 0
        self.seen = 0
        self.windows = 0

    def update(self, values: torch.Tensor | dict[str, torch.Tensor]) -> list[DriftEvent]:
        """Add a batch of neuron values (``[B, n]`` or a recorder's ``{layer: [B, k]}``); return the
        events of the windows it completed."""
        if isinstance(values, dict):
            missing = [k for k in self.profile.layers if k not in values]
            if missing:
                raise UserError(f"the drift profile's layers {missing} are not in the recorded values")
            values = torch.cat([values[k] for k in self.profile.layers], dim=1)
        if values.dim() != 2 or values.shape[1] != self.profile.n_neurons:
            raise UserError(f"drift values must be [B, {self.profile.n_neurons}], got {tuple(values.shape)}")
        self._buf.append(values.detach().double().cpu())
        self._buffered += len(values)
        events = []
        while self._buffered >= self.window:
            allv = torch.cat(self._buf)
            win, rest = allv[: self.window], allv[self.window :]
            self._buf, self._buffered = [rest], len(rest)
            ev = self._judge(win)
            if ev is not None:
                events.append(ev)
        return events

    def _judge(self, win: torch.Tensor) -> DriftEvent | None:
        shift = (win.mean(0) - self.profile.mean.double()) / self._sd
        z = shift * math.sqrt(len(win))
        hit = (z.abs() > self.z_threshold) & (shift.abs() >= self.min_shift)
        start = self.seen
        self.seen += len(win)
        self.windows += 1
        if not hit.any():
            return None
        idx = sorted(hit.nonzero().flatten().tolist(), key=lambda j: -abs(float(z[j])))
        neurons = [(*self._names[j], float(z[j]), float(shift[j])) for j in idx]
        return DriftEvent(self.windows - 1, start, self.seen, self.z_threshold, neurons)


@torch.no_grad()
def check_stream(model: nn.Module, stream: Iterable[torch.Tensor], profile: NeuronProfile, *, window: int = 100,
                 alpha: float = 0.01, min_shift: float = 0.1, recorder: ActivationRecorder | None = None) -> list[DriftEvent]:
    """Run the batches of ``stream`` through ``model`` and return the drift events. The recorder
    (default: the profile's layers, its reduction) must record the layout the profile was made with."""
    rec = recorder or ActivationRecorder(model, types=(), names=list(profile.layers), reduction=profile.reduction)
    mon = DriftMonitor(profile, window=window, alpha=alpha, min_shift=min_shift)
    events = []
    with rec:
        for xb in stream:
            model(xb)
            events += mon.update(rec.pop())
    return events
