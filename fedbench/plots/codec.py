"""Codec benchmark figures: throughput against the peers, and coded size against the H0 bound."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fedbench.plots import style
from fedbench.plots.runs import PlotInputError

CODEC_REQUIRED = ("workload", "codec", "bytes", "h0_bytes", "encode_params_per_s")
# Our coders first, then NNCodec (the reference), then general-purpose coders.
CODEC_ORDER = ("nnc", "nnc-1t", "sparse", "nncodec", "zstd", "lzma", "bz2", "zlib")


def load_codec_csv(path: str | Path) -> pd.DataFrame:
    """Read the codec benchmark CSV (fedbench codec bench); raise PlotInputError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise PlotInputError(
            f"codec benchmark table {path} does not exist; run `fedbench codec bench --out {path}`"
        )
    frame = pd.read_csv(path)
    missing = [c for c in CODEC_REQUIRED if c not in frame.columns]
    if missing:
        raise PlotInputError(f"{path} lacks the column(s) {', '.join(missing)}")
    # Peers whose library is missing are listed with empty sizes and timings: leave them out.
    frame = frame[frame["bytes"].notna()].copy()
    if frame.empty:
        raise PlotInputError(f"{path} has no measured rows")
    if "setting" not in frame.columns:
        frame["setting"] = ""
    frame["panel"] = frame["workload"].astype(str)
    if frame.groupby("workload")["setting"].nunique().max() > 1:
        frame["panel"] = frame["workload"].astype(str) + "\n" + frame["setting"].astype(str)
    return frame


_FAMILY_COLOURS = {"nnc": 3, "sparse": 1, "nncodec": 0, "zlib": 7, "lzma": 2, "bz2": 5, "zstd": 4}


def _family_colour(codec: str) -> tuple[float, float, float]:
    """One colour per coder family (nnc and nnc-1t alike; zlib-9/int32 and zlib-9/min:int8)."""
    family = "nnc" if codec.startswith("nnc-") else codec.split("/")[0].split("-")[0]
    index = _FAMILY_COLOURS.get(family)
    return style.PALETTE[index] if index is not None else (0.4, 0.4, 0.4)


def _codecs(frame: pd.DataFrame) -> list[str]:
    """Codec names present, in the fixed order."""
    present = set(frame["codec"])
    return [c for c in CODEC_ORDER if c in present] + sorted(present - set(CODEC_ORDER))


def _panels(n: int, n_bars: int) -> tuple[plt.Figure, list[plt.Axes]]:
    """n panels, two per row, tall enough for n_bars labelled bars each."""
    cols = min(n, 2)
    rows = -(-n // cols)
    height = max(2.6, 0.24 * n_bars + 0.9)
    # A shared x axis keeps the workloads comparable at a glance.
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.8 * cols, height * rows), squeeze=False, sharex=True
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_codec_throughput(csv: str | Path, out_dir: str | Path) -> list[Path]:
    """Encode and decode throughput (M parameters/s, log) of every codec, per workload."""
    frame = load_codec_csv(csv)
    codecs = _codecs(frame)
    panels = sorted(frame["panel"].unique())
    colours = {"encode": style.PALETTE[0], "decode": style.PALETTE[2]}
    fig, axes = _panels(len(panels), len(codecs))
    for ax, panel in zip(axes, panels, strict=True):
        data = frame[frame["panel"] == panel].groupby("codec").mean(numeric_only=True)
        data = data.reindex([c for c in codecs if c in data.index])
        y = np.arange(len(data))
        for k, (what, column) in enumerate(
            (("encode", "encode_params_per_s"), ("decode", "decode_params_per_s"))
        ):
            if column not in data.columns:
                continue
            ax.barh(y + (k - 0.5) * 0.4, data[column] / 1e6, 0.4, color=colours[what], label=what)
        ax.set_yticks(y, data.index)
        ax.invert_yaxis()
        style.log_axis(ax, "x")
        ax.set_xlabel("M parameters / s")
        ax.set_title(f"workload {panel}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.tight_layout()
    style.legend_right(fig, handles, list(colours))
    return style.save(fig, out_dir, "codec_throughput")


def plot_codec_entropy(csv: str | Path, out_dir: str | Path) -> list[Path]:
    """Coded bytes relative to the zero-order entropy bound H0 of the quantized levels."""
    frame = load_codec_csv(csv)
    frame = frame[frame["h0_bytes"].notna() & (frame["h0_bytes"] > 0)].copy()
    if frame.empty:
        raise PlotInputError(f"{csv} has no rows with an entropy bound (h0_bytes)")
    frame["over_h0"] = frame["bytes"] / frame["h0_bytes"]
    codecs = _codecs(frame)
    colours = {c: _family_colour(c) for c in codecs}
    panels = sorted(frame["panel"].unique())
    fig, axes = _panels(len(panels), len(codecs))
    for ax, panel in zip(axes, panels, strict=True):
        data = frame[frame["panel"] == panel].groupby("codec")["over_h0"].mean()
        data = data.reindex([c for c in codecs if c in data.index])
        y = np.arange(len(data))
        bars = ax.barh(y, data.values, color=[colours[c] for c in data.index])
        for bar, codec in zip(bars, data.index, strict=True):
            if "int32" in codec:  # the same coder on wider input words: hatched
                bar.set_hatch("//")
        ax.axvline(1.0, color="0.2", linestyle="--", linewidth=1)
        for yi, v in zip(y, data.values, strict=True):
            ax.annotate(f"{v:.2f}", (v, yi), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize="x-small")
        ax.set_yticks(y, data.index)
        ax.invert_yaxis()
        ax.set_xlim(0, max(1.0, float(frame["over_h0"].max())) * 1.2)
        ax.set_xlabel("coded bytes / H0 bound")
        h0_mb = frame.loc[frame["panel"] == panel, "h0_bytes"].iloc[0] / 1e6
        ax.set_title(f"workload {panel} (H0 = {h0_mb:.3g} MB)")
    fig.tight_layout()
    style.legend_right(
        fig,
        [plt.Line2D([], [], color="0.2", linestyle="--")],
        ["H0 bound: zero-order entropy\nof the quantized levels"],
    )
    return style.save(fig, out_dir, "codec_entropy")
