# Training stage: the MLflow store, then every variant of the paper's tables.


rule tracking_store:
    # Created once before the training jobs: parallel jobs racing on a new SQLite schema fail.
    input:
        ancient(CONFIG_FILE),
    output:
        "results/tracking.json",
    log:
        f"{LOGS}/tracking_store.log",
    conda:
        "../../envs/tdpcr.yaml"
    params:
        config_digest=config_digest("name", "tracking"),
    shell:
        "tdpcr tracking-init --config {input:q} --out {output:q} > {log:q} 2>&1"


rule train:
    input:
        config=ancient(CONFIG_FILE),
        tracking="results/tracking.json",
        store=tile_store(config["dataset"]),
        init=init_checkpoint,
        teacher=teacher_checkpoint,
    output:
        model="results/models/{variant}/model.safetensors",
        meta="results/models/{variant}/meta.json",
    log:
        f"{LOGS}/train_{{variant}}.log",
    benchmark:
        f"{BENCHMARKS}/train_{{variant}}.tsv"
    wildcard_constraints:
        variant="|".join(VARIANT_NAMES),
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus_per_job"],
        runtime=config["train"]["runtime_minutes"],
        mem_mb=config["train"]["mem_mb"],
    params:
        cpu_threads=job_threads,
        config_digest=config_digest(*MODEL_SECTIONS),
        init=init_option,
        launcher=train_launcher,
    shell:
        "{params.launcher:q} tdpcr train --config {input.config:q} --variant {wildcards.variant:q}"
        " --store {input.store:q} --out results/models/{wildcards.variant:q} {params.init:q}"
        " --threads {params.cpu_threads:q} --quiet > {log:q} 2>&1"
