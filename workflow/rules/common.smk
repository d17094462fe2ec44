# Helpers shared by every stage: config validation and path functions.
import sys
from pathlib import Path

from snakemake.utils import validate

from tdpcr.config import validate_config
from tdpcr.errors import ConfigError
from tdpcr.training.variants import VARIANTS

# The schema ships inside the package, so `tdpcr check-config` and this workflow agree.
# tdpcr's check runs first for a one-line message naming the offending key; snakemake's
# validate then applies the schema's defaults.
try:
    validate_config(config, "config")
except ConfigError as err:
    sys.exit(f"tdpcr: error: {err}")
validate(config, schema="../../tdpcr/schemas/config.schema.yaml")

LOGS = "results/logs"
#: The merged config (config files + --config overrides) that rules hand to `tdpcr`.
CONFIG_FILE = "results/config.yaml"
BENCHMARKS = "results/benchmarks"


def dataset_entry(dataset):
    """The `datasets` entry of a dataset wildcard."""
    return config["datasets"][dataset]


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
    if tiling.get("stride"):
        options.append(f"--stride {tiling['stride']}")
    if tiling.get("split_from"):
        options.append(f"--split-from {tiling['split_from']}")
    if tiling.get("skip_incomplete"):
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
    gpus = config["train"].get("gpus_per_job", 1)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} --no-python"
    return ""


def model_outputs(variants):
    """meta.json of each variant (written last, when training completes)."""
    return [f"results/models/{v}/meta.json" for v in variants]
