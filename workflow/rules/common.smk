# Helpers shared by every stage: config validation and path functions.
import os
import sys
from pathlib import Path

from snakemake.utils import validate

from tdpcr.core.config import coerce_strings, read_config_file, validate_config
from tdpcr.core.hardware import cpu_share_threads
from tdpcr.core.errors import ConfigError
from tdpcr.tracking import resolve_uri
from tdpcr.training.variants import VARIANTS

# The schema ships inside the package and carries every default: tdpcr's validator fills them
# in (the same one `tdpcr` commands use), so rules read config[...] and keep no defaults of
# their own; a bad key stops the workflow with one line naming it. Values given with
# `--config` arrive as strings ('4'); the schema's types say what they are. Snakemake read the
# config files with its own YAML loader: tdpcr's reads them again for what that one lets
# through (aliases that expand a few KB into gigabytes, repeated keys, files of megabytes).
try:
    for config_file in workflow.configfiles:
        read_config_file(config_file)
    validate_config(coerce_strings(config), "config")
except ConfigError as err:
    sys.exit(f"tdpcr: error: {err}")
validate(config, schema="../../tdpcr/schemas/config.schema.yaml")

LOGS = "results/logs"


def job_threads(wildcards, threads):
    """Torch threads of a training or evaluation job: its share of the CPUs behind its slots.

    `--cores 8` on a 2-CPU machine lets two 4-slot jobs run side by side; each then runs one
    thread instead of two fighting over both CPUs (tdpcr.core.hardware.cpu_share_threads). A
    cluster job's allocation is its own (SLURM gives it `threads` CPUs): nothing to share.
    """
    if not workflow.local_exec:
        return threads
    return cpu_share_threads(threads, getattr(workflow, "_cores", None))


def argv(items):
    """Command-line arguments as a list of strings, one item per argument.

    Rules put them into their shell commands as `{params.name:q}`, which quotes every item on its
    own (shlex), and quote every path (`{input:q}`, `{output:q}`, `{log:q}`): a config value
    (a dataset root, a split file, a product path, a URI) is then always one argument, never
    shell syntax, and a path with spaces stays one path. tests/test_shell_safety.py checks it.
    """
    return [str(item) for item in items]


#: The MLflow store jobs use ($MLFLOW_TRACKING_URI, else `tracking.uri`, else the default).
TRACKING_URI = resolve_uri(config["tracking"]["uri"])

# The checkout this workflow runs from: envs/tdpcr.post-deploy.sh installs tdpcr from it into
# the conda env of `--sdm conda` (an env file cannot name it: Snakemake copies the file to
# .snakemake/conda/). The script runs in Snakemake's own process environment. (Set, not read:
# `envvars:` is for variables the user must provide.)
os.environ.update(TDPCR_SOURCE=str(Path(workflow.current_basedir).parents[1]))
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


def guard_options(wildcards, input):
    """The whole-tile benchmark's accuracy guard: the trained TDP-CR Full on the store's
    first test scene, where the dataset is made of scenes (synthetic); none otherwise."""
    entry = dataset_entry(config["dataset"])
    if entry["source"] != "synthetic":
        return []
    return argv(
        [
            "--guard-checkpoint",
            "results/models/tdpcr-full",
            "--guard-store",
            input.store,
            "--guard-scenes",
            entry["root"],
        ]
    )


def source_root(wildcards):
    """Input folder of tiling: the synthetic scenes folder or the configured path."""
    return dataset_entry(wildcards.dataset)["root"]


def tiling_options(wildcards):
    """`tdpcr tile` arguments from the `tiling` section, one list item per argument."""
    tiling = config["tiling"]
    options = [
        *("--patch-size", tiling["patch_size"]),
        *("--shard-patches", tiling["shard_patches"]),
        *("--split-seed", tiling["split_seed"]),
        *("--split-method", tiling["split_method"]),
        "--split-fractions",
        *tiling["split_fractions"],
    ]
    if tiling["stride"]:
        options += ["--stride", tiling["stride"]]
    if tiling["split_from"]:
        options += ["--split-from", tiling["split_from"]]
    if tiling["skip_incomplete"]:
        options.append("--skip-incomplete")
    return argv(options)


#: Every trainable variant (the `train` rule's wildcard).
VARIANT_NAMES = list(VARIANTS)


def init_checkpoint(wildcards):
    """Checkpoint a variant starts from (phase 2 from phase 1), as an input list."""
    parent = VARIANTS[wildcards.variant].init_from
    return [f"results/models/{parent}/meta.json"] if parent else []


def teacher_checkpoint(wildcards):
    """Checkpoint of the frozen teacher a student distils (CloudSeg), as an input list."""
    teacher = VARIANTS[wildcards.variant].teacher
    return [f"results/models/{teacher}/meta.json"] if teacher else []


def train_launcher(wildcards):
    """`torchrun` for several GPUs per training job, nothing for one."""
    gpus = config["train"]["gpus_per_job"]
    if gpus > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "--no-python"]
    return []


def init_option(wildcards, input):
    """`--init FOLDER` / `--teacher FOLDER` of `tdpcr train` for a variant that starts from,
    or learns from, another's checkpoint."""
    options = ["--init", Path(input.init[0]).parent] if input.init else []
    if input.teacher:
        options += ["--teacher", Path(input.teacher[0]).parent]
    return argv(options)


def model_outputs(variants):
    """meta.json of each variant (written last, when training completes)."""
    return [f"results/models/{v}/meta.json" for v in variants]


# --- Evaluation stage (tables, figures) ---
import re

from tdpcr.evaluation.claims import claim_methods
from tdpcr.evaluation.methods import METHODS, PGF_METHODS, figure_variants
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


def uncertainty_options():
    """Bootstrap options of `tdpcr table` and `tdpcr claims` from the `evaluation` section."""
    evaluation = config["evaluation"]
    return argv(
        [
            *("--resamples", evaluation["bootstrap_resamples"]),
            *("--bootstrap-seed", evaluation["bootstrap_seed"]),
            *("--confidence", evaluation["confidence"]),
        ]
    )


def table_options(wildcards, input):
    """`tdpcr table` arguments for the inputs of `table_inputs`."""
    options = ["--evals", *input.evals]
    if "complexity" in input.keys():
        options += ["--complexity", input.complexity]
    return argv([*options, *uncertainty_options()])


def claim_evals():
    """Evaluation JSONs the claims are tested on."""
    return [f"results/eval/{method}.json" for method in claim_methods()]


#: The paper's figures (rule `figures`) and the training curves (rule `training_curves`).
FIGURES = {
    "fig3": "results/figures/fig3_cloud_removal.png",
    "fig4": "results/figures/fig4_prompt_pca.png",
    "fig5": "results/figures/fig5_segmentation.png",
    "curves": "results/figures/fig_training_curves.png",
    "pgf": "results/figures/pgf_sar_weight.png",
}
#: Grid-artefact check of the TDP-CR outputs (rule `grid_check`).
GRID_CHECK = "results/grid_check.json"


def pgf_evals():
    """Evaluation JSONs of the methods whose PGF weights and grid energy are measured."""
    return [f"results/eval/{method}.json" for method in PGF_METHODS]


def evaluation_outputs():
    """Tables and figures of the evaluation stage (part of `all`)."""
    tables = [f"results/{table}.csv" for table in TABLE_NAMES]
    return [*tables, "results/claims.csv", *FIGURES.values(), GRID_CHECK]


# --- Studies beside `all` (studies.smk): the phase-2 sweep, extra training seeds, budgets ---
def sweep_points():
    """Names of the sweep's points, one per (pretrained lr, lambda_seg, seed)."""
    sweep = config["sweep"]
    return [
        f"plr{lr:g}_seg{seg:g}_s{seed}"
        for lr in sweep["pretrained_lr"]
        for seg in sweep["lambda_seg"]
        for seed in sweep["seeds"]
    ]


def sweep_sets(wildcards):
    """`tdpcr train --set` options of a sweep point."""
    lr, seg, seed = re.fullmatch(r"plr(.+)_seg(.+)_s(\d+)", wildcards.point).groups()
    keys = {
        "train.finetune_lr.prompt": lr,
        "train.finetune_lr.fusion": lr,
        "train.lambda_seg": seg,
        "train.seed": seed,
    }
    return argv(token for key, value in keys.items() for token in ("--set", f"{key}={value}"))


SEEDS = config["seeds"]["extra"]


def seed_init(wildcards):
    """The same seed's phase-1 checkpoint a phase-2 variant starts from."""
    parent = VARIANTS[wildcards.variant].init_from
    return [f"results/seeds/seed{wildcards.seed}/models/{parent}/meta.json"] if parent else []


def seed_teacher(wildcards):
    """The same seed's teacher a distillation student learns from."""
    teacher = VARIANTS[wildcards.variant].teacher
    return [f"results/seeds/seed{wildcards.seed}/models/{teacher}/meta.json"] if teacher else []


def seed_eval_models(wildcards):
    return [
        f"results/seeds/seed{wildcards.seed}/models/{v}/meta.json"
        for v in METHODS[wildcards.method].variants
    ]


def seed_table_inputs(wildcards):
    inputs = table_inputs(wildcards)
    inputs["seeds"] = [
        f"results/seeds/seed{seed}/eval/{m}.json"
        for seed in SEEDS
        for m in table_methods(wildcards.table)
    ]
    return inputs


def seed_table_options(wildcards, input):
    groups = [
        ",".join(f"results/seeds/seed{seed}/eval/{m}.json" for m in table_methods(wildcards.table))
        for seed in SEEDS
    ]
    return [*table_options(wildcards, input), "--seed-evals", *groups]


#: Every method of a table or a claim, each once: what the budget study retrains and scores.
STUDY_METHODS = list(
    dict.fromkeys([*(m for t in TABLE_NAMES for m in table_methods(t)), *claim_methods()])
)
#: The training budgets as multiples k of `train.steps`; the first, 1, is the default run.
BUDGETS = config["budget"]["multipliers"]


def budget_folder(k):
    return f"results/budget/x{k}"


def budget_eval(k, method):
    """Evaluation JSON of a method at budget k: the default run's at k = 1, and for a method
    without a model (the cloudy input, the same at every budget)."""
    if int(k) == 1 or not METHODS[method].variants:
        return f"results/eval/{method}.json"
    return f"{budget_folder(k)}/eval/{method}.json"


def budget_sets(wildcards):
    """`tdpcr train --set` options of budget k: N, M and the validation interval times k, so
    the best-checkpoint rule sees as many validations as at k = 1."""
    k = int(wildcards.k)
    train = config["train"]
    keys = {
        "train.steps.phase1": k * train["steps"]["phase1"],
        "train.steps.phase2": k * train["steps"]["phase2"],
        "train.val_every": k * train["val_every"],
    }
    return argv(token for key, value in keys.items() for token in ("--set", f"{key}={value}"))


def budget_runtime(wildcards):
    """Cluster wall time of a training job at budget k: k times the configured one."""
    return int(wildcards.k) * config["train"]["runtime_minutes"]


def budget_init(wildcards):
    """The same budget's phase-1 checkpoint a phase-2 variant starts from."""
    parent = VARIANTS[wildcards.variant].init_from
    return [f"{budget_folder(wildcards.k)}/models/{parent}/meta.json"] if parent else []


def budget_teacher(wildcards):
    """The same budget's teacher a distillation student learns from."""
    teacher = VARIANTS[wildcards.variant].teacher
    return [f"{budget_folder(wildcards.k)}/models/{teacher}/meta.json"] if teacher else []


def budget_eval_models(wildcards):
    return [
        f"{budget_folder(wildcards.k)}/models/{v}/meta.json"
        for v in METHODS[wildcards.method].variants
    ]


def budget_options(methods):
    """`--budget-evals` (one comma-separated group per budget), the budgets and N, M."""
    groups = [",".join(budget_eval(k, m) for m in methods) for k in BUDGETS]
    steps = config["train"]["steps"]
    options = ["--budget-evals", *groups, "--multipliers", *BUDGETS]
    options += ["--phase1", steps["phase1"], "--phase2", steps["phase2"]]
    return argv([*options, *uncertainty_options()])


def budget_table_inputs(wildcards):
    inputs = {"evals": [budget_eval(k, m) for k in BUDGETS for m in table_methods(wildcards.table)]}
    if TABLES[wildcards.table].extra:
        inputs["complexity"] = "results/complexity.csv"
    return inputs


def budget_table_options(wildcards, input):
    options = budget_options(table_methods(wildcards.table))
    if "complexity" in input.keys():
        options += ["--complexity", input.complexity]
    return options


#: Outputs of the `budget` target.
BUDGET_OUTPUTS = {
    "tables": [f"results/budget/{table}.csv" for table in TABLE_NAMES],
    "claims": "results/budget/claims.csv",
    "figure": "results/budget/claims.png",
    "curves": "results/budget/learning_curves.png",
}


def predict_input_options(entry):
    """The `tdpcr predict` options of one `predict.inputs` entry (schema defaults filled)."""
    options = ["--s1-units", entry["s1_units"]]
    if entry["s2_offset"] is not None:
        options += ["--s2-offset", entry["s2_offset"]]
    if entry["bbox"] is not None:
        options += ["--bbox", *entry["bbox"], "--bbox-crs", entry["bbox_crs"]]
    return argv(options)


# --- Prediction stage ---
def predict_checkpoint_inputs(wildcards):
    """The trained variant's checkpoint files; none for an MLflow model (`predict.model_uri`)."""
    if config["predict"]["model_uri"]:
        return {}
    folder = f"results/models/{config['predict']['checkpoint_variant']}"
    return {"meta": f"{folder}/meta.json", "weights": f"{folder}/model.safetensors"}


def predict_checkpoint(wildcards, input):
    """`--checkpoint` of `tdpcr predict`: the MLflow model URI, or the checkpoint folder."""
    if config["predict"]["model_uri"]:
        return argv([config["predict"]["model_uri"], "--tracking-uri", TRACKING_URI])
    return str(Path(input.meta).parent)


def execution_flags(section):
    """`tdpcr predict` flags of the model-execution keys of a config section (`predict`)."""
    flags = ["--precision", section["precision"], "--backend", section["backend"]]
    if section.get("calibration_store"):
        flags += ["--calibration-store", section["calibration_store"]]
    flags += ["--local-stats", str(section["local_stats"])]
    for key in ("channels_last", "pipeline", "malloc_reuse"):
        flag = key.replace("_", "-")
        flags.append(f"--{flag}" if section[key] else f"--no-{flag}")
    return argv(flags)
