"""The benchmark's figures: run folders and the codec benchmark CSV in, PDF + PNG out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fedbench.plots import style
from fedbench.plots.codec import plot_codec_entropy, plot_codec_throughput
from fedbench.plots.runs import Run, load_runs, metrics_frame, summary_frame

RUN_FIGURES = ("accuracy_vs_round", "accuracy_vs_mb", "compression_ratio", "sparsity_sweep")
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


def _metric_column(frame: pd.DataFrame) -> tuple[str, str]:
    """Which accuracy column a data set reports, and its axis label (VOC: mIoU or mAP)."""
    for column, name in (("test_miou", "test mIoU"), ("test_map", "test mAP")):
        if column in frame.columns and frame[column].notna().any():
            return column, name
    return "test_acc", "test accuracy"


def _legend(fig: plt.Figure, labels: list[str], colours: dict, markers: dict) -> None:
    """One shared legend right of the panels, in method order."""
    handles = [plt.Line2D([], [], color=colours[lb], marker=markers[lb]) for lb in labels]
    style.legend_right(fig, handles, [style.display(lb) for lb in labels])


def _curves(
    metrics: pd.DataFrame, out_dir: Path, stem: str, x: str, xlabel: str, log_x: bool
) -> list[Path]:
    """Per data set: accuracy curves, rows = models, columns = settings, mean over seeds +- sd."""
    paths: list[Path] = []
    metrics = with_hue(metrics)
    for dataset, data in metrics.groupby("dataset", sort=True):
        ycol, ylabel = _metric_column(data)
        models = sorted(data["model"].unique())
        settings = _ordered(data["setting"].unique(), style.SETTING_ORDER)
        labels = style.label_order(list(data["label"].unique()))
        colours, markers = style.palette_for(labels), style.markers_for(labels)
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
                    runs = panel[panel["label"] == label]
                    if runs.empty:
                        continue
                    agg = runs.groupby("round").agg(
                        x=(x, "mean"), y=(ycol, "mean"), sd=(ycol, "std")
                    )
                    sd = agg["sd"].fillna(0.0)
                    ax.plot(
                        agg["x"],
                        agg["y"],
                        color=colours[label],
                        marker=markers[label],
                        markevery=max(1, len(agg) // 8),
                    )
                    ax.fill_between(
                        agg["x"], agg["y"] - sd, agg["y"] + sd, color=colours[label], alpha=0.2
                    )
                if log_x:
                    style.log_axis(ax, "x")
                ax.set_title(f"{model}, {style.SETTING_NAMES.get(setting, setting)}")
                ax.set_xlabel("")
                ax.set_ylabel("")
        fig.suptitle(style.DATASET_NAMES.get(dataset, dataset))
        fig.supxlabel(xlabel)
        fig.supylabel(ylabel)
        fig.tight_layout()
        _legend(fig, labels, colours, markers)
        paths += style.save(fig, out_dir, f"{stem}_{dataset}")
    return paths


def plot_accuracy_vs_round(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Server test accuracy per round, one file per data set."""
    return _curves(metrics_frame(runs), Path(out_dir), "accuracy_vs_round", "round", "round", False)


def plot_accuracy_vs_mb(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Server test accuracy against cumulative transmitted MB (log x), one file per data set."""
    return _curves(
        metrics_frame(runs),
        Path(out_dir),
        "accuracy_vs_mb",
        "cum_mb",
        "cumulative data transmitted [MB]",
        True,
    )


def plot_compression_ratio(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Total compression ratio versus fp32 FedAvg per method and setting (log y)."""
    frame = with_hue(summary_frame(runs))
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
    top = max(float(frame["compression_ratio"].max()), style.PAPER_MAX_RATIO)
    for i, setting in enumerate(settings):
        for j, dataset in enumerate(datasets):
            ax = axes[i][j]
            panel = frame[(frame["setting"] == setting) & (frame["dataset"] == dataset)]
            models = sorted(panel["model"].unique())
            present = [lb for lb in labels if lb in set(panel["label"])]
            width = 0.8 / max(1, len(present))
            for k, label in enumerate(present):
                stats = (
                    panel[panel["label"] == label]
                    .groupby("model")["compression_ratio"]
                    .agg(["mean", "std"])
                    .reindex(models)
                )
                xs = np.arange(len(models)) + (k - (len(present) - 1) / 2) * width
                ax.bar(
                    xs,
                    stats["mean"],
                    width,
                    yerr=stats["std"].fillna(0.0),
                    color=colours[label],
                    label=style.display(label),
                )
            ax.axhline(style.PAPER_MAX_RATIO, color="0.3", linestyle="--", linewidth=1)
            style.log_axis(ax, "y")
            ax.set_ylim(0.5, top * 2)
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
    fig.supylabel("total compression ratio vs fp32 FedAvg")
    fig.tight_layout()
    style.legend_right(fig, handles, names)
    return style.save(fig, out_dir, "compression_ratio")


def plot_sparsity_sweep(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Final accuracy against compression ratio; each method's sparsity/QP variants joined."""
    frame = with_hue(summary_frame(runs))
    frame["sweep_x"] = frame["sparsity"].fillna(-1.0)
    datasets = sorted(frame["dataset"].unique())
    models = sorted(frame["model"].unique())
    methods = style.label_order(list(frame["method"].unique()))
    colours, markers = style.palette_for(methods), style.markers_for(methods)
    settings = _ordered(frame["setting"].unique(), style.SETTING_ORDER)
    linestyles = dict(zip(settings, ("-", "--", ":", "-."), strict=False))
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
            for (method, setting), group in panel.groupby(["method", "setting"]):
                # Mean over seeds per variant, then join the variants in sparsity order.
                pts = (
                    group.groupby("variant")
                    .agg(
                        ratio=("compression_ratio", "mean"),
                        acc=("final_acc", "mean"),
                        order=("sweep_x", "first"),
                        sparsity=("sparsity", "first"),
                    )
                    .sort_values(["order", "ratio"])
                )
                ax.plot(
                    pts["ratio"],
                    pts["acc"],
                    color=colours[method],
                    marker=markers[method],
                    linestyle=linestyles.get(setting, "-"),
                )
                if len(pts) > 1:
                    for _, row in pts.iterrows():
                        if pd.notna(row["sparsity"]):
                            ax.annotate(
                                f"{row['sparsity']:g}",
                                (row["ratio"], row["acc"]),
                                textcoords="offset points",
                                xytext=(3, 3),
                                fontsize="x-small",
                            )
            style.log_axis(ax, "x")
            ax.set_title(f"{style.DATASET_NAMES.get(dataset, dataset)}, {model}")
            ax.set_xlabel("")
            metrics = set(panel["metric"])
            # Accuracy is the figure's default; a panel scored otherwise (VOC) says so.
            ax.set_ylabel(
                "" if metrics <= {"test_acc"}
                else "/".join(style.METRIC_NAMES.get(m, m) for m in sorted(metrics))
            )
    handles = [
        plt.Line2D([], [], color=colours[m], marker=markers[m], linestyle="")
        for m in methods
    ] + [plt.Line2D([], [], color="0.3", linestyle=linestyles[s]) for s in settings]
    names = [style.display(m) for m in methods] + [
        style.SETTING_NAMES.get(s, s) for s in settings
    ]
    fig.supxlabel("total compression ratio vs fp32 FedAvg (labels: sparsity)")
    fig.supylabel("final server test accuracy")
    fig.tight_layout()
    style.legend_right(fig, handles, names)
    return style.save(fig, out_dir, "sparsity_sweep")


_RUN_PLOTS: dict[str, Callable[[Sequence[Run], str | Path], list[Path]]] = {
    "accuracy_vs_round": plot_accuracy_vs_round,
    "accuracy_vs_mb": plot_accuracy_vs_mb,
    "compression_ratio": plot_compression_ratio,
    "sparsity_sweep": plot_sparsity_sweep,
}
_CODEC_PLOTS = {
    "codec_throughput": plot_codec_throughput,
    "codec_entropy": plot_codec_entropy,
}


def make_figures(
    run_paths: Sequence[str | Path] | None,
    codec_csv: str | Path | None,
    out_dir: str | Path,
    only: Sequence[str] | None = None,
) -> list[Path]:
    """Draw the requested figures (default: all whose inputs are given); return written files."""
    wanted = list(only) if only else [
        *(RUN_FIGURES if run_paths else ()),
        *(CODEC_FIGURES if codec_csv else ()),
    ]
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
            written += _CODEC_PLOTS[name](codec_csv, out_dir)
    return written
