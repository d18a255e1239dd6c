"""Codec benchmark figures: throughput against the peers, and coded size against the H0 bound."""

from __future__ import annotations

import json
import math
import re
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
# What each coder is (fedbench/bench/peers.py); the general-purpose ones code our levels.
_GP_NAMES = {"zlib": "zlib", "lzma": "LZMA (xz)", "bz2": "bzip2", "zstd": "Zstandard"}
_GP_CODEC = re.compile(r"^(zlib|lzma|bz2|zstd)(?:-(\d+))?(?:/(.+))?$")
# The benchmark's workloads (fedbench/bench/workloads.py).
WORKLOAD_NAMES = {
    "A": "Gaussian weights, ResNet-18 shapes",
    "B90": "sparse update, 90 % zeros",
    "B99": "sparse update, 99 % zeros",
    "C": "small trained ResNet-20",
}


def codec_description(codec: str, threads: float | None = None) -> str:
    """What a benchmark codec name stands for, e.g. 'zstd-19/int32' -> 'Zstandard level 19 ...'."""
    if codec in ("nnc", "nnc-1t"):
        if codec == "nnc-1t":
            how = "1 thread"
        elif threads is not None and not pd.isna(threads):
            n = int(threads)
            how = f"{n} thread" + ("s" if n != 1 else "")
        else:
            how = "all threads"
        return f"ours, DeepCABAC NNC mode, {how}"
    if codec == "sparse":
        return "ours, DeepCABAC sparse mode"
    if codec == "nncodec":
        return "NNCodec, the reference DeepCABAC (C++)"
    m = _GP_CODEC.match(codec)
    if m:
        name, level, words = m.groups()
        text = _GP_NAMES[name] + (f" level {level}" if level else "")
        if words:
            kind = words.removeprefix("min:")
            text += f", levels as {kind}" + (" (smallest type)" if words.startswith("min:") else "")
        return text
    return ""


def scale_text(scale: float) -> str:
    """A workload scale as a fraction of the full size: 0.1 -> '1/10', 0.3 -> '0.3'."""
    inverse = 1.0 / scale
    if abs(inverse - round(inverse)) < 1e-6 * inverse:
        return f"1/{round(inverse)}"
    return f"{scale:g}"


def codec_scale(csv: str | Path) -> float | None:
    """The workload scale of a benchmark: its CSV's scale column, else the sibling JSON's meta."""
    csv = Path(csv)
    if csv.is_file():
        head = pd.read_csv(csv)
        if "scale" in head.columns:
            values = head["scale"].dropna().unique()
            if len(values) == 1:
                return float(values[0])
    meta = csv.with_suffix(".json")
    if meta.is_file():
        try:
            value = (json.loads(meta.read_text()).get("meta") or {}).get("scale")
        except (json.JSONDecodeError, AttributeError):
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _title(what: str, scale: float | None) -> str:
    """Figure title, saying the workload scale where the workloads were cut down."""
    if scale is None or scale == 1.0:
        return what
    return f"{what}, workloads at {scale_text(scale)} scale"


def _family_colour(codec: str) -> tuple[float, float, float]:
    """One colour per coder family (nnc and nnc-1t alike; zlib-9/int32 and zlib-9/min:int8)."""
    family = "nnc" if codec.startswith("nnc-") else codec.split("/")[0].split("-")[0]
    index = _FAMILY_COLOURS.get(family)
    return style.PALETTE[index] if index is not None else (0.4, 0.4, 0.4)


def _codecs(frame: pd.DataFrame) -> list[str]:
    """Codec names present, in the fixed order (by family: 'zstd-19/int32' sorts as zstd)."""

    def key(codec: str) -> tuple[int, str]:
        family = codec if codec in CODEC_ORDER else codec.split("/")[0].split("-")[0]
        rank = CODEC_ORDER.index(family) if family in CODEC_ORDER else len(CODEC_ORDER)
        return rank, codec

    return sorted(set(frame["codec"]), key=key)


def _panels(n: int, n_bars: int) -> tuple[plt.Figure, list[plt.Axes]]:
    """n panels, two per row, tall enough for n_bars labelled bars each."""
    cols = min(n, 2)
    rows = -(-n // cols)
    height = max(2.6, 0.24 * n_bars + 0.9)
    # No shared axes: those hide the inner panels' tick labels; callers set common limits.
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _key(frame: pd.DataFrame, codecs: list[str]) -> list[tuple[object, str]]:
    """Legend entries (blank handle, text) naming the codecs and workloads shown."""
    blank = plt.Line2D([], [], linestyle="none")
    threads: dict[str, float] = {}
    if "threads" in frame.columns:
        threads = frame.groupby("codec")["threads"].first().to_dict()
    entries: list[tuple[object, str]] = [(blank, "")]
    for codec in codecs:
        text = codec_description(codec, threads.get(codec))
        entries.append((blank, f"{codec}: {text}" if text else codec))
    if any(_GP_CODEC.match(c) for c in codecs):
        gp = "general-purpose coders get our quantized\nlevels; quantizing is not timed"
        entries.append((blank, gp))
    entries.append((blank, ""))
    for workload in sorted(frame["workload"].astype(str).unique()):
        if workload in WORKLOAD_NAMES:
            entries.append((blank, f"workload {workload}: {WORKLOAD_NAMES[workload]}"))
    return entries


def codec_throughput_data(csv: str | Path) -> pd.DataFrame:
    """The codec_throughput bars: mean encode/decode M parameters/s per panel and codec.

    Columns: panel, codec, encode_mps, decode_mps (NaN where the CSV lacks decode timings),
    description.
    """
    frame = load_codec_csv(csv)
    codecs = _codecs(frame)
    parts = []
    for panel in sorted(frame["panel"].unique()):
        data = frame[frame["panel"] == panel].groupby("codec").mean(numeric_only=True)
        data = data.reindex([c for c in codecs if c in data.index])
        out = pd.DataFrame({"panel": panel, "codec": data.index})
        out["encode_mps"] = (data["encode_params_per_s"] / 1e6).to_numpy()
        decode = data.get("decode_params_per_s")
        out["decode_mps"] = np.nan if decode is None else (decode / 1e6).to_numpy()
        threads = data["threads"].to_numpy() if "threads" in data else [None] * len(data)
        out["description"] = [
            codec_description(c, t) for c, t in zip(data.index, threads, strict=True)
        ]
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _decade_limits(values: pd.Series) -> tuple[float, float]:
    """Log-axis limits on whole decades around the values: at least two labelled ticks."""
    positive = values[values > 0]
    lo = math.floor(math.log10(float(positive.min())))
    hi = math.ceil(math.log10(float(positive.max())))
    return 10.0**lo, 10.0 ** max(hi, lo + 1)


def plot_codec_throughput(
    csv: str | Path, out_dir: str | Path, scale: float | None = None
) -> list[Path]:
    """Encode and decode throughput (M parameters/s, log) of every codec, per workload.

    scale: the workloads' scale for the title; None reads it with codec_scale(csv).
    """
    frame = load_codec_csv(csv)
    data = codec_throughput_data(csv)
    scale = codec_scale(csv) if scale is None else scale
    codecs = _codecs(frame)
    panels = sorted(data["panel"].unique())
    colours = {"encode": style.PALETTE[0], "decode": style.PALETTE[2]}
    columns = {"encode": "encode_mps", "decode": "decode_mps"}
    # One range for every panel keeps the workloads comparable at a glance.
    xlim = _decade_limits(pd.concat([data["encode_mps"], data["decode_mps"]]).dropna())
    fig, axes = _panels(len(panels), len(codecs))
    for ax, panel in zip(axes, panels, strict=True):
        rows = data[data["panel"] == panel]
        y = np.arange(len(rows))
        for k, (what, column) in enumerate(columns.items()):
            if rows[column].isna().all():
                continue
            ax.barh(
                y + (k - 0.5) * 0.4,
                rows[column],
                0.4,
                color=colours[what],
                label=what,
                gid=f"{what}|{panel}",
            )
        ax.set_yticks(y, rows["codec"])
        ax.invert_yaxis()
        style.log_axis(ax, "x")
        ax.set_xlim(*xlim)
        ax.set_xlabel("M parameters / s")
        ax.set_title(f"workload {panel}")
    fig.suptitle(_title("Codec throughput", scale))
    handles: list[object] = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    names = list(colours)
    for handle, text in _key(frame, codecs):
        handles.append(handle)
        names.append(text)
    fig.tight_layout()
    style.legend_right(fig, handles, names)
    return style.save(fig, out_dir, "codec_throughput")


def codec_entropy_data(csv: str | Path) -> pd.DataFrame:
    """The codec_entropy bars: mean coded bytes over the H0 bound per panel and codec.

    Columns: panel, codec, over_h0, h0_bytes (the panel's bound).
    """
    frame = load_codec_csv(csv)
    frame = frame[frame["h0_bytes"].notna() & (frame["h0_bytes"] > 0)].copy()
    if frame.empty:
        raise PlotInputError(f"{csv} has no rows with an entropy bound (h0_bytes)")
    frame["over_h0"] = frame["bytes"] / frame["h0_bytes"]
    codecs = _codecs(frame)
    parts = []
    for panel in sorted(frame["panel"].unique()):
        rows = frame[frame["panel"] == panel]
        data = rows.groupby("codec")["over_h0"].mean()
        data = data.reindex([c for c in codecs if c in data.index])
        parts.append(
            pd.DataFrame(
                {
                    "panel": panel,
                    "codec": data.index,
                    "over_h0": data.to_numpy(),
                    "h0_bytes": float(rows["h0_bytes"].iloc[0]),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def plot_codec_entropy(
    csv: str | Path, out_dir: str | Path, scale: float | None = None
) -> list[Path]:
    """Coded bytes relative to the zero-order entropy bound H0 of the quantized levels.

    scale: the workloads' scale for the title; None reads it with codec_scale(csv).
    """
    frame = load_codec_csv(csv)
    data = codec_entropy_data(csv)
    scale = codec_scale(csv) if scale is None else scale
    codecs = [c for c in _codecs(frame) if c in set(data["codec"])]
    colours = {c: _family_colour(c) for c in codecs}
    panels = sorted(data["panel"].unique())
    fig, axes = _panels(len(panels), len(codecs))
    right = max(1.0, float(data["over_h0"].max())) * 1.2
    for ax, panel in zip(axes, panels, strict=True):
        rows = data[data["panel"] == panel]
        y = np.arange(len(rows))
        bars = ax.barh(
            y, rows["over_h0"], color=[colours[c] for c in rows["codec"]], gid=f"over_h0|{panel}"
        )
        for bar, codec in zip(bars, rows["codec"], strict=True):
            if "int32" in codec:  # the same coder on wider input words: hatched
                bar.set_hatch("//")
        ax.axvline(1.0, color="0.2", linestyle="--", linewidth=1)
        for yi, v in zip(y, rows["over_h0"], strict=True):
            ax.annotate(
                f"{v:.2f}",
                (v, yi),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
            )
        ax.set_yticks(y, rows["codec"])
        ax.invert_yaxis()
        ax.set_xlim(0, right)
        ax.set_xlabel("coded bytes / H0 bound")
        h0_mb = rows["h0_bytes"].iloc[0] / 1e6
        ax.set_title(f"workload {panel} (H0 = {h0_mb:.3g} MB)")
    fig.suptitle(_title("Coded size against the entropy bound", scale))
    handles: list[object] = [plt.Line2D([], [], color="0.2", linestyle="--")]
    names = ["H0 bound: zero-order entropy\nof the quantized levels"]
    for handle, text in _key(frame, codecs):
        handles.append(handle)
        names.append(text)
    fig.tight_layout()
    style.legend_right(fig, handles, names)
    return style.save(fig, out_dir, "codec_entropy")
