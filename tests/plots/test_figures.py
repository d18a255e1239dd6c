"""Figure functions: non-empty PDF + PNG from generated run folders and codec tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbench.plots.figures import ALL_FIGURES, make_figures, with_hue
from fedbench.plots.runs import PlotInputError, load_runs, summary_frame


def _assert_figure(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, path
    head = path.read_bytes()[:8]
    assert head.startswith(b"%PDF") if path.suffix == ".pdf" else head.startswith(b"\x89PNG")


def test_all_figures_written(runs_root: Path, codec_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    written = make_figures([runs_root], codec_csv, out)
    stems = {p.stem for p in written}
    for ds in ("cifar10", "pneumoniamnist"):
        assert f"accuracy_vs_round_{ds}" in stems
        assert f"accuracy_vs_mb_{ds}" in stems
    for name in ("compression_ratio", "sparsity_sweep", "codec_throughput", "codec_entropy"):
        assert name in stems
    assert {p.suffix for p in written} == {".pdf", ".png"}
    assert len(written) == 2 * len(stems)
    for p in written:
        _assert_figure(p)


def test_only_and_rerun_is_stable(runs_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "f"
    first = make_figures([runs_root], None, out, only=["compression_ratio"])
    assert sorted(p.name for p in first) == ["compression_ratio.pdf", "compression_ratio.png"]
    pdf = (out / "compression_ratio.pdf").read_bytes()
    make_figures([runs_root], None, out, only=["compression_ratio"])
    assert (out / "compression_ratio.pdf").read_bytes() == pdf  # no timestamps in the PDF


def test_single_run_and_hand_made_folder(tmp_path: Path, run_writer) -> None:
    run = run_writer(tmp_path / "r", "cifar10", "resnet20", "uni", "adf", "base", 0)
    # A run outside the workflow layout is labelled from its summary's config.
    loose = tmp_path / "loose"
    run.rename(loose)
    runs = load_runs([loose])
    assert runs[0].labels["dataset"] == "cifar10" and runs[0].labels["method"] == "adf"
    written = make_figures([loose], None, tmp_path / "f")
    assert all(p.stat().st_size > 0 for p in written)


def test_hue_label_names_variants_only_where_swept(runs_root: Path, run_writer) -> None:
    frame = with_hue(summary_frame(load_runs([runs_root])))
    assert set(frame.loc[frame["method"] == "adf", "label"]) == {
        "adf sparsity0.9", "adf sparsity0.99"
    }
    assert set(frame.loc[frame["method"] == "stc", "label"]) == {"stc"}
    assert len(frame) == len(list(runs_root.rglob("summary.json")))
    # A method swept in one cell carries its variant in every cell, so labels stay consistent.
    run_writer(runs_root, "cifar10", "resnet56", "uni", "adf", "base", 0)
    frame = with_hue(summary_frame(load_runs([runs_root])))
    assert set(frame.loc[frame["model"] == "resnet56", "label"]) == {"adf base"}


def test_missing_inputs_give_clear_errors(tmp_path: Path, runs_root: Path, run_writer) -> None:
    with pytest.raises(PlotInputError, match="does not exist"):
        make_figures([tmp_path / "nowhere"], None, tmp_path / "f")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlotInputError, match="no run folders"):
        make_figures([tmp_path / "empty"], None, tmp_path / "f")
    with pytest.raises(PlotInputError, match="codec_bench.csv does not exist"):
        make_figures(None, tmp_path / "codec_bench.csv", tmp_path / "f")
    with pytest.raises(ValueError, match="need run folders"):
        make_figures(None, None, tmp_path / "f", only=["accuracy_vs_round"])
    with pytest.raises(ValueError, match="unknown figure"):
        make_figures([runs_root], None, tmp_path / "f", only=["pie"])
    bad = run_writer(tmp_path / "bad", "cifar10", "m", "uni", "adf", "base", 0)
    (bad / "metrics.csv").unlink()
    with pytest.raises(PlotInputError, match="no metrics.csv"):
        make_figures([bad], None, tmp_path / "f")


def test_figure_names_match_cli() -> None:
    from fedbench.commands.plots import FIGURE_NAMES

    assert tuple(FIGURE_NAMES) == ALL_FIGURES
