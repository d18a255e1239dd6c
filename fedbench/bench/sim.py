"""`fedbench bench sim`: local-training throughput of the FL loop against a plain loop.

For one run config, the benchmark runs `rounds` rounds of FederatedRun.step() and takes
each round's train_s (local training of the selected clients, as the loop records it),
code_s and eval_s. After each FL round it trains a plain loop on the same work: the same
model (a copy of the run's, with its factors), optimizer type and hyperparameters, the
round's lr, the same mini-batches of each selected client (the same seeded positions and
augmentation draws), precision and memory format, but one optimizer for the whole
benchmark and no FL machinery (no state loading, optimizer construction, trainable
selection, generator setup per client). The loop's overhead is
100 * (train_s - plain_s) / plain_s; with train.parallel_clients > 1 the FL side trains
clients concurrently, so it can be negative.

An untimed warm-up (the first and last batch of each client of round 1, i.e. every batch
shape, through the plain loop) runs first: without it the first timed FL round pays for
kernel selection and allocation of each new shape, which showed as 10-20 % of extra
"overhead" in round 1. Outputs: STEM.csv (one
row per round and a total row) and STEM.json (the rows, the config, library versions,
thread counts, CPU model, bf16 support, load averages before and after, the command).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedbench.fl.aggregation import derive_seed
from fedbench.fl.config import RunConfig, config_to_dict
from fedbench.fl.data import FederatedData
from fedbench.fl.training import (
    FP16_INIT_SCALE,
    _augment,
    _batches,
    _layout,
    _loss,
    _normalize,
    autocast,
    cpu_bf16_support,
    local_step_count,
    lr_at_round,
    make_optimizer,
    use_memory_format,
)

__all__ = ["COLUMNS", "cpu_model", "format_table", "run_sim_bench", "write_outputs"]

COLUMNS = [
    "round",
    "clients",
    "samples",
    "train_s",
    "plain_s",
    "samples_per_s",
    "plain_samples_per_s",
    "overhead_pct",
    "code_s",
    "eval_s",
    "step_s",
]
# Leading columns naming the variant, so that tables of several runs concatenate.
LABELS = ["config", "precision", "memory_format", "threads", "parallel_clients"]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _client_batches(
    cfg: RunConfig, data: FederatedData, k: int, round_: int
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Generator]:
    """Client k's sample positions, mini-batches and generator, as train_local draws them."""
    idx = torch.from_numpy(np.asarray(data.client_indices[k], dtype=np.int64))
    idx = idx.to(data.x_train.device)
    gen = torch.Generator().manual_seed(derive_seed(derive_seed(cfg.seed, round_, k), 1))
    steps = local_step_count(len(idx), cfg.train)
    return idx, _batches(len(idx), cfg.train.batch_size, steps, gen), gen


class PlainLoop:
    """The reference: one model and optimizer trained over the given clients' batches."""

    def __init__(
        self, cfg: RunConfig, data: FederatedData, model: nn.Module, trainable: set[str]
    ) -> None:
        self.cfg, self.data = cfg, data
        self.model = copy.deepcopy(model)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        use_memory_format(self.model, cfg.train.memory_format)
        self.opt = make_optimizer(
            self.model, cfg.train, cfg.train.lr, trainable, cfg.method.adf_lr_scale
        )
        self.device = data.x_train.device
        self.scaler = (
            torch.amp.GradScaler(self.device.type, init_scale=FP16_INIT_SCALE)
            if cfg.train.precision == "fp16"
            else None
        )

    def train(self, round_: int, clients: list[int], warmup: bool = False) -> int:
        """Train the round's clients' batches in order; returns the number of samples.

        warmup: only each client's first and last batch, i.e. every batch shape the round
        has (a client's last batch is often smaller), so that the timed loops find their
        kernels selected and memory allocated.
        """
        cfg, data, model, opt = self.cfg, self.data, self.model, self.opt
        lr = lr_at_round(cfg.train, round_)
        for g in opt.param_groups:
            g["lr"] = lr * cfg.method.adf_lr_scale if g.get("adf") else lr
        model.train()
        samples = 0
        for k in clients:
            idx, batches, gen = _client_batches(cfg, data, k, round_)
            for b in [batches[0], batches[-1]] if warmup else batches:
                sel = idx[b.to(self.device)]
                x = _normalize(data, data.x_train[sel])
                y = data.y_train[sel]
                if cfg.data.augment:
                    x, y = _augment(x, y, data.task, gen)
                x = _layout(x, cfg.train.memory_format)
                opt.zero_grad(set_to_none=True)
                with autocast(self.device, cfg.train.precision):
                    loss = _loss(model(x), y, data.task)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.step(opt)
                    self.scaler.update()
                else:
                    loss.backward()
                    opt.step()
                samples += len(sel)
        return samples


def _round_samples(cfg: RunConfig, data: FederatedData, clients: list[int], round_: int) -> int:
    """Samples local training goes through in a round (LSA steps not counted)."""
    return sum(sum(len(b) for b in _client_batches(cfg, data, k, round_)[1]) for k in clients)


def _row(
    r: Any,
    clients: int,
    samples: int,
    train_s: float,
    plain_s: float,
    code_s: float,
    eval_s: float,
    step_s: float,
) -> dict[str, Any]:
    """One table row; rates in samples per second, overhead in percent of the plain loop."""
    return {
        "round": r,
        "clients": clients,
        "samples": samples,
        "train_s": train_s,
        "plain_s": plain_s,
        "samples_per_s": samples / train_s if train_s > 0 else float("nan"),
        "plain_samples_per_s": samples / plain_s if plain_s > 0 else float("nan"),
        "overhead_pct": 100.0 * (train_s - plain_s) / plain_s if plain_s > 0 else float("nan"),
        "code_s": code_s,
        "eval_s": eval_s,
        "step_s": step_s,
    }


def run_sim_bench(
    cfg: RunConfig,
    *,
    rounds: int | None = None,
    data: FederatedData | None = None,
    model_fn: Callable[[RunConfig, FederatedData], nn.Module] | None = None,
    label: str = "",
    command: str = "",
) -> dict[str, Any]:
    """Benchmark `rounds` FL rounds of `cfg` against the plain loop; returns the report."""
    from fedbench.fl.loop import FederatedRun
    from fedbench.fl.outputs import versions

    cfg = copy.deepcopy(cfg)
    cfg.checkpoint = False
    if rounds is not None:
        cfg.train.rounds = rounds
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fedbench-sim-") as tmp:
        t0 = time.perf_counter()
        run = FederatedRun(cfg, tmp, data=data, model_fn=model_fn)
        setup_s = time.perf_counter() - t0
        plain = PlainLoop(cfg, run.data, run.model, run.trainable)
        plain.train(1, run.strategy.configure(1), warmup=True)  # untimed
        plain = PlainLoop(cfg, run.data, run.model, run.trainable)  # fresh optimizer state
        rows = []
        for _ in range(cfg.train.rounds):
            r = run.round + 1
            clients = run.strategy.configure(r)
            t1 = time.perf_counter()
            fl = run.step()
            step_s = time.perf_counter() - t1
            t1 = time.perf_counter()
            samples = plain.train(r, clients)
            plain_s = time.perf_counter() - t1
            want = _round_samples(cfg, run.data, clients, r)
            if samples != want:  # pragma: no cover - both follow _batches
                raise RuntimeError(f"plain loop trained {samples} samples, FL {want}")
            rows.append(
                _row(
                    r,
                    len(clients),
                    samples,
                    fl["train_s"],
                    plain_s,
                    fl["code_s"],
                    fl["eval_s"],
                    step_s,
                )
            )
        run.close()
    tot = {
        k: sum(row[k] for row in rows)
        for k in ("clients", "samples", "train_s", "plain_s", "code_s", "eval_s", "step_s")
    }
    rows.append(_row("total", **tot))
    return {
        "label": label,
        "command": command,
        "rows": rows,
        "columns": COLUMNS,
        "precision": cfg.train.precision,
        "memory_format": cfg.train.memory_format,
        "parallel_clients": cfg.train.parallel_clients,
        "threads": cfg.threads,
        "torch_threads": torch.get_num_threads(),
        "rounds": cfg.train.rounds,
        "setup_s": setup_s,
        "device": str(run.device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_bf16_support(),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "versions": versions(),
        "config": config_to_dict(cfg),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _cell(v: Any) -> Any:
    """CSV cell: floats with 6 significant digits."""
    return f"{v:.6g}" if isinstance(v, float) else v


def write_outputs(report: dict[str, Any], stem: str | Path) -> tuple[Path, Path]:
    """Write STEM.csv (labelled table) and STEM.json (the whole report)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    labels = {
        "config": report["label"],
        "precision": report["precision"],
        "memory_format": report["memory_format"],
        "threads": report["threads"],
        "parallel_clients": report["parallel_clients"],
    }
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LABELS + COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in report["rows"]:
        w.writerow({**labels, **{k: _cell(row[k]) for k in COLUMNS}})
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    csv_path.write_text(buf.getvalue())
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return csv_path, json_path


def format_table(report: dict[str, Any]) -> str:
    """The rows as a fixed-width text table."""
    head = (
        f"{'round':>6} {'samples':>7} {'train_s':>8} {'plain_s':>8} {'smp/s':>8} "
        f"{'plain/s':>8} {'ovh%':>6} {'code_s':>7} {'eval_s':>7}"
    )
    lines = [head]
    for r in report["rows"]:
        lines.append(
            f"{r['round']!s:>6} {r['samples']:>7} {r['train_s']:>8.3f} {r['plain_s']:>8.3f} "
            f"{r['samples_per_s']:>8.1f} {r['plain_samples_per_s']:>8.1f} "
            f"{r['overhead_pct']:>6.1f} {r['code_s']:>7.3f} {r['eval_s']:>7.3f}"
        )
    return "\n".join(lines)
