# Realism report: the synthetic default measured against the real Sentinel-1/2 samples in
# ../shared/realdata (when that folder exists; without it the report covers the synthetic
# scenes only), next to the Direct-protocol difficulty ratios of the trained segmenters.
from pathlib import Path

#: Real samples beside the repository (README of ../shared/realdata); absent in a user's clone.
REALDATA_ROOT = Path("../shared/realdata")
#: The Direct-protocol evaluations whose mIoU ratios the report sets beside the paper's.
REALISM_EVALS = {
    f"eval_{key}": f"results/eval/segformer-{key}.json" for key in ("clear", "cloudy", "sar")
}


#: In `all` when a synthetic dataset is configured.
REALISM_OUTPUTS = (
    ["results/synthetic_realism.json", "results/figures/synthetic_realism.png"]
    if SYNTHETIC_ROOT
    else []
)


rule synthetic_realism:
    input:
        **REALISM_EVALS,
        scenes=SYNTHETIC_ROOT,
    output:
        json="results/synthetic_realism.json",
        figure="results/figures/synthetic_realism.png",
    log:
        f"{LOGS}/synthetic_realism.log",
    conda:
        "../../envs/tdpcr.yaml"
    params:
        realdata=argv(["--realdata", REALDATA_ROOT.resolve()]) if REALDATA_ROOT.exists() else [],
    shell:
        "tdpcr realism --synthetic {input.scenes:q} {params.realdata:q}"
        " --eval-clear {input.eval_clear:q} --eval-cloudy {input.eval_cloudy:q}"
        " --eval-sar {input.eval_sar:q}"
        " --out {output.json:q} --figure {output.figure:q} > {log:q} 2>&1"
