# Evaluation stage: one JSON of test metrics per method, the paper's Tables I-III, the figures.
# Each table depends only on its methods' JSONs, each JSON only on the checkpoints it runs, so
# `snakemake results/table2.csv` trains and evaluates only what Table II needs.


rule evaluate:
    input:
        config=ancient(CONFIG_FILE),
        store=tile_store(config["dataset"]),
        models=eval_models,
    output:
        "results/eval/{method}.json",
    log:
        f"{LOGS}/evaluate_{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_{{method}}.tsv"
    wildcard_constraints:
        method=METHOD_PATTERN,
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=eval_gpus,
        runtime=config["train"]["runtime_minutes"],
        mem_mb=config["train"]["mem_mb"],
    params:
        cpu_threads=job_threads,
        config_digest=config_digest(*MODEL_SECTIONS),
    shell:
        "tdpcr evaluate --config {input.config:q} --method {wildcards.method:q}"
        " --store {input.store:q} --models results/models --out {output:q}"
        " --threads {params.cpu_threads:q} > {log:q} 2>&1"


rule table:
    input:
        unpack(table_inputs),
    output:
        report("results/{table}.csv", caption="../report/tables.rst", category="Tables"),
    log:
        f"{LOGS}/{{table}}.log",
    wildcard_constraints:
        table="|".join(TABLE_NAMES),
    conda:
        "../../envs/tdpcr.yaml"
    params:
        options=table_options,
    shell:
        "tdpcr table {wildcards.table:q} {params.options:q} --out {output:q} > {log:q} 2>&1"


rule claims:
    input:
        evals=claim_evals(),
    output:
        report("results/claims.csv", caption="../report/claims.rst", category="Tables"),
    log:
        f"{LOGS}/claims.log",
    conda:
        "../../envs/tdpcr.yaml"
    params:
        options=uncertainty_options(),
    shell:
        "tdpcr claims --evals {input.evals:q} --out {output:q} {params.options:q} > {log:q} 2>&1"


rule figures:
    input:
        config=ancient(CONFIG_FILE),
        store=tile_store(config["dataset"]),
        models=model_outputs(figure_variants()),
    output:
        fig3=report(FIGURES["fig3"], caption="../report/fig3.rst", category="Figures"),
        fig4=report(FIGURES["fig4"], caption="../report/fig4.rst", category="Figures"),
        fig5=report(FIGURES["fig5"], caption="../report/fig5.rst", category="Figures"),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCHMARKS}/figures.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["train"]["mem_mb"],
    params:
        cpu_threads=job_threads,
        config_digest=config_digest(*MODEL_SECTIONS),
    shell:
        "tdpcr figures --config {input.config:q} --store {input.store:q} --models results/models"
        " --fig3 {output.fig3:q} --fig4 {output.fig4:q} --fig5 {output.fig5:q}"
        " --threads {params.cpu_threads:q} > {log:q} 2>&1"


rule training_curves:
    input:
        config=ancient(CONFIG_FILE),
        tracking="results/tracking.json",
        models=model_outputs(VARIANT_NAMES),
    output:
        report(FIGURES["curves"], caption="../report/training_curves.rst", category="Figures"),
    log:
        f"{LOGS}/training_curves.log",
    conda:
        "../../envs/tdpcr.yaml"
    params:
        config_digest=config_digest(*MODEL_SECTIONS),
    shell:
        "tdpcr training-curves --config {input.config:q} --models results/models"
        " --out {output:q} > {log:q} 2>&1"


rule pgf_figure:
    input:
        evals=pgf_evals(),
    output:
        report(FIGURES["pgf"], caption="../report/pgf_sar_weight.rst", category="Figures"),
    log:
        f"{LOGS}/pgf_figure.log",
    conda:
        "../../envs/tdpcr.yaml"
    shell:
        "tdpcr pgf-figure --evals {input.evals:q} --out {output:q} > {log:q} 2>&1"


# Records each TDP-CR method's grid ratio and verdict; exits 0 on a failed check, so the
# workflow's other outputs are kept (tests/test_pgf_grid.py is what fails on a gridded model).
rule grid_check:
    input:
        evals=pgf_evals(),
    output:
        GRID_CHECK,
    log:
        f"{LOGS}/grid_check.log",
    conda:
        "../../envs/tdpcr.yaml"
    shell:
        "tdpcr grid-check --evals {input.evals:q} --out {output:q} > {log:q} 2>&1"
