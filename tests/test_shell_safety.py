"""No config value reaches a shell as syntax: every rule's command keeps it one argument.

Every path-like config key (dataset roots, the split file, product paths, the bbox CRS, the
MLflow model and tracking URIs) is given a value full of shell syntax and spaces. A dry run
prints each job's command: read back with ``shlex`` (as the shell reads it), the value must be
exactly one argument. Real runs of small targets (tiling, predicting a product) must then work
on such paths and run none of the embedded commands.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import test_predict
from tests.conftest import REPO, snakemake_command
from tests.fakes import make_scenes

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")

#: The tiny checkpoints of the prediction tests (module-scoped fixture).
checkpoints = test_predict.checkpoints

#: Shell syntax a hostile or careless value may carry: an or-list, separators, comments,
#: command substitution in both forms, both quotes, a glob, a redirection and spaces. Each
#: embedded command creates a file named PWNED* in the working directory if a shell runs it.
HOSTILE = (
    "a b||touch PWNED0; touch PWNED1 #$(touch PWNED2)`touch PWNED3`'\"* >PWNED4 &&touch PWNED5"
)


def tiny_config() -> dict:
    return yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())


def shell_commands(output: str) -> list[list[str]]:
    """Every job command a ``snakemake -p`` run printed, as the shell splits it into words."""
    prefix = "Shell command: "
    return [shlex.split(line.split(prefix, 1)[1]) for line in output.splitlines() if prefix in line]


def argument_after(words: list[str], flag: str) -> str:
    assert flag in words, (flag, words)
    return words[words.index(flag) + 1]


def pwned(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("PWNED*")]


def dry_run(workdir: Path, config: dict, *targets: str) -> list[list[str]]:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        snakemake_command(workdir, "--cores", "2", "-n", "-p", *targets),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return shell_commands(result.stdout + result.stderr)


def test_every_path_like_config_value_is_one_argument_in_a_dry_run(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    products = tmp_path / f"products {HOSTILE}"
    products.mkdir(parents=True)
    workdir.mkdir()
    optical, sar = products / f"s2 {HOSTILE}.tif", products / f"s1 {HOSTILE}.tif"
    optical.write_bytes(b"")  # a dry run only needs the inputs to exist
    sar.write_bytes(b"")
    split_file = tmp_path / f"split {HOSTILE}.csv"
    config = tiny_config()
    config["datasets"]["synthetic"]["root"] = str(tmp_path / f"synthetic {HOSTILE}")
    config["tiling"]["split_from"] = str(split_file)
    config["tracking"]["uri"] = f"sqlite:///{tmp_path}/mlflow {HOSTILE}.db"
    config["predict"]["inputs"] = {
        "mine": {
            "optical": str(optical),
            "sar": str(sar),
            "bbox": [-13.5, 45.1, -13.4, 45.2],
            "bbox_crs": f"EPSG:4326 {HOSTILE}",
        }
    }
    commands = dry_run(workdir, config, "all")
    by_rule = {words[1]: words for words in commands if words[0] == "tdpcr"}
    assert argument_after(by_rule["synth"], "--out") == config["datasets"]["synthetic"]["root"]
    assert argument_after(by_rule["tile"], "--root") == config["datasets"]["synthetic"]["root"]
    assert argument_after(by_rule["tile"], "--split-from") == str(split_file)
    predicts = [words for words in commands if words[:2] == ["tdpcr", "predict"]]
    mine = next(words for words in predicts if str(optical) in words)
    assert argument_after(mine, "--optical") == str(optical)
    assert argument_after(mine, "--sar") == str(sar)
    assert argument_after(mine, "--bbox-crs") == f"EPSG:4326 {HOSTILE}"
    assert mine[mine.index("--bbox") + 1 : mine.index("--bbox") + 5] == [
        "-13.5",
        "45.1",
        "-13.4",
        "45.2",
    ]
    synthetic_scene = next(words for words in predicts if words is not mine)
    assert argument_after(synthetic_scene, "--optical").startswith(
        config["datasets"]["synthetic"]["root"] + "/"
    )

    config["predict"]["model_uri"] = f"models:/tdpcr-full@x {HOSTILE}"
    commands = dry_run(workdir, config, "results/predictions/scene00/item.json")
    predict = next(words for words in commands if words[:2] == ["tdpcr", "predict"])
    assert argument_after(predict, "--checkpoint") == config["predict"]["model_uri"]
    assert argument_after(predict, "--tracking-uri") == config["tracking"]["uri"]
    assert pwned(tmp_path) == []


def test_tiling_a_source_folder_named_with_shell_syntax_runs_nothing_else(tmp_path: Path) -> None:
    """A real run: `scenes` under a folder whose name is shell syntax with spaces."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    root = make_scenes(tmp_path / f"my scenes {HOSTILE}", n_scenes=4, height=64, width=64)
    config = tiny_config()
    config["datasets"]["mine"] = {"source": "scenes", "root": str(root)}
    config["tiling"]["patch_size"] = 32
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        snakemake_command(workdir, "--cores", "2", "results/tiles/mine.zarr"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (workdir / "results" / "tiles" / "mine.zarr" / "zarr.json").is_file()
    assert '"patches": 16' in (workdir / "results" / "logs" / "tile_mine.log").read_text()
    assert pwned(tmp_path) == []


def test_predicting_products_named_with_shell_syntax_runs_nothing_else(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    """A real run of the `predict.inputs` rule on products whose paths are shell syntax."""
    workdir = tmp_path / "work"
    folder = workdir / "results" / "models" / "tdpcr-full"
    shutil.copytree(checkpoints["full"], folder)
    optical, sar = test_predict.write_scene(tmp_path / f"in {HOSTILE}", 96, 96)
    optical = optical.rename(optical.with_name(f"s2 {HOSTILE}.tif"))
    sar = sar.rename(sar.with_name(f"s1 {HOSTILE}.tif"))
    config = tiny_config()
    config["predict"]["inputs"] = {"mine": {"optical": str(optical), "sar": str(sar)}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # Only the prediction runs: the copied checkpoint stands in for a trained one.
    target = "results/predictions/mine/item.json"
    result = subprocess.run(
        snakemake_command(workdir, "--allowed-rules", "predict_input", "--cores", "2", target),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    item = (workdir / target).read_text()
    assert "cloudfree.tif" in item
    assert pwned(tmp_path) == []


def shell_placeholders(smk: Path) -> list[str]:
    """The ``{...}`` placeholders of every ``shell:`` command in a rule file."""
    found, in_shell = [], False
    for line in smk.read_text().splitlines():
        if line.strip() == "shell:":
            in_shell = True
        elif in_shell and line.strip().startswith('"'):
            found += re.findall(r"\{([^{}]*)\}", line)
        else:
            in_shell = False
    return found


def test_every_rule_quotes_what_it_puts_into_a_shell_command() -> None:
    """A new rule cannot paste a path or option unquoted: only `{threads}` (an int) may be."""
    rule_files = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    placeholders = [(smk.name, p) for smk in rule_files for p in shell_placeholders(smk)]
    assert len(placeholders) > 50  # the scan sees the rules' commands
    unquoted = [(name, p) for name, p in placeholders if p != "threads" and not p.endswith(":q")]
    assert unquoted == []
