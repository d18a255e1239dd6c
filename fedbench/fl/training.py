"""Local training and evaluation primitives: train_local, evaluate, optimizer, lr, autocast."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedbench.fl.adf import is_adf_name
from fedbench.fl.aggregation import derive_seed
from fedbench.fl.data import FederatedData

__all__ = [
    "autocast",
    "cpu_bf16_support",
    "evaluate",
    "local_step_count",
    "lr_at_round",
    "make_optimizer",
    "train_local",
    "use_memory_format",
]

IGNORE_INDEX = 255

# Autocast compute dtype of each train.precision (fp32: no autocast).
PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Start of the fp16 loss scale: torch's 2^16 overflows (and skips) the first steps of a
# fresh scaler, and a client trains only a few steps per round.
FP16_INIT_SCALE = 2.0**10


def cpu_bf16_support() -> dict[str, Any]:
    """This CPU's bf16/fp16 instruction sets, whether it has bf16 matrix units, torch's ISA.

    bf16_matrix_units means AMX-BF16 tiles. AVX512-BF16 alone (vector dot products) did not
    make bf16 autocast pay: ResNet-20 local training ran at 0.7-0.8x the fp32 samples/s on
    a 2-core Xeon with AVX512-BF16 and no AMX (fedbench bench sim).
    """
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:  # not Linux: rely on torch's own detection below
        pass
    cpu = torch.cpu
    amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    avx512_bf16 = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    out = {
        "avx512_bf16": avx512_bf16 or "avx512_bf16" in flags,
        "amx_bf16": amx or "amx_bf16" in flags,
        "amx_fp16": bool(getattr(cpu, "_is_amx_fp16_supported", lambda: False)())
        or "amx_fp16" in flags,
        "avx512_fp16": "avx512_fp16" in flags,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    out["bf16_matrix_units"] = bool(out["amx_bf16"])
    return out


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast to the precision's dtype on the device type (fp32: a no-op context)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    dev = torch.device(device).type
    return torch.autocast(device_type=dev, dtype=PRECISION_DTYPES[precision])


def use_memory_format(model: nn.Module, memory_format: str) -> None:
    """Convert the model's 4-D weights in place to channels_last (contiguous: untouched).

    Loading a state_dict copies into the existing (channels_last) tensors, and values are
    unchanged, so the model round-trips any contiguous state.
    """
    if memory_format == "channels_last":
        model.to(memory_format=torch.channels_last)
    elif memory_format != "contiguous":
        raise ValueError(
            f"memory_format must be contiguous or channels_last, got {memory_format!r}"
        )


def _layout(x: torch.Tensor, memory_format: str) -> torch.Tensor:
    """A 4-D input batch in the configured memory format."""
    if memory_format == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _normalize(data: FederatedData, x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> normalised float32."""
    return (x.float().div_(255.0) - data.mean) / data.std


def _augment(
    x: torch.Tensor, y: torch.Tensor, task: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip (+ random crop with 4-pixel zero padding for image labels)."""
    b, _, h, w = x.shape
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    if task == "segmentation":
        y = torch.where(flip.view(b, 1, 1), y.flip(2), y)
        return x, y
    pad = 4
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (oy.view(b, 1) + torch.arange(h, device=x.device).view(1, h)).view(b, 1, h, 1)
    cols = (ox.view(b, 1) + torch.arange(w, device=x.device).view(1, w)).view(b, 1, 1, w)
    bidx = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    cidx = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return xp[bidx, cidx, rows, cols], y


def _loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Task loss: cross-entropy, BCE-with-logits (multi-label), or pixel CE (ignore 255)."""
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(out, y)
    if task == "segmentation":
        if out.shape[-2:] != y.shape[-2:]:
            out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(out, y, ignore_index=IGNORE_INDEX)
    return F.cross_entropy(out, y)


def lr_at_round(train: Any, round_: int) -> float:
    """Client learning rate in round `round_` (1-based) under the configured schedule."""
    if train.lr_schedule == "cosine":
        if train.rounds <= 1:
            return float(train.lr)
        t = (round_ - 1) / (train.rounds - 1)
        return float(train.lr_min + 0.5 * (train.lr - train.lr_min) * (1 + math.cos(math.pi * t)))
    if train.lr_schedule == "step":
        return float(
            train.lr * train.lr_gamma ** sum(1 for m in train.lr_milestones if round_ >= m)
        )
    return float(train.lr)


def make_optimizer(
    model: nn.Module, train: Any, lr: float, trainable: set[str], adf_lr_scale: float = 1.0
) -> torch.optim.Optimizer:
    """SGD/Adam over the trainable parameters; ADF factors: lr * adf_lr_scale, no weight decay.

    Two groups, always in this order (also when one is empty, so that saved optimizer states
    load): the other parameters, then the factors (marked "adf": True).
    """
    decay, factors = [], []
    for name, p in model.named_parameters():
        if name not in trainable:
            continue
        (factors if is_adf_name(name) else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": train.weight_decay, "lr": lr},
        # no decay: it would pull a factor towards 0, while its neutral value is 1
        {"params": factors, "weight_decay": 0.0, "lr": lr * adf_lr_scale, "adf": True},
    ]
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=train.momentum, nesterov=train.nesterov)


def _set_trainable(model: nn.Module, trainable: set[str]) -> None:
    """requires_grad only on the named parameters."""
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
    """`steps` mini-batches of local positions, reshuffled every pass, no singleton batches."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            b = perm[i : i + batch_size]
            if b.numel() == 1 and n > 1:
                continue  # BatchNorm cannot train on one sample
            out.append(b)
            if len(out) == steps:
                break
    return out


def local_step_count(n: int, train: Any) -> int:
    """Number of local mini-batches: local_steps, or local_epochs passes over n samples."""
    if train.local_steps is not None:
        return int(train.local_steps)
    per_epoch = n // train.batch_size + (1 if n % train.batch_size > 1 else 0)
    return max(1, train.local_epochs * max(per_epoch, 1))


def train_local(
    model: nn.Module,
    data: FederatedData,
    indices: np.ndarray,
    train: Any,
    lr: float,
    trainable: set[str],
    seed: int,
    steps: int | None = None,
    augment: bool = False,
    optimizer_state: dict[str, Any] | None = None,
    only: set[str] | None = None,
    bn_mode: str = "batch",
    adf_lr_scale: float = 1.0,
) -> tuple[float, dict[str, Any]]:
    """Train `model` in place on the client's samples; returns (mean loss, optimizer state).

    `only` restricts training to a subset of `trainable` (the LSA factor-only steps);
    `bn_mode`: batch (usual train mode), frozen (running statistics used, not updated) or
    running (running statistics used, updated from each batch before it is normalised);
    `adf_lr_scale` multiplies the lr of the ADF factors. train.precision (autocast) and
    train.memory_format (the model is converted in place) apply.
    """
    names = trainable if only is None else (trainable & only)
    _set_trainable(model, names)
    use_memory_format(model, train.memory_format)
    opt = make_optimizer(model, train, lr, names, adf_lr_scale)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
        for g in opt.param_groups:
            g["lr"] = lr * adf_lr_scale if g.get("adf") else lr
    gen = torch.Generator().manual_seed(derive_seed(seed, 1))
    torch.manual_seed(derive_seed(seed, 2))  # dropout and other global-RNG layers
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(data.x_train.device)
    n_steps = local_step_count(len(idx), train) if steps is None else steps
    model.train()
    hooks = []
    if bn_mode in ("frozen", "running"):
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
                if bn_mode == "running":
                    hooks.append(m.register_forward_pre_hook(_update_running_stats))
    try:
        return _train_steps(model, data, idx, train, n_steps, gen, augment, opt)
    finally:
        for h in hooks:
            h.remove()


def _update_running_stats(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook of bn_mode=running: EMA-update running statistics from the batch.

    The layer then normalises with its running statistics (eval mode), so no gradient flows
    through the statistics and a per-filter factor before it is not cancelled.
    """
    x = inputs[0]
    with torch.no_grad():
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dims)
        var = x.var(dims, unbiased=True) if x.numel() > x.shape[1] else torch.ones_like(mean)
        m = module.momentum if module.momentum is not None else 0.1
        module.running_mean.mul_(1 - m).add_(mean, alpha=m)
        module.running_var.mul_(1 - m).add_(var, alpha=m)
        module.num_batches_tracked.add_(1)


def _train_steps(
    model: nn.Module,
    data: FederatedData,
    idx: torch.Tensor,
    train: Any,
    n_steps: int,
    gen: torch.Generator,
    augment: bool,
    opt: torch.optim.Optimizer,
) -> tuple[float, dict[str, Any]]:
    """The local mini-batch loop; returns (mean loss, optimizer state)."""
    device = idx.device
    precision, fmt = train.precision, train.memory_format
    scaler = (
        torch.amp.GradScaler(device.type, init_scale=FP16_INIT_SCALE)
        if precision == "fp16"
        else None
    )
    total, count = 0.0, 0
    for b in _batches(len(idx), train.batch_size, n_steps, gen):
        sel = idx[b.to(device)]
        x = _normalize(data, data.x_train[sel])
        y = data.y_train[sel]
        if augment:
            x, y = _augment(x, y, data.task, gen)
        x = _layout(x, fmt)
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = _loss(model(x), y, data.task)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        total += float(loss.detach()) * len(sel)
        count += len(sel)
    return total / max(count, 1), opt.state_dict()


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `model`."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def _batchnorm_train_mode(
    bns: list[nn.modules.batchnorm._BatchNorm], momentum: float | None
) -> Iterator[None]:
    """`bns` in train mode with `momentum` (None: cumulative average), then eval mode and
    their own momentum again."""
    held = [(m, m.momentum) for m in bns]
    for m in bns:
        m.train()
        m.momentum = momentum
    try:
        yield
    finally:
        for m, old in held:
            m.momentum = old
            m.eval()


def recalibration_indices(data: FederatedData, samples: int | None, seed: int) -> np.ndarray:
    """The clients' pooled training samples BatchNorm statistics are measured on.

    `samples` = None: all of them; else a subset of that size drawn once from `seed`, so
    every evaluation of a run measures on the same images.
    """
    pooled = np.sort(np.concatenate([np.asarray(i, dtype=np.int64) for i in data.client_indices]))
    if samples is None or samples >= len(pooled):
        return pooled
    rng = np.random.default_rng(derive_seed(seed, 0xBA7C))
    return np.sort(rng.choice(pooled, size=samples, replace=False))


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    data: FederatedData,
    indices: np.ndarray,
    batch_size: int,
    precision: str = "fp32",
    memory_format: str = "contiguous",
) -> int:
    """Replace the BatchNorm running statistics of `model` by those of its own weights.

    One forward pass over the training samples `indices` (normalised, not augmented), every
    BatchNorm layer in train mode with a cumulative average (momentum None), so the result
    is the mean over batches of each batch's statistics, independent of what was stored.
    The rest of the model runs in eval mode (no dropout). Returns the number of layers.
    """
    bns = [m for m in _batchnorms(model) if m.track_running_stats and m.running_mean is not None]
    if not bns:
        return 0
    use_memory_format(model, memory_format)
    model.eval()
    for m in bns:
        m.reset_running_stats()
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(data.x_train.device)
    with _batchnorm_train_mode(bns, momentum=None):
        for i in range(0, len(idx), batch_size):
            sel = idx[i : i + batch_size]
            if len(sel) < 2 and i > 0:
                continue  # a one-sample tail batch has no variance to add
            x = _layout(_normalize(data, data.x_train[sel]), memory_format)
            with autocast(x.device, precision):
                model(x)
    return len(bns)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: FederatedData,
    batch_size: int,
    split: str = "test",
    precision: str = "fp32",
    memory_format: str = "contiguous",
    bn_stats: str = "running",
) -> dict[str, float]:
    """Loss, accuracy and the task metric (accuracy, mAP or mIoU) of `model` on a split.

    Keys are prefixed with "test_" whatever the split (the caller renames them). The
    forward runs under autocast(`precision`), the model converted to `memory_format`; loss
    and metrics are computed from float32 logits. bn_stats: "running" (BatchNorm uses its
    running statistics) or "batch" (each evaluation batch's own statistics, the running
    ones left unchanged: for a model that has none, method.bn_stats=local).
    """
    if split == "val":
        xs, ys = data.x_val, data.y_val
        if xs is None or len(xs) == 0:
            raise ValueError("evaluate: the data has no validation split")
    else:
        xs, ys = data.x_test, data.y_test
    model.eval()
    if bn_stats not in ("running", "batch"):
        raise ValueError(f"evaluate: bn_stats must be running or batch, got {bn_stats!r}")
    # batch: train mode normalises with the batch; momentum 0 keeps the running buffers
    bns = list(_batchnorms(model)) if bn_stats == "batch" else []
    with _batchnorm_train_mode(bns, momentum=0.0):
        return _evaluate(model, data, batch_size, xs, ys, precision, memory_format)


def _evaluate(
    model: nn.Module,
    data: FederatedData,
    batch_size: int,
    xs: torch.Tensor,
    ys: torch.Tensor,
    precision: str,
    memory_format: str,
) -> dict[str, float]:
    """The evaluation loop of `evaluate` (the model's modes already set)."""
    from fedbench.data import TaskMetric

    use_memory_format(model, memory_format)
    metric = TaskMetric(data.task, data.num_classes)
    loss_sum, correct, count, n = 0.0, 0, 0, 0
    for i in range(0, len(xs), batch_size):
        x = _layout(_normalize(data, xs[i : i + batch_size]), memory_format)
        y = ys[i : i + batch_size]
        with autocast(xs.device, precision):
            out = model(x)
        out = out.float()  # bf16/fp16 logits: the loss and argmax in float32
        if data.task == "segmentation" and out.shape[-2:] != y.shape[-2:]:
            out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss_sum += float(_loss(out, y, data.task)) * len(x)
        n += len(x)
        if data.task == "multilabel":
            correct += int(((out > 0).float() == y).sum())
            count += y.numel()
        elif data.task == "segmentation":
            valid = y != IGNORE_INDEX
            correct += int(((out.argmax(1) == y) & valid).sum())
            count += int(valid.sum())
        else:
            correct += int((out.argmax(1) == y).sum())
            count += len(y)
        metric.update(out.float().cpu(), y.cpu())
    res = {"test_loss": loss_sum / max(n, 1), "test_acc": correct / max(count, 1)}
    if data.task == "multilabel":
        res["test_map"] = float(metric.compute())
    elif data.task == "segmentation":
        res["test_miou"] = float(metric.compute())
    return res
