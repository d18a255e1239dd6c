# Federated learning: one job per cell (data set, model, setting, method, variant, seed), and
# the central pretraining on a source data set that transfer cells start from.


# One folder name per label, the seed a number: fedbench.layout.LABEL_PATTERNS.
wildcard_constraints:
    **layout.LABEL_PATTERNS,


rule fl_run:
    input:
        data=lambda w: f"{DATA_ROOT}/prepared/{cell_of(w)['prepared']}.npz",
        preset=lambda w: cell_of(w)["preset"],
        # the pretrain checkpoint a transfer cell starts from (model.pretrained); none else
        pretrained=lambda w: cell_of(w)["pretrained"],
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


# Cached like any output: a checkpoint is retrained only when its job's inputs or command
# change (Snakemake's rerun triggers), and every transfer cell of it waits for it.
rule pretrain:
    input:
        data=lambda w: f"{DATA_ROOT}/prepared/{pretrain_of(w)['prepared']}.npz",
        preset=lambda w: pretrain_of(w)["preset"],
    output:
        model=f"{RESULTS}/pretrain/{{pretrain}}/model.pt",
        report=f"{RESULTS}/pretrain/{{pretrain}}/pretrain.json",
    log:
        f"{RESULTS}/logs/pretrain/{{pretrain}}.log",
    wildcard_constraints:
        pretrain=r"[^/]+",
    threads: lambda w: pretrain_of(w)["set"]["threads"]
    resources:
        gpu=lambda w: pretrain_of(w)["resources"].get("gpu", 0),
        mem_mb=lambda w: pretrain_of(w)["resources"].get("mem_mb", 4000),
        runtime=lambda w: pretrain_of(w)["resources"].get("runtime", 60),
    params:
        out=lambda w, output: os.path.dirname(output.model),
        sets=pretrain_set_args,
        epochs=lambda w: pretrain_of(w)["epochs"],
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads}"
        " fedbench pretrain --config {input.preset} --out {params.out} --epochs {params.epochs}"
        " {params.sets} > {log} 2>&1"
