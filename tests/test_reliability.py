"""Reliability (issue 14): never replace what tdpcr did not write, swap outputs atomically,
sweep what dead runs left, and keep training alive on valid data."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
import yaml
import zarr

import tdpcr.training.steps as steps_module
from tdpcr.cli import main
from tdpcr.core.config import (
    coerce_strings,
    load_config,
    load_yaml,
    shipped_config,
    validate_config,
)
from tdpcr.core.errors import ConfigError, InputDataError
from tdpcr.core.io import OWNER_KEY, atomic_folder, replace_folder, sweep_stale_temporaries
from tdpcr.core.specs import CLASS_NAMES, IGNORE_INDEX
from tdpcr.data.dataset import TileDataset
from tdpcr.training.losses import segmentation_loss
from tdpcr.training.trainer import Diverged, train_variant
from tests import test_predict, test_training
from tests.fakes import make_luojiaset, make_scenes, read_tif, write_tif
from tests.test_bad_inputs import run_tile

#: The tiny checkpoints of the prediction tests (module-scoped fixture).
checkpoints = test_predict.checkpoints
#: The tiny training configuration of the training tests.
tiny_config = test_training.tiny_config


def one_line_refusal(code: int, err: str, *expected: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("tdpcr") and ": error: " in lines[0], lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# 1. Only ever replace what tdpcr wrote


def test_tile_refuses_a_users_folder(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "mine.zarr"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, err = run_tile(capsys, "scenes", root, out)
    one_line_refusal(code, err, str(out), "not written by tdpcr")
    assert (out / "thesis.tex").read_text() == "years of work"
    assert hidden_leftovers(tmp_path) == []


def test_tile_refuses_another_zarr_dataset(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "other.zarr"
    out.mkdir()
    (out / "zarr.json").write_text(json.dumps({"zarr_format": 3, "attributes": {"a": 1}}))
    code, err = run_tile(capsys, "scenes", root, out)
    one_line_refusal(code, err, str(out), "zarr.json")
    assert json.loads((out / "zarr.json").read_text())["attributes"] == {"a": 1}


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_tile_output_overlapping_its_source_is_refused_before_any_work(
    tmp_path: Path, capsys, where: str
) -> None:
    root = make_scenes(
        tmp_path / "data.zarr" / "scenes" if where == "around" else tmp_path / "data.zarr",
        n_scenes=1,
    )
    out = {"same": root, "inside": root / "t.zarr", "around": tmp_path / "data.zarr"}[where]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, err = run_tile(capsys, "scenes", root, out)
    one_line_refusal(code, err, "overlaps the input")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_tile_output_that_is_a_file_or_under_a_file(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    plain = tmp_path / "file.zarr"
    plain.write_text("not a store")
    code, err = run_tile(capsys, "scenes", root, plain)
    one_line_refusal(code, err, str(plain), "not a folder")
    assert plain.read_text() == "not a store"
    code, err = run_tile(capsys, "scenes", root, plain / "t.zarr")
    one_line_refusal(code, err, "is a file")


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A read-only tmpfs mount (skips where the test may not mount, e.g. without root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tdpcr-test", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_an_output_on_a_read_only_mount_is_refused_before_any_work(
    tmp_path: Path, read_only_folder: Path, capsys, monkeypatch
) -> None:
    from tdpcr.data import tiling

    root = make_scenes(tmp_path / "src", n_scenes=1)
    tiled = []
    monkeypatch.setattr(tiling, "_write_pixels", lambda *a, **k: tiled.append(1) or [])
    code, err = run_tile(capsys, "scenes", root, read_only_folder / "t.zarr")
    one_line_refusal(code, err, str(read_only_folder), "not writable")
    assert tiled == []


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs mount: room for a few files, not for a tile store or a prediction."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tdpcr-test", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_tile_on_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, full_disk: Path
) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2)
    out = full_disk / "t.zarr"
    code, err = cli_subprocess(
        "tile", "--source", "scenes", "--root", root, "--out", out, "--quiet", "--patch-size", "32"
    )
    one_line_refusal(code, err, "no space left")
    assert list(full_disk.iterdir()) == []


def test_predict_on_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, checkpoints: dict[str, Path], full_disk: Path
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 200, 200)
    out = full_disk / "pred"
    code, err = cli_subprocess(
        "predict", "--optical", optical, "--sar", sar, "--checkpoint", checkpoints["full"],
        "--out", out, "--window", "32", "--overlap", "8",
    )  # fmt: skip
    one_line_refusal(code, err, "no space left")
    assert list(full_disk.iterdir()) == []


def test_tile_replaces_its_own_store(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "t.zarr"
    assert run_tile(capsys, "scenes", root, out)[0] == 0
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert attrs[OWNER_KEY] == "tile store"
    code, err = run_tile(capsys, "scenes", root, out, "--split-seed", "3")
    assert code == 0, err
    assert hidden_leftovers(tmp_path) == []


def predict(capsys, optical: Path, sar: Path, checkpoint: Path, out: Path) -> tuple[int, str]:
    code, _, err = test_predict.run_cli(
        capsys,
        "--optical", str(optical), "--sar", str(sar),
        "--checkpoint", str(checkpoint), "--out", str(out),
        "--window", "32", "--overlap", "8",
    )  # fmt: skip
    return code, err


def test_predict_keeps_user_files_named_like_its_outputs(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    out = tmp_path / "pred"
    out.mkdir()
    (out / "landcover.tif").write_bytes(b"my own map")
    (out / "MTD_MSIL2A.xml").write_text("<product/>")
    code, err = predict(capsys, optical, sar, checkpoints["full"], out)
    one_line_refusal(code, err, str(out), "prediction.json")
    assert (out / "landcover.tif").read_bytes() == b"my own map"
    assert sorted(p.name for p in out.iterdir()) == ["MTD_MSIL2A.xml", "landcover.tif"]


def test_predict_refuses_a_prediction_json_it_did_not_write(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    out = tmp_path / "pred"
    out.mkdir()
    (out / "prediction.json").write_text('{"mine": true}')
    code, err = predict(capsys, optical, sar, checkpoints["full"], out)
    one_line_refusal(code, err, "not written by tdpcr")
    assert (out / "prediction.json").read_text() == '{"mine": true}'


def test_predict_output_around_its_input_is_refused(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    code, err = predict(capsys, optical, sar, checkpoints["full"], tmp_path / "in")
    one_line_refusal(code, err, "overlaps the input")
    assert optical.exists() and sar.exists()


def test_predict_replaces_its_own_output_and_marks_it(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    out = tmp_path / "pred"
    for _ in range(2):
        code, err = predict(capsys, optical, sar, checkpoints["full"], out)
        assert code == 0, err
    assert json.loads((out / "prediction.json").read_text())[OWNER_KEY] == "prediction"
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda a: (a / 1e4).astype(np.float32), "multiply by 10000"),
        (lambda a: (a // 256).astype(np.uint8), "uint8"),
    ],
    ids=["s2-reflectance", "s2-uint8"],
)
def test_predict_refuses_s2_off_the_contract_before_any_work(
    tmp_path: Path, checkpoints: dict[str, Path], capsys, make, expected: str
) -> None:
    rng = np.random.default_rng(0)
    s2 = make(rng.integers(300, 4000, (13, 40, 40)).astype(np.uint16))
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40, s2=s2)
    out = tmp_path / "pred"
    code, err = predict(capsys, optical, sar, checkpoints["full"], out)
    one_line_refusal(code, err, str(optical), expected)
    assert not out.exists() and hidden_leftovers(tmp_path) == []


def png_bytes(width: int, height: int) -> bytes:
    """A valid RGB PNG (what a screenshot saved as ``.tif`` is)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width * 3 for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


NOT_A_GEOTIFF = {
    "png": (lambda: png_bytes(40, 40), "a PNG file, not a GeoTIFF"),
    "text": (lambda: b"hello\n", "not recognized"),
}


def cli_subprocess(*args: object) -> tuple[int, str]:
    """``tdpcr ARGS`` in a fresh interpreter: the real stderr, GDAL and Python warnings too."""
    done = subprocess.run(
        [sys.executable, "-m", "tdpcr.cli", *map(str, args)], capture_output=True, text=True
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("kind", sorted(NOT_A_GEOTIFF))
def test_tile_refuses_a_file_named_tif_that_is_not_a_geotiff(tmp_path: Path, kind: str) -> None:
    make, expected = NOT_A_GEOTIFF[kind]
    root = make_scenes(tmp_path / "src", n_scenes=1)
    path = root / "scene0" / "s2_cloudy.tif"
    path.write_bytes(make())
    out = tmp_path / "t.zarr"
    code, err = cli_subprocess(
        "tile", "--source", "scenes", "--root", root, "--out", out, "--quiet", "--patch-size", "32"
    )
    one_line_refusal(code, err, str(path), expected)
    assert not out.exists() and hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", sorted(NOT_A_GEOTIFF))
def test_predict_refuses_a_file_named_tif_that_is_not_a_geotiff(
    tmp_path: Path, checkpoints: dict[str, Path], kind: str
) -> None:
    make, expected = NOT_A_GEOTIFF[kind]
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    optical.write_bytes(make())
    out = tmp_path / "pred"
    code, err = cli_subprocess(
        "predict", "--optical", optical, "--sar", sar, "--checkpoint", checkpoints["full"],
        "--out", out, "--window", "32", "--overlap", "8",
    )  # fmt: skip
    one_line_refusal(code, err, str(optical), expected)
    assert not out.exists()


def test_predict_refuses_weights_that_do_not_fit_meta_json(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 40, 40)
    swapped = tmp_path / "swapped"
    shutil.copytree(checkpoints["full"], swapped)  # meta.json: Full, with a head
    shutil.copyfile(checkpoints["cr"] / "model.safetensors", swapped / "model.safetensors")
    code, err = predict(capsys, optical, sar, swapped, tmp_path / "pred")
    one_line_refusal(code, err, str(swapped / "model.safetensors"), "do not fit")
    assert not (tmp_path / "pred").exists()


def test_train_init_refuses_weights_that_do_not_fit_meta_json(
    tiny_config: dict, tmp_path: Path
) -> None:
    from tdpcr.core.checkpoint import CheckpointMeta, save_checkpoint
    from tdpcr.models import create_model
    from tdpcr.training.trainer import build_model
    from tdpcr.training.variants import get_variant, model_kwargs

    kwargs = model_kwargs(get_variant("tdpcr-cr"), tiny_config["models"], len(CLASS_NAMES))
    wider = create_model("tdpcr", **{**kwargs, "width": 2 * kwargs["width"]})
    folder = save_checkpoint(tmp_path / "cr", wider, CheckpointMeta("tdpcr", kwargs, "tdpcr-cr", 0))
    with pytest.raises(InputDataError, match="weights do not fit meta.json") as info:
        build_model(get_variant("tdpcr-full"), tiny_config, folder, len(CLASS_NAMES))
    assert str(folder / "model.safetensors") in str(info.value)
    assert "\n" not in str(info.value)


def test_evaluate_refuses_weights_that_do_not_fit_meta_json(
    tiny_config: dict, small_store: Path, tmp_path: Path, capsys
) -> None:
    from tdpcr.core.checkpoint import CheckpointMeta, save_checkpoint
    from tdpcr.models import create_model
    from tdpcr.training.variants import get_variant, model_kwargs

    # meta.json describes the config's TDP-CR Full; the weights are of a model twice as wide.
    kwargs = model_kwargs(get_variant("tdpcr-full"), tiny_config["models"], len(CLASS_NAMES))
    wider = create_model("tdpcr", **{**kwargs, "width": 2 * kwargs["width"]})
    models = tmp_path / "models"
    folder = save_checkpoint(
        models / "tdpcr-full", wider, CheckpointMeta("tdpcr", kwargs, "tdpcr-full", 0)
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config))
    out = tmp_path / "eval" / "tdpcr-full.json"
    code = main(
        ["evaluate", "--config", str(config_file), "--method", "tdpcr-full", "--store",
         str(small_store), "--models", str(models), "--out", str(out), "--no-tracking"]
    )  # fmt: skip
    one_line_refusal(code, capsys.readouterr().err, str(folder / "model.safetensors"), "do not fit")
    assert not out.exists()


@pytest.mark.parametrize("damaged", ["optimizer.safetensors", "optimizer.json", "rng.safetensors"])
def test_an_unreadable_resume_state_names_its_file(tmp_path: Path, damaged: str) -> None:
    from tdpcr.core.checkpoint import CheckpointMeta, load_training_state, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    folder = save_checkpoint(
        tmp_path / "last", model, CheckpointMeta("linear", {}, "x", 1), optimizer=optimizer
    )
    (folder / damaged).write_bytes(b"\x00garbage")
    with pytest.raises(InputDataError, match="unreadable resume state") as info:
        load_training_state(folder, torch.optim.AdamW(model.parameters()))
    assert str(folder / damaged) in str(info.value) and "\n" not in str(info.value)


def test_replacing_a_folder_never_leaves_a_moment_without_it(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        (tmp / "data").write_text("0")
    missing = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if not (target / "data").exists():
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(200):
            with atomic_folder(target) as tmp:
                (tmp / "data").write_text(str(i))
    finally:
        done.set()
        watcher.join()
    assert missing == []
    assert (target / "data").read_text() == "199"
    assert hidden_leftovers(tmp_path) == []


def test_concurrent_replacements_do_not_crash_each_other(tmp_path: Path) -> None:
    target = tmp_path / "out"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                new = tmp_path / f".new-{n}-{i}"
                new.mkdir()
                (new / "data").write_text(f"{n}-{i}")
                replace_folder(new, target)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (target / "data").exists()
    assert hidden_leftovers(tmp_path) == []


def test_stale_temporaries_of_dead_runs_are_swept(tmp_path: Path) -> None:
    host = socket.gethostname()
    dead_pid = 2**22 + 12345  # above Linux's pid_max default range for live processes
    target = tmp_path / "t.zarr"
    dead = tmp_path / f".t.zarr.{host}-{dead_pid}.abc123.tmp"
    live = tmp_path / f".t.zarr.{host}-{os.getpid()}.def456.tmp"
    elsewhere = tmp_path / f".t.zarr.other.host-{dead_pid}.ghi789.tmp"
    for folder in (dead, live, elsewhere):
        folder.mkdir()
        (folder / "chunk").write_bytes(b"x" * 100)
    assert sweep_stale_temporaries(target) == [dead]
    assert not dead.exists() and live.exists() and elsewhere.exists()


def test_tile_sweeps_what_a_killed_run_left(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    stale = tmp_path / f".t.zarr.{socket.gethostname()}-{2**22 + 54321}.xyz.tmp"
    stale.mkdir()
    code, err = run_tile(capsys, "scenes", root, tmp_path / "t.zarr")
    assert code == 0, err
    assert hidden_leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# 4. Valid data must not crash training


def test_batch_without_labelled_pixels_gives_zero_segmentation_loss() -> None:
    logits = torch.randn(2, len(CLASS_NAMES), 8, 8, requires_grad=True)
    labels = torch.full((2, 8, 8), IGNORE_INDEX, dtype=torch.long)
    loss, parts = segmentation_loss(logits, labels, label_smoothing=0.1)
    assert float(loss.detach()) == 0.0 and parts["ce"] == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_segmentation_loss_is_the_mean_over_labelled_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, len(CLASS_NAMES), 8, 8)
    labels = torch.randint(0, len(CLASS_NAMES), (2, 8, 8))
    labels[0, :5] = IGNORE_INDEX
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, label_smoothing=0.1)
    loss, _ = segmentation_loss(logits, labels, label_smoothing=0.1)
    assert torch.allclose(loss, expected)


def test_divergence_names_variant_step_and_fix_and_keeps_the_last_checkpoint(
    tiny_config: dict, scene_store: Path, tmp_path: Path, monkeypatch
) -> None:
    config = copy.deepcopy(tiny_config)
    config["train"]["steps"]["phase1"] = 6
    calls = {"n": 0}
    real_loss = steps_module.reconstruction_loss

    def diverging(*args, **kwargs):
        calls["n"] += 1
        loss, parts = real_loss(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 4 else loss), parts

    monkeypatch.setattr(steps_module, "reconstruction_loss", diverging)
    out = tmp_path / "run"
    with pytest.raises(Diverged) as diverged:
        train_variant(config, "tdpcr-cr", scene_store, out, threads=1, progress=False)
    message = str(diverged.value)
    assert "\n" not in message
    for text in ("tdpcr-cr", "step 3", "train.lr", str(out / "last")):
        assert text in message, message
    assert json.loads((out / "last" / "meta.json").read_text())["step"] == 2
    assert not (out / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# 2. Damaged data must not pass as real


@pytest.fixture
def small_store(tmp_path: Path, capsys) -> Path:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out, "--shard-patches", "4")
    assert code == 0, err
    return out


def shard(store: Path, variable: str, index: int) -> Path:
    ndim = len(json.loads((store / variable / "zarr.json").read_text())["shape"])
    return store / variable / "c" / str(index) / Path(*["0"] * (ndim - 1))


def test_every_shard_is_written_even_all_fill_ones(tmp_path: Path, capsys) -> None:
    root = make_luojiaset(tmp_path / "luojia", bins={"0-20%": [1, 2, 3, 4, 5]}, landcover=False)
    out = tmp_path / "l.zarr"
    code, err = run_tile(capsys, "luojiaset", root, out, "--shard-patches", "4")
    assert code == 0, err
    code = main(["info", "--check", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["shards_checked"] > 0


@pytest.mark.parametrize(
    "command", [["info"], ["info", "--check"], ["export-patch", "--out", "p.tif", "--patch"]]
)
def test_a_deleted_shard_is_refused_not_read_as_zeros(
    small_store: Path, capsys, command: list[str]
) -> None:
    shard(small_store, "s1", 1).unlink()
    args = [*command, "scene0_r0_c0"] if "--patch" in command else command
    if "--out" in args:
        args[args.index("--out") + 1] = str(small_store.parent / "p.tif")
    code = main([args[0], str(small_store), *args[1:]])
    one_line_refusal(code, capsys.readouterr().err, str(small_store), "'s1'", "patches 4..7")
    assert not (small_store.parent / "p.tif").exists()


def test_the_dataset_refuses_a_store_with_a_deleted_shard(small_store: Path) -> None:
    shard(small_store, "s2_clear", 0).unlink()
    with pytest.raises(InputDataError, match="'s2_clear', patches 0..3"):
        TileDataset(small_store, split=None)


def test_a_truncated_shard_is_one_line_from_info_check_and_the_dataset(
    small_store: Path, capsys
) -> None:
    damaged = shard(small_store, "s2_cloudy", 1)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    code = main(["info", "--check", str(small_store)])
    one_line_refusal(code, capsys.readouterr().err, "'s2_cloudy'", "patches 4..7", "unreadable")
    dataset = TileDataset(small_store, split=None)
    with pytest.raises(InputDataError, match="'s2_cloudy', patch 5"):
        dataset[5]


def rewrite(path: Path, array: np.ndarray, crs: str | None | bool = True) -> None:
    """Replace the GeoTIFF at ``path`` by ``array`` on its grid (``crs=True``: its own CRS)."""
    with rasterio.open(path) as src:
        transform, own_crs = src.transform, src.crs
    write_tif(path, array, own_crs.to_string() if crs is True else crs, transform)


@pytest.mark.parametrize(
    ("piece", "make", "expected"),
    [
        ("s2_cloudy", lambda a: (a / 1e4).astype(np.float32), "multiply by 10000"),
        ("s2_cloudy", lambda a: (a // 256).astype(np.uint8), "uint8"),
        ("s1", lambda a: (10 ** (a / 10)).astype(np.float32), "linear power"),
    ],
    ids=["s2-reflectance", "s2-uint8", "s1-linear"],
)
def test_tile_refuses_data_off_the_contract(
    tmp_path: Path, capsys, piece: str, make, expected: str
) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    path = root / "scene0" / f"{piece}.tif"
    rewrite(path, make(read_tif(path)))
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out)
    one_line_refusal(code, err, str(path), expected)
    assert not out.exists() and hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("crs", "expected"), [("EPSG:32634", "differs"), ("EPSG:4326", "differs"), (None, "no CRS")]
)
def test_tile_refuses_s1_on_another_crs_or_none(
    tmp_path: Path, capsys, crs: str | None, expected: str
) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    path = root / "scene0" / "s1.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio: no CRS / geotransform
        rewrite(path, read_tif(path), crs)
    code, err = run_tile(capsys, "scenes", root, tmp_path / "t.zarr")
    one_line_refusal(code, err, str(path), expected)


def test_tile_refuses_an_all_nodata_scene(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2)
    for piece in ("s2_cloudy", "s2_clear"):
        path = root / "scene1" / f"{piece}.tif"
        rewrite(path, np.zeros_like(read_tif(path)))
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out)
    one_line_refusal(code, err, "scene1", "entirely nodata")
    assert not out.exists()


def test_tile_removes_the_s2_offset_it_is_given(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    plain, shifted = tmp_path / "a.zarr", tmp_path / "b.zarr"
    assert run_tile(capsys, "scenes", root, plain)[0] == 0
    assert run_tile(capsys, "scenes", root, shifted, "--s2-offset", "1000")[0] == 0
    a = zarr.open_group(plain, mode="r")["s2_cloudy"][:].astype(int)
    b = zarr.open_group(shifted, mode="r")["s2_cloudy"][:].astype(int)
    assert np.array_equal(b, np.clip(a - 1000, 0, None))


@pytest.mark.parametrize("value", ["5", "-1000", "1e9", "x"])
def test_s2_offset_other_than_0_or_1000_is_refused(tmp_path: Path, capsys, value: str) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "t.zarr"
    with pytest.raises(SystemExit) as tile_exit:
        main(["tile", "--source", "scenes", "--root", str(root), "--out", str(out),
              "--s2-offset", value])  # fmt: skip
    one_line_refusal(tile_exit.value.code, capsys.readouterr().err, "--s2-offset", "1000")
    with pytest.raises(SystemExit) as predict_exit:
        main(["predict", "--optical", "a.tif", "--sar", "b.tif", "--checkpoint", "c",
              "--out", str(tmp_path / "p"), "--s2-offset", value])  # fmt: skip
    one_line_refusal(predict_exit.value.code, capsys.readouterr().err, "--s2-offset")
    assert not out.exists()


def test_patch_layouts_refuse_an_s2_offset(tmp_path: Path, capsys) -> None:
    root = make_luojiaset(tmp_path / "luojia", bins={"0-20%": [1, 2]})
    code, err = run_tile(capsys, "luojiaset", root, tmp_path / "t.zarr", "--s2-offset", "0")
    one_line_refusal(code, err, "--s2-offset", "luojiaset")


# ---------------------------------------------------------------------------------------------
# 3. Clusters stop jobs by signalling the whole process group

#: ``tdpcr`` with 8 CPUs pretended, so the trainer starts 2 loader workers on any machine.
WITH_WORKERS = (
    "import sys, tdpcr.core.runtime as r; r.available_cpus = lambda: 8; "
    "from tdpcr.cli import main; sys.exit(main(sys.argv[1:]))"
)


def group_members(pgid: int) -> int:
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        count += int(fields[2]) == pgid  # field 5 of /proc/PID/stat: process group
    return count


def test_sigterm_to_the_process_group_with_loader_workers_saves_and_exits_143(
    scene_store: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load((test_training.REPO / "config" / "tiny.yaml").read_text())
    config["train"].update(crop=32, steps={"phase1": 100000, "phase2": 3}, val_every=100000)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_WORKERS, "train", "--config", str(config_file),
         "--variant", "tdpcr-cr", "--store", str(scene_store), "--out", str(out),
         "--threads", "8", "--no-tracking", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while group_members(process.pid) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)  # the trainer and its 2 loader workers
        assert group_members(process.pid) >= 3, "no loader workers started"
        time.sleep(3)  # a few steps
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "killed by signal" not in err, err
    assert json.loads((out / "last" / "meta.json").read_text())["step"] > 0


def test_sigterm_during_tile_removes_its_temporary_store(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2, height=640, width=640)
    out = tmp_path / "t.zarr"
    process = subprocess.Popen(
        [sys.executable, "-m", "tdpcr.cli", "tile", "--source", "scenes", "--root", str(root),
         "--out", str(out), "--patch-size", "16", "--shard-patches", "4", "--workers", "1",
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not hidden_leftovers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hidden_leftovers(tmp_path), "tile never started writing"
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "tdpcr: terminated by SIGTERM; temporary outputs removed"
    ]
    assert not out.exists() and hidden_leftovers(tmp_path) == []


def test_sigterm_during_predict_removes_its_temporary_outputs(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    optical, sar = test_predict.write_scene(tmp_path / "in", 1024, 1024)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "pred"
    process = subprocess.Popen(
        [sys.executable, "-m", "tdpcr.cli", "predict", "--optical", str(optical), "--sar",
         str(sar), "--checkpoint", str(checkpoints["full"]), "--out", str(out), "--window", "32",
         "--overlap", "8", "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not hidden_leftovers(work) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hidden_leftovers(work), "predict never started writing"
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "tdpcr: terminated by SIGTERM; temporary outputs removed"
    assert not out.exists() and hidden_leftovers(work) == []


def test_a_failed_train_start_leaves_no_empty_out_folder(tiny_config: dict, tmp_path: Path) -> None:
    out = tmp_path / "models" / "tdpcr-cr"
    with pytest.raises(InputDataError):
        train_variant(tiny_config, "tdpcr-cr", tmp_path / "missing.zarr", out, progress=False)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# 5. Config values as users write them

#: Every ``--config '...'`` example the documentation gives.
DOCUMENTED_OVERRIDES = sorted(
    {
        match
        for doc in [
            test_training.REPO / "README.md",
            test_training.REPO / "workflow" / "profiles" / "slurm" / "README.md",
            *sorted((test_training.REPO / "docs").rglob("*.md")),
        ]
        for match in re.findall(r"--config '([^']+)'", doc.read_text())
    }
)


def test_the_documentation_gives_override_examples() -> None:
    assert "train={gpus_per_job: 4}" in DOCUMENTED_OVERRIDES


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
@pytest.mark.parametrize("override", DOCUMENTED_OVERRIDES)
def test_documented_config_overrides_work_in_the_workflow(override: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--config", override],
        cwd=test_training.REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    if "gpus_per_job" in override:
        assert "--nproc_per_node=4" in result.stdout


def test_command_line_strings_are_read_by_the_schema_types() -> None:
    config = shipped_config("default")
    config["train"].update(gpus_per_job="4", lr="3e-4", val_max_batches="null")
    config["tiling"]["split_fractions"] = ["0.8", "0.1", "0.1"]
    config["tracking"]["enabled"] = "false"
    config["name"] = "123"  # a string key stays a string
    validate_config(coerce_strings(config))
    assert config["train"]["gpus_per_job"] == 4 and config["train"]["lr"] == 3e-4
    assert config["train"]["val_max_batches"] is None
    assert config["tiling"]["split_fractions"] == [0.8, 0.1, 0.1]
    assert config["tracking"]["enabled"] is False and config["name"] == "123"
    config["train"]["gpus_per_job"] = "four"
    with pytest.raises(ConfigError, match="train.gpus_per_job"):
        validate_config(coerce_strings(config))


def test_yaml_numbers_as_users_type_them(tmp_path: Path) -> None:
    text = (test_training.REPO / "config" / "tiny.yaml").read_text()
    config = load_yaml(text)
    config["train"]["lr"] = "placeholder"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config).replace("placeholder", "1e-3"))
    assert load_config(path)["train"]["lr"] == 1e-3


PARALLEL_TRACKERS = (
    "import sys; from tdpcr.tracking import Tracker; Tracker(True, sys.argv[1], 'exp')"
)


def test_parallel_runs_create_a_new_sqlite_store_safely(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PARALLEL_TRACKERS, uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(8)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in results] == [0] * 8, [err[-500:] for _, err in results]


# ---------------------------------------------------------------------------------------------
# 6. One line, never a traceback


SPLIT_FILES = {
    "binary": (lambda ids: bytes(range(256)) * 8, "not a patch_id,split CSV"),
    "unknown-ids": (
        lambda ids: ("patch_id,split\n" + "".join(f"x{i},train\n" for i in ids)).encode(),
        "no entry for",
    ),
    "some-missing": (
        lambda ids: ("patch_id,split\n" + "".join(f"{i},train\n" for i in ids[1:])).encode(),
        "no entry for 1 patch",
    ),
}


@pytest.mark.parametrize("kind", sorted(SPLIT_FILES))
def test_a_bad_split_file_is_refused_before_any_work(
    tmp_path: Path, capsys, monkeypatch, kind: str
) -> None:
    from tdpcr.data import tiling
    from tdpcr.data.sources import make_source

    make, expected = SPLIT_FILES[kind]
    root = make_scenes(tmp_path / "src", n_scenes=1)
    ids = [ref.patch_id for ref in make_source("scenes", root, patch_size=32).patches()]
    split = tmp_path / "split.csv"
    split.write_bytes(make(ids))
    tiled = []
    monkeypatch.setattr(tiling, "_write_pixels", lambda *a, **k: tiled.append(1) or [])
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out, "--split-from", str(split))
    one_line_refusal(code, err, str(split), expected)
    assert tiled == [] and not out.exists() and hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "option",
    [
        ("--patch-size", "0"),
        ("--patch-size", "20"),
        ("--patch-size", "-16"),
        ("--stride", "0"),
        ("--shard-patches", "0"),
        ("--shard-patches", "x"),
    ],
)
def test_bad_sizes_are_refused_before_any_work(tmp_path: Path, capsys, option) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "t.zarr"
    with pytest.raises(SystemExit) as exit_info:
        main(["tile", "--source", "scenes", "--root", str(root), "--out", str(out), *option])
    one_line_refusal(exit_info.value.code, capsys.readouterr().err, option[0])
    assert not out.exists()


@pytest.mark.parametrize("option", [("--scenes", "0"), ("--size", "10")])
def test_synth_refuses_no_scenes_or_too_small_ones(tmp_path: Path, capsys, option) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path / "s"), *option])
    one_line_refusal(exit_info.value.code, capsys.readouterr().err, option[0])
    assert not (tmp_path / "s").exists()


def test_tile_reads_only_the_scenes_of_the_latest_synth(tmp_path: Path, capsys) -> None:
    root = tmp_path / "synthetic"
    assert main(["synth", "--out", str(root), "--scenes", "12", "--size", "64"]) == 0
    assert main(["synth", "--out", str(root), "--scenes", "2", "--size", "64", "--seed", "1"]) == 0
    capsys.readouterr()
    listed = json.loads((root / "manifest.json").read_text())["scenes"]
    assert len(listed) == 2 and len([p for p in root.iterdir() if p.is_dir()]) > 2
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "synthetic", root, out)
    assert code == 0, err
    groups = set(zarr.open_group(out, mode="r")["group"][:].tolist())
    assert groups == set(listed)


def test_synth_never_replaces_a_scene_folder_it_did_not_write(tmp_path: Path, capsys) -> None:
    root = tmp_path / "synthetic"
    assert main(["synth", "--out", str(root), "--scenes", "2", "--size", "64"]) == 0
    assert main(["synth", "--out", str(root), "--scenes", "2", "--size", "64"]) == 0  # ours
    capsys.readouterr()
    first = sorted(p for p in root.iterdir() if p.is_dir())[0]
    shutil.rmtree(first)
    first.mkdir()
    (first / "field_notes.txt").write_text("mine")
    assert main(["synth", "--out", str(root), "--scenes", "2", "--size", "64"]) == 2
    one_line_refusal(2, capsys.readouterr().err, str(first), "not written by tdpcr synth")
    assert (first / "field_notes.txt").read_text() == "mine"


class _DamagedDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise InputDataError("store.zarr: s2_cloudy shard of patches 0-15 missing")


def test_damage_met_in_a_loader_worker_is_still_one_line() -> None:
    from tdpcr.cli import one_line

    loader = torch.utils.data.DataLoader(_DamagedDataset(), num_workers=1)
    with pytest.raises(InputDataError) as info:
        next(iter(loader))
    assert "Original Traceback" in str(info.value)  # torch's wrapping, many lines
    assert one_line(info.value) == "store.zarr: s2_cloudy shard of patches 0-15 missing"
