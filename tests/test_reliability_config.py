"""Hostile configs: YAML that expands or repeats keys, numbers that are not finite, model sizes
beyond memory. Each is refused in one line naming the file or key, quickly, leaving nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tdpcr.cli import main
from tdpcr.core.config import apply_overrides, load_config, load_yaml, shipped_config
from tdpcr.core.errors import ConfigError
from tdpcr.core.safe_yaml import MAX_FILE_BYTES
from tests import test_predict, test_training
from tests.conftest import snakemake_command
from tests.test_reliability import one_line_refusal

REPO = test_training.REPO
TINY = REPO / "config" / "tiny.yaml"
#: The tiny checkpoints of the prediction tests (module-scoped fixture).
checkpoints = test_predict.checkpoints
#: A wall-time bound for commands that used to hang on these inputs (they now end in seconds).
BOUND_S = 60


def alias_bomb(levels: int = 9) -> str:
    """Nested aliases ("billion laughs"): under 2 KB of YAML standing for 9**levels strings."""
    lines = ["bomb:", '  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def bounded_cli(*args: object) -> tuple[int, str]:
    """``tdpcr ARGS`` in a fresh interpreter, killed (TimeoutExpired) after :data:`BOUND_S`."""
    done = subprocess.run(
        [sys.executable, "-m", "tdpcr.cli", *map(str, args)],
        capture_output=True, text=True, timeout=BOUND_S,
    )  # fmt: skip
    return done.returncode, done.stderr


def tiny_text(**replace: str) -> str:
    text = TINY.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def check_config(capsys, path: Path) -> tuple[int, str]:
    code = main(["check-config", str(path)])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# YAML that a config never needs


def test_an_alias_bomb_is_refused_in_seconds_by_check_config(tmp_path: Path) -> None:
    # The aliases sit under train.lr too: the validator's message used to print them expanded.
    bomb = write(tmp_path / "bomb.yaml", alias_bomb() + tiny_text(**{"  lr: 0.001": "  lr: *l8"}))
    assert bomb.stat().st_size < 3000
    code, err = bounded_cli("check-config", bomb)
    line = one_line_refusal(code, err, str(bomb), "aliases expand")
    assert len(line) < 300


def test_an_alias_bomb_is_refused_by_train_before_any_output(tmp_path: Path) -> None:
    bomb = write(tmp_path / "bomb.yaml", alias_bomb() + TINY.read_text())
    out = tmp_path / "models" / "tdpcr-cr"
    code, err = bounded_cli(
        "train", "--config", bomb, "--variant", "tdpcr-cr", "--store", tmp_path / "none.zarr",
        "--out", out, "--no-tracking",
    )  # fmt: skip
    one_line_refusal(code, err, str(bomb), "aliases expand")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
def test_the_workflow_refuses_an_alias_bomb_in_its_config_file(tmp_path: Path) -> None:
    # A list bomb: Snakemake's own loading and merging pass it; tdpcr's validation used to hang.
    config = write(tmp_path / "config.yaml", alias_bomb() + TINY.read_text())
    done = subprocess.run(
        snakemake_command(tmp_path, "-n"), capture_output=True, text=True, timeout=BOUND_S
    )
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode != 0 and len(errors) == 1, done.stderr[-2000:]
    assert str(config) in errors[0] and "aliases expand" in errors[0]
    assert not (tmp_path / "results").exists()  # the resolved config is not written


def mapping_bomb(levels: int = 9) -> str:
    """Nested mappings of aliases: Snakemake's own config merge walks every expanded value."""
    lines = ["l0: &l0 {v: 1}"]
    for i in range(1, levels):
        refs = ", ".join(f"k{j}: *l{i - 1}" for j in range(9))
        lines.append(f"l{i}: &l{i} {{{refs}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
def test_the_workflow_refuses_a_mapping_bomb_as_its_default_config(tmp_path: Path) -> None:
    """config/config.yaml is read by the Snakefile's `configfile:`: checked before it merges."""
    (tmp_path / "config").mkdir()
    write(tmp_path / "config" / "config.yaml", mapping_bomb() + TINY.read_text())
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n"]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=BOUND_S
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode != 0 and len(errors) == 1, done.stderr[-2000:]
    assert "config/config.yaml" in errors[0] and "aliases expand" in errors[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x: &a [1, *a]\n", "alias *a lies inside its own anchor"),
        ("x: " + "[" * 3000 + "\n", "nested deeper than"),
        (
            "".join(f"a{i}: &a{i} 1\n" for i in range(101))
            + "".join(f"b{i}: *a{i}\n" for i in range(101)),
            "more than 100 aliases",
        ),
        ("x: " + "9" * 5000 + "\n", "a value PyYAML cannot read"),
        ("x: 2024-13-01\n", "a value PyYAML cannot read"),
    ],
    ids=["recursive-alias", "deep-nesting", "many-aliases", "long-integer", "bad-date"],
)
def test_yaml_beyond_the_loaders_bounds_is_one_line(
    tmp_path: Path, capsys, text: str, expected: str
) -> None:
    # Each used to be a traceback (RecursionError, ValueError) or endless validation.
    bad = write(tmp_path / "bad.yaml", text + TINY.read_text())
    code, err = check_config(capsys, bad)
    one_line_refusal(code, err, str(bad), expected)


def test_a_config_file_over_the_size_bound_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as stream:  # 50 MB of valid YAML (a long list): parsing took minutes
        stream.write(TINY.read_text() + "bench:\n  scaling_sides:\n")
        stream.write("  - 1024\n" * (50_000_000 // 9))
    code, err = bounded_cli("check-config", big)
    one_line_refusal(code, err, str(big), f"larger than the {MAX_FILE_BYTES} bytes")


@pytest.mark.parametrize(
    ("replace", "key", "lines"),
    [
        (
            {"  lr: 0.001": "  lr: 0.001\n  batch_size: 3"},
            "train.batch_size",
            "lines 36 and 39",
        ),
        ({"scenes: 5,": "scenes: 5, scenes: 6,"}, "synthetic.scenes", "line 7"),
        (
            {"  dsen2cr: {features: 8, num_blocks: 1}": "  dsen2cr: {features: 8}\n  dsen2cr: {}"},
            "models.dsen2cr",
            "lines 19 and 20",
        ),
    ],
    ids=["block", "flow", "section"],
)
def test_a_repeated_key_is_refused_naming_it_and_its_lines(
    tmp_path: Path, capsys, replace: dict, key: str, lines: str
) -> None:
    # PyYAML keeps the last of two equal keys without a word.
    bad = write(tmp_path / "dup.yaml", tiny_text(**replace))
    code, err = check_config(capsys, bad)
    one_line_refusal(code, err, str(bad), f"key '{key}' is given twice ({lines})")


def test_merge_keys_and_a_few_aliases_are_read_but_repeated_keys_are_not() -> None:
    for path in sorted((REPO / "config").glob("*.yaml")):
        load_config(path)
    with pytest.raises(yaml.YAMLError, match="key 'a.b' is given twice"):
        load_yaml("a:\n  b: 1\n  b: 2\n")
    merged = load_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n")
    assert merged["other"] == {"x": 1, "y": 3} and merged["list"] == [{"x": 1, "y": 2}] * 2
    assert load_yaml("a: 1e-3\nb: 1_000\nc: .5\nd: -.inf") == {
        "a": 1e-3, "b": 1000, "c": 0.5, "d": float("-inf")
    }  # fmt: skip


def test_a_validation_message_quotes_a_long_value_in_short() -> None:
    config = shipped_config("tiny")
    config["train"]["lr"] = ["x" * 50] * 200  # 10 KB of repr in jsonschema's message
    with pytest.raises(ConfigError, match="train.lr") as info:
        apply_overrides(config, [], "cfg")
    assert len(str(info.value)) < 300 and "..." in str(info.value)


# ---------------------------------------------------------------------------------------------
# Numbers that are not finite


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_check_config_refuses_a_number_that_is_not_finite(
    tmp_path: Path, capsys, value: str
) -> None:
    # NaN passed `minimum: 0`: every comparison with NaN is false.
    bad = write(tmp_path / "nan.yaml", tiny_text(**{"  lr: 0.001": f"  lr: {value}"}))
    code, err = check_config(capsys, bad)
    one_line_refusal(code, err, str(bad), "key 'train.lr'", "not a finite number")


@pytest.mark.parametrize("override", ["train.lr=.nan", "train.lambda_rec=.nan", "train.lr=-.inf"])
def test_train_refuses_a_set_that_is_not_finite_before_any_output(
    tmp_path: Path, capsys, override: str
) -> None:
    # A NaN lambda_rec used to train to NaN weights and save them with exit status 0.
    out = tmp_path / "models" / "tdpcr-cr"
    code = main(
        ["train", "--config", str(TINY), "--variant", "tdpcr-cr", "--store",
         str(tmp_path / "none.zarr"), "--out", str(out), "--no-tracking", "--set", override]
    )  # fmt: skip
    key = override.split("=")[0]
    one_line_refusal(code, capsys.readouterr().err, f"key '{key}'", "not a finite number")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Model sizes beyond memory


def test_train_refuses_a_model_beyond_memory_before_allocating(tmp_path: Path, capsys) -> None:
    # width 100000: 3.7e13 parameters; the allocator used to fail (or the kernel kill the
    # process) while building it.
    out = tmp_path / "models" / "tdpcr-cr"
    code = main(
        ["train", "--config", str(TINY), "--variant", "tdpcr-cr", "--store",
         str(tmp_path / "none.zarr"), "--out", str(out), "--no-tracking",
         "--set", "models.tdpcr.width=100000"]
    )  # fmt: skip
    err = capsys.readouterr().err
    one_line_refusal(code, err, "'models.tdpcr'", "parameters", "GiB of memory")
    assert list(tmp_path.iterdir()) == []


def test_predict_refuses_a_meta_json_model_beyond_memory(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    from safetensors.torch import load_file, save_file

    huge = tmp_path / "huge"
    shutil.copytree(checkpoints["full"], huge)
    # A checkpoint saved before weights recorded their meta.json's digest: its meta.json is
    # not checked against the weights, so the size check is what stands in the way.
    weights = str(huge / "model.safetensors")
    save_file(load_file(weights), weights)
    meta = json.loads((huge / "meta.json").read_text())
    meta["model_kwargs"]["width"] = 100_000
    (huge / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "pred"
    code, _, err = test_predict.run_cli(
        capsys, "--optical", str(optical), "--sar", str(sar), "--checkpoint", str(huge),
        "--out", str(out), "--window", "32", "--overlap", "8",
    )  # fmt: skip
    one_line_refusal(code, err, str(huge / "meta.json"), "parameters", "GiB of memory")
    assert not out.exists()


def test_sizes_beyond_what_pytorch_addresses_are_refused_not_a_traceback() -> None:
    from tdpcr.models.registry import ModelTooLarge, create_model

    with pytest.raises(ModelTooLarge, match="beyond what PyTorch can address"):
        create_model("dsen2cr", features=10**12, num_blocks=1)
