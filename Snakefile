# fedbench: the whole benchmark as one DAG.
#
#   snakemake --cores 2                                  # default config (CPU, about an hour)
#   snakemake --cores 2 --configfile config/smoke.yaml   # CI-sized, a few minutes
#   snakemake --workflow-profile profiles/slurm --configfile config/paper.yaml   # cluster
#   snakemake --report report.html                       # HTML report of the figures
#
# Data (download/copy + checksum + prepare) -> pretraining (transfer cells) -> FL runs -> codec
# benchmarks -> figures/tables.
# A --configfile replaces config/config.yaml (it is not merged into it).

import os

from snakemake.utils import min_version, validate

min_version("8.20")

if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


SCHEMA = os.path.join(workflow.basedir, "config", "schema.yaml")


include: "workflows/schema.smk"


check_config(config, SCHEMA)
validate(config, SCHEMA)  # also fills in the schema's defaults


include: "workflows/common.smk"
include: "workflows/data.smk"
include: "workflows/fl.smk"
include: "workflows/codec.smk"
include: "workflows/figures.smk"
include: "workflows/frontier.smk"


report: "workflows/report/workflow.rst"


localrules:
    all,


# The run outputs are targets in their own right: committed reference figures in figures/
# must never make the DAG skip the FL runs they are drawn from (their mtimes then force the
# figures to be redrawn from this checkout's runs).
rule all:
    default_target: True
    input:
        RUN_INPUTS,
        PRETRAIN_TARGETS,
        figure_targets(),
        table_targets(),
        frontier_targets(),
        codec_targets(),
