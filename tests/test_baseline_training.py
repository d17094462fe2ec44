"""Training the published baselines: EMRDM's averaged weights, CloudSeg's frozen teacher."""

from __future__ import annotations

import copy
import hashlib
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

import tdpcr.training.trainer as trainer_module
from tdpcr.core.config import validate_config
from tdpcr.core.errors import ConfigError, InputDataError
from tdpcr.training.averaging import PUBLISHED_DECAY, WeightAverage, decay_at
from tdpcr.training.trainer import EXIT_INTERRUPTED, train_variant

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["train"].update(crop=32, steps={"phase1": 4, "phase2": 2}, val_every=2)
    config["tracking"]["enabled"] = False
    return validate_config(config)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- averaging
def test_the_average_decay_warms_up_to_the_published_value() -> None:
    assert decay_at(0) == pytest.approx(0.1) and decay_at(80) == pytest.approx(0.9)
    assert decay_at(500) == pytest.approx(501 / 510)
    assert decay_at(10**7) == PUBLISHED_DECAY  # capped


def test_the_average_folds_each_update_with_the_decay_of_its_step() -> None:
    model = nn.Linear(3, 2)
    average = WeightAverage(model)
    average.update(model)  # the first update copies the weights
    first = model.weight.detach().clone()
    assert torch.equal(average.model.weight, first)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)
    beta = decay_at(1)
    expected = beta * first + (1 - beta) * model.weight.detach()
    assert torch.allclose(average.model.weight, expected)
    assert not average.model.weight.requires_grad


def test_emrdm_publishes_averaged_weights_and_resumes_them(
    tiny_config: dict, scene_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = copy.deepcopy(tiny_config)
    reference = tmp_path / "reference"
    train_variant(config, "emrdm", scene_store, reference, threads=1, progress=False)
    averaged = load_file(str(reference / "last" / "averaged.safetensors"))
    raw = load_file(str(reference / "last" / "model.safetensors"))
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw), "the average is the model"
    best_step = yaml.safe_load((reference / "meta.json").read_text())["step"]
    if best_step == config["train"]["steps"]["phase1"]:  # published = the final average
        published = load_file(str(reference / "model.safetensors"))
        assert all(torch.equal(published[k], averaged[k]) for k in averaged)

    calls = {"n": 0}
    real_loss = trainer_module.compute_loss

    def loss_then_sigterm(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # during step 3, as SLURM preempts
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "compute_loss", loss_then_sigterm)
    resumed = tmp_path / "resumed"
    with pytest.raises(SystemExit) as stopped:
        train_variant(config, "emrdm", scene_store, resumed, threads=1, progress=False)
    assert stopped.value.code == EXIT_INTERRUPTED
    monkeypatch.setattr(trainer_module, "compute_loss", real_loss)
    train_variant(config, "emrdm", scene_store, resumed, threads=1, progress=False)
    got = load_file(str(resumed / "last" / "averaged.safetensors"))
    for key, value in averaged.items():
        assert torch.equal(value, got[key]), key


# --------------------------------------------------------------------------- distillation
def test_cloudseg_learns_from_a_frozen_teacher_it_must_be_given(
    tiny_config: dict, scene_store: Path, tmp_path: Path
) -> None:
    teacher = tmp_path / "cloudseg-teacher"
    train_variant(tiny_config, "cloudseg-teacher", scene_store, teacher, threads=1, progress=False)
    before = digest(teacher / "model.safetensors")
    with pytest.raises(ConfigError, match="--teacher"):
        train_variant(
            tiny_config, "cloudseg", scene_store, tmp_path / "nope", threads=1, progress=False
        )
    assert not (tmp_path / "nope").exists()
    student = tmp_path / "cloudseg"
    train_variant(
        tiny_config,
        "cloudseg",
        scene_store,
        student,
        teacher_dir=teacher,
        threads=1,
        progress=False,
    )
    assert digest(teacher / "model.safetensors") == before
    meta = yaml.safe_load((student / "meta.json").read_text())
    assert {"val/psnr", "val/miou"} <= set(meta["metrics"])


def test_predict_refuses_the_teacher(tiny_config: dict, scene_store: Path, tmp_path: Path) -> None:
    from tdpcr.prediction.engine import load_predictor

    teacher = tmp_path / "cloudseg-teacher"
    train_variant(tiny_config, "cloudseg-teacher", scene_store, teacher, threads=1, progress=False)
    with pytest.raises(InputDataError, match="teacher"):
        load_predictor(teacher)
