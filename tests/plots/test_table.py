"""Results table: one row per run, CSV and Markdown, the paper's headline beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedbench.cli import main
from fedbench.plots.figures import figure_data
from fedbench.plots.table import TABLE_COLUMNS, write_table

# Table column -> the summary.json value it must show.
FROM_SUMMARY = {
    "final_acc": lambda s: s["final_acc"],
    "best_acc": lambda s: s["best_acc"],
    "majority_acc": lambda s: s["majority_acc"],
    "total_mb": lambda s: s["total_bytes"] / 1e6,
    "fp32_mb": lambda s: s["fp32_bytes"] / 1e6,
    "compression_ratio": lambda s: s["compression_ratio"],
    "rounds": lambda s: s["rounds"],
    "wall_s": lambda s: s["wall_s"],
    "sparsity": lambda s: (
        None if s["config"]["method"]["name"] == "fp32" else s["config"]["method"]["sparsity"]
    ),
}


def test_one_row_per_run(runs_root: Path, tmp_path: Path) -> None:
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    n = write_table([runs_root], csv, md)
    frame = pd.read_csv(csv)
    assert n == len(frame) == len(list(runs_root.rglob("summary.json")))
    assert tuple(frame.columns) == TABLE_COLUMNS
    assert frame["path"].is_unique
    assert frame["final_acc"].notna().all() and frame["best_acc"].notna().all()
    # fp32 is the reference: its ratio is 1 exactly, not merely close.
    assert (frame.loc[frame["method"] == "fp32", "compression_ratio"] == 1.0).all()
    md_rows = {}
    header = None
    for line in md.read_text().split("## All runs")[1].splitlines():
        if line.startswith("| dataset |"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ") and header:
            cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            key = tuple(
                cells[c] for c in ("dataset", "model", "setting", "method", "variant", "seed")
            )
            md_rows[key] = cells
    assert len(md_rows) == n
    # Every run's numbers are its summary's, in the CSV (6 digits) and the Markdown (4).
    for _, row in frame.iterrows():
        path = Path(row["path"])
        summary = json.loads((path / "summary.json").read_text())
        assert tuple(path.parts[-6:]) == (
            row["dataset"],
            row["model"],
            row["setting"],
            row["method"],
            row["variant"],
            f"seed{row['seed']}",
        )
        cells = md_rows[
            tuple(str(row[c]) for c in ("dataset", "model", "setting", "method", "variant", "seed"))
        ]
        for column, value in FROM_SUMMARY.items():
            want = value(summary)
            if want is None:
                assert pd.isna(row[column]) and cells[column] == "", column
                continue
            assert row[column] == pytest.approx(want, rel=1e-5), column
            assert float(cells[column]) == pytest.approx(want, rel=1e-3), column
    text = md.read_text()
    assert "377x" in text and "Becking" in text
    head, rest = text.split("## Per cell")
    per_cell, all_runs = rest.split("## All runs")
    table_lines = [ln for ln in head.splitlines() + all_runs.splitlines() if ln.startswith("| ")]
    # headline header + one line per method + table header + one line per run
    assert len(table_lines) == 1 + 4 + 1 + n
    cells = {
        tuple(frame.loc[i, c] for c in ("dataset", "model", "setting", "method", "variant"))
        for i in frame.index
    }
    assert len([ln for ln in per_cell.splitlines() if ln.startswith("| ")]) == 1 + len(cells)


def test_seed_summary_is_mean_and_sd_over_seeds(runs_root: Path, tmp_path: Path) -> None:
    from fedbench.plots.runs import load_runs
    from fedbench.plots.table import results_frame, seed_summary

    frame = results_frame(load_runs([runs_root]))
    agg = seed_summary(frame)
    keys = ["dataset", "model", "setting", "method", "variant"]
    assert len(agg) == len(frame.groupby(keys))
    for _, row in agg.iterrows():
        group = frame
        for k in keys:
            group = group[group[k] == row[k]]
        assert row["seeds"] == len(group)
        ratios = group["compression_ratio"].to_numpy(float)
        assert row["compression_ratio_mean"] == pytest.approx(ratios.mean())
        if len(group) > 1:
            assert row["compression_ratio_sd"] == pytest.approx(ratios.std(ddof=1))
            assert row["final_acc_sd"] == pytest.approx(group["final_acc"].std(ddof=1))
        else:
            assert np.isnan(row["compression_ratio_sd"])
    assert (agg["seeds"] > 1).any()


def test_table_is_the_figure_data(runs_root: Path, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    write_table([runs_root], csv, tmp_path / "t.md")
    table = pd.read_csv(csv)
    table["label"] = table["method"] + np.where(
        table["method"] == "adf", " " + table["variant"], ""
    )
    bars = figure_data("compression_ratio", [runs_root])
    means = table.groupby(["setting", "dataset", "model", "label"])["compression_ratio"].mean()
    assert len(bars) == len(means)
    for _, bar in bars.iterrows():
        key = (bar["setting"], bar["dataset"], bar["model"], bar["label"])
        assert bar["ratio"] == pytest.approx(means[key], rel=1e-5)
    sweep = figure_data("sparsity_sweep", [runs_root])
    accs = table.groupby(["dataset", "model", "method", "setting", "variant"])["final_acc"].mean()
    assert len(sweep) == len(accs)
    for _, point in sweep.iterrows():
        key = (
            point["dataset"],
            point["model"],
            point["method"],
            point["setting"],
            point["variant"],
        )
        assert point["acc"] == pytest.approx(accs[key], rel=1e-5)


def test_cli_table_and_figures(runs_root: Path, codec_csv: Path, tmp_path: Path, capsys) -> None:
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    rc = main(["plots", "table", "--runs", str(runs_root), "--csv", str(csv), "--md", str(md)])
    assert rc == 0
    assert csv.is_file() and md.is_file()
    out = tmp_path / "figs"
    rc = main(
        [
            "plots",
            "figures",
            "--codec",
            str(codec_csv),
            "--out",
            str(out),
            "--only",
            "codec_entropy",
        ]
    )
    assert rc == 0
    assert (out / "codec_entropy.pdf").stat().st_size > 0


def test_cli_missing_inputs(tmp_path: Path, capsys) -> None:
    rc = main(
        ["plots", "table", "--runs", str(tmp_path / "none"), "--csv", "a.csv", "--md", "a.md"]
    )
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
    rc = main(["plots", "figures", "--out", str(tmp_path)])
    assert rc == 2
    assert "nothing to draw" in capsys.readouterr().err
