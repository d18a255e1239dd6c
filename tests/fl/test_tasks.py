"""Segmentation (mIoU) and multi-label (mAP) runs on synthetic data: loss, metric, outputs."""

import numpy as np
import torch
from fltools import TinyNet, small_config
from torch import nn

from fedbench.fl.data import federated_data_from_arrays
from fedbench.fl.loop import run_fl


class TinySeg(nn.Module):
    """Per-pixel classifier: two 3x3 convs with BN, logits at input resolution."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _split(n, k=3):
    return np.array_split(np.arange(n), k)


def test_segmentation_run_reports_miou(tmp_path):
    rng = np.random.default_rng(0)
    n, s = 48, 10
    x = rng.integers(0, 60, (n, s, s, 3)).astype(np.uint8)
    y = np.zeros((n, s, s), np.uint8)
    y[:, 3:7, 3:7] = 1
    x[:, 3:7, 3:7, :] += 150
    y[:, 0, :] = 255  # ignored pixels
    data = federated_data_from_arrays(
        x[:30],
        y[:30],
        x[36:],
        y[36:],
        _split(30),
        "segmentation",
        2,
        x_val=x[30:36],
        y_val=y[30:36],
    )
    cfg = small_config(
        method={"name": "stc", "sparsity": 0.5},
        train={"rounds": 3, "lr": 0.1},
        data={"num_clients": 3},
    )
    summary = run_fl(cfg, tmp_path, data=data, model_fn=lambda c, d: TinySeg(d.channels, 2))
    assert summary["metric"] == "test_miou"
    # all-background prediction scores about 0.4
    assert 0 <= summary["final_acc"] <= 1 and summary["best_acc"] > 0.55
    assert "test_miou" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_multilabel_run_reports_map(tmp_path):
    rng = np.random.default_rng(1)
    n, s, c = 60, 8, 3
    y = rng.integers(0, 2, (n, c)).astype(np.uint8)
    x = rng.integers(0, 50, (n, s, s, 1)).astype(np.uint8)
    for j in range(c):  # label j brightens a band of rows
        x[y[:, j] == 1, 2 * j : 2 * j + 2, :, 0] += 150
    data = federated_data_from_arrays(
        x[:38], y[:38], x[45:], y[45:], _split(38), "multilabel", c, x_val=x[38:45], y_val=y[38:45]
    )
    cfg = small_config(
        method={"name": "topk-fp16", "sparsity": 0.5}, train={"rounds": 3}, data={"num_clients": 3}
    )
    torch.manual_seed(0)
    summary = run_fl(cfg, tmp_path, data=data, model_fn=lambda cf, d: TinyNet(1, c))
    assert summary["metric"] == "test_map"
    assert 0 <= summary["final_acc"] <= 1
    assert summary["best_acc"] > 0.65  # about 0.5 for an untrained model
