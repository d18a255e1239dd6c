"""Central pretraining on a source data set: the starting point of a transfer experiment, in
which federated runs on a different target domain start from this checkpoint
(`model.pretrained: <out>/model.pt`).

The run config's data, model and train sections describe the source task; all its training
samples form one client (no federation), trained for `epochs` passes under the configured
optimizer and lr schedule (one schedule step per epoch). Outputs in `out`: `model.pt` (a
plain state_dict, loadable with torch.load(weights_only=True)) and `pretrain.json` (source,
model, per-epoch loss and test/validation accuracy, the checkpoint's sha256, config,
versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedbench.fl.aggregation import derive_seed
from fedbench.fl.config import ConfigError, RunConfig, config_to_dict
from fedbench.fl.data import FederatedData, load_federated_data
from fedbench.fl.training import evaluate, lr_at_round, train_local

__all__ = ["CHECKPOINT", "REPORT", "pretrain"]

CHECKPOINT = "model.pt"
REPORT = "pretrain.json"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a killed job leaves no torn checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def pretrain(
    cfg: RunConfig,
    out: str | Path,
    epochs: int,
    *,
    data: FederatedData | None = None,
    model_fn: Callable[[RunConfig, FederatedData], nn.Module] | None = None,
) -> dict[str, Any]:
    """Train the configured model centrally on the configured data; returns the report."""
    from fedbench.fl.outputs import versions
    from fedbench.fl.template import default_model, resolve_device

    if epochs < 1:
        raise ConfigError(f"epochs: invalid value {epochs!r}; must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    one = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_clients=1))
    if data is None:
        data = load_federated_data(one, device)
    indices = torch.cat([torch.as_tensor(i) for i in data.client_indices]).numpy()
    torch.manual_seed(derive_seed(cfg.seed, 0x30DE1))
    model = (model_fn or default_model)(one, data).to(device)
    trainable = {n for n, _ in model.named_parameters()}
    # One schedule step per epoch: the train section's schedule over `epochs` "rounds".
    train = dataclasses.replace(cfg.train, rounds=epochs, local_epochs=1, local_steps=None)
    key = {"multilabel": "test_map", "segmentation": "test_miou"}.get(data.task, "test_acc")
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        lr = lr_at_round(train, epoch)
        loss, _ = train_local(
            model,
            data,
            indices,
            train,
            lr,
            trainable,
            derive_seed(cfg.seed, epoch, 0x9E7),
            augment=cfg.data.augment,
            bn_mode=cfg.train.bn_mode,
        )
        ev = evaluate(model, data, cfg.train.eval_batch_size)
        val = evaluate(model, data, cfg.train.eval_batch_size, "val")[key] if data.has_val else None
        history.append({"epoch": epoch, "lr": lr, "train_loss": loss, "test": ev[key], "val": val})
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    blob = buf.getvalue()
    _atomic_write(out / CHECKPOINT, blob)
    report = {
        "source": cfg.data.name,
        "model": cfg.model.name,
        "task": data.task,
        "num_classes": data.num_classes,
        "channels": data.channels,
        "epochs": epochs,
        "metric": key,
        "final_test": history[-1]["test"],
        "final_val": history[-1]["val"],
        "majority_acc": data.majority_acc(),
        "history": history,
        "checkpoint": CHECKPOINT,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "train_samples": len(indices),
        "wall_s": time.perf_counter() - t0,
        "threads": cfg.threads,
        "device": str(device),
        "versions": versions(),
        "config": config_to_dict(cfg),
    }
    _atomic_write(out / REPORT, (json.dumps(report, indent=2) + "\n").encode())
    return report
