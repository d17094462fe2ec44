# Benchmarks: each writes JSON under results/bench/ (not part of `all`; run `snakemake bench`).


rule bench:
    input:
        "results/bench/tiling.json",
        "results/bench/inference.json",
        "results/bench/predict.json",
        "results/bench/training.json",
        "results/bench/predict_tile.json",
        "results/bench/scaling.json",


rule bench_tiling:
    output:
        "results/bench/tiling.json",
    log:
        f"{LOGS}/bench_tiling.log",
    benchmark:
        f"{BENCHMARKS}/bench_tiling.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        size=config["bench"]["tiling_scene_size"],
        seed=config["bench"]["seed"],
    shell:
        "tdpcr bench tiling --out {output:q} --size {params.size:q} --seed {params.seed:q}"
        " --workdir results/bench/tiling-work --workers {threads} > {log:q} 2>&1"


rule bench_inference:
    output:
        "results/bench/inference.json",
    log:
        f"{LOGS}/bench_inference.log",
    benchmark:
        f"{BENCHMARKS}/bench_inference.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "tdpcr bench inference --out {output:q} > {log:q} 2>&1"


rule bench_training:
    input:
        config=ancient(CONFIG_FILE),
        store=tile_store(config["dataset"]),
    output:
        "results/bench/training.json",
    log:
        f"{LOGS}/bench_training.log",
    benchmark:
        f"{BENCHMARKS}/bench_training.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 8
    resources:
        mem_mb=16000,
        runtime=30,
    params:
        config_digest=config_digest("models", "train"),
    shell:
        "tdpcr bench training --config {input.config:q} --store {input.store:q} --out {output:q}"
        " --threads {threads} > {log:q} 2>&1"


rule bench_predict_tile:
    input:
        config=ancient(CONFIG_FILE),
        # The accuracy guard of every side runs on the trained model and a test scene.
        model="results/models/tdpcr-full/meta.json",
        store=tile_store(config["dataset"]),
    output:
        "results/bench/predict_tile.json",
    log:
        f"{LOGS}/bench_predict_tile.log",
    benchmark:
        f"{BENCHMARKS}/bench_predict_tile.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        config_digest=config_digest("predict", "bench"),
        guard=guard_options,
    shell:
        "tdpcr bench predict-tile --config {input.config:q} --out {output:q}"
        " --workdir results/bench/predict-tile-work {params.guard:q} > {log:q} 2>&1"


rule bench_scaling:
    input:
        ancient(CONFIG_FILE),
    output:
        json="results/bench/scaling.json",
        figure="results/bench/scaling.png",
    log:
        f"{LOGS}/bench_scaling.log",
    benchmark:
        f"{BENCHMARKS}/bench_scaling.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        config_digest=config_digest("models", "predict", "bench"),
    shell:
        "tdpcr bench scaling --config {input:q} --out {output.json:q} --figure {output.figure:q}"
        " --workers {threads} --workdir results/bench/scaling-work > {log:q} 2>&1"
