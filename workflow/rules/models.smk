# Model stage outputs that need no training: the complexity report (Table I columns).


rule complexity:
    input:
        ancient(CONFIG_FILE),
    output:
        report("results/complexity.csv", caption="../report/complexity.rst", category="Models"),
    log:
        f"{LOGS}/complexity.log",
    benchmark:
        f"{BENCHMARKS}/complexity.tsv"
    conda:
        "../../envs/tdpcr.yaml"
    params:
        config_digest=config_digest("models"),
    shell:
        "tdpcr complexity --config {input:q} --out {output:q} > {log:q} 2>&1"
