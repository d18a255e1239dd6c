# Codec: throughput/size benchmark against the peers, pytest-benchmark, conformance vectors.


rule codec_bench:
    output:
        csv=f"{RESULTS}/codec/codec_bench.csv",
        json=f"{RESULTS}/codec/codec_bench.json",
    log:
        f"{RESULTS}/logs/codec/codec_bench.log",
    threads: CODEC.get("threads", 1)
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        stem=f"{RESULTS}/codec/codec_bench",
        args=bench_args(),
    shell:
        "fedbench codec bench --out {params.stem} {params.args} --quiet > {log} 2>&1"


rule codec_pytest_benchmark:
    output:
        f"{RESULTS}/codec/pytest_benchmark.json",
    log:
        f"{RESULTS}/logs/codec/pytest_benchmark.log",
    threads: CODEC.get("threads", 1)
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        tests=str(REPO / "tests" / "benchmarks"),
        scale=(PYTEST_BENCH or {}).get("scale", 1.0),
        rounds=(PYTEST_BENCH or {}).get("rounds", 3),
    shell:
        # -p no:cacheprovider: write nothing into the source tree; addopts cleared because the
        # project's default (--benchmark-skip) would contradict --benchmark-only.
        "FEDBENCH_BENCH_SCALE={params.scale} FEDBENCH_BENCH_ROUNDS={params.rounds}"
        " python -m pytest {params.tests} -o addopts= -p no:cacheprovider -q --benchmark-only"
        " --benchmark-json={output} > {log} 2>&1"


rule codec_conformance:
    input:
        vectors=f"{CONFORMANCE}/vectors.npz",
        manifest=f"{CONFORMANCE}/manifest.json",
    output:
        f"{RESULTS}/codec/conformance.txt",
    log:
        f"{RESULTS}/logs/codec/conformance.log",
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        folder=CONFORMANCE,
    shell:
        # The report is the output; the log keeps stderr. A failing vector fails the job.
        "fedbench codec conformance {params.folder} > {output} 2> {log}"
