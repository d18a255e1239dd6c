"""Results table: one row per run, CSV and Markdown, the paper's headline beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fedbench.cli import main
from fedbench.plots.table import TABLE_COLUMNS, write_table


def test_one_row_per_run(runs_root: Path, tmp_path: Path) -> None:
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    n = write_table([runs_root], csv, md)
    frame = pd.read_csv(csv)
    assert n == len(frame) == len(list(runs_root.rglob("summary.json")))
    assert tuple(frame.columns) == TABLE_COLUMNS
    assert frame["path"].is_unique
    # Every run's numbers are its summary's.
    for _, row in frame.iterrows():
        summary = json.loads((Path(row["path"]) / "summary.json").read_text())
        assert row["compression_ratio"] == pytest.approx(summary["compression_ratio"], rel=1e-5)
        assert row["total_mb"] == pytest.approx(summary["total_bytes"] / 1e6, rel=1e-5)
    text = md.read_text()
    assert "377x" in text and "Becking" in text
    table_lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    # headline header + one line per method + table header + one line per run
    assert len(table_lines) == 1 + 4 + 1 + n


def test_cli_table_and_figures(runs_root: Path, codec_csv: Path, tmp_path: Path, capsys) -> None:
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    assert main(["plots", "table", "--runs", str(runs_root), "--csv", str(csv), "--md", str(md)]) == 0
    assert csv.is_file() and md.is_file()
    out = tmp_path / "figs"
    rc = main(["plots", "figures", "--codec", str(codec_csv), "--out", str(out),
               "--only", "codec_entropy"])
    assert rc == 0
    assert (out / "codec_entropy.pdf").stat().st_size > 0


def test_cli_missing_inputs(tmp_path: Path, capsys) -> None:
    rc = main(["plots", "table", "--runs", str(tmp_path / "none"), "--csv", "a.csv", "--md", "a.md"])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
    rc = main(["plots", "figures", "--out", str(tmp_path)])
    assert rc == 2
    assert "nothing to draw" in capsys.readouterr().err
