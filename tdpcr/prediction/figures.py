"""Figures of predictions: before / after (cloudy RGB, cloud-free RGB, land cover) and the
quality layer next to the true cloud mask of a synthetic scene."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio

from tdpcr.core.rendering import class_colors, landcover_rgb, rgb_composite
from tdpcr.core.specs import CLASS_NAMES, CLOUDMASK_UNKNOWN
from tdpcr.prediction.engine import PredictOptions, predict_scene
from tdpcr.prediction.writers import CLOUDFREE_NODATA


def before_after_figure(
    optical: Path,
    sar: Path,
    checkpoint: Path | str,
    out_png: Path,
    *,
    reference: Path | None = None,
    title: str | None = None,
    options: PredictOptions | None = None,
) -> Path:
    """Predict ``optical`` + ``sar`` with ``checkpoint`` and plot before / after / land cover.

    RGB panels show B4, B3, B2 with a 2-98 % linear stretch. One stretch, computed on the
    predicted cloud-free image (on ``reference`` when given), is applied to every RGB panel so
    their brightness compares; clouds in the cloudy input saturate to white. With
    ``reference`` (a cloud-free S2 of the same grid, e.g. SEN12MS-CR's ``s2_cloudfree``) a
    fourth panel shows it. Land cover uses the WorldCover-like colour table of the outputs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    options = options or PredictOptions(progress=False)
    with tempfile.TemporaryDirectory(prefix="tdpcr-figure-") as tmp:
        result = predict_scene(optical, sar, checkpoint, Path(tmp) / "pred", options)
        with rasterio.open(Path(tmp) / "pred" / "cloudfree.tif") as src:
            after = src.read()
        labels = None
        if "landcover.tif" in result.files:
            with rasterio.open(Path(tmp) / "pred" / "landcover.tif") as src:
                labels = src.read(1)
    with rasterio.open(optical) as src:
        before = src.read()
    clear = None
    if reference is not None:
        with rasterio.open(reference) as src:
            clear = src.read()
    reference_rgb = clear if clear is not None else after

    def rgb(image: np.ndarray) -> np.ndarray:
        return rgb_composite(image, reference_rgb, nodata=CLOUDFREE_NODATA)

    panels: list[tuple[str, np.ndarray]] = [
        ("cloudy input (S2 L1C)", rgb(before)),
        (f"predicted cloud-free ({result.model['variant'] or 'model'})", rgb(after)),
    ]
    if clear is not None:
        panels.append(("cloud-free reference (not seen)", rgb(clear)))
    if labels is not None:
        panels.append(("predicted land cover", landcover_rgb(labels, ignore_color=(0, 0, 0))))

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), squeeze=False)
    for ax, (name, data) in zip(axes[0], panels, strict=True):
        ax.imshow(data, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if labels is not None:
        present = sorted(int(v) for v in np.unique(labels) if v < len(CLASS_NAMES))
        colours = class_colors()
        handles = [Patch(color=colours[v], label=CLASS_NAMES[v]) for v in present]
        axes[0][-1].legend(
            handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3,
            fontsize=8, frameon=False,
        )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out_png


def quality_correlations(
    quality: np.ndarray, names: tuple[str, ...], mask: np.ndarray, opacity: np.ndarray | None
) -> dict[str, dict[str, float | None]]:
    """Pixel-level Pearson correlation of every quality band with the true cloud mask.

    ``mask``: (H, W) 0 clear, >= 1 cloud or shadow, 255 unknown (left out); with a binary mask
    Pearson's r is the point-biserial correlation. ``opacity`` (the synthetic generator's true
    cloud opacity, when the scene has it) gets its own r. NaN (nodata) pixels are left out.
    """
    known = mask != CLOUDMASK_UNKNOWN
    cloudy = (mask >= 1).astype(np.float64)
    result: dict[str, dict[str, float | None]] = {}
    for name, band in zip(names, quality, strict=True):
        valid = known & np.isfinite(band)
        row: dict[str, float | None] = {"cloud_mask": _pearson(band[valid], cloudy[valid])}
        if opacity is not None:
            ok = valid & np.isfinite(opacity)
            row["cloud_opacity"] = _pearson(band[ok], opacity[ok])
        result[name] = row
    return result


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def quality_figure(
    scene: Path,
    checkpoint: Path,
    out_png: Path,
    *,
    options: PredictOptions | None = None,
) -> Path:
    """Predict a synthetic scene folder and show ``quality.tif`` next to the true cloud mask.

    ``scene`` holds ``s2_cloudy.tif``, ``s1.tif`` and ``cloudmask.tif`` (and, from newer
    generators, ``cloud_opacity.tif``), as ``tdpcr synth`` writes them. Panels: cloudy RGB,
    true cloud mask, then the quality bands (the full-resolution and coarsest SAR weights, the
    prompt's estimate, the reflectance change), each on its own 2-98 % range, with its
    pixel-level correlation with the mask (every band's is in the JSON).
    The correlations are also written beside the PNG as JSON (``<out>.json``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tdpcr.core.io import write_json_atomic
    from tdpcr.core.specs import QUALITY_DESCRIPTIONS

    scene = Path(scene)
    optical, sar = scene / "s2_cloudy.tif", scene / "s1.tif"
    options = options or PredictOptions(progress=False)
    with tempfile.TemporaryDirectory(prefix="tdpcr-quality-") as tmp:
        result = predict_scene(optical, sar, checkpoint, Path(tmp) / "pred", options)
        with rasterio.open(Path(tmp) / "pred" / "quality.tif") as src:
            quality, names = src.read(), tuple(src.descriptions)
    with rasterio.open(optical) as src:
        before = src.read()
    with rasterio.open(scene / "cloudmask.tif") as src:
        mask = src.read(1)
    opacity = None
    if (scene / "cloud_opacity.tif").is_file():
        with rasterio.open(scene / "cloud_opacity.tif") as src:
            opacity = src.read(1).astype(np.float32)
    correlations = quality_correlations(quality, names, mask, opacity)

    # The full-resolution and the coarsest stage's SAR weight (the others lie between).
    stages = [n for n in names if n.startswith("sar_weight_stage")]
    shown = [n for n in names if not n.startswith("sar_weight_stage") or n == stages[-1]]
    panels = 2 + len(shown)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.7), squeeze=False)
    axes = axes[0]
    axes[0].imshow(rgb_composite(before), interpolation="nearest")
    axes[0].set_title("cloudy input (B4, B3, B2)", fontsize=9)
    axes[1].imshow(np.where(mask == CLOUDMASK_UNKNOWN, np.nan, mask >= 1), cmap="gray",
                   vmin=0, vmax=1, interpolation="nearest")  # fmt: skip
    axes[1].set_title("true cloud / shadow mask", fontsize=9)
    for ax, name in zip(axes[2:], shown, strict=True):
        band = quality[names.index(name)]
        # Each band on its own 2-98 % range (the colour bar gives the values): an early
        # model's weights stay near 0.5 and would look uniform on a fixed [0, 1] scale.
        low, high = np.nanpercentile(band, [2, 98])
        image = ax.imshow(band, cmap="magma", vmin=low, vmax=max(high, low + 1e-6),
                          interpolation="nearest")  # fmt: skip
        r = correlations[name]["cloud_mask"]
        ax.set_title(f"{name}\nr = {r:.2f} with the mask" if r is not None else name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(
        f"quality.tif of {scene.name} ({result.model['variant'] or 'model'}): "
        "pixel-level Pearson r with the true cloud mask",
        fontsize=10,
    )
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_json_atomic(
        out_png.with_suffix(".json"),
        {
            "scene": str(scene),
            "checkpoint": str(checkpoint),
            "variant": result.model["variant"],
            "pixels": int(mask.size),
            "cloud_fraction": float((mask[mask != CLOUDMASK_UNKNOWN] >= 1).mean()),
            "correlation": correlations,
            "bands": {n: QUALITY_DESCRIPTIONS.get(n, "") for n in names},
        },
    )
    return out_png
