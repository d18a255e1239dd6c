"""`fedbench plots ...`: figures and results tables from run folders and the codec benchmark."""

from __future__ import annotations

import argparse
import sys

FIGURE_NAMES = (
    "accuracy_vs_round",
    "accuracy_vs_mb",
    "compression_ratio",
    "sparsity_sweep",
    "bytes_by_class",
    "adf_factors",
    "partial_update",
    "codec_throughput",
    "codec_entropy",
)


def _figures(args: argparse.Namespace) -> int:
    """Draw the figures; print one line per written file."""
    from fedbench.plots.figures import make_figures
    from fedbench.plots.runs import PlotInputError

    try:
        written = make_figures(args.runs, args.codec, args.out, only=args.only)
    except (PlotInputError, ValueError) as exc:
        print(f"fedbench plots figures: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def _table(args: argparse.Namespace) -> int:
    """Write the results table (CSV + Markdown)."""
    from fedbench.plots.runs import PlotInputError
    from fedbench.plots.table import write_table

    try:
        n = write_table(args.runs, args.csv, args.md)
    except PlotInputError as exc:
        print(f"fedbench plots table: error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} runs -> {args.csv}, {args.md}")
    return 0


def _frontier(args: argparse.Namespace) -> int:
    """Draw the frontier figures and write the headline table."""
    from pathlib import Path

    from fedbench.plots import frontier
    from fedbench.plots.runs import find_run_dirs

    raw = frontier.load_points(find_run_dirs(args.runs))
    if not raw:
        print("fedbench plots frontier: error: no run folders found", file=sys.stderr)
        return 2
    points = frontier.operating_points(raw)
    for ds in sorted({p["dataset"] for p in points}):
        frontier.plot_frontier(points, ds, Path(args.out) / f"frontier_{ds}", args.tolerance)
    rows = frontier.headline_rows(points, args.tolerance)
    notes = frontier.equal_bytes_notes(raw)
    reach = frontier.bytes_to_reach_notes(raw)
    frontier.write_headline(
        rows, notes, args.csv, args.md, args.tolerance, reach, frontier.point_rows(points)
    )
    print(f"{len(raw)} runs, {len(points)} operating points -> {args.csv}, {args.md}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """Run the headline rows' commands and compare with their first seed."""
    from fedbench.plots import reproduce

    try:
        rows = reproduce.read_headline(args.csv, args.rows)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fedbench plots reproduce: error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(
            f"fedbench plots reproduce: error: no rows {args.rows} in {args.csv}", file=sys.stderr
        )
        return 2
    results = reproduce.check_rows(rows, args.out, acc_tol=args.acc_tol, ratio_tol=args.ratio_tol)
    report = args.md or f"{args.out}/reproduce.md"
    reproduce.write_report(results, report)
    for r in results:
        got = f"acc {r['acc']:.4f} ratio {r['ratio']:.1f}x" if "acc" in r else "failed"
        print(
            f"{'ok ' if r['ok'] else 'BAD'} {r['row']} {r['dataset']} {r['method']} {r['knobs']}: "
            f"row acc {r['want_acc']:.4f} ratio {r['want_ratio']:.1f}x, run {got}"
        )
    print(f"-> {report}")
    return 0 if all(r["ok"] for r in results) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fedbench plots figures|table|frontier|reproduce`."""
    parser = subparsers.add_parser(
        "plots", help="figures and results tables from run outputs", description=__doc__
    )
    sub = parser.add_subparsers(dest="plots_command", required=True, metavar="WHAT")

    fig = sub.add_parser(
        "figures",
        help="draw accuracy / compression / codec figures (PDF + PNG)",
        description="Draw figures from run folders (metrics.csv + summary.json) and the codec "
        "benchmark CSV. Per data set: accuracy_vs_round_<ds>, accuracy_vs_mb_<ds>; overall: "
        "compression_ratio, sparsity_sweep, codec_throughput, codec_entropy.",
    )
    fig.add_argument(
        "--runs",
        nargs="+",
        metavar="DIR",
        help="run folders, or folders to search for run folders (e.g. results/runs)",
    )
    fig.add_argument("--codec", metavar="CSV", help="codec benchmark table (codec_bench.csv)")
    fig.add_argument("--out", required=True, metavar="DIR", help="output folder (e.g. figures/)")
    fig.add_argument(
        "--only",
        nargs="+",
        choices=FIGURE_NAMES,
        metavar="NAME",
        help=f"draw only these figures; choices: {', '.join(FIGURE_NAMES)}",
    )
    fig.set_defaults(func=_figures)

    tab = sub.add_parser(
        "table",
        help="results table: one row per run, CSV and Markdown",
        description="Write one row per run (accuracy, total MB, compression ratio, ...) as CSV "
        "and Markdown, with the paper's headline (up to 377x) beside ours.",
    )
    tab.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="run folders or roots")
    tab.add_argument("--csv", required=True, metavar="FILE", help="output CSV")
    tab.add_argument("--md", required=True, metavar="FILE", help="output Markdown")
    tab.set_defaults(func=_table)

    fro = sub.add_parser(
        "frontier",
        help="rate-accuracy frontier figures and the headline table",
        description="From the run folders of a sweep: frontier_<dataset> (accuracy mean +- 1 sd "
        "vs total MB, log x, one curve per method, Pareto front, fp32 a point) and the headline "
        "table (highest ratio within --tolerance of fp32, best and best-nnc rows, ADF vs "
        "unscaled at equal bytes in the notes).",
    )
    fro.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="run folders or roots")
    fro.add_argument("--out", required=True, metavar="DIR", help="folder of the frontier figures")
    fro.add_argument("--csv", required=True, metavar="FILE", help="headline CSV")
    fro.add_argument("--md", required=True, metavar="FILE", help="headline Markdown")
    fro.add_argument(
        "--tolerance", type=float, default=0.01, help="accuracy below fp32 allowed (0.01)"
    )
    fro.set_defaults(func=_frontier)

    rep = sub.add_parser(
        "reproduce",
        help="run the headline rows' commands and check they reproduce the first seed",
        description="Run each selected headline row's `command` (its first seed, from this "
        "folder as from a clean checkout) and compare with the row's first-seed accuracy "
        "(within --acc-tol) and compression ratio (within --ratio-tol, relative). Exit 1 if "
        "any row is not reproduced.",
    )
    rep.add_argument("--csv", required=True, metavar="FILE", help="headline CSV")
    rep.add_argument("--out", required=True, metavar="DIR", help="folder for the runs")
    rep.add_argument(
        "--rows", nargs="+", default=["best", "best_nnc"], metavar="ROW",
        help="row kinds to check (default: best best_nnc; 'method' for every method)",
    )  # fmt: skip
    rep.add_argument("--acc-tol", type=float, default=0.01, help="accuracy tolerance (0.01)")
    rep.add_argument("--ratio-tol", type=float, default=0.02, help="relative ratio tol. (0.02)")
    rep.add_argument("--md", metavar="FILE", help="report (default: OUT/reproduce.md)")
    rep.set_defaults(func=_reproduce)
