# Helpers shared by every stage: config validation and path functions.
import sys

from snakemake.utils import validate

from tdpcr.config import validate_config
from tdpcr.errors import ConfigError

# The schema ships inside the package, so `tdpcr check-config` and this workflow agree.
# tdpcr's check runs first for a one-line message naming the offending key; snakemake's
# validate then applies the schema's defaults.
try:
    validate_config(config, "config")
except ConfigError as err:
    sys.exit(f"tdpcr: error: {err}")
validate(config, schema="../../tdpcr/schemas/config.schema.yaml")

LOGS = "results/logs"
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
