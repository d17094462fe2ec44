"""Evaluation protocols of the paper's Tables I-III: run a method, score it, record it.

The methods (which variants, wired how) are listed in :mod:`tdpcr.evaluation.methods`.
:func:`evaluate_method` runs one method over a split (the test split, full patches, store
order), scores it with :class:`~tdpcr.core.metrics.ReconstructionMeter` (PSNR per image
over all 13 bands on [0, 1] reflectance, averaged over images; SSIM 11x11 Gaussian; all,
cloudy and clear pixels) and :class:`~tdpcr.core.metrics.SegmentationMeter` (one global
confusion matrix; PA, mIoU; all, cloudy and clear pixels), writes a small JSON and logs the
metrics into the MLflow training run(s) of the variant(s) it evaluated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tdpcr.core.checkpoint import CheckpointMeta, ModelSpec, load_checkpoint
from tdpcr.core.errors import InputDataError
from tdpcr.core.io import write_json_atomic
from tdpcr.core.metrics import ReconstructionMeter, SegmentationMeter
from tdpcr.core.runtime import (
    autocast,
    reuse_cpu_memory_on,
    select_device,
    set_threads,
    to_device,
)
from tdpcr.core.specs import (
    CLASS_IOU,
    CLASS_NAMES,
    CR_METRICS,
    IGNORE_INDEX,
    REGIONS,
    SEG_METRICS,
)
from tdpcr.evaluation.methods import PGF_METHODS, Method, get_method
from tdpcr.evaluation.pgf import PGFMeter
from tdpcr.evaluation.spectrum import SpectrumMeter
from tdpcr.models import create_model_from
from tdpcr.training.variants import get_variant, model_kwargs, steps_from_scratch

log = logging.getLogger(__name__)

#: One line in every evaluation JSON, so a number is never read without its convention.
CONVENTIONS = (
    "PSNR: per image over all 13 bands, reflectance clamped to [0, 1], data range 1, mean over "
    "images (per-image PSNR capped at 100 dB). SSIM: 11x11 Gaussian window, sigma 1.5, "
    "K1 0.01, K2 0.03, per band then mean over bands, 5-pixel border left out. RMSE / MAE: "
    "per image over all bands (reflectance); SAM: spectral angle per pixel in degrees, mean "
    "over the image's pixels; each then averaged over images. PA / mIoU / iou_<class>: one "
    "confusion matrix over the split, label 255 ignored, mIoU over classes present. "
    "_cloudy / _clear: pixels with cloud mask 1 or 2 (cloud, shadow) / 0."
)


# --------------------------------------------------------------------------- models
def load_variant_model(
    models_dir: Path, name: str, config: Mapping[str, Any], device: torch.device | str = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Build variant ``name`` from the config, load ``models_dir/<name>``; eval mode on device.

    The architecture is built from the *config* and checked against the checkpoint's
    metadata, so a checkpoint trained with other model sizes is refused with one line instead
    of failing on a tensor shape (or, worse, evaluating a model the config does not describe).

    Returns:
        (model, :class:`~tdpcr.core.checkpoint.CheckpointMeta`).
    """
    variant = get_variant(name)
    kwargs = model_kwargs(variant, dict(config["models"]), len(CLASS_NAMES))
    expect = ModelSpec(variant.model, kwargs, variant=name)
    checkpoint = load_checkpoint(Path(models_dir) / name, expect=expect)
    return create_model_from(checkpoint).to(device).eval(), checkpoint.meta


def predict(
    method: Method,
    models: Mapping[str, nn.Module],
    batch: Mapping[str, Any],
    return_weights: bool = False,
) -> dict[str, Any]:
    """Run ``method`` on a batch: ``image`` (B, 13, H, W) and/or ``logits`` (B, K, H, W).

    ``models`` maps variant name to a loaded model (:func:`load_variant_model`). Outputs are
    float32 (autocast may compute in bfloat16). ``return_weights`` (TDP-CR CR models only)
    adds ``weights``, the PGF modality weights per stage (see ``TDPCR.forward``).
    """
    out: dict[str, Any] = {}
    cr_out: Mapping[str, Any] | None = None
    image: torch.Tensor | None = None
    if method.cr_variant is not None:
        extra = {"return_weights": True} if return_weights else {}
        cr_out = models[method.cr_variant](batch["s2_cloudy"], batch["s1"], **extra)
        image = cr_out["image"].float()
        if return_weights:
            out["weights"] = cr_out["weights"]
    elif method.scores_cr:
        image = batch["s2_cloudy"]  # the no-op reference: the cloudy image as the prediction
    if image is not None:
        out["image"] = image
    if method.seg_variant is not None:
        if method.seg_source == "head":
            if cr_out is None or "logits" not in cr_out:
                raise InputDataError(f"{method.cr_variant}: the model has no segmentation head")
            logits = cr_out["logits"]
        elif method.seg_source == "cr_output":
            if image is None:
                raise ValueError(f"method {method.name}: multi-stage without a CR model")
            # The segmenter was trained on reflectance in [0, 1] (normalise_s2 clips); a CR
            # output is unbounded, so it gets the same range before it is segmented.
            logits = models[method.seg_variant](image.clamp(0.0, 1.0))["logits"]
        else:
            source = get_variant(method.seg_variant).seg_input or "s2_clear"
            logits = models[method.seg_variant](batch[source])["logits"]
        out["logits"] = logits.float()
    return out


# --------------------------------------------------------------------------- evaluation
def tracking_target(config: Mapping[str, Any], enabled: bool) -> tuple[str, str] | None:
    """(tracking URI, experiment) when tracking is on, else None."""
    tracking = config["tracking"]
    if not (enabled and tracking["enabled"]):
        return None
    from tdpcr.tracking import resolve_uri

    return resolve_uri(tracking["uri"]), str(config["name"])


@dataclass
class Scores:
    """What one pass over a split measured: the meters and which patches they saw."""

    reconstruction: ReconstructionMeter = field(default_factory=ReconstructionMeter)
    segmentation: SegmentationMeter = field(
        default_factory=lambda: SegmentationMeter(len(CLASS_NAMES), IGNORE_INDEX)
    )
    patch_ids: list[str] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    #: PGF SAR weights by mask and opacity (TDP-CR methods with ``pgf`` on), else None.
    pgf: PGFMeter | None = None
    #: Grid-line energy of output and reference (methods with ``pgf`` on), else None.
    spectrum: SpectrumMeter | None = None


def score_split(
    method: Method,
    models: Mapping[str, nn.Module],
    loader,
    device: torch.device,
    pgf: bool = False,
) -> Scores:
    """Run ``method`` over every batch of ``loader`` and score it patch by patch.

    ``pgf`` also measures the PGF weights (:class:`PGFMeter`, needs the cloud mask) and the
    outputs' grid energy (:class:`SpectrumMeter`); off, nothing extra is computed or kept.
    """
    scores = Scores()
    if pgf:
        scores.pgf, scores.spectrum = PGFMeter(), SpectrumMeter()
    with torch.inference_mode():
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device.type == "cuda"):
                pred = predict(method, models, batch, return_weights=pgf)
            cloudmask = batch.get("cloudmask")
            if scores.pgf is not None and scores.spectrum is not None:
                scores.pgf.update(pred["weights"], cloudmask, batch.get("cloud_opacity"))
                scores.spectrum.update(pred["image"], batch["s2_clear"])
            if method.scores_cr:
                scores.reconstruction.update(pred["image"], batch["s2_clear"], cloudmask)
            if method.scores_seg:
                scores.segmentation.update(pred["logits"].argmax(1), batch["landcover"], cloudmask)
            scores.patch_ids.extend(batch["patch_id"])
            scores.indexes.extend(int(i) for i in batch["index"])
    return scores


def summarise(method: Method, scores: Scores) -> tuple[dict, dict, dict]:
    """(metrics, per-class IoU by region, per-patch values) of a scored split.

    Metrics are over the split (means over patches; PA / mIoU / per-class IoU of the summed
    confusion matrices); the per-patch values (one entry per patch, in ``patch_id`` order) let
    tables and claims bootstrap them.
    """
    metrics: dict[str, float] = {}
    per_class: dict[str, dict[str, float]] = {}
    per_patch: dict[str, Any] = {"patch_id": scores.patch_ids}
    if method.scores_cr:
        rec = scores.reconstruction.compute()
        metrics.update({k: float(rec[k]) for k in CR_METRICS})
        per_patch.update({k: v.tolist() for k, v in scores.reconstruction.per_image().items()})
    if method.scores_seg:
        seg = scores.segmentation.compute()
        metrics.update({k: float(seg[k]) for k in SEG_METRICS})
        for region in REGIONS:
            values = dict(zip(CLASS_NAMES, seg[f"per_class_iou{region}"], strict=True))
            per_class[region.removeprefix("_") or "all"] = values
        metrics.update(dict(zip(CLASS_IOU, per_class["all"].values(), strict=True)))
        per_patch["confusion"] = {
            region.removeprefix("_") or "all": cm.tolist()
            for region, cm in scores.segmentation.per_image().items()
        }
    if scores.pgf is not None:
        per_patch.update(scores.pgf.per_patch())
    return metrics, per_class, per_patch


def _train_steps(meta: CheckpointMeta) -> int | None:
    """Optimizer steps behind a checkpoint from random initialisation, by the step rule of the
    config it was trained with (None for a checkpoint without one)."""
    steps = meta.config.get("train", {}).get("steps")
    return steps_from_scratch(get_variant(meta.variant), steps) if steps else None


def _model_info(
    models_dir: Path, metas: Mapping[str, CheckpointMeta], target: tuple[str, str] | None
) -> dict[str, dict[str, Any]]:
    """Checkpoint, step, config hash, validation metrics and MLflow run of every variant."""
    info: dict[str, dict[str, Any]] = {}
    for name, meta in metas.items():
        run_id = None
        config_hash = meta.extra.get("config_hash")
        if target is not None and config_hash:
            from tdpcr.tracking import find_variant_run

            run_id = find_variant_run(target[0], target[1], name, config_hash)
            if run_id is None:
                log.warning("no MLflow run of %s (config hash %s) found", name, config_hash)
        info[name] = {
            "checkpoint": str(Path(models_dir) / name / "model.safetensors"),
            "step": meta.step,
            "train_steps": _train_steps(meta),
            "config_hash": config_hash,
            "mlflow_run_id": run_id or "",
            "validation": meta.metrics,
        }
    return info


def evaluate_method(
    config: Mapping[str, Any],
    method_name: str,
    store: Path,
    models_dir: Path,
    out: Path | None = None,
    *,
    split: str = "test",
    batch_size: int | None = None,
    threads: int = 1,
    force_cpu: bool = False,
    tracking: bool = True,
    pgf: bool | None = None,
) -> dict[str, Any]:
    """Evaluate one method on ``split`` of ``store`` at full patch size; return the result.

    Args:
        config: the validated workflow config (model sizes, tracking, experiment name).
        method_name: a key of :data:`METHODS`.
        store: the tile store.
        models_dir: folder of the variants' checkpoints (``results/models``).
        out: JSON file to write atomically (``results/eval/<method>.json``); None = none.
        split: split to score (``test``).
        batch_size: patches per batch (default: ``train.val_batch_size``).
        threads: CPU threads for torch (capped by the CPUs available).
        force_cpu: ignore CUDA.
        tracking: log into MLflow (when the config enables it too).
        pgf: measure the PGF SAR weights and the output's grid energy (``pgf`` and ``grid``
            sections, ``pgf_sar_*`` per-patch values); needs the store's cloud mask. None =
            for :data:`PGF_METHODS` when the store has a cloud mask.

    Returns:
        The JSON content: ``method``, ``metrics`` (flat; NaN where nothing could be scored),
        ``per_class_iou``, ``per_patch`` (every score per test patch, and each patch's
        confusion matrices), ``models`` (checkpoint, step, run id per variant),
        ``mlflow_run_id`` (the evaluated runs' ids joined by ``;``, empty without tracking)
        and context.
    """
    from tdpcr.data.dataset import make_loader
    from tdpcr.data.store import open_store

    started = time.perf_counter()
    method = get_method(method_name)
    device = select_device(force_cpu)
    reuse_cpu_memory_on(device)
    torch_threads = set_threads(threads)
    print(f"method {method.name}: device {device}, {torch_threads} torch threads", flush=True)

    models: dict[str, nn.Module] = {}
    metas: dict[str, CheckpointMeta] = {}
    for name in method.variants:
        models[name], metas[name] = load_variant_model(models_dir, name, config, device)

    ds = open_store(store)
    missing = [p for p in method.pieces() if p not in ds]
    if missing:
        raise InputDataError(f"{store}: method {method.name} needs {missing[0]!r}, absent")
    pieces = [*method.pieces(), *(["cloudmask"] if "cloudmask" in ds else [])]
    if pgf is None:  # by default where it can be measured: PGF methods, a store with masks
        pgf = method.name in PGF_METHODS and "cloudmask" in ds
    if pgf:
        if method.cr_variant is None or get_variant(method.cr_variant).model != "tdpcr":
            raise InputDataError(f"method {method.name}: PGF weights need a TDP-CR model")
        if "cloudmask" not in ds:
            raise InputDataError(f"{store}: the PGF measure needs 'cloudmask', absent")
        pieces += ["cloud_opacity"] if "cloud_opacity" in ds else []
    size = int(batch_size or config["train"]["val_batch_size"])
    loader = make_loader(store, split, batch_size=size, train=False, workers=0, pieces=pieces)
    scores = score_split(method, models, loader, device, pgf=pgf)
    metrics, per_class, per_patch = summarise(method, scores)
    per_patch["group"] = ds["group"].values[scores.indexes].tolist()

    target = tracking_target(config, tracking)
    model_info = _model_info(Path(models_dir), metas, target)
    run_ids = [info["mlflow_run_id"] for info in model_info.values() if info["mlflow_run_id"]]
    result: dict[str, Any] = {
        "method": method.name,
        "label": method.label,
        "variants": list(method.variants),
        "wiring": {
            "cloud_removal": method.cr_variant or ("cloudy input" if method.scores_cr else None),
            "segmentation": method.seg_variant,
            "segmentation_input": method.seg_source,
        },
        "split": split,
        "train_seed": int(config["train"]["seed"]),
        "patches": len(loader.dataset),
        "groups": len(set(per_patch["group"])),
        "patch_size": int(ds.attrs["patch_size"]),
        "store": str(store),
        "device": str(device),
        "metrics": metrics,
        "per_class_iou": per_class,
        "psnr_capped_images": scores.reconstruction.num_capped if method.scores_cr else 0,
        "models": model_info,
        # Steps from random initialisation of each model, in the order of `variants`.
        "train_steps": ";".join(str(model_info[v]["train_steps"]) for v in method.variants),
        "mlflow_run_id": ";".join(run_ids),
        "metric_prefix": method.metric_prefix,
        "conventions": CONVENTIONS,
        "seconds": round(time.perf_counter() - started, 3),
        "per_patch": per_patch,
    }
    if scores.pgf is not None and scores.spectrum is not None:
        result["pgf"] = scores.pgf.summary()
        result["grid"] = scores.spectrum.compute()
    if out is not None:
        write_json_atomic(Path(out), result)
    if target is not None:
        from tdpcr.tracking import record_evaluation

        logged = {f"{method.metric_prefix}{k}": v for k, v in metrics.items()}
        for name, info in model_info.items():
            if info["mlflow_run_id"]:
                artifact = Path(out) if out is not None else None
                record_evaluation(
                    target[0],
                    info["mlflow_run_id"],
                    logged,
                    metas[name].step,
                    artifact,
                    store=Path(store),
                    split=split,
                )
    return result
