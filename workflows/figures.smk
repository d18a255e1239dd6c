# Figures and tables: they read only run outputs (metrics.csv, summary.json) and the codec
# benchmark table, and write PDF + PNG (+ CSV/Markdown tables) into {figures}/.


rule figure_accuracy_vs_round:
    input:
        lambda w: [f"{d}/{f}" for d in _runs_of(w.dataset) for f in RUN_FILES],
    output:
        pdf=f"{FIGURES}/accuracy_vs_round_{{dataset}}.pdf",
        png=report(
            f"{FIGURES}/accuracy_vs_round_{{dataset}}.png",
            caption="report/accuracy_vs_round.rst",
            category="Federated learning",
            subcategory="{dataset}",
            labels={"figure": "accuracy_vs_round", "data set": "{dataset}"},
        ),
    params:
        runs=lambda w: " ".join(_runs_of(w.dataset)),
        out=FIGURES,
    log:
        f"{RESULTS}/logs/figures/accuracy_vs_round_{{dataset}}.log",
    shell:
        "fedbench plots figures --runs {params.runs} --out {params.out} --only accuracy_vs_round"
        " > {log} 2>&1"


rule figure_accuracy_vs_mb:
    input:
        lambda w: [f"{d}/{f}" for d in _runs_of(w.dataset) for f in RUN_FILES],
    output:
        pdf=f"{FIGURES}/accuracy_vs_mb_{{dataset}}.pdf",
        png=report(
            f"{FIGURES}/accuracy_vs_mb_{{dataset}}.png",
            caption="report/accuracy_vs_mb.rst",
            category="Federated learning",
            subcategory="{dataset}",
            labels={"figure": "accuracy_vs_mb", "data set": "{dataset}"},
        ),
    params:
        runs=lambda w: " ".join(_runs_of(w.dataset)),
        out=FIGURES,
    log:
        f"{RESULTS}/logs/figures/accuracy_vs_mb_{{dataset}}.log",
    shell:
        "fedbench plots figures --runs {params.runs} --out {params.out} --only accuracy_vs_mb"
        " > {log} 2>&1"


rule figure_compression_ratio:
    input:
        RUN_INPUTS,
    output:
        pdf=f"{FIGURES}/compression_ratio.pdf",
        png=report(
            f"{FIGURES}/compression_ratio.png",
            caption="report/compression_ratio.rst",
            category="Federated learning",
            subcategory="all data sets",
            labels={"figure": "compression_ratio", "data set": "all"},
        ),
    params:
        runs=" ".join(RUN_DIRS),
        out=FIGURES,
    log:
        f"{RESULTS}/logs/figures/compression_ratio.log",
    shell:
        "fedbench plots figures --runs {params.runs} --out {params.out} --only compression_ratio"
        " > {log} 2>&1"


rule figure_sparsity_sweep:
    input:
        RUN_INPUTS,
    output:
        pdf=f"{FIGURES}/sparsity_sweep.pdf",
        png=report(
            f"{FIGURES}/sparsity_sweep.png",
            caption="report/sparsity_sweep.rst",
            category="Federated learning",
            subcategory="all data sets",
            labels={"figure": "sparsity_sweep", "data set": "all"},
        ),
    params:
        runs=" ".join(RUN_DIRS),
        out=FIGURES,
    log:
        f"{RESULTS}/logs/figures/sparsity_sweep.log",
    shell:
        "fedbench plots figures --runs {params.runs} --out {params.out} --only sparsity_sweep"
        " > {log} 2>&1"


rule figure_codec_throughput:
    input:
        csv=f"{RESULTS}/codec/codec_bench.csv",
        # Read for the workload scale (meta.scale) that the figure's title states.
        json=f"{RESULTS}/codec/codec_bench.json",
    output:
        pdf=f"{FIGURES}/codec_throughput.pdf",
        png=report(
            f"{FIGURES}/codec_throughput.png",
            caption="report/codec_throughput.rst",
            category="Codec",
            labels={"figure": "codec_throughput"},
        ),
    params:
        out=FIGURES,
    log:
        f"{RESULTS}/logs/figures/codec_throughput.log",
    shell:
        "fedbench plots figures --codec {input.csv} --out {params.out} --only codec_throughput"
        " > {log} 2>&1"


rule figure_codec_entropy:
    input:
        csv=f"{RESULTS}/codec/codec_bench.csv",
        # Read for the workload scale (meta.scale) that the figure's title states.
        json=f"{RESULTS}/codec/codec_bench.json",
    output:
        pdf=f"{FIGURES}/codec_entropy.pdf",
        png=report(
            f"{FIGURES}/codec_entropy.png",
            caption="report/codec_entropy.rst",
            category="Codec",
            labels={"figure": "codec_entropy"},
        ),
    params:
        out=FIGURES,
    log:
        f"{RESULTS}/logs/figures/codec_entropy.log",
    shell:
        "fedbench plots figures --codec {input.csv} --out {params.out} --only codec_entropy"
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
    params:
        runs=" ".join(RUN_DIRS),
    log:
        f"{RESULTS}/logs/figures/results_table.log",
    shell:
        "fedbench plots table --runs {params.runs} --csv {output.csv} --md {output.md} > {log} 2>&1"
