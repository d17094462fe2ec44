# Studies beside `all`: the phase-2 sweep, extra training seeds and training budgets. Each is
# its own target (they retrain models: minutes to hours on a CPU), e.g.
#   snakemake --cores 8 results/sweeps/phase2.csv
#   snakemake --cores 8 results/seeds/table3.csv
#   snakemake --cores 8 budget


rule sweep_phase2_train:
    input:
        config=ancient(CONFIG_FILE),
        tracking="results/tracking.json",
        store=tile_store(config["dataset"]),
        init="results/models/tdpcr-cr/meta.json",
    output:
        "results/sweeps/phase2/{point}/tdpcr-full/meta.json",
    log:
        f"{LOGS}/sweep_phase2_{{point}}.log",
    benchmark:
        f"{BENCHMARKS}/sweep_phase2_{{point}}.tsv"
    wildcard_constraints:
        point="plr[^/]+",
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus_per_job"],
        runtime=config["train"]["runtime_minutes"],
        mem_mb=config["train"]["mem_mb"],
    params:
        cpu_threads=job_threads,
        sets=sweep_sets,
        config_digest=config_digest(*MODEL_SECTIONS),
    shell:
        "tdpcr train --config {input.config:q} --variant tdpcr-full --store {input.store:q}"
        " --out results/sweeps/phase2/{wildcards.point:q}/tdpcr-full --init results/models/tdpcr-cr"
        " {params.sets:q} --threads {params.cpu_threads:q} --quiet > {log:q} 2>&1"


rule sweep_phase2_evaluate:
    input:
        config=ancient(CONFIG_FILE),
        store=tile_store(config["dataset"]),
        model="results/sweeps/phase2/{point}/tdpcr-full/meta.json",
    output:
        "results/sweeps/phase2/{point}/val.json",
    log:
        f"{LOGS}/sweep_phase2_{{point}}_evaluate.log",
    wildcard_constraints:
        point="plr[^/]+",
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    params:
        cpu_threads=job_threads,
    shell:
        "tdpcr evaluate --config {input.config:q} --method tdpcr-full --store {input.store:q}"
        " --models results/sweeps/phase2/{wildcards.point:q} --split val --out {output:q}"
        " --threads {params.cpu_threads:q} --no-tracking > {log:q} 2>&1"


rule sweep_phase2:
    input:
        expand("results/sweeps/phase2/{point}/val.json", point=sweep_points()),
    output:
        csv="results/sweeps/phase2.csv",
        figure="results/sweeps/phase2.png",
    log:
        f"{LOGS}/sweep_phase2.log",
    conda:
        "../../envs/tdpcr.yaml"
    shell:
        "tdpcr sweep-table --evals {input:q} --out {output.csv:q} --figure {output.figure:q}"
        " > {log:q} 2>&1"


rule seed_train:
    input:
        config=ancient(CONFIG_FILE),
        tracking="results/tracking.json",
        store=tile_store(config["dataset"]),
        init=seed_init,
        teacher=seed_teacher,
    output:
        "results/seeds/seed{seed}/models/{variant}/meta.json",
    log:
        f"{LOGS}/seed{{seed}}_train_{{variant}}.log",
    benchmark:
        f"{BENCHMARKS}/seed{{seed}}_train_{{variant}}.tsv"
    wildcard_constraints:
        seed=r"\d+",
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
        init=init_option,
        config_digest=config_digest(*MODEL_SECTIONS),
    shell:
        "tdpcr train --config {input.config:q} --variant {wildcards.variant:q} --store {input.store:q}"
        " --out results/seeds/seed{wildcards.seed:q}/models/{wildcards.variant:q} {params.init:q}"
        " --set train.seed={wildcards.seed:q} --threads {params.cpu_threads:q} --quiet > {log:q} 2>&1"


rule seed_evaluate:
    input:
        config=ancient(CONFIG_FILE),
        store=tile_store(config["dataset"]),
        models=seed_eval_models,
    output:
        "results/seeds/seed{seed}/eval/{method}.json",
    log:
        f"{LOGS}/seed{{seed}}_evaluate_{{method}}.log",
    wildcard_constraints:
        seed=r"\d+",
        method=METHOD_PATTERN,
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    params:
        cpu_threads=job_threads,
    shell:
        "tdpcr evaluate --config {input.config:q} --method {wildcards.method:q}"
        " --store {input.store:q} --models results/seeds/seed{wildcards.seed:q}/models"
        " --out {output:q} --threads {params.cpu_threads:q} --no-tracking > {log:q} 2>&1"


rule seed_table:
    input:
        unpack(seed_table_inputs),
    output:
        "results/seeds/{table}.csv",
    log:
        f"{LOGS}/seeds_{{table}}.log",
    wildcard_constraints:
        table="|".join(TABLE_NAMES),
    conda:
        "../../envs/tdpcr.yaml"
    params:
        options=seed_table_options,
    shell:
        "tdpcr table {wildcards.table:q} {params.options:q} --out {output:q} > {log:q} 2>&1"


rule seed_claims:
    input:
        [f"results/seeds/seed{{seed}}/eval/{m}.json" for m in claim_methods()],
    output:
        "results/seeds/claims_seed{seed}.csv",
    log:
        f"{LOGS}/seeds_claims_{{seed}}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../envs/tdpcr.yaml"
    params:
        options=uncertainty_options(),
    shell:
        "tdpcr claims --evals {input:q} --out {output:q} {params.options:q} > {log:q} 2>&1"


rule seeds:
    input:
        [f"results/seeds/{table}.csv" for table in TABLE_NAMES],
        [f"results/seeds/claims_seed{seed}.csv" for seed in SEEDS],


# The training-budget study: every variant of a table or claim retrained at k times
# `train.steps` (N and M together, validation every k x `train.val_every` steps) for each k of
# `budget.multipliers`. Each budget is a separate run from scratch, not a snapshot of the
# longest: the learning-rate schedule (5 % linear warm-up, then cosine decay to 0 over the
# run's total steps, trainer.make_optimizer) depends on the total, so step kN of a 9N run is
# not the end of a kN run. k = 1 is the default run (results/models, results/eval): nothing is
# trained twice, and the cloudy input, which has no model, is scored once.
rule budget_train:
    input:
        config=ancient(CONFIG_FILE),
        tracking="results/tracking.json",
        store=tile_store(config["dataset"]),
        init=budget_init,
        teacher=budget_teacher,
    output:
        "results/budget/x{k}/models/{variant}/meta.json",
    log:
        f"{LOGS}/budget_x{{k}}_train_{{variant}}.log",
    benchmark:
        f"{BENCHMARKS}/budget_x{{k}}_train_{{variant}}.tsv"
    wildcard_constraints:
        k=r"\d+",
        variant="|".join(VARIANT_NAMES),
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus_per_job"],
        runtime=budget_runtime,
        mem_mb=config["train"]["mem_mb"],
    params:
        cpu_threads=job_threads,
        init=init_option,
        sets=budget_sets,
        config_digest=config_digest(*MODEL_SECTIONS),
    shell:
        "tdpcr train --config {input.config:q} --variant {wildcards.variant:q} --store {input.store:q}"
        " --out results/budget/x{wildcards.k:q}/models/{wildcards.variant:q} {params.init:q}"
        " {params.sets:q} --threads {params.cpu_threads:q} --quiet > {log:q} 2>&1"


rule budget_evaluate:
    input:
        config=ancient(CONFIG_FILE),
        store=tile_store(config["dataset"]),
        models=budget_eval_models,
    output:
        "results/budget/x{k}/eval/{method}.json",
    log:
        f"{LOGS}/budget_x{{k}}_evaluate_{{method}}.log",
    wildcard_constraints:
        k=r"\d+",
        method=METHOD_PATTERN,
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    params:
        cpu_threads=job_threads,
    shell:
        "tdpcr evaluate --config {input.config:q} --method {wildcards.method:q}"
        " --store {input.store:q} --models results/budget/x{wildcards.k:q}/models"
        " --out {output:q} --threads {params.cpu_threads:q} --no-tracking > {log:q} 2>&1"


rule budget_table:
    input:
        unpack(budget_table_inputs),
    output:
        "results/budget/{table}.csv",
    log:
        f"{LOGS}/budget_{{table}}.log",
    wildcard_constraints:
        table="|".join(TABLE_NAMES),
    conda:
        "../../envs/tdpcr.yaml"
    params:
        options=budget_table_options,
    shell:
        "tdpcr budget-table {wildcards.table:q} {params.options:q} --out {output:q} > {log:q} 2>&1"


rule budget_claims:
    input:
        [budget_eval(k, m) for k in BUDGETS for m in STUDY_METHODS],
    output:
        csv=BUDGET_OUTPUTS["claims"],
        figure=BUDGET_OUTPUTS["figure"],
        curves=BUDGET_OUTPUTS["curves"],
    log:
        f"{LOGS}/budget_claims.log",
    conda:
        "../../envs/tdpcr.yaml"
    params:
        options=budget_options(STUDY_METHODS),
    shell:
        "tdpcr budget-claims {params.options:q} --out {output.csv:q} --figure {output.figure:q}"
        " --curves {output.curves:q} > {log:q} 2>&1"


rule budget:
    input:
        BUDGET_OUTPUTS["tables"],
        BUDGET_OUTPUTS["claims"],
