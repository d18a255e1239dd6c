"""The rate-accuracy frontier (issue 10, point 4): operating points, Pareto front, headline.

An operating point is one sweep cell (dataset, model, setting, method label, variant) over
its seeds; its accuracy is the mean +- sd of the seeds' final accuracy (summary.json
`final_acc`), its bytes the mean total bytes (up + down), its ratio the mean compression
ratio against uncompressed FedAvg. Curves are per method (the registry name: labels such as
`unscaled-nws` of the same method join its curve). The headline row of a (dataset, method)
is its point with the highest ratio whose mean accuracy is within `tolerance` of fp32
FedAvg's mean; `best` and `best_nnc` rows give the best point over all methods and over the
DeepCABAC methods coded with bit-exact `nnc` in both directions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.layout import SUMMARY, parse_run_dir
from fedbench.plots.compare import paired_bytes_to_reach, paired_difference, paired_equal_bytes

CLASSES = ("weight", "bn_affine", "bn_stats", "bias", "adf", "other", "overhead")

__all__ = [
    "HEADLINE_COLUMNS",
    "PAPER_RATIO",
    "coder_of",
    "bytes_to_reach_notes",
    "equal_bytes_notes",
    "headline_rows",
    "load_points",
    "operating_points",
    "pareto_front",
    "plot_frontier",
    "reproduce_command",
    "write_headline",
]

_SPARSIFYING = ("deepcabac", "stc", "topk-fp16")
PAPER_RATIO = 377.0  # "up to 377x less transmitted data" (the paper's DeepCABAC figure)
HEADLINE_COLUMNS = [
    "row",
    "dataset",
    "model",
    "setting",
    "method",
    "label",
    "knobs",
    "coder",
    "seeds",
    "acc_mean",
    "acc_sd",
    "clients_acc_mean",
    "clients_acc_sd",
    "fp32_acc_mean",
    "fp32_acc_sd",
    "total_bytes_mean",
    "ratio_mean",
    "paper_ratio",
    "sparsity_nominal",
    "sparsity_measured",
    "command",
    "first_seed",
    "first_acc",
    "first_ratio",
    # the point's accuracy minus fp32's, paired by seed (the seeds both ran): mean, 95 %
    # t-interval, n; the rule compares means, this says how sure that comparison is
    "fp32_diff_mean",
    "fp32_diff_lo",
    "fp32_diff_hi",
    "fp32_diff_n",
]


def coder_of(config: Mapping[str, Any]) -> str:
    """The coder of a run: nnc / sparse (DeepCABAC methods; `up/down` when they differ per
    direction), else the method's own coder (its name)."""
    from fedbench.fl.methods import get_method

    m = config["method"]
    cls = get_method(m["name"])
    if getattr(cls, "compressor", "") != "deepcabac":
        return str(m["name"])
    up = m.get("codec_mode", "nnc")
    down = m.get("downlink_codec_mode") or up
    if config.get("setting", {}).get("direction") != "bi" or down == up:
        return str(up)
    return f"{up}/{down}"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _yaml_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def reproduce_command(config: Mapping[str, Any], out: str = "runs/repro", seed: int = 0) -> str:
    """`fedbench fl` command line reproducing a run's resolved config with `seed`.

    The preset (fedbench/fl/presets) closest to the config (fewest differing keys) is the
    --config, every differing key a --set, so the command runs from a clean checkout.
    """
    from fedbench.fl.config import config_to_dict, list_presets, load_config

    want = _flatten({**config, "seed": seed})
    best: tuple[int, str, dict[str, Any]] | None = None
    for name in sorted(list_presets()):
        try:
            have = _flatten(config_to_dict(load_config(name)))
        except Exception:  # a preset another method's options break is just not a candidate
            continue
        # the seed always, so that the command says which seed it reproduces
        diff = {k: v for k, v in want.items() if k == "seed" or have.get(k, object()) != v}
        if best is None or len(diff) < best[0]:
            best = (len(diff), name, diff)
    assert best is not None
    _, name, diff = best
    words = ["fedbench", "fl", "--config", name, "--out", out]
    for k, v in diff.items():
        words += ["--set", f"{k}={_yaml_value(v)}"]
    return shlex.join(words)


def load_points(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One record per run folder: labels, method name, coder, accuracy, bytes, sparsity."""
    from fedbench.fl.methods import get_method

    out = []
    for d in run_dirs:
        d = Path(d)
        s = json.loads((d / SUMMARY).read_text())
        labels = parse_run_dir(d)
        cfg = s["config"]
        # the sparsity knob means something only to the sparsifying coders
        sparse = getattr(get_method(cfg["method"]["name"]), "compressor", "") in _SPARSIFYING
        out.append(
            {
                **labels,
                "label": labels["method"],
                "method": cfg["method"]["name"],
                "coder": coder_of(cfg),
                "acc": float(s["final_acc"]) if s.get("final_acc") is not None else math.nan,
                # the clients' model (bi: what they decoded), reported beside the server's
                "clients_acc": (
                    float(s["final_acc_clients"])
                    if s.get("final_acc_clients") is not None
                    else math.nan
                ),
                "total_bytes": float(s["total_bytes"]),
                "ratio": float(s["compression_ratio"] or math.nan),
                "sparsity_nominal": float(cfg["method"]["sparsity"]) if sparse else math.nan,
                "sparsity_measured": float(s.get("mean_update_sparsity", math.nan)),
                # up + down bytes per tensor class (what limits a ratio)
                "bytes_by_class": {
                    c: sum(int(d.get(c, 0)) for d in (s.get("bytes_by_class") or {}).values())
                    for c in CLASSES
                },
                "config": cfg,
            }
        )
    return out


def operating_points(points: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Seeds of each (dataset, model, setting, label, variant) joined into one point."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for p in points:
        key = (p["dataset"], p["model"], p["setting"], p["label"], p["variant"])
        groups.setdefault(key, []).append(p)
    out = []
    for (ds, mo, st, label, variant), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda p: p["seed"])
        acc = np.array([p["acc"] for p in runs], dtype=np.float64)
        clients = np.array([p.get("clients_acc", math.nan) for p in runs], dtype=np.float64)
        out.append(
            {
                "dataset": ds,
                "model": mo,
                "setting": st,
                "label": label,
                "variant": variant,
                "method": runs[0]["method"],
                "coder": runs[0]["coder"],
                "seeds": [p["seed"] for p in runs],
                "acc_mean": float(acc.mean()),
                "acc_sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "clients_acc_mean": float(clients.mean()),
                "clients_acc_sd": float(clients.std(ddof=1)) if len(clients) > 1 else 0.0,
                "total_bytes_mean": float(np.mean([p["total_bytes"] for p in runs])),
                "ratio_mean": float(np.mean([p["ratio"] for p in runs])),
                "sparsity_nominal": runs[0]["sparsity_nominal"],
                "sparsity_measured": float(np.mean([p["sparsity_measured"] for p in runs])),
                "bytes_by_class": {
                    c: float(np.mean([p["bytes_by_class"][c] for p in runs])) for c in CLASSES
                },
                "config": runs[0]["config"],
                # what the headline command (the first seed) must reproduce
                "first_seed": runs[0]["seed"],
                "first_acc": runs[0]["acc"],
                "first_ratio": runs[0]["ratio"],
                "seed_acc": {p["seed"]: p["acc"] for p in runs},
            }
        )
    return out


def pareto_front(points: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the points no other point beats (fewer or equal bytes and higher or equal
    mean accuracy, one of them strictly), by increasing bytes."""
    order = sorted(
        range(len(points)),
        key=lambda i: (points[i]["total_bytes_mean"], -points[i]["acc_mean"]),
    )
    front, best = [], -math.inf
    for i in order:
        if points[i]["acc_mean"] > best:
            front.append(i)
            best = points[i]["acc_mean"]
    return front


def _fp32(points: Sequence[Mapping[str, Any]], ds: str, mo: str, st: str) -> Mapping | None:
    ref = [p for p in points if (p["dataset"], p["model"], p["setting"], p["method"]) == (
        ds, mo, st, "fp32")]  # fmt: skip
    return max(ref, key=lambda p: len(p["seeds"])) if ref else None


def _row(kind: str, p: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    knobs = p["variant"] if p["label"] == p["method"] else f"{p['label']}:{p['variant']}"
    diff = paired_difference(p["seed_acc"], ref["seed_acc"])
    return {
        "row": kind,
        "dataset": p["dataset"],
        "model": p["model"],
        "setting": p["setting"],
        "method": p["method"],
        "label": p["label"],
        "knobs": knobs,
        "coder": p["coder"],
        "seeds": len(p["seeds"]),
        "acc_mean": p["acc_mean"],
        "acc_sd": p["acc_sd"],
        "clients_acc_mean": p["clients_acc_mean"],
        "clients_acc_sd": p["clients_acc_sd"],
        "fp32_acc_mean": ref["acc_mean"],
        "fp32_acc_sd": ref["acc_sd"],
        "total_bytes_mean": p["total_bytes_mean"],
        "ratio_mean": p["ratio_mean"],
        "paper_ratio": PAPER_RATIO,
        "sparsity_nominal": p["sparsity_nominal"],
        "sparsity_measured": p["sparsity_measured"],
        "command": reproduce_command(p["config"], seed=p["first_seed"]),
        "first_seed": p["first_seed"],
        "first_acc": p["first_acc"],
        "first_ratio": p["first_ratio"],
        "bytes_by_class": p["bytes_by_class"],
        "fp32_diff_mean": diff["mean"],
        "fp32_diff_lo": diff["lo"],
        "fp32_diff_hi": diff["hi"],
        "fp32_diff_n": diff["n"],
    }


def point_rows(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every operating point of a cell with an fp32 reference, as a headline-style row
    (kind `point`), by increasing total ratio: the whole frontier in numbers."""
    rows = []
    for ds, mo, st in sorted({(p["dataset"], p["model"], p["setting"]) for p in points}):
        ref = _fp32(points, ds, mo, st)
        if ref is None:
            continue
        cell = [p for p in points if (p["dataset"], p["model"], p["setting"]) == (ds, mo, st)]
        rows += [_row("point", p, ref) for p in sorted(cell, key=lambda p: p["ratio_mean"])]
    return rows


def _split(r: Mapping[str, Any], min_share: float = 0.0) -> str:
    """A row's bytes per tensor class, largest first, as `class NN %` (shares >= min_share)."""
    total = sum(r["bytes_by_class"].values()) or 1.0
    shares = sorted(r["bytes_by_class"].items(), key=lambda kv: -kv[1])
    return ", ".join(
        f"{c} {100 * n / total:.0f} %" for c, n in shares if n > 0 and n / total >= min_share
    )


def _paired_cell(r: Mapping[str, Any]) -> str:
    """`+x.xx [lo, hi]` points against fp32 paired by seed; empty for fewer than 2 seeds or fp32."""
    if r["fp32_diff_n"] < 2 or r["method"] == "fp32":
        return ""
    return (
        f"{100 * r['fp32_diff_mean']:+.2f} [{100 * r['fp32_diff_lo']:+.2f}, "
        f"{100 * r['fp32_diff_hi']:+.2f}]"
    )


def headline_rows(
    points: Sequence[Mapping[str, Any]], tolerance: float = 0.01
) -> list[dict[str, Any]]:
    """Per (dataset, model, setting): each method's highest-ratio point within `tolerance`
    of fp32's mean accuracy, then the `best` and `best_nnc` (DeepCABAC, nnc both ways) rows."""
    from fedbench.fl.methods import method_names

    order = {m: i for i, m in enumerate(method_names())}
    rows = []
    cells = sorted({(p["dataset"], p["model"], p["setting"]) for p in points})
    for ds, mo, st in cells:
        ref = _fp32(points, ds, mo, st)
        if ref is None:
            continue
        ok = [
            p
            for p in points
            if (p["dataset"], p["model"], p["setting"]) == (ds, mo, st)
            and p["acc_mean"] >= ref["acc_mean"] - tolerance
        ]
        methods = sorted({p["method"] for p in ok}, key=lambda m: (order.get(m, 999), m))
        for m in methods:
            rows.append(_row("method", max((p for p in ok if p["method"] == m),
                                           key=lambda p: p["ratio_mean"]), ref))  # fmt: skip
        if ok:
            rows.append(_row("best", max(ok, key=lambda p: p["ratio_mean"]), ref))
        nnc = [p for p in ok if p["coder"] == "nnc"]
        if nnc:
            rows.append(_row("best_nnc", max(nnc, key=lambda p: p["ratio_mean"]), ref))
    return rows


def equal_bytes_notes(
    raw_points: Sequence[Mapping[str, Any]], a: str = "adf", b: str = "unscaled"
) -> list[dict[str, Any]]:
    """Per (dataset, model, setting): `paired_equal_bytes` of methods a vs b over the seeds'
    accuracy-vs-bytes curves (each seed's curve across the sweep points)."""
    out = []
    for cell in sorted({(p["dataset"], p["model"], p["setting"]) for p in raw_points}):
        curves = _curves(raw_points, cell, (a, b))
        if not (curves[a] and curves[b]):
            continue
        try:
            res = paired_equal_bytes(curves[a], curves[b])
        except ValueError as exc:
            # both methods ran but their byte ranges do not meet: say so, not nothing
            res = {"error": str(exc)}
        out.append({"dataset": cell[0], "model": cell[1], "setting": cell[2], "a": a, "b": b,
                    **res})  # fmt: skip
    return out


def _curves(
    raw_points: Sequence[Mapping[str, Any]], cell: tuple, methods: Sequence[str]
) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """Per method and seed, the (total bytes, final accuracy) points of one cell.

    A seed's curve is kept only where that seed ran every operating point (label, variant)
    of the method in the cell: points run with extra seeds would otherwise pair a curve of
    one or two points with another seed's whole sweep.
    """
    curves: dict[str, dict[int, list[tuple[float, float]]]] = {m: {} for m in methods}
    for m in methods:
        by_seed: dict[int, dict[tuple, tuple[float, float]]] = {}
        for p in raw_points:
            if (p["dataset"], p["model"], p["setting"]) == cell and p["method"] == m:
                point = (p["label"], p["variant"])
                by_seed.setdefault(p["seed"], {})[point] = (p["total_bytes"], p["acc"])
        every = set().union(*by_seed.values()) if by_seed else set()
        curves[m] = {s: list(pts.values()) for s, pts in by_seed.items() if set(pts) == every}
    return curves


def bytes_to_reach_notes(
    raw_points: Sequence[Mapping[str, Any]], a: str = "adf", b: str = "unscaled"
) -> list[dict[str, Any]]:
    """Per (dataset, model, setting) with both methods: `paired_bytes_to_reach`, the bytes
    each needs for the highest accuracy both reach on every seed (claim (3))."""
    out = []
    for cell in sorted({(p["dataset"], p["model"], p["setting"]) for p in raw_points}):
        curves = _curves(raw_points, cell, (a, b))
        try:
            res = paired_bytes_to_reach(curves[a], curves[b])
        except ValueError:
            continue
        out.append({"dataset": cell[0], "model": cell[1], "setting": cell[2], "a": a, "b": b,
                    **res})  # fmt: skip
    return out


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _pm(mean: float, sd: float) -> str:
    """`mean +- sd` to 4 places; empty where there is no value (NaN)."""
    return "" if math.isnan(mean) else f"{mean:.4f} +- {sd:.4f}"


def _sparsity_cell(r: Mapping[str, Any]) -> str:
    if math.isnan(r["sparsity_nominal"]):
        return ""
    return f"{r['sparsity_nominal']:.4g}/{r['sparsity_measured']:.4g}"


def write_headline(
    rows: Sequence[Mapping[str, Any]],
    notes: Sequence[Mapping[str, Any]],
    csv_path: str | Path,
    md_path: str | Path,
    tolerance: float = 0.01,
    reach: Sequence[Mapping[str, Any]] = (),
    points: Sequence[Mapping[str, Any]] = (),
) -> None:
    """headline.csv (HEADLINE_COLUMNS) and headline.md (the table, the rule, the notes;
    `reach`: bytes_to_reach_notes; `points`: point_rows, listed after the notes)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HEADLINE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r[k]) for k in HEADLINE_COLUMNS})
    Path(csv_path).write_text(buf.getvalue())
    lines = [
        f"# Headline: highest total compression within {100 * tolerance:g} point(s) of fp32 FedAvg",
        "",
        f"Paper: up to {PAPER_RATIO:g}x less transmitted data (DeepCABAC). `coder`: nnc = "
        "DeepCABAC as standardized (bit-exact), sparse = this project's sparse mode, else "
        "the method's own coder. `best_nnc`: the best DeepCABAC row coded with nnc both ways. "
        "`acc` is the server model's (the rule's); `clients acc` the model the clients hold "
        "(bi: the decoded broadcasts), shown beside it, not used by the rule.",
        "",
        "| row | dataset | setting | method | knobs | coder | seeds | acc | clients acc "
        "| fp32 acc | total MB | ratio | paper | s nominal/measured |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['dataset']} | {r['setting']} | {r['method']} | {r['knobs']} "
            f"| {r['coder']} | {r['seeds']} | {_pm(r['acc_mean'], r['acc_sd'])} "
            f"| {_pm(r['clients_acc_mean'], r['clients_acc_sd'])} "
            f"| {_pm(r['fp32_acc_mean'], r['fp32_acc_sd'])} "
            f"| {r['total_bytes_mean'] / 1e6:.3f} | {r['ratio_mean']:.0f}x "
            f"| {r['paper_ratio']:.0f}x | {_sparsity_cell(r)} |"
        )
    lines += [
        "",
        "Commands (the first seed, from a clean checkout; `fedbench plots reproduce --csv` "
        "this table's CSV runs them and compares with the first seed's accuracy and ratio):",
        "",
    ]
    for r in rows:
        lines.append(f"- {r['row']} {r['dataset']} {r['setting']} {r['method']}: `{r['command']}`")
    lines += ["", "## Notes: the paper's 377x and what limits the best rows", ""]
    for r in rows:
        if r["row"] not in ("best", "best_nnc"):
            continue
        split = _split(r)
        verdict = (
            "reaches"
            if r["ratio_mean"] >= r["paper_ratio"]
            else f"is {r['paper_ratio'] / r['ratio_mean']:.1f}x short of"
        )
        paired = (
            f"; against fp32 paired by seed {100 * r['fp32_diff_mean']:+.2f} points, 95 % CI "
            f"[{100 * r['fp32_diff_lo']:+.2f}, {100 * r['fp32_diff_hi']:+.2f}], "
            f"n = {r['fp32_diff_n']}"
            if r["fp32_diff_n"] > 1
            else ""
        )
        lines.append(
            f"- {r['row']} {r['dataset']} {r['setting']} ({r['method']}, {r['knobs']}, "
            f"{r['coder']}): "
            f"{r['ratio_mean']:.0f}x {verdict} the paper's {r['paper_ratio']:.0f}x; its bytes: "
            f"{split}{paired}"
        )
    lines += ["", "## Notes: equal-bytes comparison (paired by seed)", ""]
    if not notes:
        lines.append("- no data set has runs of both compared methods")
    for n in notes:
        if "error" in n:
            lines.append(
                f"- {n['dataset']} {n['model']} {n['setting']}: {n['a']} - {n['b']}: "
                f"not compared ({n['error']})"
            )
            continue
        lines.append(
            f"- {n['dataset']} {n['model']} {n['setting']}: {n['a']} - {n['b']} at "
            + (
                f"each seed's own matched bytes (no range common to every seed; geometric "
                f"mean {n['bytes'] / 1e6:.3f} MB): "
                if n.get("per_seed_bytes")
                else f"{n['bytes'] / 1e6:.3f} MB: "
            )
            + f"{100 * n['mean']:+.2f} points, "
            + (
                f"{100 * n['confidence']:.0f} % CI [{100 * n['lo']:+.2f}, {100 * n['hi']:+.2f}], "
                if n["n"] > 1
                else "no interval, "
            )
            + f"n = {n['n']} seeds (those with every point of both methods)"
        )
    if reach:
        lines += ["", "## Notes: bytes to reach the same accuracy (paired by seed)", ""]
    for n in reach:
        lines.append(
            f"- {n['dataset']} {n['model']} {n['setting']}: to reach {n['target']:.4f}, "
            f"{n['a']} needs {n['bytes_a'] / 1e6:.3f} MB and {n['b']} {n['bytes_b'] / 1e6:.3f} "
            f"MB: {n['a']} / {n['b']} = {n['ratio']:.3f}, "
            + (
                f"{100 * n['confidence']:.0f} % CI [{n['lo']:.3f}, {n['hi']:.3f}], "
                if n["n"] > 1
                else "no interval, "
            )
            + f"n = {n['n']} seeds (those with every point of both methods)"
        )
    if points:
        lines += [
            "",
            "## All operating points",
            "",
            "Mean +- sd over seeds; `- fp32`: the point's accuracy minus fp32's, paired by "
            "seed, in points, with its 95 % t-interval; bytes: classes of at least 9.5 %.",
            "",
            "| dataset | setting | method | knobs | coder | seeds | acc | clients acc | - fp32 "
            "| total MB | ratio | bytes |",
            "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
        ]
        for r in points:
            lines.append(
                f"| {r['dataset']} | {r['setting']} | {r['method']} | {r['knobs']} "
                f"| {r['coder']} | {r['seeds']} | {_pm(r['acc_mean'], r['acc_sd'])} "
                f"| {_pm(r['clients_acc_mean'], r['clients_acc_sd'])} | {_paired_cell(r)} "
                f"| {r['total_bytes_mean'] / 1e6:.3f} | {r['ratio_mean']:.0f}x "
                f"| {_split(r, 0.095)} |"
            )
    Path(md_path).write_text("\n".join(lines) + "\n")


def plot_frontier(
    points: Sequence[Mapping[str, Any]],
    dataset: str,
    out_stem: str | Path,
    tolerance: float = 0.01,
) -> None:
    """Accuracy (mean, +-1 sd band) vs total MB (log x) of one data set: a curve per method
    through its own Pareto points, all points drawn, the overall front marked, fp32 a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedbench.fl.methods import get_method

    pts = [p for p in points if p["dataset"] == dataset]
    settings = sorted({p["setting"] for p in pts})
    fig, axes = plt.subplots(1, max(len(settings), 1), figsize=(5.5 * max(len(settings), 1), 4),
                             squeeze=False)  # fmt: skip
    for ax, st in zip(axes[0], settings, strict=False):
        cell = [p for p in pts if p["setting"] == st]
        palette = plt.get_cmap("tab10")
        for i, m in enumerate(sorted({p["method"] for p in cell})):
            mine = [p for p in cell if p["method"] == m]
            cls = get_method(m)
            color = palette(cls.color if isinstance(cls.color, int) else i % 10)
            mb = np.array([p["total_bytes_mean"] / 1e6 for p in mine])
            acc = np.array([p["acc_mean"] for p in mine])
            sd = np.array([p["acc_sd"] for p in mine])
            label = cls.display or m
            if m == "fp32":
                ax.errorbar(mb, acc, yerr=sd, fmt="*", ms=12, color="black", label=label)
                # the headline rule's bar: within `tolerance` of fp32's mean
                ax.axhline(float(acc.max()) - tolerance, color="black", ls=":", lw=0.8,
                           label=f"fp32 - {100 * tolerance:g} pt")  # fmt: skip
                continue
            ax.scatter(mb, acc, s=14, color=color, alpha=0.5)
            front = pareto_front(mine)
            fx, fy, fs = mb[front], acc[front], sd[front]
            ax.plot(fx, fy, "-o", ms=4, color=color, label=label)
            ax.fill_between(fx, fy - fs, fy + fs, color=color, alpha=0.15, linewidth=0)
        front = pareto_front(cell)
        ax.plot([cell[i]["total_bytes_mean"] / 1e6 for i in front],
                [cell[i]["acc_mean"] for i in front], "k--", lw=1, drawstyle="steps-post",
                label="Pareto front")  # fmt: skip
        ax.scatter([cell[i]["total_bytes_mean"] / 1e6 for i in front],
                   [cell[i]["acc_mean"] for i in front], s=60, facecolors="none",
                   edgecolors="black")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("total MB transmitted (up + down, log)")
        ax.set_ylabel("final accuracy (mean +- 1 sd over seeds)")
        ax.set_title(f"{dataset}, {st}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_stem.with_suffix(".pdf"))
    fig.savefig(out_stem.with_suffix(".png"), dpi=120)
    plt.close(fig)
