"""The results table: one row per run (CSV and Markdown), with the paper's headline beside ours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fedbench.plots import style
from fedbench.plots.runs import Run, load_runs, summary_frame

TABLE_COLUMNS = (
    "dataset",
    "model",
    "setting",
    "method",
    "variant",
    "seed",
    "sparsity",
    "qp",
    "rounds",
    "metric",
    "final_acc",
    "best_acc",
    "majority_acc",
    "total_mb",
    "fp32_mb",
    "compression_ratio",
    "rounds_to_target",
    "wall_s",
    "path",
)


def results_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """The table's rows, sorted by data set, model, setting, method order, variant and seed."""
    frame = summary_frame(runs)
    rank = {m: i for i, m in enumerate(style.METHOD_ORDER)}
    srank = {s: i for i, s in enumerate(style.SETTING_ORDER)}
    frame["_m"] = frame["method"].map(lambda m: rank.get(m, len(rank)))
    frame["_s"] = frame["setting"].map(lambda s: srank.get(s, len(srank)))
    frame = frame.sort_values(["dataset", "model", "_s", "_m", "method", "variant", "seed"])
    return frame[list(TABLE_COLUMNS)].reset_index(drop=True)


def headline(frame: pd.DataFrame) -> dict[str, object]:
    """Our largest compression ratio per method next to the paper's 'up to 377x'."""
    ours = {}
    for method, group in frame.groupby("method"):
        best = group.loc[group["compression_ratio"].idxmax()]
        ours[method] = {
            "compression_ratio": float(best["compression_ratio"]),
            "final_acc": float(best["final_acc"]),
            "run": f"{best['dataset']}/{best['model']}/{best['setting']}/{best['variant']}"
            f"/seed{best['seed']}",
        }
    return {"paper_max_ratio": style.PAPER_MAX_RATIO, "paper": style.PAPER_CITATION, "ours": ours}


CELL_KEYS = ("dataset", "model", "setting", "method", "variant")


def seed_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (all but the seed): seeds, and mean and sample sd over seeds of the
    final and validation-selected accuracy, total MB and compression ratio."""
    rows = []
    for key, group in frame.groupby(list(CELL_KEYS), sort=False):
        row = dict(zip(CELL_KEYS, key, strict=True))
        row["seeds"] = len(group)
        for col in ("final_acc", "best_acc", "total_mb", "compression_ratio"):
            vals = group[col].astype(float)
            row[f"{col}_mean"] = float(vals.mean())
            row[f"{col}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, sd: float, fmt: str) -> str:
    """'mean +- sd' (just the mean for one seed)."""
    if math.isnan(mean):
        return ""
    return f"{mean:{fmt}}" if math.isnan(sd) else f"{mean:{fmt}} +- {sd:{fmt}}"


def _cell(value: object) -> str:
    """Markdown text of one table value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value).replace("|", "\\|")


def to_markdown(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def write_table(run_paths: Sequence[str | Path], out_csv: str | Path, out_md: str | Path) -> int:
    """Write the results table as CSV and Markdown; return the number of runs."""
    frame = results_frame(load_runs(run_paths))
    out_csv, out_md = Path(out_csv), Path(out_md)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_csv, index=False, float_format="%.6g")
    head = headline(frame)
    lines = [
        "# fedbench results",
        "",
        (
            f"Headline: the paper ({head['paper']}) reports up to "
            f"{head['paper_max_ratio']:.0f}x less transmitted data than uncompressed federated "
            "learning. Largest total compression ratio per method here (versus fp32 FedAvg with "
            "the same rounds and clients):"
        ),
        "",
        "| method | paper, up to | ours, max | final acc. of that run | run |",
        "|---|---|---|---|---|",
    ]
    for method in [m for m in style.METHOD_ORDER if m in head["ours"]] + sorted(
        set(head["ours"]) - set(style.METHOD_ORDER)
    ):
        o = head["ours"][method]
        paper = f"{head['paper_max_ratio']:.0f}x" if method == "adf" else ""
        lines.append(
            f"| {style.display(method)} | {paper} | {o['compression_ratio']:.1f}x | "
            f"{o['final_acc']:.4f} | {o['run']} |"
        )
    agg = seed_summary(frame)
    lines += [
        "",
        "## Per cell, mean +- sd over seeds",
        "",
        (
            "best acc = test accuracy at the round with the best validation accuracy. Cells "
            "with one seed cannot rank methods; with three, differences within the sd are noise."
        ),
        "",
        (
            "| data set | model | setting | method | variant | seeds | final acc | best acc "
            "| total MB | ratio |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in agg.iterrows():
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['setting']} | {style.display(r['method'])} "
            f"| {r['variant']} | {r['seeds']} "
            f"| {_pm(r['final_acc_mean'], r['final_acc_sd'], '.3f')} "
            f"| {_pm(r['best_acc_mean'], r['best_acc_sd'], '.3f')} "
            f"| {_pm(r['total_mb_mean'], r['total_mb_sd'], '.3g')} "
            f"| {_pm(r['compression_ratio_mean'], r['compression_ratio_sd'], '.3g')} |"
        )
    lines += ["", f"## All runs ({len(frame)})", ""]
    shown = [c for c in TABLE_COLUMNS if c != "path"]
    lines.append(to_markdown(frame, shown))
    out_md.write_text("\n".join(lines) + "\n")
    return len(frame)
