"""Load federated-learning run folders (metrics.csv + summary.json) into pandas tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fedbench.layout import METRICS, RUN_LABELS, SUMMARY, LayoutError, parse_run_dir

# Columns every metrics.csv must carry; the figures need no others.
METRICS_REQUIRED = ("round", "test_acc", "bytes_total_cum", "fp32_bytes_cum")
# Keys every summary.json must carry.
SUMMARY_REQUIRED = ("final_acc", "total_bytes", "compression_ratio")
LABELS = RUN_LABELS


class PlotInputError(ValueError):
    """A figure or table input is missing or malformed; the message says which file and why."""


@dataclass(frozen=True)
class Run:
    """One finished run: its labels, its per-round metrics and its summary."""

    path: Path
    labels: dict[str, Any]
    metrics: pd.DataFrame
    summary: dict[str, Any]


def _dig(mapping: Mapping[str, Any] | None, dotted: str) -> Any:
    """Return mapping[a][b][c] for 'a.b.c', or None when any level is missing."""
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def run_labels(path: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Labels of a run: from the workflow's folder layout when it matches, else from its config."""
    try:
        return parse_run_dir(path)
    except LayoutError:
        pass
    # A run made by hand (`fedbench fl --out somewhere`): its resolved config names it.
    config = summary.get("config") or {}
    setting = _dig(config, "setting.direction") or "uni"
    if _dig(config, "setting.partial") not in (None, False, "none", "off", ""):
        setting = "partial"
    return {
        "dataset": str(_dig(config, "data.name") or "unknown"),
        "model": str(_dig(config, "model.name") or "unknown"),
        "setting": str(setting),
        "method": str(_dig(config, "method.name") or path.name),
        "variant": "base",
        "seed": int(summary.get("seed", _dig(config, "seed") or 0)),
    }


def load_run(path: str | Path) -> Run:
    """Read one run folder; raise PlotInputError naming the file when something is missing."""
    path = Path(path)
    summary_file, metrics_file = path / SUMMARY, path / METRICS
    for f in (summary_file, metrics_file):
        if not f.is_file():
            raise PlotInputError(
                f"run folder {path} has no {f.name}; run `fedbench fl --out {path}` "
                "(or the workflow's fl rule) first"
            )
    try:
        summary = json.loads(summary_file.read_text())
    except json.JSONDecodeError as exc:
        raise PlotInputError(f"{summary_file} is not valid JSON: {exc}") from exc
    missing = [k for k in SUMMARY_REQUIRED if k not in summary]
    if missing:
        raise PlotInputError(f"{summary_file} lacks the key(s) {', '.join(missing)}")
    metrics = pd.read_csv(metrics_file)
    missing = [c for c in METRICS_REQUIRED if c not in metrics.columns]
    if missing:
        raise PlotInputError(f"{metrics_file} lacks the column(s) {', '.join(missing)}")
    if metrics.empty:
        raise PlotInputError(f"{metrics_file} has no rounds")
    return Run(path=path, labels=run_labels(path, summary), metrics=metrics, summary=summary)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path to run folders: one with summary.json is a run, else search below it."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise PlotInputError(f"runs path {p} does not exist")
        if (p / SUMMARY).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(s.parent for s in p.rglob(SUMMARY)))
        else:
            raise PlotInputError(f"runs path {p} is neither a run folder nor a folder of runs")
    # Keep order, drop duplicates (a root and one of its runs both given).
    unique = list(dict.fromkeys(found))
    if not unique:
        raise PlotInputError(
            "no run folders (with summary.json) found under " + ", ".join(map(str, paths))
        )
    return unique


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Load every run found under the given paths."""
    return [load_run(p) for p in find_run_dirs(paths)]


def _number(value: Any) -> float | None:
    """A float for numeric-looking values, None otherwise."""
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def summary_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run: labels, sweep parameters from the resolved config, the summary numbers."""
    rows = []
    for run in runs:
        s, config = run.summary, run.summary.get("config") or {}
        fp32 = _number(s.get("fp32_bytes"))
        # fp32 sends everything uncompressed: its config's sparsity/QP are unused defaults.
        compressed = run.labels["method"] != "fp32" and _dig(config, "method.name") != "fp32"
        rows.append(
            {
                **run.labels,
                "sparsity": _number(_dig(config, "method.sparsity")) if compressed else None,
                "qp": _number(_dig(config, "method.qp")) if compressed else None,
                "metric": str(s.get("metric") or "test_acc"),
                "rounds": s.get("rounds", int(run.metrics["round"].max())),
                "final_acc": _number(s.get("final_acc")),
                "best_acc": _number(s.get("best_acc")),
                # Share of the test set's most frequent class: the accuracy of always guessing it.
                "majority_acc": _number(s.get("majority_acc")),
                "total_mb": _number(s.get("total_bytes")) / 1e6,
                "fp32_mb": None if fp32 is None else fp32 / 1e6,
                "compression_ratio": _number(s.get("compression_ratio")),
                "rounds_to_target": s.get("rounds_to_target"),
                "wall_s": _number(s.get("wall_s")),
                "path": str(run.path),
            }
        )
    return pd.DataFrame(rows)


def metrics_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """All runs' per-round metrics stacked, each row carrying its run's labels."""
    frames = []
    for run in runs:
        m = run.metrics.copy()
        for key, value in run.labels.items():
            m[key] = value
        m["cum_mb"] = m["bytes_total_cum"] / 1e6
        frames.append(m)
    return pd.concat(frames, ignore_index=True)
