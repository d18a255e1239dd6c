# Figures and tables: they read only run outputs (metrics.csv, summary.json) and the codec
# benchmark table, and write PDF + PNG (+ CSV/Markdown tables) into {figures}/.
#
# One rule draws every figure; FIGURE_TABLE says per figure (`fedbench plots figures --only
# NAME`) what it reads and where the report shows it. What a figure reads decides its stems:
#   dataset: one figure per data set with runs, NAME_<dataset>, from that data set's runs
#   runs:    one figure, NAME, from all runs
#   codec:   one figure, NAME, from the codec benchmark table (CSV, and the JSON's meta.scale
#            that the title states); drawn only when codec.bench is configured
import re
from typing import NamedTuple


class Figure(NamedTuple):
    """One figure of `fedbench plots figures`: what it reads, its report caption and category."""

    reads: str  # dataset | runs | codec
    caption: str  # file in workflows/report/
    category: str


FIGURE_TABLE = {
    "accuracy_vs_round": Figure("dataset", "accuracy_vs_round.rst", "Federated learning"),
    "accuracy_vs_mb": Figure("dataset", "accuracy_vs_mb.rst", "Federated learning"),
    "compression_ratio": Figure("runs", "compression_ratio.rst", "Federated learning"),
    "sparsity_sweep": Figure("runs", "sparsity_sweep.rst", "Federated learning"),
    "bytes_by_class": Figure("runs", "bytes_by_class.rst", "Federated learning"),
    "adf_factors": Figure("dataset", "adf_factors.rst", "Federated learning"),
    "partial_update": Figure("runs", "partial_update.rst", "Federated learning"),
    "codec_throughput": Figure("codec", "codec_throughput.rst", "Codec"),
    "codec_entropy": Figure("codec", "codec_entropy.rst", "Codec"),
}
CODEC_BENCH = {
    "csv": f"{RESULTS}/codec/codec_bench.csv",
    "json": f"{RESULTS}/codec/codec_bench.json",
}
REPORT_DIR = REPO / "workflows" / "report"


class FigureJob(NamedTuple):
    """One figure file stem: its figure name and, for per-data-set figures, the data set."""

    name: str
    dataset: str | None


def _figure_jobs() -> dict[str, FigureJob]:
    """Every figure stem the rule can draw for this config."""
    jobs = {}
    for name, fig in FIGURE_TABLE.items():
        if fig.reads == "dataset":
            jobs.update({f"{name}_{ds}": FigureJob(name, ds) for ds in DATASETS_RUN})
        elif fig.reads in ("runs", "codec"):
            jobs[name] = FigureJob(name, None)
        else:
            raise WorkflowError(f"FIGURE_TABLE: {name} reads '{fig.reads}'; not dataset/runs/codec")
    return jobs


FIGURE_JOBS = _figure_jobs()


def _figure(wildcards) -> tuple[FigureJob, Figure]:
    """The figure a job's stem names, and its table row."""
    job = FIGURE_JOBS[wildcards.stem]
    return job, FIGURE_TABLE[job.name]


def _figure_runs(wildcards) -> list[str]:
    """Run folders a figure reads (none for the codec figures)."""
    job, fig = _figure(wildcards)
    if fig.reads == "dataset":
        return _runs_of(job.dataset)
    return RUN_DIRS if fig.reads == "runs" else []


def figure_input(wildcards) -> list[str]:
    """A figure's input files: its runs' files, or the codec benchmark's CSV and JSON."""
    job, fig = _figure(wildcards)
    if fig.reads == "codec":
        return [CODEC_BENCH["csv"], CODEC_BENCH["json"]]
    return [f"{d}/{f}" for d in _figure_runs(wildcards) for f in RUN_FILES]


def figure_sources(wildcards) -> str:
    """The `--runs DIR ...` or `--codec CSV` arguments of a figure."""
    job, fig = _figure(wildcards)
    if fig.reads == "codec":
        return f"--codec {shlex.quote(CODEC_BENCH['csv'])}"
    return "--runs " + " ".join(map(shlex.quote, _figure_runs(wildcards)))


def _report_subcategory(wildcards) -> str | None:
    """The report's subcategory: the data set, all data sets, or none (codec)."""
    job, fig = _figure(wildcards)
    return {"dataset": job.dataset, "runs": "all data sets"}.get(fig.reads)


def _report_labels(wildcards) -> dict[str, str]:
    """The report's labels of a figure."""
    job, fig = _figure(wildcards)
    data = {"dataset": job.dataset, "runs": "all"}.get(fig.reads)
    return {"figure": job.name} | ({"data set": data} if data else {})


def _pdf_png(stem: str) -> list[str]:
    return [f"{FIGURES}/{stem}.pdf", f"{FIGURES}/{stem}.png"]


def figure_targets() -> list[str]:
    """Every figure the config's runs and codec benchmark give."""
    return [
        path
        for stem, job in FIGURE_JOBS.items()
        if BENCH is not None or FIGURE_TABLE[job.name].reads != "codec"
        for path in _pdf_png(stem)
    ]


def table_targets() -> list[str]:
    """The results table in CSV and Markdown."""
    return [f"{FIGURES}/results_table.csv", f"{FIGURES}/results_table.md"]


rule figure:
    input:
        figure_input,
    output:
        pdf=f"{FIGURES}/{{stem}}.pdf",
        png=report(
            f"{FIGURES}/{{stem}}.png",
            # One caption file per rule: figure.rst renders the figure's own (params.caption).
            caption="report/figure.rst",
            category=lambda w: _figure(w)[1].category,
            subcategory=_report_subcategory,
            labels=_report_labels,
        ),
    log:
        f"{RESULTS}/logs/figures/{{stem}}.log",
    wildcard_constraints:
        # Only the stems this config draws: the rule never claims another file in {figures}/.
        stem="|".join(map(re.escape, FIGURE_JOBS)),
    params:
        sources=figure_sources,
        out=FIGURES,
        only=lambda w: _figure(w)[0].name,
        # A Path, not text: Snakemake records only plain values as params, so editing a
        # caption changes the report but does not rerun the figure.
        caption=lambda w: REPORT_DIR / _figure(w)[1].caption,
    shell:
        "fedbench plots figures {params.sources} --out {params.out} --only {params.only}"
        " > {log} 2>&1"


rule results_table:
    input:
        RUN_INPUTS,
    output:
        csv=report(
            f"{FIGURES}/results_table.csv",
            caption="report/results_table.rst",
            category="Tables",
            labels={"table": "results_table"},
        ),
        md=f"{FIGURES}/results_table.md",
    log:
        f"{RESULTS}/logs/figures/results_table.log",
    params:
        runs=" ".join(RUN_DIRS),
    shell:
        "fedbench plots table --runs {params.runs} --csv {output.csv} --md {output.md} > {log} 2>&1"
