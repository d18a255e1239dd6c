"""Figure functions: PDF + PNG from generated run folders and codec tables, and that what they
draw is the inputs' numbers (read back from the drawn artists, which carry gids)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plothelpers import ADF_SWEEP, CODEC_ROWS, MAJORITY

from fedbench.plots.codec import codec_description, codec_scale, scale_text
from fedbench.plots.figures import (
    ALL_FIGURES,
    figure_data,
    majority_lines,
    make_figures,
    with_hue,
)
from fedbench.plots.runs import PlotInputError, load_runs, summary_frame


def _summaries(root: Path) -> list[dict]:
    """Every summary.json under root with its folder's labels, read without fedbench."""
    out = []
    for f in sorted(root.rglob("summary.json")):
        dataset, model, setting, method, variant, seed = f.parent.parts[-6:]
        out.append(
            {
                **json.loads(f.read_text()),
                "dataset": dataset,
                "model": model,
                "setting": setting,
                "method": method,
                "variant": variant,
                "seed": seed,
            }
        )
    return out


def _mean_by(rows: list[dict], keys: tuple[str, ...], value: str) -> dict[tuple, float]:
    """Mean of rows[value] per key tuple."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r[value])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def _with_gid(fig, prefix: str) -> list:
    """Artists of a figure whose gid starts with prefix."""
    return [
        a for ax in fig.axes for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)
    ]


def _bars_by_codec(fig, gid: str) -> dict[str, float]:
    """Widths of a codec figure's horizontal bars with this gid, by the codec on their row."""
    out = {}
    for ax in fig.axes:
        ticks = dict(
            zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True)
        )
        for bar in ax.patches:
            if bar.get_gid() == gid:
                centre = bar.get_y() + bar.get_height() / 2  # encode/decode sit 0.2 off the row
                out[ticks[min(ticks, key=lambda t: abs(t - centre))]] = bar.get_width()
    return out


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


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
    for name in (
        "compression_ratio",
        "sparsity_sweep",
        "codec_throughput",
        "codec_entropy",
        "bytes_by_class",
    ):
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
    assert set(frame.loc[frame["method"] == "adf", "label"]) == {f"adf {v}" for v in ADF_SWEEP}
    assert set(frame.loc[frame["method"] == "stc", "label"]) == {"stc"}
    assert len(frame) == len(list(runs_root.rglob("summary.json")))
    # A method swept in one cell carries its variant in every cell, so labels stay consistent.
    run_writer(runs_root, "cifar10", "resnet56", "uni", "adf", "only", 0)
    frame = with_hue(summary_frame(load_runs([runs_root])))
    assert set(frame.loc[frame["model"] == "resnet56", "label"]) == {"adf only"}


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


def test_compression_ratio_bars_are_the_summaries(
    runs_root: Path, tmp_path: Path, drawn: dict
) -> None:
    make_figures([runs_root], None, tmp_path / "f", only=["compression_ratio"])
    fig = drawn["compression_ratio"]
    rows = _summaries(runs_root)
    for r in rows:  # the figure's label: the variant only where a method has several
        r["label"] = r["method"] + (f" {r['variant']}" if r["method"] == "adf" else "")
    expected = _mean_by(rows, ("setting", "dataset", "label", "model"), "compression_ratio")
    bars = {a.get_gid(): a for a in _with_gid(fig, "ratio|") if hasattr(a, "get_height")}
    texts = {a.get_gid(): a.get_text() for a in _with_gid(fig, "ratio|") if hasattr(a, "get_text")}
    assert len(bars) == len(texts) == len(expected)  # one model: one bar per gid
    for (setting, dataset, label, model), ratio in expected.items():
        bar = bars[f"ratio|{setting}|{dataset}|{label}"]
        assert bar.get_height() == pytest.approx(ratio, rel=1e-12)
        assert texts[f"ratio|{setting}|{dataset}|{label}|{model}"] == f"{ratio:.3g}x"
        if label == "fp32":
            assert (
                bar.get_height() == 1.0 and texts[f"ratio|{setting}|{dataset}|fp32|{model}"] == "1x"
            )
    data = figure_data("compression_ratio", [runs_root])
    assert len(data) == len(expected)
    for _, row in data.iterrows():
        key = (row["setting"], row["dataset"], row["label"], row["model"])
        assert row["ratio"] == pytest.approx(expected[key], rel=1e-12)


def test_sparsity_sweep_lines_follow_the_sweep(
    runs_root: Path, tmp_path: Path, drawn: dict
) -> None:
    make_figures([runs_root], None, tmp_path / "f", only=["sparsity_sweep"])
    fig = drawn["sparsity_sweep"]
    rows = _summaries(runs_root)
    for r in rows:
        r["sparsity"] = r["config"]["method"]["sparsity"]
    ratio = _mean_by(
        rows, ("dataset", "model", "method", "setting", "variant"), "compression_ratio"
    )
    acc = _mean_by(rows, ("dataset", "model", "method", "setting", "variant"), "final_acc")
    lines = {a.get_gid(): a for a in _with_gid(fig, "sweep|")}
    assert len(lines) == len({k[:4] for k in ratio})  # one line per method and setting
    # adf's three variants joined in increasing sparsity, which is not their names' order.
    by_sparsity = sorted(ADF_SWEEP, key=ADF_SWEEP.get)
    assert by_sparsity != sorted(ADF_SWEEP)
    for dataset in MAJORITY:
        for setting in ("uni", "bi"):
            line = lines[f"sweep|{dataset}|resnet20|adf|{setting}"]
            keys = [(dataset, "resnet20", "adf", setting, v) for v in by_sparsity]
            assert list(line.get_xdata()) == pytest.approx([ratio[k] for k in keys], rel=1e-12)
            assert list(line.get_ydata()) == pytest.approx([acc[k] for k in keys], rel=1e-12)
    # Colour per method, line style and marker per setting, and a legend that shows both.
    colour = {g.split("|")[3]: set() for g in lines}
    style_of: dict[str, set] = defaultdict(set)
    for gid, line in lines.items():
        _, _, _, method, setting = gid.split("|")
        colour[method].add(tuple(np.round(line.get_color(), 6)))
        style_of[setting].add((line.get_linestyle(), line.get_marker()))
    assert all(len(c) == 1 for c in colour.values())
    assert len({next(iter(c)) for c in colour.values()}) == len(colour)
    assert all(len(s) == 1 for s in style_of.values()) and style_of["uni"] != style_of["bi"]
    legend = fig.legends[0]
    shown = dict(
        zip([t.get_text() for t in legend.get_texts()], legend.legend_handles, strict=True)
    )
    for setting, name in (("uni", "unidirectional"), ("bi", "bidirectional")):
        handle = shown[name]
        assert {(handle.get_linestyle(), handle.get_marker())} == style_of[setting]
    for method, name in (("fp32", "FedAvg fp32"), ("adf", "ADF + DeepCABAC")):
        assert tuple(np.round(shown[name].get_color(), 6)) in colour[method]
    # Every point with a sparsity carries it as text; fp32 (none) carries nothing.
    labels = sorted(t.get_text() for ax in fig.axes for t in ax.texts)
    with_sparsity = [r for r in ratio if r[2] != "fp32"]
    assert len(labels) == len(with_sparsity)
    assert set(labels) == {"0.3", "0.9", "0.99"}
    assert any("update sparsity" in t for t in _legend_texts(fig))


def test_sparsity_sweep_data_orders_qp_sweeps(tmp_path: Path, run_writer) -> None:
    root = tmp_path / "runs"
    for variant, qp in (("qp-20", -20), ("qp-38", -38), ("qp-32", -32)):
        run = run_writer(root, "cifar10", "resnet20", "uni", "adf", variant, 0)
        summary = json.loads((run / "summary.json").read_text())
        summary["config"]["method"]["qp"] = qp
        (run / "summary.json").write_text(json.dumps(summary))
    data = figure_data("sparsity_sweep", [root])
    assert list(data["qp"]) == [-38, -32, -20] and set(data["swept"]) == {"qp"}
    assert list(data["label"]) == ["QP -38", "QP -32", "QP -20"]


def test_accuracy_figures_draw_the_metrics_and_majority(
    runs_root: Path, tmp_path: Path, drawn: dict
) -> None:
    make_figures([runs_root], None, tmp_path / "f", only=["accuracy_vs_round", "accuracy_vs_mb"])
    metrics = []
    for f in sorted(runs_root.rglob("metrics.csv")):
        m = pd.read_csv(f)
        dataset, model, setting, method, variant, _ = f.parent.parts[-6:]
        m["key"] = [(dataset, model, setting, method, variant)] * len(m)
        metrics.append(m)
    frame = pd.concat(metrics)
    frame["mb"] = frame["bytes_total_cum"] / 1e6
    for dataset, majority in MAJORITY.items():
        for stem, x in (("accuracy_vs_round", "round"), ("accuracy_vs_mb", "mb")):
            fig = drawn[f"{stem}_{dataset}"]
            lines = _with_gid(fig, "majority")
            assert len(lines) == 2  # one per panel (uni, bi)
            for line in lines:
                assert list(line.get_ydata()) == [majority, majority]
                assert line.get_linestyle() == "--"
            assert f"majority class ({majority:.1%})" in _legend_texts(fig)
            curves = {a.get_gid(): a for a in _with_gid(fig, "curve|")}
            assert len(curves) == 2 * (3 + len(ADF_SWEEP))
            for gid, line in curves.items():
                _, ds, model, setting, label = gid.split("|")
                method, _, variant = label.partition(" ")
                key = (ds, model, setting, method, variant or "base")
                runs = frame[frame["key"] == key].groupby("round")
                assert list(line.get_xdata()) == pytest.approx(list(runs[x].mean()), rel=1e-12)
                assert list(line.get_ydata()) == pytest.approx(
                    list(runs["test_acc"].mean()), rel=1e-12
                )
                assert not np.isnan(line.get_ydata()).any()
    data = figure_data("accuracy_vs_round", [runs_root])
    assert data["y"].notna().all() and len(data) == len(frame) // 2  # two seeds per point


def test_no_majority_line_without_the_key(tmp_path: Path, run_writer, drawn: dict) -> None:
    root = tmp_path / "runs"
    for method in ("fp32", "adf"):
        run_writer(root, "cifar10", "resnet20", "uni", method, "base", 0, majority_acc=None)
    assert majority_lines(load_runs([root])).empty
    make_figures([root], None, tmp_path / "f", only=["accuracy_vs_round"])
    fig = drawn["accuracy_vs_round_cifar10"]
    assert not _with_gid(fig, "majority")
    assert not any("majority" in t for t in _legend_texts(fig))


def test_codec_throughput_bars_names_and_ticks(
    codec_csv: Path, tmp_path: Path, drawn: dict
) -> None:
    make_figures(None, codec_csv, tmp_path / "f", only=["codec_throughput", "codec_entropy"])
    fig = drawn["codec_throughput"]
    raw = pd.read_csv(codec_csv).dropna(subset=["bytes"])
    for workload, rows in raw.groupby("workload"):
        for what in ("encode", "decode"):
            assert _bars_by_codec(fig, f"{what}|{workload}") == pytest.approx(
                dict(zip(rows["codec"], rows[f"{what}_params_per_s"] / 1e6, strict=True)),
                rel=1e-12,
            )
    legend = _legend_texts(fig)
    for codec, *_ in CODEC_ROWS:
        entry = [t for t in legend if t.startswith(f"{codec}: ")]
        assert len(entry) == 1 and len(entry[0]) > len(codec) + 8, codec
    assert "nnc: ours, DeepCABAC NNC mode, 2 threads" in legend
    assert "zstd-19/min:int8: Zstandard level 19, levels as int8 (smallest type)" in legend
    for stem in ("codec_throughput", "codec_entropy"):
        visible = [ax for ax in drawn[stem].axes if ax.get_visible()]
        assert len(visible) == 4
        for ax in visible:
            for axis in (ax.xaxis, ax.yaxis):
                lo, hi = sorted(axis.get_view_interval())
                shown = [
                    t
                    for t in axis.get_ticklabels()
                    if t.get_visible()
                    and t.get_text()
                    and lo <= t.get_position()[0 if axis is ax.xaxis else 1] <= hi
                ]
                assert len(shown) >= 2, (stem, ax.get_title())
        # No JSON beside the CSV, no scale column: the title claims no scale.
        assert "scale" not in drawn[stem]._suptitle.get_text()


def test_codec_figures_say_the_workload_scale(codec_csv: Path, tmp_path: Path, drawn: dict) -> None:
    assert codec_scale(codec_csv) is None
    codec_csv.with_suffix(".json").write_text(json.dumps({"meta": {"scale": 0.1}, "rows": []}))
    assert codec_scale(codec_csv) == 0.1
    make_figures(None, codec_csv, tmp_path / "f")
    for stem in ("codec_throughput", "codec_entropy"):
        assert drawn[stem]._suptitle.get_text().endswith("workloads at 1/10 scale")
    make_figures(None, codec_csv, tmp_path / "f", only=["codec_entropy"], codec_scale=1.0)
    assert "scale" not in drawn["codec_entropy"]._suptitle.get_text()
    frame = pd.read_csv(codec_csv)
    frame["scale"] = 0.02  # a scale column in the table wins over the JSON
    frame.to_csv(codec_csv, index=False)
    assert codec_scale(codec_csv) == 0.02
    assert scale_text(0.02) == "1/50" and scale_text(0.3) == "0.3" and scale_text(0.25) == "1/4"


def test_codec_entropy_bars_are_bytes_over_h0(codec_csv: Path, tmp_path: Path, drawn: dict) -> None:
    make_figures(None, codec_csv, tmp_path / "f", only=["codec_entropy"])
    raw = pd.read_csv(codec_csv).dropna(subset=["bytes"])
    for workload, rows in raw.groupby("workload"):
        assert _bars_by_codec(drawn["codec_entropy"], f"over_h0|{workload}") == pytest.approx(
            dict(zip(rows["codec"], rows["bytes"] / rows["h0_bytes"], strict=True)), rel=1e-12
        )


def test_codec_description_names_every_bench_codec() -> None:
    from fedbench.bench.peers import ALL_PEER_NAMES, GP_PEERS

    names = [n for n in ALL_PEER_NAMES if n not in GP_PEERS]
    names += [f"{n}-9/int32" for n in GP_PEERS] + [f"{n}-9/min:int16" for n in GP_PEERS]
    for name in names:
        assert codec_description(name), name
    assert codec_description("zlib-9/int32") == "zlib level 9, levels as int32"
    assert codec_description("nnc-1t") == "ours, DeepCABAC NNC mode, 1 thread"


def test_bytes_by_class_is_the_summaries_mean_split(runs_root: Path, tmp_path: Path) -> None:
    import json

    from fedbench.plots.figures import figure_data

    frame = figure_data("bytes_by_class", [runs_root])
    keys = ["dataset", "setting", "label", "direction"]
    assert np.allclose(frame.groupby(keys)["share"].sum(), 1.0)
    want: dict = {}
    for path in runs_root.rglob("summary.json"):
        s = json.loads(path.read_text())
        ds, _model, setting, method = path.parts[-7:-3]
        want.setdefault((ds, setting, method), []).append(s["bytes_by_class"]["up"]["bn_affine"])
    for (ds, setting, method), vals in want.items():
        row = frame[
            (frame["dataset"] == ds)
            & (frame["setting"] == setting)
            & (frame["label"].str.startswith(method))
            & (frame["direction"] == "up")
            & (frame["cls"] == "bn_affine")
        ]
        assert row["bytes"].iloc[0] == pytest.approx(np.mean(vals)), (ds, setting, method)
