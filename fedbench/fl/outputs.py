"""Run outputs: metrics.csv (METRIC_COLUMNS), summary.json (summarize), ledger.csv, run.log."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedbench.fl.compressors import TensorSpec
from fedbench.fl.config import RunConfig, config_to_dict
from fedbench.fl.ledger import CLASSES, Ledger

__all__ = [
    "FACTORS",
    "LEDGER",
    "METRICS",
    "METRIC_COLUMNS",
    "SUMMARY",
    "atomic_write",
    "primary_metric",
    "setup_logging",
    "summarize",
    "update_sparsity",
    "versions",
    "write_factors",
    "write_ledger",
    "write_metrics",
    "write_summary",
]

log = logging.getLogger("fedbench.fl")

METRIC_COLUMNS = [
    "round",
    "lr",
    "num_clients",
    "train_loss",
    "test_loss",
    "test_acc",
    "test_miou",
    "test_map",
    "val_metric",
    "clients_test_acc",
    "clients_test_metric",
    "bytes_up",
    "bytes_down",
    "fp32_bytes_up",
    "fp32_bytes_down",
    "bytes_total_cum",
    "fp32_bytes_cum",
    "fp32_bytes_up_cum",
    "bytes_up_cum",
    "update_sparsity",
    "downlink_sparsity",
    "train_s",
    "code_s",
    "eval_s",
    # the round's charged bytes per direction and tensor class (they add up to bytes_up/down)
    *(f"bytes_{d}_{c}" for d in ("up", "down") for c in CLASSES),
]

METRICS = "metrics.csv"
SUMMARY = "summary.json"
LEDGER = "ledger.csv"
FACTORS = "factors.npz"  # ADF runs: the server's factors per round (write_factors)


def versions() -> dict[str, str]:
    """Library versions recorded in summary.json."""
    import numba

    from fedbench import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fedbench": __version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
    }


def update_sparsity(update: dict[str, np.ndarray], template: dict[str, TensorSpec]) -> float:
    """Fraction of zeros over the weight tensors of an update (all tensors if none)."""
    names = [n for n, s in template.items() if s.kind == "weight"] or list(template)
    total = sum(update[n].size for n in names)
    zeros = sum(int(np.count_nonzero(update[n] == 0)) for n in names)
    return zeros / max(total, 1)


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temporary file and rename (no torn files after a kill)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fmt(v: Any) -> Any:
    """CSV cell: floats with repr precision, NaN as empty."""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def primary_metric(task: str) -> str:
    """Column of the task's primary metric."""
    return {"multilabel": "test_map", "segmentation": "test_miou"}.get(task, "test_acc")


def write_metrics(out: Path, rows: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
    """metrics.csv with one row per finished round (`extra`: a runtime's own columns after
    the standard ones, empty where a row lacks them)."""
    cols = [*METRIC_COLUMNS, *extra]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _fmt(row[k]) if k in METRIC_COLUMNS else _fmt(row.get(k, "")) for k in cols})
    atomic_write(out / METRICS, buf.getvalue().encode())


def write_factors(out: Path, rows: list[dict[str, Any]]) -> None:
    """factors.npz for runs with filter factors: `round` [R] and, per factor tensor (its
    state_dict name), the server's aggregated factors [R, C_out] after each round's
    aggregation, before any fold (with method.adf_fold they restart at 1 every round, so
    each row is that round's factor). Nothing is written for runs without factors."""
    have = [row for row in rows if row.get("adf_factors")]
    if not have:
        return
    names = list(have[0]["adf_factors"])
    arrays = {"round": np.array([row["round"] for row in have], dtype=np.int64)}
    for n in names:
        arrays[n] = np.array([row["adf_factors"][n] for row in have], dtype=np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(out / FACTORS, buf.getvalue())


def write_ledger(out: Path, ledger: Ledger) -> None:
    """ledger.csv: one row per message sent so far."""
    atomic_write(out / LEDGER, ledger.to_csv().encode())


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """summary.json."""
    atomic_write(out / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())


def summarize(
    cfg: RunConfig,
    rows: list[dict[str, Any]],
    ledger: Ledger,
    *,
    metric: str,
    rounds: int,
    majority_acc: float | None,
    transmitted_params: int,
    reference_transmitted_params: int,
    adf_position: str | None,
    wall_s: float,
    adf_layer_positions: dict[str, int] | None = None,
    device: str,
) -> dict[str, Any]:
    """Per-run figures (summary.json) from the metrics rows and the ledger."""
    evaluated = [row for row in rows if not math.isnan(row[metric])]
    last = rows[-1]
    target = cfg.eval.target_accuracy
    # Rounds are selected on the validation split, never on the test set.
    scored = [row for row in evaluated if not math.isnan(row["val_metric"])]
    best = max(scored, key=lambda row: row["val_metric"]) if scored else None
    to_target = None
    if target is not None and scored:
        to_target = next((row["round"] for row in scored if row["val_metric"] >= target), None)
    total = last["bytes_total_cum"]
    led = ledger.totals()
    if led["bytes_up"] + led["bytes_down"] != total:  # pragma: no cover - invariant
        raise RuntimeError("ledger and metrics disagree on the bytes sent")
    final_clients = next((row["clients_test_metric"] for row in reversed(evaluated)), None)
    return {
        "method": cfg.method.name,
        "direction": cfg.setting.direction,
        "metric": metric,
        "headline_model": "server",
        "final_acc": evaluated[-1][metric] if evaluated else None,
        "final_acc_clients": final_clients,
        "final_test_acc": last["test_acc"],
        "selection": "validation" if scored else None,
        "best_round": best["round"] if best else None,
        "best_val": best["val_metric"] if best else None,
        "best_acc": best[metric] if best else None,
        "majority_acc": majority_acc,
        "total_bytes": total,
        "fp32_bytes": last["fp32_bytes_cum"],
        "bytes_up": last["bytes_up_cum"],
        "bytes_down": total - last["bytes_up_cum"],
        "fp32_bytes_up": last["fp32_bytes_up_cum"],
        "fp32_bytes_down": last["fp32_bytes_cum"] - last["fp32_bytes_up_cum"],
        "compression_ratio": last["fp32_bytes_cum"] / total if total else None,
        "compression_ratio_up": (
            last["fp32_bytes_up_cum"] / last["bytes_up_cum"] if last["bytes_up_cum"] else None
        ),
        "bytes_by_class": ledger.by_class(),
        "accounting": {
            "round": "broadcast, local training, upload, aggregation",
            "initial_model": cfg.setting.initial_model,
            "downlink": (
                "float32 model to each selected client from round 2"
                if cfg.setting.direction == "uni"
                else "missed broadcasts (or the float32 model if smaller) to each "
                "selected client from round 2, charged when it is selected"
            ),
            "final_broadcast_charged": False,
            "reference": "uncompressed FedAvg of the transmitted tensors without filter "
            "factors (a factors-only update: the factors): float32 model to and float32 "
            "update from each selected client",
        },
        "rounds": rounds,
        "rounds_to_target": to_target,
        "target_accuracy": target,
        "transmitted_params": transmitted_params,
        "reference_transmitted_params": reference_transmitted_params,
        "adf_position": adf_position,
        "adf_layer_positions": adf_layer_positions,
        "adf_factor_min": _nanext(rows, "adf_min", min),
        "adf_factor_max": _nanext(rows, "adf_max", max),
        # the sparsity knob and what the updates measured (weight tensors, decoded)
        "sparsity_nominal": cfg.method.sparsity,
        "mean_update_sparsity": float(np.mean([r["update_sparsity"] for r in rows])),
        "downlink_sparsity_nominal": (
            None
            if cfg.setting.direction != "bi"
            else cfg.method.downlink_sparsity
            if cfg.method.downlink_sparsity is not None
            else cfg.method.sparsity
        ),
        "mean_downlink_sparsity": _nanext(rows, "downlink_sparsity", _mean),
        "bn_stats_eval": (
            "test-batch statistics (method.bn_stats=local: the server has no running "
            "statistics; each client keeps its own)"
            if cfg.method.bn_stats == "local"
            else "statistics of each evaluated model's own weights, measured on "
            f"{cfg.method.bn_recalibrate_samples or 'all the'} pooled client training samples "
            "(method.bn_stats=recalibrate; none transmitted)"
            if cfg.method.bn_stats == "recalibrate"
            else "running statistics of the evaluated model"
        ),
        "train_s": float(sum(r["train_s"] for r in rows)),
        "code_s": float(sum(r["code_s"] for r in rows)),
        "wall_s": wall_s,
        "seed": cfg.seed,
        "device": device,
        "threads": cfg.threads,
        "precision": cfg.train.precision,
        "memory_format": cfg.train.memory_format,
        "parallel_clients": cfg.train.parallel_clients,
        "versions": versions(),
        "config": config_to_dict(cfg),
    }


def _mean(vals: list[float]) -> float:
    return float(np.mean(vals))


def _nanext(rows: list[dict[str, Any]], key: str, fn: Callable[..., float]) -> float | None:
    """min/max of a row value over the rounds, ignoring NaN and missing; None if none."""
    vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return fn(vals) if vals else None


def setup_logging(out: Path) -> logging.Handler:
    """Attach a run.log file handler to the fl logger."""
    handler = logging.FileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler
