# TDP-CR workflow: sources -> Zarr tile store -> training -> evaluation -> tables and figures.
# `snakemake --cores 8 all` runs the embedded default (synthetic data); see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# Seconds of work each: on a cluster they run on the submit host instead of costing an
# sbatch job (7-10 s of overhead each).
localrules:
    all,
    bench,
    tracking_store,
    table1,
    table2,
    table3,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        tile_store(config["dataset"]),
        "results/complexity.csv",
        model_outputs(VARIANT_NAMES),
        evaluation_outputs(),
        PREDICTION_OUTPUTS,
