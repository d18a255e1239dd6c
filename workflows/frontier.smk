# The rate-accuracy frontier (config `frontier:`): from every run of the grid, one figure per
# data set, {figures}/frontier_<dataset> (accuracy mean +- 1 sd vs total MB, log x, a curve
# per method, the Pareto front, fp32 a point), and the headline table (highest ratio within
# frontier.tolerance of fp32 FedAvg, best and best-nnc rows, ADF vs unscaled at equal bytes);
# only with frontier.enabled.
# config/frontier.yaml is the full sweep (its runs under its own results prefix); the default
# config keeps a slice of it.

FRONTIER = config.get("frontier") or {}
HEADLINE = FRONTIER.get("headline") or f"{FIGURES}/headline"


def frontier_targets() -> list[str]:
    """The frontier figures and headline table (none without a `frontier:` section)."""
    if not FRONTIER.get("enabled", False):
        return []
    figs = [f"{FIGURES}/frontier_{ds}.{ext}" for ds in DATASETS_RUN for ext in ("pdf", "png")]
    return figs + [f"{HEADLINE}.csv", f"{HEADLINE}.md"]


rule frontier:
    input:
        RUN_INPUTS,
    output:
        pdf=expand(f"{FIGURES}/frontier_{{ds}}.pdf", ds=DATASETS_RUN),
        png=[
            report(
                f"{FIGURES}/frontier_{ds}.png",
                caption="report/frontier.rst",
                category="Rate-accuracy frontier",
                labels={"figure": "frontier", "data set": ds},
            )
            for ds in DATASETS_RUN
        ],
        csv=report(
            f"{HEADLINE}.csv",
            caption="report/headline.rst",
            category="Rate-accuracy frontier",
            labels={"figure": "headline", "data set": "all"},
        ),
        md=f"{HEADLINE}.md",
    log:
        f"{RESULTS}/logs/figures/frontier.log",
    params:
        runs=" ".join(RUN_DIRS),
        out=FIGURES,
        tolerance=FRONTIER.get("tolerance", 0.01),
    shell:
        "fedbench plots frontier --runs {params.runs} --out {params.out} --csv {output.csv}"
        " --md {output.md} --tolerance {params.tolerance} > {log} 2>&1"
