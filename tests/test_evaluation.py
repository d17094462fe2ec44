"""Evaluation: protocols on tiny trained checkpoints, MLflow logging, tables, figures."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tdpcr.cli import main
from tdpcr.core.config import validate_config
from tdpcr.core.errors import InputDataError
from tdpcr.core.metrics import ReconstructionMeter
from tdpcr.core.specs import CLASS_IOU, CR_METRICS, SEG_METRICS
from tdpcr.data.dataset import make_loader
from tdpcr.evaluation.figures import (
    load_patches,
    make_figures,
    plot_training_curves,
    prompt_pca,
    rgb_composite,
    select_patches,
)
from tdpcr.evaluation.methods import METHODS, figure_variants
from tdpcr.evaluation.protocols import (
    evaluate_method,
    load_variant_model,
    predict,
)
from tdpcr.evaluation.tables import (
    TABLES,
    table_methods,
)
from tdpcr.tracking import Tracker, init_store
from tdpcr.training.trainer import train_variant
from tdpcr.training.variants import VARIANTS

REPO = Path(__file__).resolve().parents[1]

#: What the tests train (2 steps each): everything the figures and multi-stage protocols run.
TRAINED = (
    "tdpcr-cr",
    "tdpcr-full",
    "dsen2cr",
    "glfcr",
    "hpncr",
    "emrdm",
    "cloudseg",
    "segformer-clear",
    "segformer-cloudy",
    "segformer-sar",
)
#: Trained first: the teacher CloudSeg's student learns from (not itself in a figure).
TEACHERS = ("cloudseg-teacher",)


@pytest.fixture(scope="module")
def trained(scene_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """(config tracking into a fresh store, checkpoints folder) for the TRAINED variants."""
    root = tmp_path_factory.mktemp("eval-models")
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["train"].update(
        crop=32,
        steps={"phase1": 2, "phase2": 2},
        val_every=2,
        val_max_batches=1,
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config["tracking"]["uri"] = uri
    config = validate_config(config)
    init_store(uri)
    for name in (*TEACHERS, *TRAINED):
        init, teacher = VARIANTS[name].init_from, VARIANTS[name].teacher
        train_variant(
            config,
            name,
            scene_store,
            root / name,
            init_dir=root / init if init else None,
            teacher_dir=root / teacher if teacher else None,
            threads=1,
            progress=False,
            tracker=Tracker(True, uri, config["name"]),
        )
    return config, root


def _runs(config: dict) -> dict:
    """Variant (phase) runs by name; single-phase families share the name with their parent."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config["tracking"]["uri"])
    experiment = client.get_experiment_by_name(config["name"])
    runs = client.search_runs([experiment.experiment_id])
    return {r.info.run_name: r for r in runs if r.data.tags.get("tdpcr.level") != "model"}


def _test_patches(store: Path) -> int:
    from tdpcr.data.store import open_store

    return int((open_store(store)["split"].values == "test").sum())


# --------------------------------------------------------------------------- registry
def test_methods_cover_the_tables_and_name_trained_variants() -> None:
    for method in METHODS.values():
        assert set(method.variants) <= set(VARIANTS), method.name
        assert "+" not in method.metric_prefix  # MLflow refuses '+' in metric names
    for table in TABLES:
        assert set(table_methods(table)) <= set(METHODS)
    assert METHODS["dsen2cr+segformer-clear"].variants == ("dsen2cr", "segformer-clear")
    assert METHODS["cloudy-input"].variants == ()
    assert set(figure_variants()) == set(TRAINED)


# --------------------------------------------------------------------------- protocols
def test_evaluate_cli_multitask_writes_json_and_logs_to_the_run(
    trained: tuple[dict, Path], scene_store: Path, tmp_path: Path
) -> None:
    config, models = trained
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "eval" / "tdpcr-full.json"
    args = [
        "evaluate",
        "--config",
        str(config_file),
        "--method",
        "tdpcr-full",
        "--store",
        str(scene_store),
        "--models",
        str(models),
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "tdpcr-full" and result["split"] == "test"
    assert result["patches"] == _test_patches(scene_store)
    assert set(result["metrics"]) == set(CR_METRICS) | set(SEG_METRICS) | set(CLASS_IOU)
    metrics = result["metrics"]
    assert metrics["psnr"] > 0 and 0 <= metrics["ssim"] <= 1
    assert 0 <= metrics["pa"] <= 1 and 0 <= metrics["miou"] <= 1
    run = _runs(config)["tdpcr-full"]
    assert result["mlflow_run_id"] == run.info.run_id
    assert result["models"]["tdpcr-full"]["mlflow_run_id"] == run.info.run_id
    assert run.data.metrics["test/psnr"] == pytest.approx(metrics["psnr"])
    assert run.data.metrics["test/miou"] == pytest.approx(metrics["miou"])
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left nothing behind
    # A PGF method: SAR weights per patch and stage, opacity bins and the grid energy.
    per_patch = result["per_patch"]
    assert len(per_patch["pgf_sar_cloudy_s4"]) == result["patches"]
    assert result["pgf"]["stages"] == 4 and result["grid"]["patches"] == result["patches"]
    clear = [v for v in per_patch["pgf_sar_clear_s1"] if v is not None]
    assert clear and all(0 <= v <= 1 for v in clear)


def test_cloudy_input_scores_the_cloudy_image(
    trained: tuple[dict, Path], scene_store: Path
) -> None:
    config, models = trained
    result = evaluate_method(config, "cloudy-input", scene_store, models, tracking=False)
    assert result["mlflow_run_id"] == "" and result["models"] == {}
    assert "pgf" not in result and "pgf_sar_gap_mean" not in result["per_patch"]
    meter = ReconstructionMeter()
    for batch in make_loader(scene_store, "test", batch_size=4, train=False):
        meter.update(batch["s2_cloudy"], batch["s2_clear"], batch["cloudmask"])
    expected = meter.compute()
    for key in CR_METRICS:
        got, want = result["metrics"][key], expected[key]
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-9)


def test_multistage_feeds_the_cr_output_to_segformer(
    trained: tuple[dict, Path], scene_store: Path
) -> None:
    config, models_dir = trained
    method = METHODS["dsen2cr+segformer-clear"]
    models = {name: load_variant_model(models_dir, name, config)[0] for name in method.variants}
    seen: list[torch.Tensor] = []
    hook = models["segformer-clear"].register_forward_pre_hook(
        lambda module, inputs: seen.append(inputs[0].clone())
    )
    batch = next(iter(make_loader(scene_store, "test", batch_size=2, train=False)))
    with torch.inference_mode():
        out = predict(method, models, batch)
        hook.remove()
        restored = models["dsen2cr"](batch["s2_cloudy"], batch["s1"])["image"]
        direct = models["segformer-clear"](batch["s2_clear"])["logits"]
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], restored.clamp(0, 1))  # the DSen2-CR output, not S2
    assert not torch.allclose(out["logits"], direct)
    assert set(out) == {"image", "logits"}


def test_direct_segformer_reads_its_own_input(
    trained: tuple[dict, Path], scene_store: Path
) -> None:
    config, models_dir = trained
    method = METHODS["segformer-sar"]
    model = load_variant_model(models_dir, "segformer-sar", config)[0]
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    batch = next(iter(make_loader(scene_store, "test", batch_size=2, train=False)))
    with torch.inference_mode():
        predict(method, {"segformer-sar": model}, batch)
    assert torch.equal(seen[0], batch["s1"])


def test_multistage_evaluation_logs_into_both_runs(
    trained: tuple[dict, Path], scene_store: Path, tmp_path: Path
) -> None:
    config, models = trained
    out = tmp_path / "dsen2cr+segformer-clear.json"
    result = evaluate_method(config, "dsen2cr+segformer-clear", scene_store, models, out)
    # CR is Table I's dsen2cr row
    assert set(result["metrics"]) == set(SEG_METRICS) | set(CLASS_IOU)
    # Steps from random initialisation, per model: a reconstructor at N, then a SegFormer at N.
    assert result["train_steps"] == "2;2"
    assert [result["models"][v]["train_steps"] for v in ("dsen2cr", "segformer-clear")] == [2, 2]
    runs = _runs(config)
    ids = [runs["dsen2cr"].info.run_id, runs["segformer-clear"].info.run_id]
    assert result["mlflow_run_id"] == ";".join(ids)
    for name in ("dsen2cr", "segformer-clear"):
        logged = _runs(config)[name].data.metrics
        assert logged["test/dsen2cr_then_segformer-clear/miou"] == pytest.approx(
            result["metrics"]["miou"]
        )
        assert "test/miou" not in logged or name == "segformer-clear"


def test_incompatible_checkpoint_is_refused(trained: tuple[dict, Path], scene_store: Path) -> None:
    config, models = trained
    other = copy.deepcopy(config)
    other["models"]["dsen2cr"]["features"] = 16
    with pytest.raises(InputDataError, match="features=8 in the checkpoint, 16 expected"):
        evaluate_method(other, "dsen2cr", scene_store, models, tracking=False)
    with pytest.raises(InputDataError, match="unknown method"):
        evaluate_method(config, "glf-cr", scene_store, models, tracking=False)


# --------------------------------------------------------------------------- tables
# --------------------------------------------------------------------------- figures
def test_rgb_stretch_and_prompt_pca() -> None:
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.0, 0.2, (13, 16, 16))
    rgb = rgb_composite(reference)
    assert rgb.shape == (16, 16, 3) and rgb.min() == 0.0 and rgb.max() == 1.0
    cloudy = rgb_composite(reference + 0.5, reference)  # a bright cloud saturates, not rescales
    assert (cloudy == 1.0).all()
    prompt = torch.from_numpy(rng.normal(size=(2, 4, 8, 8))).float()
    pca = prompt_pca(prompt)
    assert pca.shape == (2, 8, 8, 3) and pca.min() >= 0 and pca.max() <= 1
    np.testing.assert_array_equal(pca, prompt_pca(prompt))
    assert prompt_pca(prompt[:, :2])[..., 2].max() == 0  # two channels: third component empty


def test_figures_are_written(trained: tuple[dict, Path], scene_store: Path, tmp_path: Path):
    import matplotlib.image

    config, models = trained
    positions = select_patches(scene_store, "test", 3)
    batch = load_patches(scene_store, "test", positions, ["cloudmask"])
    covers = [float((m == 1).float().mean()) for m in batch["cloudmask"]]
    assert len(positions) == 3 and covers == sorted(covers)
    paths = [tmp_path / name for name in ("fig3.png", "fig4.png", "fig5.png")]
    written = make_figures(config, scene_store, models, *paths, rows=3)
    assert written == paths
    for path in paths:
        image = matplotlib.image.imread(path)
        assert path.stat().st_size > 10_000 and image.shape[0] > 300 and image.std() > 0

    curves = tmp_path / "curves.png"
    histories = plot_training_curves(config, models, list(TRAINED), curves)
    assert set(histories) == set(TRAINED)
    assert [s for s, _ in histories["tdpcr-full"]["train/loss"]] == [1, 2]
    assert "val/miou" in histories["segformer-sar"] and "val/psnr" in histories["dsen2cr"]
    assert curves.stat().st_size > 10_000

    off = tmp_path / "off.png"
    assert plot_training_curves(config, models, ["dsen2cr"], off, tracking=False) == {}
    assert off.stat().st_size > 0
