"""Before / after figure of one scene: cloudy RGB, predicted cloud-free RGB, land cover."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio

from tdpcr.core.rendering import class_colors, landcover_rgb, rgb_composite
from tdpcr.core.specs import CLASS_NAMES
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
