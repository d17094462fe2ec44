"""Display helpers shared by every figure: true-colour composites and the land-cover colours.

One 2-98 % percentile stretch per band: the evaluation figures and the before/after figure
of a predicted scene both use :func:`rgb_composite`, so a composite looks the same wherever
it is drawn. numpy only.
"""

from __future__ import annotations

import numpy as np

from tdpcr.core.specs import CLASS_NAMES, LANDCOVER_COLORS, RGB_BANDS

#: Percentiles of the robust stretch.
STRETCH: tuple[float, float] = (2.0, 98.0)


def percentile_limits(values: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """(low, high) percentiles of :data:`STRETCH` (NaN-aware), stacked on a leading axis."""
    return np.nanpercentile(np.asarray(values, dtype=np.float64), STRETCH, axis=axis)


def stretch(values: np.ndarray, limits: np.ndarray | None = None) -> np.ndarray:
    """Linear stretch of ``values`` between ``limits`` (default: its own 2-98 %) to [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    low, high = percentile_limits(values) if limits is None else limits
    return np.clip((values - low) / max(float(high - low), 1e-12), 0.0, 1.0)


def rgb_composite(
    image: np.ndarray, reference: np.ndarray | None = None, nodata: float | None = None
) -> np.ndarray:
    """(13, H, W) optical image -> (H, W, 3) B4/B3/B2 in [0, 1], 2-98 % stretch per band.

    The limits come from ``reference`` (the same bands of another image, e.g. the cloud-free
    target, so several panels share one colour scale) when given, else from ``image``; pixels
    equal to ``nodata`` are left out of the limits. Works on DN and on reflectance alike.
    """
    bands = np.asarray(image, dtype=np.float64)[list(RGB_BANDS)]
    ref = bands if reference is None else np.asarray(reference, dtype=np.float64)[list(RGB_BANDS)]
    ref = ref.reshape(3, -1)
    if nodata is not None:
        ref = np.where(ref == nodata, np.nan, ref)
    low, high = percentile_limits(ref, axis=1)
    low, high = np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0)
    scale = np.maximum(high - low, 1e-12)
    rgb = (bands - low[:, None, None]) / scale[:, None, None]
    return np.clip(rgb, 0.0, 1.0).transpose(1, 2, 0)


def class_colors() -> list[tuple[float, float, float]]:
    """RGB in [0, 1] of each class, in :data:`CLASS_NAMES` order (for legends)."""
    return [tuple(v / 255 for v in LANDCOVER_COLORS[i][:3]) for i in range(len(CLASS_NAMES))]


def landcover_rgb(labels: np.ndarray, ignore_color: tuple[float, float, float] = (1, 1, 1)):
    """(H, W) class labels -> (H, W, 3) colours; labels outside the classes get ``ignore_color``."""
    table = np.array([*class_colors(), ignore_color], dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    index = np.where((labels < 0) | (labels >= len(CLASS_NAMES)), len(CLASS_NAMES), labels)
    return table[index]
