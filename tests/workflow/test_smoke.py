"""End to end: the smoke config's whole DAG in a fresh working directory, then nothing to do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from wfhelpers import REPO, SHARED, expected_cells, run_snakemake

SMOKE = REPO / "config" / "smoke.yaml"
FIGURES = (
    "accuracy_vs_round_pneumoniamnist",
    "accuracy_vs_mb_pneumoniamnist",
    "compression_ratio",
    "sparsity_sweep",
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
    assert (figures / "results_table.md").read_text().count("\n| pneumoniamnist |") == len(cells)
    for name in ("codec_bench.csv", "codec_bench.json", "pytest_benchmark.json"):
        assert (out / "codec" / name).stat().st_size > 0, name
    if (SHARED / "conformance").is_dir():
        assert (out / "codec" / "conformance.txt").stat().st_size > 0

    again = run_snakemake(["-n", "--configfile", str(SMOKE)], tmp_path)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    report = tmp_path / "report.html"
    made = run_snakemake(["--report", str(report), "--configfile", str(SMOKE)], tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    assert report.stat().st_size > 10_000
