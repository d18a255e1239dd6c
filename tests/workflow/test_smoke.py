"""End to end: the smoke config's whole DAG in a fresh working directory, then nothing to do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from wfhelpers import REPO, SHARED, expected_cells, run_snakemake

SMOKE = REPO / "config" / "smoke.yaml"
FIGURES = (
    "accuracy_vs_round_pneumoniamnist",
    "accuracy_vs_mb_pneumoniamnist",
    "compression_ratio",
    "sparsity_sweep",
    "bytes_by_class",
    "adf_factors_pneumoniamnist",
    "partial_update",
    "codec_throughput",
    "codec_entropy",
)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="needs the offline data mirror")
def test_smoke_workflow_end_to_end(tmp_path: Path) -> None:
    first = run_snakemake(["--cores", "2", "--configfile", str(SMOKE)], tmp_path, timeout=1800)
    assert first.returncode == 0, first.stderr[-6000:]

    out = tmp_path / "results" / "smoke"
    figures = out / "figures"
    for stem in FIGURES:
        for suffix, magic in ((".pdf", b"%PDF"), (".png", b"\x89PNG")):
            path = figures / f"{stem}{suffix}"
            assert path.is_file(), path
            assert path.stat().st_size > 1000 and path.read_bytes()[:4] == magic[:4], path

    cells = expected_cells(SMOKE)
    table = pd.read_csv(figures / "results_table.csv")
    assert len(table) == len(cells)
    runs = {tuple(Path(p).parts[-6:]) for p in table["path"]}
    assert len(runs) == len(cells)
    assert (figures / "results_table.md").read_text().split("## All runs")[1].count(
        "\n| pneumoniamnist |"
    ) == len(cells)
    # The table's run paths are relative to the workflow's working directory.
    table["path"] = [str(p if Path(p).is_absolute() else tmp_path / p) for p in table["path"]]
    _check_table_against_summaries(table)
    _check_figure_data_against_table(table, [Path(p) for p in table["path"]])
    codec_csv = out / "codec" / "codec_bench.csv"
    _check_codec_figure_inputs(codec_csv)
    for name in ("codec_bench.csv", "codec_bench.json", "pytest_benchmark.json"):
        assert (out / "codec" / name).stat().st_size > 0, name
    if (SHARED / "conformance").is_dir():
        assert (out / "codec" / "conformance.txt").stat().st_size > 0

    # the pretrain stage ran, and the run of resnet20-pt started from its checkpoint
    pre = out / "pretrain" / "pneumo-resnet20"
    report = json.loads((pre / "pretrain.json").read_text())
    assert report["epochs"] == 1 and (pre / "model.pt").is_file()
    start = out / "runs/pneumoniamnist/resnet20-pt/bi/adf/base/seed0"
    summary = json.loads((start / "summary.json").read_text())
    ckpt = "results/smoke/pretrain/pneumo-resnet20/model.pt"
    assert summary["config"]["model"]["pretrained"] == ckpt
    assert "pretrained results/smoke/pretrain" in (start / "run.log").read_text()

    again = run_snakemake(["-n", "--configfile", str(SMOKE)], tmp_path)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    report = tmp_path / "report.html"
    made = run_snakemake(["--report", str(report), "--configfile", str(SMOKE)], tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    assert report.stat().st_size > 10_000


def _check_table_against_summaries(table: pd.DataFrame) -> None:
    """Every table cell that comes from a run is its summary.json value (CSV: 6 digits)."""
    assert table["final_acc"].notna().all(), table[["path", "final_acc"]]
    fp32 = table[table["method"] == "fp32"]
    assert len(fp32) > 0
    # fp32 is the reference its own bytes are divided by: exactly 1, not merely close.
    assert (fp32["compression_ratio"] == 1.0).all(), fp32["compression_ratio"]
    assert (table.loc[table["method"] != "fp32", "compression_ratio"] > 1.0).all()
    for _, row in table.iterrows():
        summary = json.loads((Path(row["path"]) / "summary.json").read_text())
        assert summary["final_acc"] is not None and not math.isnan(summary["final_acc"])
        assert row["final_acc"] == pytest.approx(summary["final_acc"], rel=1e-5)
        assert row["best_acc"] == pytest.approx(summary["best_acc"], rel=1e-5)
        assert row["total_mb"] == pytest.approx(summary["total_bytes"] / 1e6, rel=1e-5)
        assert row["fp32_mb"] == pytest.approx(summary["fp32_bytes"] / 1e6, rel=1e-5)
        assert row["compression_ratio"] == pytest.approx(summary["compression_ratio"], rel=1e-5)
        assert row["compression_ratio"] == pytest.approx(
            summary["fp32_bytes"] / summary["total_bytes"], rel=1e-5
        )
        majority = summary.get("majority_acc")
        if majority is None:
            assert pd.isna(row["majority_acc"])
        else:
            assert 0.0 < majority <= 1.0
            assert row["majority_acc"] == pytest.approx(majority, rel=1e-5)


def _check_figure_data_against_table(table: pd.DataFrame, runs: list[Path]) -> None:
    """What the run figures plot is the table's numbers (means over seeds)."""
    from fedbench.plots.figures import figure_data, majority_lines, with_hue
    from fedbench.plots.runs import load_runs

    labelled = with_hue(table)
    bars = figure_data("compression_ratio", runs)
    means = labelled.groupby(["setting", "dataset", "model", "label"])["compression_ratio"].mean()
    assert len(bars) == len(means)
    for _, bar in bars.iterrows():
        key = (bar["setting"], bar["dataset"], bar["model"], bar["label"])
        assert bar["ratio"] == pytest.approx(means[key], rel=1e-5)
        assert bar["text"] == f"{bar['ratio']:.3g}x"
    sweep = figure_data("sparsity_sweep", runs)
    keys = ["dataset", "model", "method", "setting", "variant"]
    acc = table.groupby(keys)["final_acc"].mean()
    ratio = table.groupby(keys)["compression_ratio"].mean()
    assert len(sweep) == len(acc) and sweep["acc"].notna().all()
    for _, point in sweep.iterrows():
        key = tuple(point[k] for k in keys)
        assert point["acc"] == pytest.approx(acc[key], rel=1e-5)
        assert point["ratio"] == pytest.approx(ratio[key], rel=1e-5)
    # The smoke grid sweeps adf's sparsity (0.5, 0.99 beside the 0.9 base): joined in order.
    line = sweep[(sweep["method"] == "adf") & (sweep["setting"] == "uni")].sort_values("order")
    assert len(line) == 3 and list(line["sparsity"]) == sorted(line["sparsity"])
    assert list(line["label"]) == [f"{v:g}" for v in line["sparsity"]]
    curves = figure_data("accuracy_vs_round", runs)
    assert curves["y"].notna().all()
    last = curves.sort_values("round").groupby(["dataset", "model", "setting", "label"]).last()
    final = labelled.groupby(["dataset", "model", "setting", "label"])["final_acc"].mean()
    for key, row in last.iterrows():
        assert row["y"] == pytest.approx(final[key], rel=1e-5)
    # The majority-class line: the summaries' value (where the FL run writes one), one per panel.
    majority = majority_lines(load_runs(runs))
    panels = ["dataset", "model", "setting"]
    known = table.dropna(subset=["majority_acc"])
    assert len(majority) == len(known[panels].drop_duplicates())
    for _, line in majority.iterrows():
        values = known.loc[(known[panels] == line[panels]).all(axis=1), "majority_acc"]
        assert len(values) > 0
        assert all(v == pytest.approx(line["majority_acc"], rel=1e-5) for v in values)


def _check_codec_figure_inputs(codec_csv: Path) -> None:
    """The codec figures read the scale the smoke config ran the benchmark at."""
    from fedbench.plots.codec import codec_scale, codec_throughput_data

    scale = yaml.safe_load(SMOKE.read_text())["codec"]["bench"]["scale"]
    assert codec_scale(codec_csv) == pytest.approx(scale)
    raw = pd.read_csv(codec_csv).dropna(subset=["bytes"])
    data = codec_throughput_data(codec_csv)
    assert len(data) == len(raw) and (data["description"] != "").all(), data
    for _, row in data.iterrows():
        here = (raw["workload"].astype(str) == row["panel"]) & (raw["codec"] == row["codec"])
        measured = raw[here]
        assert row["encode_mps"] == pytest.approx(measured["encode_params_per_s"].mean() / 1e6)
