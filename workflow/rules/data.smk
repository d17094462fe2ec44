# Data stage: synthetic scenes (embedded default) and tiling of any source into a Zarr store.


# Only with a synthetic dataset configured (config/paper.yaml has none).
if SYNTHETIC_ROOT:

    rule synthetic_scenes:
        output:
            directory(SYNTHETIC_ROOT),
        log:
            f"{LOGS}/synthetic_scenes.log",
        benchmark:
            f"{BENCHMARKS}/synthetic_scenes.tsv"
        conda:
            "../../envs/tdpcr.yaml"
        params:
            scenes=config["synthetic"]["scenes"],
            size=config["synthetic"]["size"],
            seed=config["synthetic"]["seed"],
        shell:
            "tdpcr synth --out {output:q} --scenes {params.scenes:q} --size {params.size:q}"
            " --seed {params.seed:q} > {log:q} 2>&1"


rule tile:
    input:
        root=source_root,
    output:
        directory("results/tiles/{dataset}.zarr"),
    log:
        f"{LOGS}/tile_{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/tile_{{dataset}}.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        source=lambda wildcards: dataset_entry(wildcards.dataset)["source"],
        options=tiling_options,
    shell:
        "tdpcr tile --source {params.source:q} --root {input.root:q} --out {output:q}"
        " {params.options:q} --workers {threads} > {log:q} 2>&1"
