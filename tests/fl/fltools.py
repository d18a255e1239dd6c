"""Helpers shared by the FL tests: a tiny CNN, synthetic data, a small config."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedbench.fl.config import RunConfig, config_from_dict
from fedbench.fl.data import FederatedData


class TinyNet(nn.Module):
    """Two conv layers with BatchNorm and a linear classifier (a few thousand parameters)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_model_fn(cfg: RunConfig, data: FederatedData) -> nn.Module:
    """model_fn for run_fl building TinyNet for the data's channels and classes."""
    return TinyNet(data.channels, data.num_classes)


def synthetic_arrays(n_train: int = 160, n_test: int = 80, size: int = 12, seed: int = 0):
    """Two-class grey images: class 1 has a bright centre square (easily learnable)."""
    rng = np.random.default_rng(seed)

    def make(n: int):
        y = rng.integers(0, 2, n)
        x = rng.integers(0, 100, (n, size, size, 1)).astype(np.uint8)
        c = size // 4
        x[y == 1, c:-c, c:-c, 0] += 120
        return x, y.astype(np.int64)

    return (*make(n_train), *make(n_test))


def small_config(**sections) -> RunConfig:
    """A CPU-sized RunConfig for synthetic runs; `sections` override nested keys."""
    raw = {
        "seed": 1,
        "device": "cpu",
        "data": {"num_clients": 4},
        "train": {"rounds": 3, "batch_size": 16, "lr": 0.05, "local_epochs": 1},
        "method": {"name": "stc", "sparsity": 0.8},
    }
    for key, val in sections.items():
        raw.setdefault(key, {})
        if isinstance(val, dict):
            raw[key].update(val)
        else:
            raw[key] = val
    return config_from_dict(raw)
