"""A mock model whose forward takes a fixed time, for the simulated part of ``benchmarks/scale.py``.

Its forward sleeps ``forward_ms`` milliseconds per batch (whatever the batch size), then applies
a tiny two-layer perceptron to 1x8x8 inputs (4 classes). The sleep stands for a large model's
forward on an accelerator: it costs wall time but leaves the CPU free, so more workers than cores
still scale until the fuzzer's own CPU work (mutation, coverage, sync) saturates the cores.

The CLI loads it as ``--model benchmarks/scale_mock.py:make_net``; the factory takes no
arguments, so the sleep comes from the environment variable ``SCALE_MOCK_MS`` (default 50), which
worker processes inherit. Weights come from a fixed ``torch.Generator`` seed: every worker builds
the same model, and the global RNG is left as it was.

Example::

    >>> import torch
    >>> net = SleepNet(forward_ms=1)     # make_net() takes the sleep from $SCALE_MOCK_MS
    >>> net(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 4])
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

ENV = "SCALE_MOCK_MS"
DEFAULT_MS = 50.0


class SleepNet(nn.Module):
    """``[N, 1, 8, 8] -> [N, 4]`` logits after sleeping ``forward_ms`` ms once per call."""

    def __init__(self, *, forward_ms: float, seed: int = 0) -> None:
        super().__init__()
        self.forward_ms = float(forward_ms)
        self.flat = nn.Flatten()
        with torch.random.fork_rng(devices=[]):  # nn.Linear's default init draws from the global RNG
            self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 4)
        self.relu = nn.ReLU()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for lin in (self.fc1, self.fc2):
                bound = lin.in_features ** -0.5
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=g) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=g) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_ms > 0:
            time.sleep(self.forward_ms / 1000.0)
        return self.fc2(self.relu(self.fc1(self.flat(x))))


def forward_ms_from_env() -> float:
    raw = os.environ.get(ENV, "")
    try:
        ms = float(raw) if raw.strip() else DEFAULT_MS
    except ValueError:
        raise ValueError(f"{ENV}={raw!r} is not a number of milliseconds") from None
    if not 0 <= ms <= 60_000:
        raise ValueError(f"{ENV} must lie in [0, 60000] ms, got {ms}")
    return ms


def make_net() -> SleepNet:
    """The mock model, its sleep taken from ``$SCALE_MOCK_MS`` (default 50 ms per forward)."""
    return SleepNet(forward_ms=forward_ms_from_env()).eval()
