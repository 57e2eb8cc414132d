"""Built-in models and data: LeNet-5 on scikit-learn's bundled digits, and a ResNet-18-style net.

The digits (1,797 images of 8x8, values 0..16) ship inside scikit-learn, so nothing is
downloaded. They are scaled to [0, 1] and upscaled to 32x32 with bilinear interpolation
(``align_corners=False``), then split with a fixed permutation (seed 0): 1,437 train, 360 test.

``builtin_target()`` returns the trained LeNet-5 wrapped in a :class:`Target`. Its weights ship as
``fuzzer/data/lenet5_digits.pt`` and are loaded with ``weights_only=True``;
``python -m neurofuzz.fuzzer.zoo --retrain PATH`` reproduces them (fixed seed, one thread).

Example::

    >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
    >>> target = builtin_target()
    >>> (x_test, y_test) = load_digits32("test")
    >>> x_test.shape, float((target.predict(x_test) == y_test).float().mean()) > 0.95
    (torch.Size([360, 1, 32, 32]), True)
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.target import Target

WEIGHTS = Path(__file__).resolve().parent / "data" / "lenet5_digits.pt"
N_TRAIN = 1437


class LeNet5(nn.Module):
    """LeNet-5 for 1x32x32 inputs: conv(6,5) - pool - conv(16,5) - pool - fc120 - fc84 - fc10."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU(inplace=True)
        self.fc3 = nn.Linear(84, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks, 64-512 channels) for 3x32x32 inputs (CIFAR stem)."""

    def __init__(self, n_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@lru_cache(maxsize=1)
def _digits32() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    return x[perm].contiguous(), y[perm].contiguous()


def load_digits32(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x float32 [N,1,32,32] in [0,1], y int64 [N])`` for ``split`` in train/test/all."""
    x, y = _digits32()
    if split == "train":
        return x[:N_TRAIN].clone(), y[:N_TRAIN].clone()
    if split == "test":
        return x[N_TRAIN:].clone(), y[N_TRAIN:].clone()
    if split == "all":
        return x.clone(), y.clone()
    raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")


def train_lenet5_digits(*, seed: int = 0, epochs: int = 30, batch_size: int = 64) -> LeNet5:
    """Train LeNet-5 on the digits train split, deterministically (fixed seed, Adam, 1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            model = LeNet5()
        with torch.no_grad():  # seeded init, independent of the global RNG
            for p in model.parameters():
                if p.dim() > 1:
                    bound = 1.0 / np.sqrt(p[0].numel())
                    p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=g))
                else:
                    p.zero_()
        x, y = load_digits32("train")
        return fit_classifier(model, x, y, epochs=epochs, batch_size=batch_size, lr=2e-3, generator=g)
    finally:
        torch.set_num_threads(threads)


def fit_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
                   lr: float, generator: torch.Generator) -> nn.Module:
    """Plain Adam on cross-entropy, batches shuffled by ``generator``; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def load_lenet5_digits(path: str | Path = WEIGHTS) -> LeNet5:
    with torch.random.fork_rng(devices=[]):  # the throw-away init must not touch the global RNG
        model = LeNet5()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def builtin_target(device: str | torch.device = "cpu") -> Target:
    """The shipped LeNet-5 digits classifier as a :class:`Target` with bounds [0, 1]."""
    return Target(load_lenet5_digits(), bounds=(0.0, 1.0), device=device)


def accuracy(target: Target, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((target.predict(x) == y.to(target.device)).float().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Reproduce the built-in LeNet-5 digits weights.")
    ap.add_argument("--retrain", metavar="PATH", required=True, help="where to write the state_dict")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model = train_lenet5_digits(seed=args.seed)
    torch.save(model.state_dict(), args.retrain)
    xt, yt = load_digits32("test")
    print(f"test accuracy {accuracy(Target(model), xt, yt):.4f}; wrote {args.retrain}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
