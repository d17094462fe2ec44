"""The accuracy guard of the prediction paths on a trained checkpoint and a whole scene.

Every fast path ``tdpcr predict`` offers is compared with the reference path (fp32 eager,
256-px windows, overlap 64, global statistics): the cloud-free image's PSNR against the
scene's clear image must stay within :data:`PSNR_TOLERANCE_DB` of the reference's, and at most
:data:`LANDCOVER_TOLERANCE` of the land-cover pixels may change class. The speed of a path is
measured on a randomly initialised paper-size model (:mod:`tdpcr.benchmarks.predict_tile`);
its accuracy needs trained weights, so it is measured here, on the default run's checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from tdpcr.core.errors import InputDataError
from tdpcr.core.metrics import psnr_per_image
from tdpcr.core.specs import IGNORE_INDEX, S2_SCALE
from tdpcr.data.store import open_store
from tdpcr.prediction.engine import PredictOptions, load_predictor, predict_scene

#: The guard: PSNR within 0.05 dB of the reference ...
PSNR_TOLERANCE_DB = 0.05
#: ... and at most 0.1 % of the land-cover pixels changed.
LANDCOVER_TOLERANCE = 0.001
#: The reference path every other one is compared with.
REFERENCE: dict[str, Any] = {
    "window": 256,
    "overlap": 64,
    "batch_size": 8,
    "precision": "fp32",
    "backend": "eager",
    "local_stats": "off",
}


def first_test_scene(store: Path, scenes_root: Path) -> Path:
    """The folder under ``scenes_root`` of the store's first test-split scene (sorted)."""
    ds = open_store(Path(store))
    pairs = zip(ds["group"].values, ds["split"].values, strict=True)
    groups = sorted({str(group) for group, split in pairs if split == "test"})
    if not groups:
        raise InputDataError(f"{store}: no test-split patches; expected a split store")
    return Path(scenes_root) / groups[0]


def _reflectance(path: Path) -> torch.Tensor:
    """(1, C, H, W) reflectance in [0, 1] of a GeoTIFF in DN (S2 scale)."""
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32) / S2_SCALE
    return torch.from_numpy(np.clip(data, 0.0, 1.0))[None]


def _labels(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    with rasterio.open(path) as src:
        return src.read(1)


def _predict(
    predictor: Any, scene: Path, out: Path, options: dict[str, Any]
) -> tuple[torch.Tensor, np.ndarray | None]:
    """The path's cloud-free reflectance and land cover of ``scene``."""
    shutil.rmtree(out, ignore_errors=True)
    predict_scene(
        scene / "s2_cloudy.tif", scene / "s1.tif", predictor, out,
        PredictOptions(**options, progress=False),
    )  # fmt: skip
    return _reflectance(out / "cloudfree.tif"), _labels(out / "landcover.tif")


def guard_figures(
    checkpoint: Path,
    scene: Path,
    paths: dict[str, dict[str, Any]],
    workdir: Path,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each path's PSNR and land cover on ``scene`` against the reference path.

    Args:
        checkpoint: a trained checkpoint folder (``tdpcr train`` output).
        scene: folder with ``s2_cloudy.tif``, ``s1.tif`` and ``s2_clear.tif``.
        paths: path name -> prediction options; unset keys are the reference's.
        workdir: scratch folder (removed afterwards).
        reference: changes to :data:`REFERENCE` (a small scene needs smaller windows).

    Returns:
        ``{"reference": {...}, "paths": {name: {psnr_db, psnr_delta_db,
        landcover_changed_fraction, within_guard}}}``.
    """
    workdir = Path(workdir)
    base = {**REFERENCE, **(reference or {})}
    predictor = load_predictor(checkpoint)
    target = _reflectance(scene / "s2_clear.tif")
    try:
        ref_image, ref_labels = _predict(predictor, scene, workdir / "reference", base)
        ref_psnr = float(psnr_per_image(ref_image, target)[0])
        figures = {}
        for name, options in paths.items():
            # threads None (torch's default, the old settings) only changes the speed.
            options = {k: v for k, v in options.items() if not (k == "threads" and v is None)}
            image, labels = _predict(predictor, scene, workdir / name, {**base, **options})
            psnr = float(psnr_per_image(image, target)[0])
            changed = 0.0
            if labels is not None and ref_labels is not None:
                valid = ref_labels != IGNORE_INDEX
                changed = float((labels[valid] != ref_labels[valid]).mean())
            delta = psnr - ref_psnr
            figures[name] = {
                "psnr_db": round(psnr, 3),
                "psnr_delta_db": round(delta, 4),
                "max_abs_reflectance_difference": round(float((image - ref_image).abs().max()), 5),
                "landcover_changed_fraction": round(changed, 6),
                "within_guard": bool(
                    abs(delta) <= PSNR_TOLERANCE_DB and changed <= LANDCOVER_TOLERANCE
                ),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "checkpoint": str(checkpoint),
        "scene": str(scene),
        "reference": {"options": base, "psnr_db": round(ref_psnr, 3)},
        "tolerance": {"psnr_db": PSNR_TOLERANCE_DB, "landcover_fraction": LANDCOVER_TOLERANCE},
        "paths": figures,
    }
