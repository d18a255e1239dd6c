"""`snakemake --report`: every figure under its category with its own caption (the one figure
rule renders each figure's caption file through workflows/report/figure.rst)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from wfhelpers import REPO, figure_stems, run_snakemake

# A 1x1 PNG: the report embeds the files, so they must exist (their content does not matter).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
    "AAAABJRU5ErkJggg=="
)


def _report_json(html: str, var: str) -> dict:
    """A JavaScript `var NAME = {...};` data object of the report page."""
    start = html.index(f"var {var} = {{") + len(f"var {var} = ")
    return json.JSONDecoder().raw_decode(html, start)[0]


def test_report_captions_and_categories(tmp_path: Path) -> None:
    figures = tmp_path / "results" / "smoke" / "figures"
    figures.mkdir(parents=True)
    stems = figure_stems({"pneumoniamnist"}, bench=True)
    for stem in stems:
        (figures / f"{stem}.png").write_bytes(PNG)
    (figures / "results_table.csv").write_text("x\n")
    result = run_snakemake(
        ["--report", "report.html", "--configfile", str(REPO / "config" / "smoke.yaml")], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    results, categories = _report_json(html, "results"), _report_json(html, "categories")
    out = "results/smoke/figures"
    for stem in stems:
        name = stem.removesuffix("_pneumoniamnist")
        entry = results[f"{out}/{stem}.png"]
        # the figure's own caption file, not another figure's
        first = (REPO / "workflows" / "report" / f"{name}.rst").read_text().splitlines()[0]
        assert " ".join(first.split()) in " ".join(entry["caption"].split()), stem
        assert entry["labels"]["figure"] == name
    fl, by_data = "Federated learning", {"pneumoniamnist", "all data sets"}
    assert set(categories) == {fl, "Codec", "Tables"} and set(categories[fl]) == by_data
    assert sorted(categories[fl]["pneumoniamnist"]) == [
        f"{out}/accuracy_vs_mb_pneumoniamnist.png",
        f"{out}/accuracy_vs_round_pneumoniamnist.png",
        f"{out}/adf_factors_pneumoniamnist.png",
    ]
    assert sorted(categories[fl]["all data sets"]) == [
        f"{out}/bytes_by_class.png",
        f"{out}/compression_ratio.png",
        f"{out}/partial_update.png",
        f"{out}/sparsity_sweep.png",
    ]
    assert sorted(p for sub in categories["Codec"].values() for p in sub) == [
        f"{out}/codec_entropy.png",
        f"{out}/codec_throughput.png",
    ]
    assert re.search(
        r"One row per federated-learning run", results[f"{out}/results_table.csv"]["caption"]
    )


def test_report_shows_the_frontier_and_headline(tmp_path: Path) -> None:
    """With frontier.enabled, the frontier figure and headline table are in the report."""
    figures = tmp_path / "results" / "smoke" / "figures"
    figures.mkdir(parents=True)
    for stem in [*figure_stems({"pneumoniamnist"}, bench=True), "frontier_pneumoniamnist"]:
        (figures / f"{stem}.png").write_bytes(PNG)
    for table in ("results_table.csv", "headline.csv"):
        (figures / table).write_text("x\n")
    overlay = tmp_path / "frontier.yaml"
    overlay.write_text("frontier: {enabled: true, headline: results/smoke/figures/headline}\n")
    smoke = str(REPO / "config" / "smoke.yaml")
    result = run_snakemake(
        ["--report", "report.html", "--configfile", smoke, str(overlay)], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    results, categories = _report_json(html, "results"), _report_json(html, "categories")
    out = "results/smoke/figures"
    frontier = categories["Rate-accuracy frontier"]
    assert sorted(p for sub in frontier.values() for p in sub) == [
        f"{out}/frontier_pneumoniamnist.png",
        f"{out}/headline.csv",
    ]
    assert (
        "rate-accuracy frontier of one data set"
        in results[f"{out}/frontier_pneumoniamnist.png"]["caption"]
    )
    assert "The headline table" in results[f"{out}/headline.csv"]["caption"]
