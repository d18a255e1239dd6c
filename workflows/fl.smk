# Federated learning: one job per cell (data set, model, setting, method, variant, seed).


wildcard_constraints:
    dataset=r"[^/]+",
    model=r"[^/]+",
    setting=r"[^/]+",
    method=r"[^/]+",
    variant=r"[^/]+",
    seed=r"\d+",


rule fl_run:
    input:
        data=lambda w: f"{DATA_ROOT}/prepared/{cell_of(w)['prepared']}.npz",
        preset=lambda w: cell_of(w)["preset"],
    output:
        metrics=f"{RESULTS}/runs/{{dataset}}/{{model}}/{{setting}}/{{method}}/{{variant}}/seed{{seed}}/metrics.csv",
        summary=f"{RESULTS}/runs/{{dataset}}/{{model}}/{{setting}}/{{method}}/{{variant}}/seed{{seed}}/summary.json",
    params:
        out=lambda w, output: os.path.dirname(output.summary),
        sets=set_args,
        fresh="" if config["fl"].get("resume", False) else "--fresh",
    log:
        f"{RESULTS}/logs/fl/{{dataset}}/{{model}}/{{setting}}/{{method}}/{{variant}}/seed{{seed}}.log",
    threads: lambda w: cell_of(w)["set"]["threads"]
    resources:
        gpu=cell_resource("gpu", 0),
        mem_mb=cell_resource("mem_mb", 4000),
        runtime=cell_resource("runtime", 60),
    shell:
        # --fresh unless fl.resume: a rerun usually means the config changed, and fedbench fl
        # refuses a checkpoint of another config. Thread variables keep torch/numba to the
        # job's cores.
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads}"
        " fedbench fl --config {input.preset} --out {params.out} --no-progress {params.fresh}"
        " {params.sets} > {log} 2>&1"
