"""MLflow as practitioners use it: models without pickle, the registry, dataset inputs, source.

A tiny TDP-CR (phase 1 + Full) and a SAR SegFormer are trained once into a fresh MLflow store
with the tracking settings of the shipped config; the tests read that store back with MLflow's
own client and load the models in fresh processes, as a user of the store would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import rasterio
import yaml
from mlflow.tracking import MlflowClient

from tdpcr.cli import main
from tdpcr.core.checkpoint import read_meta
from tdpcr.core.config import validate_config
from tdpcr.data.store import open_store, write_patch_geotiff
from tdpcr.tracking import Tracker, init_store, record_evaluation
from tdpcr.tracking.context import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, git_commit
from tdpcr.tracking.datasets import TileStoreDataset, metadata_digest
from tdpcr.tracking.model_logging import (
    SELECTION_VALUE_TAG,
    RegistrySettings,
    fetch_checkpoint,
    register,
    using_uri,
)
from tdpcr.training.trainer import train_variant
from tests.conftest import REPO

TRAINED = ("tdpcr-cr", "tdpcr-full", "segformer-sar")


@pytest.fixture(scope="module")
def tracked(scene_store: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Three variants trained into a fresh store with the default tracking settings."""
    root = tmp_path_factory.mktemp("tracked")
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["train"].update(
        crop=32,
        steps={"phase1": 4, "phase2": 3},
        val_every=2,
        val_max_batches=2,
    )
    config["tracking"] = {"enabled": True, "uri": f"sqlite:///{root / 'mlflow.db'}"}
    config = validate_config(config)  # fills the tracking defaults from the schema
    uri = config["tracking"]["uri"]
    init_store(uri)
    for name in TRAINED:
        init = root / "tdpcr-cr" if name == "tdpcr-full" else None
        tracker = Tracker.from_config(config)
        train_variant(
            config, name, scene_store, root / name, init_dir=init, progress=False, tracker=tracker
        )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(config["name"])
    runs = {
        r.info.run_name: r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("tdpcr.level") != "model"
    }
    return SimpleNamespace(
        root=root, uri=uri, config=config, client=client, experiment=experiment, runs=runs
    )


def _fresh_python(code: str, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter that sees the store only through its URI, with MLflow
    forbidden to unpickle anything (its default, made explicit)."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _patch_tifs(store: Path, folder: Path) -> tuple[Path, Path, int]:
    """The first test patch of ``store`` as s2_cloudy.tif and s1.tif in ``folder``."""
    ds = open_store(store)
    index = int(np.flatnonzero(ds["split"].values == "test")[0])
    folder.mkdir(parents=True, exist_ok=True)
    optical = write_patch_geotiff(ds, index, "s2_cloudy", folder / "s2_cloudy.tif")
    sar = write_patch_geotiff(ds, index, "s1", folder / "s1.tif")
    return optical, sar, index


def _predict_cli(optical: Path, sar: Path, checkpoint: str, out: Path, *extra: str) -> int:
    return main(
        [
            "predict", "--optical", str(optical), "--sar", str(sar), "--checkpoint", checkpoint,
            "--out", str(out), "--window", "32", "--overlap", "0", "--quiet", *extra,
        ]
    )  # fmt: skip


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# --------------------------------------------------------------------------- models
def test_every_run_logs_its_model_from_code_without_pickle(tracked: SimpleNamespace) -> None:
    for name in TRAINED:
        run = tracked.runs[name]
        models = tracked.client.search_logged_models([tracked.experiment.experiment_id])
        mine = [m for m in models if m.source_run_id == run.info.run_id]
        assert [m.name for m in mine] == [name]
        model_dir = tracked.root / f"download-{name}"
        with using_uri(tracked.uri):
            mlflow.artifacts.download_artifacts(f"models:/{mine[0].model_id}", dst_path=model_dir)
        files = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
        assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))]
        assert {"artifacts/checkpoint/model.safetensors", "artifacts/checkpoint/meta.json"} <= files
        assert "pyfunc_model.py" in files and "code/tdpcr/models/tdpcr.py" in files
        assert {"input_example.json", "serving_input_example.json"} <= files
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("pyfunc_model.py")
        assert "python_model" not in mlmodel["flavors"]["python_function"]  # no pickle path
        inputs = json.loads(mlmodel["signature"]["inputs"])
        wanted = ["sar"] if name == "segformer-sar" else ["optical", "sar"]
        assert [spec["name"] for spec in inputs] == wanted
        requirements = (model_dir / "requirements.txt").read_text().split()
        assert "torch==2.13.0" in requirements and all("==" in r for r in requirements)
        assert run.data.tags["tdpcr.model_uri"] == f"models:/{mine[0].model_id}"


def test_best_tdpcr_full_is_registered_with_an_alias(tracked: SimpleNamespace) -> None:
    tracking = tracked.config["tracking"]
    name, alias = tracking["registered_model"], tracking["model_alias"]
    version = tracked.client.get_model_version_by_alias(name, alias)
    assert version.run_id == tracked.runs[tracking["registered_variant"]].info.run_id
    meta = read_meta(tracked.root / "tdpcr-full")
    # The checkpoint's selection score: validation mIoU + 0.01 x PSNR for a two-task variant.
    expected = meta.metrics["val/miou"] + 0.01 * meta.metrics["val/psnr"]
    assert meta.extra["selection_value"] == pytest.approx(expected)
    assert float(version.tags[SELECTION_VALUE_TAG]) == pytest.approx(expected)
    # Only the registered variant becomes a version.
    assert len(tracked.client.search_model_versions(f"name = '{name}'")) == 1


def test_alias_moves_only_to_a_version_at_least_as_good(tracked: SimpleNamespace) -> None:
    client, uri = tracked.client, tracked.uri
    meta = read_meta(tracked.root / "tdpcr-full")
    holder = client.get_model_version_by_alias("tdpcr-full", "champion")
    info = SimpleNamespace(model_uri=holder.source, model_id=holder.model_id)
    settings = RegistrySettings("tdpcr-full", "alias-rule", "champion")
    run_id = holder.run_id

    def with_miou(value: float):
        meta.extra["selection_value"] = value
        return register(uri, info, meta, settings, run_id)

    assert with_miou(0.5) == ("1", True)  # first version takes the alias
    assert with_miou(0.4) == ("2", False)  # worse: the alias stays on version 1
    assert with_miou(0.6) == ("3", True)  # better: it moves
    assert str(client.get_model_version_by_alias("alias-rule", "champion").version) == "3"


def test_fresh_process_predicts_the_registered_model_like_tdpcr_predict(
    tracked: SimpleNamespace, scene_store: Path, tmp_path: Path
) -> None:
    """Done-when of issue 16: models:/...@alias in a fresh process == tdpcr predict."""
    optical, sar, _ = _patch_tifs(scene_store, tmp_path / "patch")
    assert _predict_cli(optical, sar, str(tracked.root / "tdpcr-full"), tmp_path / "folder") == 0
    code = f"""
import mlflow, numpy as np, rasterio
with rasterio.open({str(optical)!r}) as s2, rasterio.open({str(sar)!r}) as s1:
    batch = {{"optical": s2.read()[None].astype("float32"), "sar": s1.read()[None]}}
model = mlflow.pyfunc.load_model("models:/tdpcr-full@champion")
out = model.predict(batch)
np.savez({str(tmp_path / "pyfunc.npz")!r}, **out)
import tdpcr
print(tdpcr.__file__)
"""
    result = _fresh_python(code, tracked.uri, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]  # loads as quietly as it logs
    assert "artifacts/code/tdpcr" in result.stdout  # the model's own bundled code
    pyfunc = np.load(tmp_path / "pyfunc.npz")
    cloudfree = _read(tmp_path / "folder" / "cloudfree.tif").astype(np.float32)
    landcover = _read(tmp_path / "folder" / "landcover.tif")[0]
    assert pyfunc["cloudfree"].shape == (1, *cloudfree.shape)
    # cloudfree.tif holds rint(DN), clipped to >= 1 on valid pixels.
    assert np.abs(np.maximum(np.rint(pyfunc["cloudfree"][0]), 1) - cloudfree).max() <= 1
    assert np.mean(pyfunc["landcover"][0] == landcover) >= 0.999


def test_predict_resolves_models_and_runs_uris_through_mlflow(
    tracked: SimpleNamespace, scene_store: Path, tmp_path: Path, monkeypatch
) -> None:
    optical, sar, _ = _patch_tifs(scene_store, tmp_path / "patch")
    assert _predict_cli(optical, sar, str(tracked.root / "tdpcr-full"), tmp_path / "folder") == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked.uri)
    assert _predict_cli(optical, sar, "models:/tdpcr-full@champion", tmp_path / "alias") == 0
    run_id = tracked.runs["tdpcr-full"].info.run_id
    runs_uri = f"runs:/{run_id}/tdpcr-full"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    extra = ("--tracking-uri", tracked.uri)
    assert _predict_cli(optical, sar, runs_uri, tmp_path / "run", *extra) == 0
    for name in ("cloudfree.tif", "landcover.tif"):
        reference = _read(tmp_path / "folder" / name)
        assert np.array_equal(_read(tmp_path / "alias" / name), reference), name
        assert np.array_equal(_read(tmp_path / "run" / name), reference), name
    described = json.loads((tmp_path / "alias" / "prediction.json").read_text())["model"]
    assert described["checkpoint"].startswith("models:/tdpcr-full@champion (version 1, run ")


@pytest.mark.parametrize(
    ("checkpoint", "store", "expected"),
    [
        ("models:/no-such-model@champion", "tracked", "models:/no-such-model@champion: "),
        ("models:/tdpcr-full@no-such-alias", "tracked", "models:/tdpcr-full@no-such-alias: "),
        ("models:/tdpcr-full@champion", "missing", "tracking store sqlite:///"),
    ],
)
def test_unknown_models_and_stores_fail_in_one_line(
    tracked: SimpleNamespace,
    scene_store: Path,
    tmp_path: Path,
    capsys,
    checkpoint: str,
    store: str,
    expected: str,
) -> None:
    optical, sar, _ = _patch_tifs(scene_store, tmp_path / "patch")
    uri = tracked.uri if store == "tracked" else f"sqlite:///{tmp_path / 'absent.db'}"
    capsys.readouterr()
    code = _predict_cli(optical, sar, checkpoint, tmp_path / "out", "--tracking-uri", uri)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tdpcr: error: ") and expected in err, err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "absent.db").exists()  # a missing store is not created


def test_fetched_checkpoint_is_the_trained_one(tracked: SimpleNamespace) -> None:
    with fetch_checkpoint("models:/tdpcr-full@champion", tracked.uri) as (folder, described):
        fetched = (folder / "model.safetensors").read_bytes()
        assert "version 1" in described
    assert fetched == (tracked.root / "tdpcr-full" / "model.safetensors").read_bytes()


# --------------------------------------------------------------------------- run context
def test_experiment_opens_on_training_runs(tracked: SimpleNamespace) -> None:
    assert tracked.experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_runs_carry_source_and_commit_as_mlflow_shows_them(tracked: SimpleNamespace) -> None:
    for run in tracked.runs.values():
        tags = run.data.tags
        assert tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.name"] == "tdpcr train"
        if git_commit() != "unknown":
            assert tags["mlflow.source.git.commit"] == git_commit()
        assert tags["mlflow.user"]


def test_runs_log_the_tile_store_splits_as_datasets(
    tracked: SimpleNamespace, scene_store: Path
) -> None:
    run = tracked.client.get_run(tracked.runs["tdpcr-full"].info.run_id)
    found = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert set(found) == {"training", "validation"}
    stem = scene_store.stem
    assert found["training"].name == f"{stem}-train" and found["validation"].name == f"{stem}-val"
    assert found["training"].digest == TileStoreDataset(scene_store, "train").digest
    assert found["training"].digest != found["validation"].digest
    assert found["training"].source_type == "local"
    profile = json.loads(found["training"].profile)
    split = open_store(scene_store)["split"].values
    assert profile["patches"] == int((split == "train").sum())
    schema = json.loads(found["training"].schema)["mlflow_tensorspec"]
    features = {spec["name"] for spec in json.loads(schema["features"])}
    targets = {spec["name"] for spec in json.loads(schema["targets"])}
    assert features == {"s2_cloudy", "s1", "cloudmask"} and targets == {"s2_clear", "landcover"}


def test_dataset_digest_follows_the_store_metadata(scene_store: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / scene_store.name
    shutil.copytree(scene_store, copy)
    assert metadata_digest(copy) == metadata_digest(scene_store)
    assert TileStoreDataset(copy, "train").digest == TileStoreDataset(scene_store, "train").digest
    root = copy / "zarr.json"
    document = json.loads(root.read_text())
    document["attributes"]["source_layout"] = "edited"
    root.write_text(json.dumps(document))
    assert TileStoreDataset(copy, "train").digest != TileStoreDataset(scene_store, "train").digest


def test_evaluation_adds_the_test_split(tracked: SimpleNamespace, scene_store: Path) -> None:
    run_id = tracked.runs["tdpcr-cr"].info.run_id
    record_evaluation(tracked.uri, run_id, {"test/psnr": 20.0}, 4, store=scene_store)
    inputs = tracked.client.get_run(run_id).inputs.dataset_inputs
    contexts = {t.value for d in inputs for t in d.tags if t.key == "mlflow.data.context"}
    assert contexts == {"training", "validation", "test"}


@pytest.mark.parametrize("enabled", [True, False])
def test_system_metrics_follow_the_config_switch(
    tracked: SimpleNamespace, enabled: bool, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    tracker = Tracker(True, tracked.uri, "system-metrics", system_metrics=enabled)
    with tracker.run(f"probe-{enabled}"):
        time.sleep(2.0)
    logged = tracked.client.get_run(tracker.run_id).data.metrics
    system = {k for k in logged if k.startswith("system/")}
    if enabled:
        assert {
            "system/cpu_utilization_percentage",
            "system/system_memory_usage_megabytes",
        } <= system
    else:
        assert system == set()


def test_unknown_registered_variant_fails_in_one_line(tmp_path: Path, capsys) -> None:
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["tracking"]["registered_variant"] = "tdpcr-fulll"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["train", "--config", str(path), "--variant", "tdpcr-cr", "--store", "x.zarr"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tracking.registered_variant" in err, err
    assert not (tmp_path / "out").exists()
