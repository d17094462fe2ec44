"""Training: every variant end to end, PEFT freezing, resume after SIGTERM, checkpoints, MLflow."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tdpcr.training.steps as steps_module
from tdpcr.core.config import validate_config
from tdpcr.core.errors import ConfigError, InputDataError
from tdpcr.core.specs import S2_BANDS
from tdpcr.tracking import Tracker, init_store
from tdpcr.training.trainer import EXIT_INTERRUPTED, train_variant
from tdpcr.training.variants import VARIANTS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["train"].update(
        crop=32,
        steps={"phase1": 4, "phase2": 3},
        val_every=2,
        val_max_batches=2,
    )
    return validate_config(config)


@pytest.fixture(scope="module")
def trained(tiny_config: dict, scene_store: Path, tmp_path_factory) -> tuple[Path, str]:
    """Every variant trained once (phase 2 from phase 1), tracked in a fresh MLflow store."""
    root = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    init_store(uri)
    tracker_args = (True, uri, tiny_config["name"])
    order = sorted(VARIANTS, key=lambda name: bool(VARIANTS[name].parents))
    for name in order:
        init, teacher = VARIANTS[name].init_from, VARIANTS[name].teacher
        train_variant(
            tiny_config,
            name,
            scene_store,
            root / name,
            init_dir=root / init if init else None,
            teacher_dir=root / teacher if teacher else None,
            threads=1,
            progress=False,
            tracker=Tracker(*tracker_args),
        )
    return root, uri


def test_every_variant_writes_a_checkpoint(trained: tuple[Path, str]) -> None:
    root, _ = trained
    for name, variant in VARIANTS.items():
        meta = yaml.safe_load((root / name / "meta.json").read_text())
        assert meta["variant"] == name and meta["model_name"] == variant.model
        assert (root / name / "model.safetensors").stat().st_size > 0
        assert (root / name / "last" / "optimizer.safetensors").exists()
        metric = "val/miou" if variant.segmentation else "val/psnr"
        assert metric in meta["metrics"]
        # The bands and level trained on, which predict checks its inputs against.
        assert meta["extra"]["s2_bands"] == list(S2_BANDS) and meta["extra"]["s2_level"] == "L1C"


def test_peft_freezes_encoders_and_decoder(trained: tuple[Path, str]) -> None:
    root, _ = trained
    phase1 = load_file(str(root / "tdpcr-cr" / "model.safetensors"))
    peft = load_file(str(root / "tdpcr-full" / "model.safetensors"))
    fpft = load_file(str(root / "tdpcr-fpft" / "model.safetensors"))
    frozen = ("opt_", "sar_", "ups", "dec_stages", "ending")
    trainable = ("prompt_generator", "pgf")
    assert any(k.startswith("seg_head") for k in peft) and not any(
        k.startswith("seg_head") for k in phase1
    )
    for key, value in phase1.items():
        if key.startswith(frozen):
            assert torch.equal(value, peft[key]), f"PEFT changed frozen {key}"
    changed = [k for k in phase1 if k.startswith(trainable) and not torch.equal(phase1[k], peft[k])]
    assert changed, "PEFT did not update the prompt generator / PGF"
    assert any(not torch.equal(phase1[k], fpft[k]) for k in phase1 if k.startswith(frozen))


def test_resume_after_sigterm_equals_uninterrupted(
    tiny_config: dict, scene_store: Path, tmp_path: Path, monkeypatch
) -> None:
    config = copy.deepcopy(tiny_config)
    config["train"]["steps"]["phase1"] = 6
    reference = tmp_path / "reference"
    train_variant(config, "tdpcr-cr", scene_store, reference, threads=1, progress=False)

    calls = {"n": 0}
    real_loss = steps_module.reconstruction_loss

    def loss_then_sigterm(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # during step 3: SLURM-style SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(steps_module, "reconstruction_loss", loss_then_sigterm)
    resumed = tmp_path / "resumed"
    with pytest.raises(SystemExit) as stopped:
        train_variant(config, "tdpcr-cr", scene_store, resumed, threads=1, progress=False)
    assert stopped.value.code == EXIT_INTERRUPTED
    assert yaml.safe_load((resumed / "last" / "meta.json").read_text())["step"] == 3
    assert not (resumed / "model.safetensors").exists()  # not published before completion
    monkeypatch.setattr(steps_module, "reconstruction_loss", real_loss)

    train_variant(config, "tdpcr-cr", scene_store, resumed, threads=1, progress=False)
    expected = load_file(str(reference / "last" / "model.safetensors"))
    got = load_file(str(resumed / "last" / "model.safetensors"))
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_incompatible_checkpoint_is_refused(
    tiny_config: dict, scene_store: Path, trained: tuple[Path, str]
) -> None:
    root, _ = trained
    config = copy.deepcopy(tiny_config)
    config["models"]["tdpcr"]["width"] = 16
    with pytest.raises(InputDataError, match="width=8 in the checkpoint, 16 expected"):
        train_variant(
            config,
            "tdpcr-full",
            scene_store,
            root / "other",
            init_dir=root / "tdpcr-cr",
            threads=1,
            progress=False,
        )
    with pytest.raises(InputDataError, match="'dsen2cr' model, expected 'tdpcr'"):
        train_variant(
            config,
            "tdpcr-full",
            scene_store,
            root / "other",
            init_dir=root / "dsen2cr",
            threads=1,
            progress=False,
        )


def test_mlflow_holds_nested_runs_params_and_metrics(trained: tuple[Path, str]) -> None:
    from mlflow.tracking import MlflowClient

    _, uri = trained
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(VARIANTS) <= set(by_name)
    parent = by_name["tdpcr"]
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert {r.info.run_name for r in children} == {"tdpcr-cr", "tdpcr-full", "tdpcr-fpft"}
    full = by_name["tdpcr-full"]
    assert full.data.params["train.lambda_seg"] == "1.0"
    assert full.data.params["models.tdpcr.width"] == "8"
    assert full.data.tags["tdpcr.phase"] == "2"
    assert "best/miou" in full.data.metrics and "val/psnr" in full.data.metrics
    history = client.get_metric_history(full.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_schema_rejects_a_typo(tiny_config: dict) -> None:
    config = copy.deepcopy(tiny_config)
    config["train"]["stepz"] = config["train"].pop("steps")
    with pytest.raises(ConfigError, match="train.stepz"):
        validate_config(config)
    config = copy.deepcopy(tiny_config)
    config["models"]["tdpcr"]["widht"] = 8
    with pytest.raises(ConfigError, match="models.tdpcr.widht"):
        validate_config(config)
