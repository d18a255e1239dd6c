"""Claim (2), looked at: the ADF factors per layer over rounds, and what partial updates buy.

`adf_factors_data` reads each ADF run's factors.npz (the server's aggregated factors per
tensor and round, fedbench.fl.outputs.write_factors) into per-layer quantiles of log2(s):
above 0 a filter is enhanced, below 0 diminished. `plot_adf_factors` draws, per data set and
ADF run group (model, setting, variant; quantiles averaged over seeds), the 10-90 % band of
each layer over rounds and the last round's spread per layer. `partial_update_data` /
`plot_partial_update` put the accuracy of ADF's partial updates (factors only, classifier
only, factors + classifier, ...) against the bytes they cost, next to the full update of the
same model. ADF runs are those whose resolved config names method adf (any workflow label,
e.g. adf-exact). Gids: 'factors|<dataset>|<model>|<setting>|<method>|<variant>|<layer>',
'partial|<dataset>|<model>|<setting>|<method>|<variant>'.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fedbench.plots import style
from fedbench.plots.runs import PlotInputError, Run, metrics_frame

FACTORS = "factors.npz"  # fedbench.fl.outputs.FACTORS (the plots do not import the FL code)
_Q = (0.1, 0.5, 0.9)


def _layer_name(tensor: str) -> str:
    """'layer1.0.conv1.adf_scale' -> 'layer1.0.conv1'."""
    return tensor.removesuffix(".adf_scale")


def _is_adf(run: Run) -> bool:
    """The run's method is adf: by its resolved config (a workflow label such as adf-exact
    names a variant of it), else by its label."""
    method = (run.summary.get("config") or {}).get("method") or {}
    return method.get("name", run.labels["method"]) == "adf"


def adf_factors_data(runs: Sequence[Run]) -> pd.DataFrame:
    """Per-layer spread of the server's factors per round, from the runs' factors.npz.

    Columns: dataset, model, setting, method (label), variant, layer, depth (the layer's
    index in the model), round, q10, q50, q90 (quantiles of log2 s over the layer's
    filters), up / down (share of filters with s > 1 / s < 1), all means over seeds;
    n_seeds. Runs without a factors.npz (methods without factors) are left out.
    """
    rows = []
    for run in runs:
        path = run.path / FACTORS
        if not _is_adf(run) or not path.is_file():
            continue
        with np.load(path) as z:
            rounds = z["round"]
            names = [n for n in z.files if n != "round"]
            for depth, name in enumerate(names):
                logs = np.log2(np.clip(z[name].astype(np.float64), 1e-12, None))
                qs = np.quantile(logs, _Q, axis=1)
                for i, r in enumerate(rounds):
                    rows.append(
                        {
                            **{k: run.labels[k] for k in ("dataset", "model", "setting")},
                            "method": run.labels["method"],
                            "variant": run.labels["variant"],
                            "seed": run.labels["seed"],
                            "layer": _layer_name(name),
                            "depth": depth,
                            "round": int(r),
                            "q10": qs[0, i],
                            "q50": qs[1, i],
                            "q90": qs[2, i],
                            "up": float(np.mean(logs[i] > 0)),
                            "down": float(np.mean(logs[i] < 0)),
                        }
                    )
    if not rows:
        raise PlotInputError(f"adf_factors: no ADF run with a {FACTORS}")
    frame = pd.DataFrame(rows)
    keys = ["dataset", "model", "setting", "method", "variant", "layer", "depth", "round"]
    agg = frame.groupby(keys, sort=True).agg(
        q10=("q10", "mean"),
        q50=("q50", "mean"),
        q90=("q90", "mean"),
        up=("up", "mean"),
        down=("down", "mean"),
        n_seeds=("seed", "nunique"),
    )
    return agg.reset_index().sort_values(keys).reset_index(drop=True)


def plot_adf_factors(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """adf_factors_<dataset>: per ADF run group a row of two panels, the 10-90 % band of
    log2 s per layer over rounds (colour = depth) and the last round's band per layer."""
    paths: list[Path] = []
    datasets = sorted({r.labels["dataset"] for r in runs})
    try:
        frame = adf_factors_data(runs)
    except PlotInputError:
        frame = pd.DataFrame(columns=["dataset"])
    for dataset in datasets:
        data = frame[frame["dataset"] == dataset]
        by = ["model", "setting", "method", "variant"]
        groups = list(data.groupby(by, sort=True)) if len(data) else []
        fig, axes = plt.subplots(
            max(len(groups), 1), 2, figsize=(10, 2.3 * max(len(groups), 1) + 0.6), squeeze=False
        )
        if not groups:
            axes[0][0].text(0.5, 0.5, f"no ADF run with a {FACTORS}", ha="center")
            for ax in axes[0]:
                ax.set_axis_off()
        for row, ((model, setting, method, variant), g) in enumerate(groups):
            ax, last_ax = axes[row]
            layers = g.drop_duplicates("layer").sort_values("depth")
            cmap = plt.get_cmap("viridis", max(len(layers), 2))
            for k, layer in enumerate(layers["layer"]):
                lg = g[g["layer"] == layer]
                colour = cmap(k)
                gid = f"factors|{dataset}|{model}|{setting}|{method}|{variant}|{layer}"
                ax.fill_between(lg["round"], lg["q10"], lg["q90"], color=colour, alpha=0.15)
                ax.plot(lg["round"], lg["q90"], color=colour, lw=0.8, gid=gid)
                ax.plot(lg["round"], lg["q10"], color=colour, lw=0.8)
            ax.axhline(0, color="0.3", lw=0.6)
            name = f"{model}, {style.SETTING_NAMES.get(setting, setting)}, {method}"
            ax.set_title(name + ("" if variant == "base" else f", {variant}"), fontsize="small")
            ax.set_xlabel("round")
            ax.set_ylabel("log2 factor (10-90 %)")
            last = g[g["round"] == g["round"].max()].sort_values("depth")
            x = np.arange(len(last))
            last_ax.vlines(x, last["q10"], last["q90"], color=[cmap(k) for k in x], lw=3)
            last_ax.scatter(x, last["q50"], color="k", s=6, zorder=3)
            last_ax.axhline(0, color="0.3", lw=0.6)
            up, down = float(last["up"].mean()), float(last["down"].mean())
            last_ax.set_title(
                f"round {int(g['round'].max())}: {up:.0%} of filters enhanced, "
                f"{down:.0%} diminished",
                fontsize="small",
            )
            last_ax.set_xticks(x, last["layer"], rotation=90, fontsize=5)
            last_ax.set_ylabel("log2 factor")
        fig.suptitle(
            f"{style.DATASET_NAMES.get(dataset, dataset)}: the server's ADF factors per layer "
            "(mean of the seeds' quantiles)",
            fontsize="medium",
        )
        fig.tight_layout()
        paths += style.save(fig, out_dir, f"adf_factors_{dataset}")
    return paths


def _regime(run: Run) -> str | None:
    """The run's partial-update selection as text ('full' when everything travels)."""
    setting = (run.summary.get("config") or {}).get("setting") or {}
    if setting.get("regime"):
        return str(setting["regime"])
    partial = setting.get("partial")
    return "full" if not partial else "+".join(map(str, partial))


def partial_update_data(runs: Sequence[Run]) -> pd.DataFrame:
    """ADF's partial updates against the full update of the same data set and model:
    accuracy over cumulative MB per setting (mean over seeds).

    Only (dataset, model) pairs with at least one partial ADF run are kept, with all their
    bidirectional ADF runs. Columns: dataset, model, setting, method, regime, variant, round, mb
    (cumulative MB, up + down), acc (mean), sd, n_seeds.
    """
    adf = [r for r in runs if _is_adf(r)]
    regime = {id(r): _regime(r) for r in adf}
    pairs = {
        (r.labels["dataset"], r.labels["model"]) for r in adf if regime[id(r)] not in ("full",)
    }
    keep = [
        r
        for r in adf
        if (r.labels["dataset"], r.labels["model"]) in pairs
        and (r.summary.get("config") or {}).get("setting", {}).get("direction") == "bi"
    ]
    if not keep:
        raise PlotInputError("partial_update: no partial-update ADF run (setting.partial/regime)")
    frame = metrics_frame(keep)
    cols = ["dataset", "model", "setting", "method", "variant"]
    names = {tuple(r.labels[c] for c in cols): regime[id(r)] for r in keep}
    frame["regime"] = [names[k] for k in zip(*(frame[c] for c in cols), strict=True)]
    ycol = next(
        (c for c in ("test_miou", "test_map") if c in frame and frame[c].notna().any()),
        "test_acc",
    )
    keys = ["dataset", "model", "setting", "method", "regime", "variant", "round"]
    agg = (
        frame.groupby(keys, sort=True)
        .agg(
            mb=("cum_mb", "mean"),
            acc=(ycol, "mean"),
            sd=(ycol, "std"),
            n_seeds=(ycol, "count"),
        )
        .reset_index()
    )
    agg["sd"] = agg["sd"].fillna(0.0)
    return agg


def plot_partial_update(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """partial_update: accuracy against cumulative MB, one line per ADF setting (the partial
    updates and the full one), a panel per data set and model."""
    try:
        frame = partial_update_data(runs)
    except PlotInputError:
        frame = pd.DataFrame()
    panels = list(frame.groupby(["dataset", "model"], sort=True)) if len(frame) else []
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(4.6 * max(len(panels), 1), 3.4), squeeze=False
    )
    if not panels:
        axes[0][0].text(0.5, 0.5, "no partial-update ADF run", ha="center")
        axes[0][0].set_axis_off()
    for ax, ((dataset, model), g) in zip(axes[0], panels, strict=False):
        lines = list(g.groupby(["setting", "method", "variant"], sort=True))
        for k, ((setting, method, variant), lg) in enumerate(lines):
            label = f"{lg['regime'].iloc[0]}" + ("" if variant == "base" else f" {variant}")
            ax.errorbar(
                lg["mb"],
                lg["acc"],
                yerr=lg["sd"],
                color=style.PALETTE[k % len(style.PALETTE)],
                marker="o",
                ms=3,
                lw=1,
                capsize=2,
                label=label,
                gid=f"partial|{dataset}|{model}|{setting}|{method}|{variant}",
            )
        style.log_axis(ax, "x")
        ax.set_xlabel("cumulative MB sent (up + down)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{style.DATASET_NAMES.get(dataset, dataset)}, {model}", fontsize="small")
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return style.save(fig, out_dir, "partial_update")
