"""The benchmark's figures: run folders and the codec benchmark CSV in, PDF + PNG out.

Each figure's plotted points come from a companion function (accuracy_curve_data,
majority_lines, compression_ratio_data, sparsity_sweep_data, and codec_throughput_data /
codec_entropy_data in fedbench.plots.codec; figure_data(name, ...) picks one), which the plot
function draws unchanged. The drawn artists carry gids naming their data (e.g. bars
'ratio|<setting>|<dataset>|<label>', lines 'sweep|<dataset>|<model>|<method>|<setting>',
'curve|<dataset>|<model>|<setting>|<label>', 'majority') so tests can read back what was drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fedbench.plots import style
from fedbench.plots.codec import (
    codec_entropy_data,
    codec_throughput_data,
    plot_codec_entropy,
    plot_codec_throughput,
)
from fedbench.plots.factors import (
    adf_factors_data,
    partial_update_data,
    plot_adf_factors,
    plot_partial_update,
)
from fedbench.plots.runs import PlotInputError, Run, load_runs, metrics_frame, summary_frame

RUN_FIGURES = (
    "accuracy_vs_round",
    "accuracy_vs_mb",
    "compression_ratio",
    "sparsity_sweep",
    "bytes_by_class",
    "adf_factors",
    "partial_update",
)
CODEC_FIGURES = ("codec_throughput", "codec_entropy")
ALL_FIGURES = RUN_FIGURES + CODEC_FIGURES


def with_hue(frame: pd.DataFrame) -> pd.DataFrame:
    """Add a 'label' column: the method, plus its variant where the method has several."""
    frame = frame.copy()
    # Per method over all runs, so that a label means the same thing in every panel.
    n_variants = frame.groupby("method")["variant"].transform("nunique")
    frame["label"] = np.where(
        n_variants > 1, frame["method"] + " " + frame["variant"], frame["method"]
    )
    return frame


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """Unique values, known ones in the given order first, the rest sorted."""
    values = set(values)
    return [v for v in order if v in values] + sorted(values - set(order))


_METRIC_AXIS = {"test_acc": "test accuracy", "test_miou": "test mIoU", "test_map": "test mAP"}


def _metric_column(frame: pd.DataFrame) -> str:
    """Which accuracy column a data set reports (VOC: mIoU or mAP, else accuracy)."""
    for column in ("test_miou", "test_map"):
        if column in frame.columns and frame[column].notna().any():
            return column
    return "test_acc"


def _legend(
    fig: plt.Figure,
    labels: list[str],
    colours: dict,
    markers: dict,
    extra: Sequence[tuple[object, str]] = (),
) -> None:
    """One shared legend right of the panels, in method order, then any extra entries."""
    handles = [plt.Line2D([], [], color=colours[lb], marker=markers[lb]) for lb in labels]
    names = [style.display(lb) for lb in labels]
    for handle, name in extra:
        handles.append(handle)
        names.append(name)
    style.legend_right(fig, handles, names)


def accuracy_curve_data(runs: Sequence[Run], x: str = "round") -> pd.DataFrame:
    """The accuracy figures' points: mean and sd over seeds per panel, label and round.

    Columns: dataset, model, setting, label, round, x (the x column's mean), y (mean of the
    data set's metric column, named in 'metric'), sd (0 for one seed), n_seeds.
    """
    metrics = with_hue(metrics_frame(runs))
    parts = []
    for dataset, data in metrics.groupby("dataset", sort=True):
        ycol = _metric_column(data)
        agg = (
            data.groupby(["model", "setting", "label", "round"], sort=True)
            .agg(x=(x, "mean"), y=(ycol, "mean"), sd=(ycol, "std"), n_seeds=(ycol, "count"))
            .reset_index()
        )
        agg["sd"] = agg["sd"].fillna(0.0)
        agg.insert(0, "dataset", dataset)
        agg["metric"] = ycol
        parts.append(agg)
    return pd.concat(parts, ignore_index=True)


def majority_lines(runs: Sequence[Run]) -> pd.DataFrame:
    """The majority-class accuracy lines of the accuracy figures, one row per panel and value.

    From the summaries' majority_acc (runs without it draw no line), for accuracy only (an
    mIoU/mAP panel has no majority-class baseline). Columns: dataset, model, setting,
    majority_acc.
    """
    frame = summary_frame(runs)
    frame = frame[frame["majority_acc"].notna() & (frame["metric"] == "test_acc")]
    cols = ["dataset", "model", "setting", "majority_acc"]
    # Runs of one panel share a test set, hence one value; distinct values are all drawn.
    return frame[cols].drop_duplicates().sort_values(cols).reset_index(drop=True)


def _majority_name(values: Iterable[float]) -> str:
    """Legend text of the majority-class line, with its value where the figure has one."""
    distinct = sorted(set(values))
    return f"majority class ({distinct[0]:.1%})" if len(distinct) == 1 else "majority class"


def _curves(
    runs: Sequence[Run], out_dir: Path, stem: str, x: str, xlabel: str, log_x: bool
) -> list[Path]:
    """Per data set: accuracy curves, rows = models, columns = settings, mean over seeds +- sd."""
    paths: list[Path] = []
    points = accuracy_curve_data(runs, x)
    majority = majority_lines(runs)
    for dataset, data in points.groupby("dataset", sort=True):
        ylabel = _METRIC_AXIS.get(data["metric"].iloc[0], data["metric"].iloc[0])
        models = sorted(data["model"].unique())
        settings = _ordered(data["setting"].unique(), style.SETTING_ORDER)
        labels = style.label_order(list(data["label"].unique()))
        colours, markers = style.palette_for(labels), style.markers_for(labels)
        lines = majority[majority["dataset"] == dataset]
        fig, axes = plt.subplots(
            len(models),
            len(settings),
            figsize=(3.2 * len(settings), 2.5 * len(models) + 0.6),
            squeeze=False,
            sharey=True,
        )
        for i, model in enumerate(models):
            for j, setting in enumerate(settings):
                ax = axes[i][j]
                panel = data[(data["model"] == model) & (data["setting"] == setting)]
                for label in labels:
                    agg = panel[panel["label"] == label].sort_values("round")
                    if agg.empty:
                        continue
                    ax.plot(
                        agg["x"],
                        agg["y"],
                        color=colours[label],
                        marker=markers[label],
                        markevery=max(1, len(agg) // 8),
                        gid=f"curve|{dataset}|{model}|{setting}|{label}",
                    )
                    ax.fill_between(
                        agg["x"],
                        agg["y"] - agg["sd"],
                        agg["y"] + agg["sd"],
                        color=colours[label],
                        alpha=0.2,
                    )
                here = lines[(lines["model"] == model) & (lines["setting"] == setting)]
                for value in here["majority_acc"]:
                    ax.axhline(value, color="0.25", linestyle="--", linewidth=1, gid="majority")
                if log_x:
                    style.log_axis(ax, "x")
                ax.set_title(f"{model}, {style.SETTING_NAMES.get(setting, setting)}")
                ax.set_xlabel("")
                ax.set_ylabel("")
        fig.suptitle(style.DATASET_NAMES.get(dataset, dataset))
        fig.supxlabel(xlabel)
        fig.supylabel(ylabel)
        fig.tight_layout()
        extra = []
        if not lines.empty:
            extra.append(
                (
                    plt.Line2D([], [], color="0.25", linestyle="--", linewidth=1),
                    _majority_name(lines["majority_acc"]),
                )
            )
        _legend(fig, labels, colours, markers, extra)
        paths += style.save(fig, out_dir, f"{stem}_{dataset}")
    return paths


def plot_accuracy_vs_round(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Server test accuracy per round, one file per data set (data: accuracy_curve_data)."""
    return _curves(runs, Path(out_dir), "accuracy_vs_round", "round", "round", False)


def plot_accuracy_vs_mb(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Server test accuracy against cumulative transmitted MB (log x), one file per data set."""
    return _curves(
        runs, Path(out_dir), "accuracy_vs_mb", "cum_mb", "cumulative data transmitted [MB]", True
    )


def compression_ratio_data(runs: Sequence[Run]) -> pd.DataFrame:
    """The compression_ratio bars: mean and sd over seeds of each run's summary ratio.

    Columns: setting, dataset, model, label, ratio (mean), sd (0 for one seed), n_seeds, text
    (what is written on the bar).
    """
    frame = with_hue(summary_frame(runs))
    agg = (
        frame.groupby(["setting", "dataset", "model", "label"], sort=True)["compression_ratio"]
        .agg(ratio="mean", sd="std", n_seeds="count")
        .reset_index()
    )
    agg["sd"] = agg["sd"].fillna(0.0)
    agg["text"] = agg["ratio"].map(ratio_text)
    return agg


def ratio_text(ratio: float) -> str:
    """A compression ratio as written on its bar: three significant digits, e.g. '49.3x'."""
    return f"{ratio:.3g}x"


def plot_compression_ratio(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Total compression ratio versus fp32 FedAvg per method and setting (log y), values on bars."""
    frame = compression_ratio_data(runs)
    datasets = sorted(frame["dataset"].unique())
    settings = _ordered(frame["setting"].unique(), style.SETTING_ORDER)
    labels = style.label_order(list(frame["label"].unique()))
    colours = style.palette_for(labels)
    fig, axes = plt.subplots(
        len(settings),
        len(datasets),
        figsize=(3.4 * len(datasets), 2.6 * len(settings) + 0.3),
        squeeze=False,
        sharey=True,
    )
    top = max(float((frame["ratio"] + frame["sd"]).max()), style.PAPER_MAX_RATIO)
    for i, setting in enumerate(settings):
        for j, dataset in enumerate(datasets):
            ax = axes[i][j]
            panel = frame[(frame["setting"] == setting) & (frame["dataset"] == dataset)]
            models = sorted(panel["model"].unique())
            present = [lb for lb in labels if lb in set(panel["label"])]
            width = 0.8 / max(1, len(present))
            for k, label in enumerate(present):
                stats = panel[panel["label"] == label].set_index("model").reindex(models)
                stats = stats[stats["ratio"].notna()]
                xs = np.array([models.index(m) for m in stats.index], dtype=float)
                xs += (k - (len(present) - 1) / 2) * width
                ax.bar(
                    xs,
                    stats["ratio"],
                    width,
                    yerr=stats["sd"],
                    color=colours[label],
                    label=style.display(label),
                    gid=f"ratio|{setting}|{dataset}|{label}",
                )
                for xi, (model, row) in zip(xs, stats.iterrows(), strict=True):
                    # Above the error bar, vertical: bars are too narrow for level text.
                    ax.annotate(
                        row["text"],
                        (xi, row["ratio"] + row["sd"]),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        rotation=90,
                        fontsize="x-small",
                        gid=f"ratio|{setting}|{dataset}|{label}|{model}",
                    )
            ax.axhline(style.PAPER_MAX_RATIO, color="0.3", linestyle="--", linewidth=1)
            style.log_axis(ax, "y")
            # Room above the tallest bar for its value.
            ax.set_ylim(0.5, top * 8)
            ax.set_xticks(np.arange(len(models)), models)
            ax.set_title(
                f"{style.DATASET_NAMES.get(dataset, dataset)}, "
                f"{style.SETTING_NAMES.get(setting, setting)}"
            )
            ax.set_ylabel("")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[lb]) for lb in labels]
    handles.append(plt.Line2D([], [], color="0.3", linestyle="--"))
    names = [style.display(lb) for lb in labels]
    names.append(f"paper max {style.PAPER_MAX_RATIO:.0f}x ({style.PAPER_CITATION})")
    fig.supylabel("total compression ratio vs fp32 FedAvg\n(mean over seeds, value on bar)")
    fig.tight_layout()
    style.legend_right(fig, handles, names)
    return style.save(fig, out_dir, "compression_ratio")


_SWEPT = ("sparsity", "qp")
_SETTING_MARKERS = ("o", "s", "^", "D", "v", "P")
_SETTING_LINES = ("-", "--", ":", "-.")


def _point_label(row: pd.Series) -> str:
    """Text beside a sweep point: its QP where QP is what the line sweeps, else its sparsity."""
    if row["swept"] == "qp" and pd.notna(row["qp"]):
        return f"QP {row['qp']:g}"
    return f"{row['sparsity']:g}" if pd.notna(row["sparsity"]) else ""


def sparsity_sweep_data(runs: Sequence[Run]) -> pd.DataFrame:
    """The sparsity_sweep points, one per variant, in the order each line joins them.

    Columns: dataset, model, method, setting, variant, sparsity, qp, ratio and acc (means over
    seeds of the summaries' compression_ratio and final_acc), n_seeds, swept ('sparsity', 'qp'
    or '' where the line's variants do not differ in either), order (0, 1, ... along the line:
    increasing swept value, ties by ratio) and label (the text drawn beside the point).
    """
    frame = summary_frame(runs)
    points = (
        frame.groupby(["dataset", "model", "method", "setting", "variant"], sort=True, dropna=False)
        .agg(
            sparsity=("sparsity", "first"),
            qp=("qp", "first"),
            ratio=("compression_ratio", "mean"),
            acc=("final_acc", "mean"),
            n_seeds=("final_acc", "count"),
        )
        .reset_index()
    )
    line_keys = ["dataset", "model", "method", "setting"]
    parts = []
    for _, line in points.groupby(line_keys, sort=True):
        swept = next((k for k in _SWEPT if line[k].nunique() > 1), "")
        keys = ([swept] if swept else []) + [k for k in _SWEPT if k != swept] + ["ratio"]
        line = line.sort_values(keys, na_position="first").copy()
        line["swept"] = swept
        line["order"] = np.arange(len(line))
        parts.append(line)
    out = pd.concat(parts, ignore_index=True)
    out["label"] = out.apply(_point_label, axis=1)
    rank = {m: i for i, m in enumerate(style.METHOD_ORDER)}
    srank = {s: i for i, s in enumerate(style.SETTING_ORDER)}
    out["_m"] = out["method"].map(lambda m: rank.get(m, len(rank)))
    out["_s"] = out["setting"].map(lambda s: srank.get(s, len(srank)))
    out = out.sort_values(["dataset", "model", "_m", "method", "_s", "setting", "order"])
    return out.drop(columns=["_m", "_s"]).reset_index(drop=True)


def plot_sparsity_sweep(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Final accuracy against compression ratio; one line per method and setting along its sweep."""
    frame = sparsity_sweep_data(runs)
    metrics = summary_frame(runs).groupby(["dataset", "model"])["metric"].agg(set)
    datasets = sorted(frame["dataset"].unique())
    models = sorted(frame["model"].unique())
    methods = style.label_order(list(frame["method"].unique()))
    colours = style.palette_for(methods)
    settings = _ordered(frame["setting"].unique(), style.SETTING_ORDER)
    # Setting by line style and marker, so that a setting with a single point is readable too.
    linestyles = {s: _SETTING_LINES[k % len(_SETTING_LINES)] for k, s in enumerate(settings)}
    markers = {s: _SETTING_MARKERS[k % len(_SETTING_MARKERS)] for k, s in enumerate(settings)}
    fig, axes = plt.subplots(
        len(models),
        len(datasets),
        figsize=(3.4 * len(datasets), 2.7 * len(models) + 0.3),
        squeeze=False,
    )
    for i, model in enumerate(models):
        for j, dataset in enumerate(datasets):
            ax = axes[i][j]
            panel = frame[(frame["model"] == model) & (frame["dataset"] == dataset)]
            for (method, setting), pts in panel.groupby(["method", "setting"], sort=False):
                pts = pts.sort_values("order")
                ax.plot(
                    pts["ratio"],
                    pts["acc"],
                    color=colours[method],
                    marker=markers[setting],
                    linestyle=linestyles[setting],
                    gid=f"sweep|{dataset}|{model}|{method}|{setting}",
                )
                for _, row in pts.iterrows():
                    if row["label"]:
                        ax.annotate(
                            row["label"],
                            (row["ratio"], row["acc"]),
                            textcoords="offset points",
                            xytext=(3, 3),
                            fontsize="x-small",
                            color=colours[method],
                        )
            style.log_axis(ax, "x")
            ax.set_title(f"{style.DATASET_NAMES.get(dataset, dataset)}, {model}")
            ax.set_xlabel("")
            panel_metrics = metrics.get((dataset, model), {"test_acc"})
            # Accuracy is the figure's default; a panel scored otherwise (VOC) says so.
            ax.set_ylabel(
                ""
                if panel_metrics <= {"test_acc"}
                else "/".join(style.METRIC_NAMES.get(m, m) for m in sorted(panel_metrics))
            )
    handles = [plt.Line2D([], [], color=colours[m], linewidth=3) for m in methods] + [
        plt.Line2D([], [], color="0.3", linestyle=linestyles[s], marker=markers[s])
        for s in settings
    ]
    names = [style.display(m) for m in methods] + [style.SETTING_NAMES.get(s, s) for s in settings]
    # The numbers beside the points, explained in the legend (a long axis label would collide).
    point_labels = "numbers at points:\nupdate sparsity"
    if (frame["swept"] == "qp").any():
        point_labels += ",\nQP where a line sweeps it"
    if (frame["label"] != "").any():
        handles.append(plt.Line2D([], [], linestyle="none"))
        names.append(point_labels)
    fig.supxlabel("total compression ratio vs fp32 FedAvg")
    fig.supylabel("final server test accuracy\n(mean over seeds)")
    fig.tight_layout()
    style.legend_right(fig, handles, names)
    return style.save(fig, out_dir, "sparsity_sweep")


# Tensor classes of the ledger (fedbench.fl.ledger.CLASSES), in stacking order.
BYTE_CLASSES = ("weight", "bn_affine", "bn_stats", "bias", "adf", "other", "overhead")
_CLASS_NAMES = {
    "weight": "conv/linear weights",
    "bn_affine": "BatchNorm affine",
    "bn_stats": "BatchNorm running stats",
    "bias": "biases",
    "adf": "ADF factors",
    "other": "other tensors",
    "overhead": "headers/overhead",
}


def bytes_by_class_data(runs: Sequence[Run]) -> pd.DataFrame:
    """Where the bytes go: mean bytes over seeds per data set, setting, method, direction and
    tensor class (summary.json bytes_by_class), with each class's share of the direction.

    Columns: dataset, setting, label, direction, cls, bytes, share, total (the direction's
    mean bytes). Runs written before the ledger (no bytes_by_class) are left out.
    """
    rows = []
    for run in runs:
        by_class = run.summary.get("bytes_by_class")
        if not by_class:
            continue
        for direction in ("up", "down"):
            for cls in BYTE_CLASSES:
                rows.append(
                    {
                        **run.labels,
                        "direction": direction,
                        "cls": cls,
                        "bytes": float(by_class[direction].get(cls, 0)),
                    }
                )
    if not rows:
        raise PlotInputError("bytes_by_class: no run has bytes_by_class in its summary.json")
    frame = with_hue(pd.DataFrame(rows))
    keys = ["dataset", "setting", "label", "direction"]
    agg = frame.groupby([*keys, "cls"], sort=False)["bytes"].mean().reset_index()
    agg["total"] = agg.groupby(keys)["bytes"].transform("sum")
    agg["share"] = np.where(
        agg["total"] > 0, agg["bytes"] / agg["total"].where(agg["total"] > 0, 1), 0.0
    )
    return agg


def plot_bytes_by_class(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Share of each tensor class in the bytes sent, per data set and direction (stacked
    bars per setting and method), with the direction's total MB at each bar."""
    frame = bytes_by_class_data(runs)
    datasets = sorted(frame["dataset"].unique())
    settings = _ordered(frame["setting"].unique(), style.SETTING_ORDER)
    labels = style.label_order(list(frame["label"].unique()))
    bars = [
        (st, lb)
        for st in settings
        for lb in labels
        if ((frame["setting"] == st) & (frame["label"] == lb)).any()
    ]
    colours = dict(
        zip(BYTE_CLASSES, (style.PALETTE[i] for i in (0, 2, 8, 4, 3, 7, 9)), strict=True)
    )
    fig, axes = plt.subplots(
        len(datasets),
        2,
        figsize=(10, 0.32 * len(bars) * len(datasets) + 1.4),
        squeeze=False,
        sharey=True,
    )
    names = [f"{style.SETTING_NAMES.get(st, st)}: {style.display(lb)}" for st, lb in bars]
    for i, dataset in enumerate(datasets):
        for j, direction in enumerate(("up", "down")):
            ax = axes[i][j]
            sub = frame[(frame["dataset"] == dataset) & (frame["direction"] == direction)]
            left = np.zeros(len(bars))
            for cls in BYTE_CLASSES:
                share = np.array(
                    [
                        float(
                            sub[
                                (sub["setting"] == st) & (sub["label"] == lb) & (sub["cls"] == cls)
                            ]["share"].sum()
                        )
                        for st, lb in bars
                    ]
                )
                ax.barh(
                    np.arange(len(bars)),
                    100 * share,
                    left=100 * left,
                    color=colours[cls],
                    gid=f"bytes|{dataset}|{direction}|{cls}",
                )
                left += share
            for k, (st, lb) in enumerate(bars):
                tot = sub[(sub["setting"] == st) & (sub["label"] == lb)]["total"]
                if len(tot):
                    ax.annotate(
                        f"{float(tot.iloc[0]) / 1e6:.3g} MB",
                        (100, k),
                        xytext=(3, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize="x-small",
                    )
            ax.set_xlim(0, 100)
            ax.set_yticks(np.arange(len(bars)), names)
            ax.invert_yaxis()
            ax.set_xlabel("% of the bytes sent")
            ax.set_title(
                f"{style.DATASET_NAMES.get(dataset, dataset)}, "
                f"{'uplink' if direction == 'up' else 'downlink'}"
            )
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in BYTE_CLASSES]
    fig.tight_layout()
    style.legend_right(fig, handles, [_CLASS_NAMES[c] for c in BYTE_CLASSES])
    return style.save(fig, out_dir, "bytes_by_class")


_RUN_PLOTS: dict[str, Callable[[Sequence[Run], str | Path], list[Path]]] = {
    "accuracy_vs_round": plot_accuracy_vs_round,
    "accuracy_vs_mb": plot_accuracy_vs_mb,
    "compression_ratio": plot_compression_ratio,
    "sparsity_sweep": plot_sparsity_sweep,
    "bytes_by_class": plot_bytes_by_class,
    "adf_factors": plot_adf_factors,
    "partial_update": plot_partial_update,
}
_CODEC_PLOTS: dict[str, Callable[..., list[Path]]] = {
    "codec_throughput": plot_codec_throughput,
    "codec_entropy": plot_codec_entropy,
}
_RUN_DATA: dict[str, Callable[[Sequence[Run]], pd.DataFrame]] = {
    "accuracy_vs_round": lambda runs: accuracy_curve_data(runs, "round"),
    "accuracy_vs_mb": lambda runs: accuracy_curve_data(runs, "cum_mb"),
    "compression_ratio": compression_ratio_data,
    "sparsity_sweep": sparsity_sweep_data,
    "bytes_by_class": bytes_by_class_data,
    "adf_factors": adf_factors_data,
    "partial_update": partial_update_data,
}
_CODEC_DATA: dict[str, Callable[[str | Path], pd.DataFrame]] = {
    "codec_throughput": codec_throughput_data,
    "codec_entropy": codec_entropy_data,
}


def figure_data(
    name: str,
    run_paths: Sequence[str | Path] | None = None,
    codec_csv: str | Path | None = None,
) -> pd.DataFrame:
    """The points figure NAME plots (its *_data function); majority lines: majority_lines."""
    if name in _RUN_DATA:
        if not run_paths:
            raise ValueError(f"figure {name} needs run folders")
        return _RUN_DATA[name](load_runs(run_paths))
    if name in _CODEC_DATA:
        if not codec_csv:
            raise ValueError(f"figure {name} needs the codec benchmark CSV")
        return _CODEC_DATA[name](codec_csv)
    raise ValueError(f"unknown figure {name!r}; choose from {list(ALL_FIGURES)}")


def make_figures(
    run_paths: Sequence[str | Path] | None,
    codec_csv: str | Path | None,
    out_dir: str | Path,
    only: Sequence[str] | None = None,
    codec_scale: float | None = None,
) -> list[Path]:
    """Draw the requested figures (default: all whose inputs are given); return written files.

    codec_scale: the codec workloads' scale for the codec figures' titles; None reads it from
    the benchmark's CSV or its sibling JSON (fedbench.plots.codec.codec_scale).
    """
    wanted = (
        list(only)
        if only
        else [
            *(RUN_FIGURES if run_paths else ()),
            *(CODEC_FIGURES if codec_csv else ()),
        ]
    )
    unknown = sorted(set(wanted) - set(ALL_FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {list(ALL_FIGURES)}")
    if not wanted:
        raise ValueError("nothing to draw: give run folders (--runs) and/or a codec CSV (--codec)")
    style.apply_style()
    written: list[Path] = []
    if any(w in RUN_FIGURES for w in wanted):
        if not run_paths:
            raise ValueError(f"figures {wanted} need run folders (--runs)")
        runs = load_runs(run_paths)
        for name in wanted:
            if name in _RUN_PLOTS:
                written += _RUN_PLOTS[name](runs, out_dir)
    for name in wanted:
        if name in _CODEC_PLOTS:
            if not codec_csv:
                raise ValueError(f"figure {name} needs the codec benchmark CSV (--codec)")
            written += _CODEC_PLOTS[name](codec_csv, out_dir, scale=codec_scale)
    return written
