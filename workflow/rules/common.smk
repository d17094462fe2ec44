# Helpers shared by every stage: config validation and path functions.
import sys
from pathlib import Path

from snakemake.utils import validate

from tdpcr.core.config import validate_config
from tdpcr.core.errors import ConfigError
from tdpcr.training.variants import VARIANTS

# The schema ships inside the package and carries every default: tdpcr's validator fills them
# in (the same one `tdpcr` commands use), so rules read config[...] and keep no defaults of
# their own; a bad key stops the workflow with one line naming it.
try:
    validate_config(config, "config")
except ConfigError as err:
    sys.exit(f"tdpcr: error: {err}")
validate(config, schema="../../tdpcr/schemas/config.schema.yaml")

LOGS = "results/logs"
#: The merged config (config files + --config overrides) that rules hand to `tdpcr`.
CONFIG_FILE = "results/config.yaml"
#: Config sections that define trained models and their evaluation.
MODEL_SECTIONS = ("name", "dataset", "datasets", "tiling", "models", "train", "tracking")


def write_resolved_config(path=CONFIG_FILE):
    """Write the merged config for `tdpcr` commands, only when its content changed.

    Done while parsing (every Snakemake process parses the same config, so concurrent
    writers write the same bytes, atomically), not by a rule: rules read it as an `ancient`
    input and rerun through `config_digest` params when the sections they use change.
    """
    import os

    import yaml

    text = "# Resolved workflow config (config files and overrides merged).\n"
    text += yaml.safe_dump(config, sort_keys=False)
    target = Path(path)
    if target.exists() and target.read_text() == text:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


write_resolved_config()


def config_digest(*sections):
    """Hash of some config sections, given to rules as a param.

    Rules read the resolved config file as an `ancient` input and rerun when the sections
    they use change (Snakemake's params trigger), not whenever any key of the file changes
    (adding a `predict` scene must not retrain every model).
    """
    import hashlib
    import json

    chosen = {key: config[key] for key in sections}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]
BENCHMARKS = "results/benchmarks"


def dataset_entry(dataset):
    """The `datasets` entry of a dataset wildcard."""
    return config["datasets"][dataset]


#: Where `tdpcr synth` writes: the root of the first `datasets` entry whose source is
#: synthetic (None without one); the predicted scenes are taken from it.
SYNTHETIC_ROOT = next(
    (d["root"] for d in config["datasets"].values() if d["source"] == "synthetic"), None
)


def tile_store(dataset):
    """Path of the tile store of a configured dataset."""
    return f"results/tiles/{dataset}.zarr"


def source_root(wildcards):
    """Input folder of tiling: the synthetic scenes folder or the configured path."""
    return dataset_entry(wildcards.dataset)["root"]


def tiling_options(wildcards):
    """`tdpcr tile` options from the `tiling` section."""
    tiling = config["tiling"]
    options = [
        f"--patch-size {tiling['patch_size']}",
        f"--shard-patches {tiling['shard_patches']}",
        f"--split-seed {tiling['split_seed']}",
    ]
    if tiling["stride"]:
        options.append(f"--stride {tiling['stride']}")
    if tiling["split_from"]:
        options.append(f"--split-from {tiling['split_from']}")
    if tiling["skip_incomplete"]:
        options.append("--skip-incomplete")
    return " ".join(options)


#: Every trainable variant (the `train` rule's wildcard).
VARIANT_NAMES = list(VARIANTS)


def init_checkpoint(wildcards):
    """Checkpoint a variant starts from (phase 2 from phase 1), as an input list."""
    parent = VARIANTS[wildcards.variant].init_from
    return [f"results/models/{parent}/meta.json"] if parent else []


def train_launcher(wildcards):
    """`torchrun` for several GPUs per training job, nothing for one."""
    gpus = config["train"]["gpus_per_job"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} --no-python"
    return ""


def model_outputs(variants):
    """meta.json of each variant (written last, when training completes)."""
    return [f"results/models/{v}/meta.json" for v in variants]


# --- Evaluation stage (tables, figures) ---
import re

from tdpcr.evaluation.methods import METHODS, figure_variants
from tdpcr.evaluation.tables import TABLES, table_methods

#: Every evaluable method (the `evaluate` rule's wildcard; names contain `+`, hence the escape).
METHOD_NAMES = list(METHODS)
METHOD_PATTERN = "|".join(re.escape(name) for name in METHOD_NAMES)


def eval_models(wildcards):
    """Checkpoints (meta.json) a method runs: none for the cloudy-input reference."""
    return model_outputs(METHODS[wildcards.method].variants)


def eval_gpus(wildcards):
    """One GPU for a method that runs a model, none for the cloudy-input reference."""
    return 1 if METHODS[wildcards.method].variants else 0


#: The paper's tables (the `table` rule's wildcard).
TABLE_NAMES = list(TABLES)


def table_inputs(wildcards):
    """Evaluation JSONs a table is built from (nothing else: no extra training is triggered),
    and the complexity report for a table with complexity columns."""
    inputs = {"evals": [f"results/eval/{m}.json" for m in table_methods(wildcards.table)]}
    if TABLES[wildcards.table].extra:
        inputs["complexity"] = "results/complexity.csv"
    return inputs


def table_options(wildcards, input):
    """`tdpcr table` arguments for the inputs of `table_inputs`."""
    options = "--evals " + " ".join(f"'{path}'" for path in input.evals)
    if "complexity" in input.keys():
        options += f" --complexity {input.complexity}"
    return options


#: The paper's figures (rule `figures`) and the training curves (rule `training_curves`).
FIGURES = {
    "fig3": "results/figures/fig3_cloud_removal.png",
    "fig4": "results/figures/fig4_prompt_pca.png",
    "fig5": "results/figures/fig5_segmentation.png",
    "curves": "results/figures/fig_training_curves.png",
}


def evaluation_outputs():
    """Tables and figures of the evaluation stage (part of `all`)."""
    return [f"results/{table}.csv" for table in TABLE_NAMES] + list(FIGURES.values())


def execution_flags(section):
    """`tdpcr predict` flags of the model-execution keys of a config section (`predict`)."""
    flags = [f"--precision {section['precision']}", f"--backend {section['backend']}"]
    for key in ("channels_last", "pipeline", "malloc_reuse"):
        flag = key.replace("_", "-")
        flags.append(f"--{flag}" if section[key] else f"--no-{flag}")
    return " ".join(flags)
