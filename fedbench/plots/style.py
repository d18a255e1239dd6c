"""One figure style for every fedbench plot: print-readable, colour-blind safe, PDF + PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written by batch jobs that have no display

import matplotlib.pyplot as plt
import seaborn as sns

from fedbench.fl.methods import methods as _methods

# Method order, display names, colours and markers come from the method registry
# (fedbench.fl.methods), so that a method looks the same in every figure.
METHOD_ORDER = tuple(_methods())
METHOD_NAMES = {n: (m.display or n) for n, m in _methods().items()}
SETTING_ORDER = ("uni", "bi", "partial")
SETTING_NAMES = {
    "uni": "unidirectional",
    "bi": "bidirectional",
    "partial": "partial update",
    "clients50": "50 % of clients per round",
}
METRIC_NAMES = {"test_acc": "accuracy", "test_miou": "mIoU", "test_map": "mAP"}
DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "pneumoniamnist": "PneumoniaMNIST",
    "chestxray": "Chest X-Ray",
    "chest_xray": "Chest X-Ray",
    "voc": "Pascal VOC 2012",
    "voc2012": "Pascal VOC 2012",
    "voc2012-seg": "Pascal VOC 2012 segmentation",
    "voc2012-cls": "Pascal VOC 2012 classification",
}
# Up to 377x less data than uncompressed FL: Becking et al., CVPR-W 2022, abstract.
PAPER_MAX_RATIO = 377.0
PAPER_CITATION = "Becking et al., CVPR-W 2022"

PALETTE = sns.color_palette("colorblind", 10)
# A method's colour: its `color` (an index into PALETTE or an RGB triple); fp32 grey (the
# reference), STC green, top-k brown, unscaled blue, ADF vermillion.
_METHOD_COLOURS = {
    n: (PALETTE[m.color] if isinstance(m.color, int) else tuple(m.color))
    for n, m in _methods().items()
    if m.color is not None
}
_METHOD_MARKERS = {n: m.marker for n, m in _methods().items() if m.marker}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def apply_style() -> None:
    """Set the shared seaborn/matplotlib theme (call before drawing)."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.15)
    plt.rcParams.update(
        {
            "pdf.fonttype": 42,  # embed TrueType so text stays selectable and editable
            "ps.fonttype": 42,
            "savefig.dpi": 300,
            "savefig.bbox": "tight",
            "lines.linewidth": 1.6,
            "lines.markersize": 5,
            "legend.frameon": False,
            "axes.titlesize": "medium",
        }
    )


def method_key(label: str) -> str:
    """The base method of a hue label such as 'adf sparsity0.99'."""
    return label.split(" ", 1)[0]


def display(label: str) -> str:
    """Human-readable name of a method label, keeping any variant suffix."""
    base, _, variant = label.partition(" ")
    name = METHOD_NAMES.get(base, base)
    return f"{name} ({variant})" if variant else name


def label_order(labels: list[str]) -> list[str]:
    """Sort hue labels by the fixed method order, then by variant."""

    def key(label: str) -> tuple[int, str]:
        base = method_key(label)
        rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
        return rank, label

    return sorted(set(labels), key=key)


def palette_for(labels: list[str]) -> dict[str, tuple[float, float, float]]:
    """Colours per hue label: the method's colour, shaded per variant so sweeps stay apart."""
    out: dict[str, tuple[float, float, float]] = {}
    by_method: dict[str, list[str]] = {}
    for label in label_order(labels):
        by_method.setdefault(method_key(label), []).append(label)
    spare = iter(PALETTE[i] for i in (4, 1, 6, 8, 9))
    for base, group in by_method.items():
        colour = _METHOD_COLOURS.get(base) or next(spare, (0.3, 0.3, 0.3))
        if len(group) == 1:
            out[group[0]] = colour
        else:
            shades = sns.light_palette(colour, n_colors=len(group) + 2)[2:]
            out.update(zip(group, shades, strict=True))
    return out


def markers_for(labels: list[str]) -> dict[str, str]:
    """Marker per hue label, so lines stay distinguishable in grey-scale print."""
    return {
        label: _METHOD_MARKERS.get(method_key(label)) or _MARKERS[i % len(_MARKERS)]
        for i, label in enumerate(label_order(labels))
    }


def log_axis(ax: plt.Axes, which: str = "x") -> None:
    """Log scale with plain-number labels on decades only (no cluttered minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def legend_right(fig: plt.Figure, handles: list, labels: list[str]) -> None:
    """One shared legend to the right of the panels (saved with a tight bounding box)."""
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5))


def save(fig: plt.Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write the figure as STEM.pdf and STEM.png under out_dir; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"]
    for p in paths:
        # Fixed metadata keeps the PDF bytes stable across reruns (no creation date).
        meta = {"CreationDate": None} if p.suffix == ".pdf" else {"Software": None}
        fig.savefig(p, metadata=meta)
    plt.close(fig)
    return paths
