"""Before / after figure of one scene: cloudy RGB, predicted cloud-free RGB, land cover."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio

from tdpcr.constants import CLASS_NAMES, S2_BANDS
from tdpcr.data.synthetic import LANDCOVER_COLORS
from tdpcr.prediction.predict import PredictOptions, predict_scene

#: True-colour bands (B4, B3, B2) as 0-based indices into the 13 S2 bands.
RGB = tuple(S2_BANDS.index(b) for b in ("B4", "B3", "B2"))


def stretch_limits(rgb: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Per-band (low, high) percentiles of a (3, H, W) array, ignoring zeros (nodata)."""
    limits = []
    for band in rgb:
        valid = band[band > 0]
        lo, hi = np.percentile(valid, (low, high)) if valid.size else (0.0, 1.0)
        limits.append((lo, max(hi, lo + 1e-6)))
    return np.asarray(limits, dtype=np.float64)


def to_rgb(image: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """(13, H, W) DN -> (H, W, 3) floats in [0, 1], stretched linearly between ``limits``."""
    rgb = image[list(RGB)].astype(np.float64)
    out = (rgb - limits[:, :1, None]) / (limits[:, 1:, None] - limits[:, :1, None])
    return np.clip(out, 0.0, 1.0).transpose(1, 2, 0)


def before_after_figure(
    optical: Path,
    sar: Path,
    checkpoint: Path,
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
    limits = stretch_limits((clear if clear is not None else after)[list(RGB)].astype(float))

    panels: list[tuple[str, np.ndarray, bool]] = [
        ("cloudy input (S2 L1C)", to_rgb(before, limits), False),
        (
            f"predicted cloud-free ({result.model['variant'] or 'model'})",
            to_rgb(after, limits),
            False,
        ),
    ]
    if clear is not None:
        panels.append(("cloud-free reference (not seen)", to_rgb(clear, limits), False))
    if labels is not None:
        colours = np.zeros((256, 3), dtype=np.float64)
        for value, rgba in LANDCOVER_COLORS.items():
            colours[value] = np.asarray(rgba[:3]) / 255.0
        panels.append(("predicted land cover", colours[labels], True))

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), squeeze=False)
    for ax, (name, data, _) in zip(axes[0], panels, strict=True):
        ax.imshow(data, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if labels is not None:
        present = sorted(int(v) for v in np.unique(labels) if v < len(CLASS_NAMES))
        handles = [
            Patch(color=np.asarray(LANDCOVER_COLORS[v][:3]) / 255.0, label=CLASS_NAMES[v])
            for v in present
        ]
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
