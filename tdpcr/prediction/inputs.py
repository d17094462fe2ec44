"""Opening and checking a scene's inputs, and cutting them into normalised model windows.

Value conventions are the training ones (:mod:`tdpcr.data.normalize`): S2 L1C digital numbers
(reflectance x 1e4; pass ``s2_offset=1000`` for processing baseline >= 04.00 products) and S1
backscatter in dB (VV, VH). Nodata: an S2 pixel is nodata when all 13 bands equal the file's
nodata value, or are all 0, or any band is NaN; it is fed to the model as 0 and written as
nodata by :mod:`tdpcr.prediction.writers`. S1 nodata (the file's nodata value, NaN, or outside
the S1 footprint) becomes the normalised floor 0, as in training; the optical pixel stays
valid. Inputs are read in row strips (windowed reads; S1 on another grid through a GDAL warped
VRT, which reprojects only what is read), so memory grows with the scene width only.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import S1_BANDS, S2_BANDS
from tdpcr.data.normalize import normalise_s1, normalise_s2
from tdpcr.data.rasters import Grid

log = logging.getLogger(__name__)


@dataclass
class OpenInputs:
    """Open input datasets and what was learnt checking them."""

    s2: DatasetReader
    s1: Any  # DatasetReader or WarpedVRT: both offer read(window=...)
    grid: Grid
    s2_nodata: float | None
    s1_nodata: float | None
    s1_reprojected: bool


def _open_raster(path: Path, what: str) -> DatasetReader:
    if not Path(path).is_file():
        raise InputDataError(f"{path}: file not found (expected {what})")
    try:
        with warnings.catch_warnings():
            # A file without georeferencing is refused below with one line naming it;
            # rasterio's multi-line warning would only repeat that.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputDataError(f"{path}: not a readable GeoTIFF ({first})") from None


def _same_grid(a: DatasetReader, b: DatasetReader) -> bool:
    """Same CRS, shape and pixel grid (origins within 1/1000 pixel, sizes within 1e-6)."""
    if a.crs != b.crs or a.shape != b.shape:
        return False
    ta, tb = a.transform, b.transform
    pixel = max(abs(ta.a), abs(ta.e))
    same_size = all(
        abs(x - y) <= 1e-6 * pixel
        for x, y in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e))
    )
    return same_size and abs(ta.c - tb.c) <= 1e-3 * pixel and abs(ta.f - tb.f) <= 1e-3 * pixel


def _footprint_coverage(s2: DatasetReader, s1: DatasetReader) -> float:
    """Fraction of the S2 footprint inside the S1 footprint (bounding boxes, in S2's CRS)."""
    left, bottom, right, top = transform_bounds(s1.crs, s2.crs, *s1.bounds, densify_pts=21)
    b = s2.bounds
    width = min(right, b.right) - max(left, b.left)
    height = min(top, b.top) - max(bottom, b.bottom)
    if width <= 0 or height <= 0:
        return 0.0
    return float(width * height / ((b.right - b.left) * (b.top - b.bottom)))


@contextmanager
def open_inputs(optical: Path, sar: Path) -> Iterator[OpenInputs]:
    """Open and check the S2 and S1 scenes; S1 on another grid is warped onto S2's.

    Raises:
        InputDataError: a file missing or unreadable, a band count other than 13 (S2) or 2
            (S1), no CRS, footprints that do not overlap.
    """
    with ExitStack() as stack:
        s2 = stack.enter_context(_open_raster(optical, "a 13-band Sentinel-2 L1C GeoTIFF"))
        s1 = stack.enter_context(_open_raster(sar, "a 2-band Sentinel-1 GeoTIFF (VV, VH in dB)"))
        for src, path, bands, what in (
            (s2, optical, len(S2_BANDS), "Sentinel-2 L1C (B1..B12 incl. B8A)"),
            (s1, sar, len(S1_BANDS), "Sentinel-1 (VV, VH in dB)"),
        ):
            if src.count != bands:
                raise InputDataError(
                    f"{path}: expected {what} with {bands} bands, found {src.count}"
                )
            if src.crs is None:
                raise InputDataError(
                    f"{path}: no CRS; expected a georeferenced GeoTIFF (outputs take the S2 "
                    "CRS and transform)"
                )
        coverage = _footprint_coverage(s2, s1)
        if coverage <= 0.0:
            raise InputDataError(
                f"{sar}: footprint does not overlap the S2 scene {optical} (S1 bounds "
                f"{tuple(round(v, 1) for v in s1.bounds)} in {s1.crs.to_string()}, S2 bounds "
                f"{tuple(round(v, 1) for v in s2.bounds)} in {s2.crs.to_string()})"
            )
        reprojected = not _same_grid(s2, s1)
        reader: Any = s1
        if reprojected:
            log.warning(
                "%s: S1 is not on the S2 grid of %s (%s, %.4g m pixels vs %s, %.4g m); "
                "reprojecting it onto the S2 grid (bilinear)",
                sar,
                optical,
                s1.crs.to_string(),
                abs(s1.transform.a),
                s2.crs.to_string(),
                abs(s2.transform.a),
            )
            # A warped VRT reprojects only the windows read, so memory stays bounded. Pixels
            # outside the S1 footprint read as NaN (-> the normalised floor 0 later).
            reader = stack.enter_context(
                WarpedVRT(
                    s1,
                    crs=s2.crs,
                    transform=s2.transform,
                    width=s2.width,
                    height=s2.height,
                    resampling=Resampling.bilinear,
                    src_nodata=s1.nodata,
                    nodata=float("nan"),
                    dtype="float32",
                )
            )
        if coverage < 0.999:
            log.warning(
                "%s: covers only %.1f %% of the S2 scene %s; S2 pixels without S1 get the "
                "S1 floor value (as missing S1 in training)",
                sar,
                100 * coverage,
                optical,
            )
        grid = Grid(s2.crs, s2.transform, s2.height, s2.width)
        yield OpenInputs(
            s2, reader, grid, s2.nodata, None if reprojected else s1.nodata, reprojected
        )


def read_strip(
    src: Any, path: Path, row: int, rows: int, width: int, dtype: str | None = None
) -> np.ndarray:
    """Rows ``row .. row + rows`` over the full width, (bands, rows, width)."""
    try:
        data = src.read(window=Window(0, row, width, rows))
    except RasterioError as err:
        raise InputDataError(
            f"{path}: cannot read rows {row}..{row + rows}, file truncated or corrupt ({err})"
        ) from None
    return data if dtype is None else data.astype(dtype, copy=False)


def read_row_strip(
    inputs: OpenInputs, optical: Path, sar: Path, row: int, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S2 DN, S1 dB (nodata -> NaN) and the S2 nodata mask of ``rows`` scene rows from ``row``."""
    width = inputs.grid.width
    s2 = read_strip(inputs.s2, optical, row, rows, width)
    s1 = read_strip(inputs.s1, sar, row, rows, width, "float32")
    if inputs.s1_nodata is not None and not math.isnan(inputs.s1_nodata):
        s1[s1 == np.float32(inputs.s1_nodata)] = np.nan
    return s2, s1, nodata_mask(s2, inputs.s2_nodata)


def nodata_mask(strip: np.ndarray, nodata: float | None) -> np.ndarray:
    """(rows, width) True where an S2 pixel is nodata (see the module docstring)."""
    invalid = (strip == 0).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        invalid |= (strip == nodata).all(axis=0)
    if strip.dtype.kind == "f":
        invalid |= np.isnan(strip).any(axis=0)
    return invalid


def pad_to(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mirror-pad the last two axes up to ``rows`` x ``cols`` (a scene smaller than a window)."""
    pad_r, pad_c = rows - array.shape[-2], cols - array.shape[-1]
    if pad_r <= 0 and pad_c <= 0:
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(0, max(pad_r, 0)), (0, max(pad_c, 0))]
    return np.pad(array, widths, mode="symmetric")


def window_batch(
    s2: np.ndarray,
    s1: np.ndarray,
    invalid: np.ndarray,
    cols: list[int],
    win_y: int,
    win_x: int,
    s2_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised model inputs (B, C, win_y, win_x) of the windows at ``cols`` of a row strip.

    Windows reaching past the strip (a scene smaller than a window, or the last tile of plain
    tiling) are mirror-padded.
    """
    opt, rad = [], []
    for col in cols:
        dn = s2[:, :, col : col + win_x]
        if s2_offset:
            dn = np.clip(dn.astype(np.float32) - np.float32(s2_offset), 0.0, None)
        x = normalise_s2(dn)
        x[:, invalid[:, col : col + win_x]] = 0.0  # NaN and nodata fill -> 0 reflectance
        opt.append(pad_to(x, win_y, win_x))
        rad.append(pad_to(normalise_s1(s1[:, :, col : col + win_x]), win_y, win_x))
    return np.stack(opt), np.stack(rad)


def warn_if_linear(s1: np.ndarray, path: Path) -> bool:
    """Warn once when S1 looks like linear power, not dB; True once a check could be made."""
    finite = s1[np.isfinite(s1)]
    if finite.size == 0:
        return False
    if float(np.mean(finite > 0)) > 0.5:
        log.warning(
            "%s: most S1 values are > 0; expected backscatter in dB (VV, VH, mostly negative). "
            "Convert linear power with 10 * log10(x)",
            path,
        )
    return True
