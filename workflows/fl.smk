# Federated learning: one job per cell (data set, model, setting, method, variant, seed).


# One folder name per label, the seed a number: fedbench.layout.LABEL_PATTERNS.
wildcard_constraints:
    **layout.LABEL_PATTERNS,


rule fl_run:
    input:
        data=lambda w: f"{DATA_ROOT}/prepared/{cell_of(w)['prepared']}.npz",
        preset=lambda w: cell_of(w)["preset"],
    output:
        metrics=f"{RESULTS}/{layout.RUN_DIR_PATTERN}/{layout.METRICS}",
        summary=f"{RESULTS}/{layout.RUN_DIR_PATTERN}/{layout.SUMMARY}",
    log:
        f"{RESULTS}/logs/fl/{layout.CELL_PATTERN}.log",
    threads: lambda w: cell_of(w)["set"]["threads"]
    resources:
        gpu=cell_resource("gpu", 0),
        mem_mb=cell_resource("mem_mb", 4000),
        runtime=cell_resource("runtime", 60),
    params:
        out=lambda w, output: os.path.dirname(output.summary),
        sets=set_args,
        fresh="" if config["fl"].get("resume", False) else "--fresh",
    shell:
        # --fresh unless fl.resume: a rerun usually means the config changed, and fedbench fl
        # refuses a checkpoint of another config. Thread variables keep torch/numba to the
        # job's cores.
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads}"
        " fedbench fl --config {input.preset} --out {params.out} --no-progress {params.fresh}"
        " {params.sets} > {log} 2>&1"
