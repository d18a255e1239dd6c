# Data: download (or copy from the configured mirror) and verify checksums, then prepare one
# .npz per (data set, image size) under {data_root}/prepared/, the file `fedbench fl` reads.


# Downloads run where snakemake runs (a cluster's login node usually has the internet access
# that compute nodes lack); everything else may be submitted.
localrules:
    data_download,


rule data_download:
    output:
        # The source's path as printed by `fedbench data download`: a record that it is there
        # and verified (md5/sha256), independent of which accepted source file it was.
        f"{DATA_ROOT}/sources/{{name}}.txt",
    log:
        f"{RESULTS}/logs/data/download_{{name}}.log",
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        root=DATA_ROOT,
        mirror=_mirror_arg(),
    shell:
        "fedbench data download {wildcards.name} --root {params.root} {params.mirror}"
        " > {output} 2> {log}"


rule data_prepare:
    input:
        lambda w: f"{DATA_ROOT}/sources/{_data_name(w)}.txt",
    output:
        f"{DATA_ROOT}/prepared/{{prepared}}.npz",
    log:
        f"{RESULTS}/logs/data/prepare_{{prepared}}.log",
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        name=_data_name,
        root=DATA_ROOT,
        mirror=_mirror_arg(),
        size=lambda w: f"--image-size {PREPARED[w.prepared][1]}" if PREPARED[w.prepared][1] else "",
    shell:
        "fedbench data prepare {params.name} --root {params.root} --out {output}"
        " {params.mirror} {params.size} > {log} 2>&1"
