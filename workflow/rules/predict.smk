# Prediction stage: whole scenes through a trained checkpoint -> Cloud-Optimized GeoTIFFs,
# and the prediction benchmark (results/bench/predict.json, part of `snakemake bench`).

#: The `predict` config section (the schema fills in its defaults).
PREDICT = config["predict"]

_predict_variant = VARIANTS.get(PREDICT["checkpoint_variant"])
if _predict_variant is None or not _predict_variant.reconstruction:
    sys.exit(
        f"tdpcr: error: config key 'predict.checkpoint_variant' is "
        f"{PREDICT['checkpoint_variant']!r}; expected a cloud-removal variant: "
        + ", ".join(v.name for v in VARIANTS.values() if v.reconstruction)
    )


#: Land cover is written only by variants with a segmentation head.
PREDICT_FILES = (
    ["cloudfree.tif"]
    + (["landcover.tif"] if _predict_variant.segmentation else [])
    + ["quality.tif", "item.json"]
)
#: The user's own products (`predict.inputs`: name -> optical, sar and input options).
PREDICT_INPUTS = PREDICT["inputs"]

if set(PREDICT_INPUTS) & set(PREDICT["scenes"]):
    sys.exit(
        "tdpcr: error: config key 'predict.inputs' names "
        f"{sorted(set(PREDICT_INPUTS) & set(PREDICT['scenes']))[0]!r}, also in 'predict.scenes'; "
        "expected distinct names (both write results/predictions/<name>/)"
    )


if PREDICT["scenes"] and not SYNTHETIC_ROOT:
    sys.exit(
        "tdpcr: error: config key 'predict.scenes' lists scenes, but no `datasets` entry has "
        "source synthetic to take them from"
    )
#: Outputs of the configured scenes and products (part of `all`).
PREDICTION_OUTPUTS = [
    f"results/predictions/{scene}/{name}"
    for scene in [*PREDICT["scenes"], *PREDICT_INPUTS]
    for name in PREDICT_FILES
]


if PREDICT_INPUTS:

    ruleorder: predict_input > predict

    rule predict_input:
        input:
            optical=lambda wildcards: PREDICT_INPUTS[wildcards.name]["optical"],
            sar=lambda wildcards: PREDICT_INPUTS[wildcards.name]["sar"],
            meta=f"results/models/{PREDICT['checkpoint_variant']}/meta.json",
            weights=f"results/models/{PREDICT['checkpoint_variant']}/model.safetensors",
        output:
            [f"results/predictions/{{name}}/{name}" for name in PREDICT_FILES],
        log:
            f"{LOGS}/predict_{{name}}.log",
        benchmark:
            f"{BENCHMARKS}/predict_{{name}}.tsv"
        wildcard_constraints:
            name="|".join(re.escape(name) for name in PREDICT_INPUTS),
        conda:
            "../../envs/tdpcr.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            checkpoint=lambda wildcards, input: Path(input.meta).parent,
            out=lambda wildcards: f"results/predictions/{wildcards.name}",
            options=lambda wildcards: predict_input_options(PREDICT_INPUTS[wildcards.name]),
            window=PREDICT["window"],
            overlap=PREDICT["overlap"],
            batch_size=PREDICT["batch_size"],
            execution=execution_flags(PREDICT),
        shell:
            "tdpcr predict --optical {input.optical:q} --sar {input.sar:q}"
            " --checkpoint {params.checkpoint:q} --out {params.out:q} {params.options:q}"
            " --window {params.window:q} --overlap {params.overlap:q}"
            " --batch-size {params.batch_size:q} --threads {threads} {params.execution:q}"
            " --quiet > {log:q} 2>&1"


if SYNTHETIC_ROOT:

    rule predict:
        input:
            unpack(predict_checkpoint_inputs),
            scenes=SYNTHETIC_ROOT,
        output:
            [f"results/predictions/{{scene}}/{name}" for name in PREDICT_FILES],
        log:
            f"{LOGS}/predict_{{scene}}.log",
        benchmark:
            f"{BENCHMARKS}/predict_{{scene}}.tsv"
        wildcard_constraints:
            scene="[A-Za-z0-9_.-]+",
        conda:
            "../../envs/tdpcr.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            optical=lambda wildcards, input: f"{input.scenes}/{wildcards.scene}/s2_cloudy.tif",
            sar=lambda wildcards, input: f"{input.scenes}/{wildcards.scene}/s1.tif",
            checkpoint=predict_checkpoint,
            out=lambda wildcards: f"results/predictions/{wildcards.scene}",
            window=PREDICT["window"],
            overlap=PREDICT["overlap"],
            batch_size=PREDICT["batch_size"],
            execution=execution_flags(PREDICT),
        shell:
            "tdpcr predict --optical {params.optical:q} --sar {params.sar:q}"
            " --checkpoint {params.checkpoint:q} --out {params.out:q} --window {params.window:q}"
            " --overlap {params.overlap:q} --batch-size {params.batch_size:q} --threads {threads}"
            " {params.execution:q} --quiet > {log:q} 2>&1"


rule bench_predict:
    input:
        CONFIG_FILE,
    output:
        "results/bench/predict.json",
    log:
        f"{LOGS}/bench_predict.log",
    benchmark:
        f"{BENCHMARKS}/bench_predict.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=90,
    params:
        size=PREDICT["bench_scene_size"],
        seed=config["bench"]["seed"],
        window=PREDICT["window"],
        overlap=PREDICT["overlap"],
        batch_size=PREDICT["batch_size"],
    shell:
        "tdpcr bench predict --out {output:q} --size {params.size:q} --seed {params.seed:q}"
        " --config {input:q} --workdir results/bench/predict-work --window {params.window:q}"
        " --overlap {params.overlap:q} --batch-size {params.batch_size:q} --threads {threads}"
        " > {log:q} 2>&1"
