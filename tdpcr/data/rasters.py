"""GeoTIFF reading and writing with the checks every source needs.

Every failure here raises :class:`~tdpcr.core.errors.InputDataError` whose message starts with the
offending path and says what was expected, so the command line can print it as one line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from tdpcr.core.errors import InputDataError
from tdpcr.core.files import require_plain_file


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform (rasterio order) and shape (height, width)."""

    crs: CRS | None
    transform: Affine
    height: int
    width: int

    def offset_from(self, other: Grid) -> tuple[float, float]:
        """Shift of this grid's origin from ``other``'s, in ``other``'s pixels (x, y)."""
        dx = (self.transform.c - other.transform.c) / other.transform.a
        dy = (self.transform.f - other.transform.f) / other.transform.e
        return float(dx), float(dy)

    def shift_m_from(self, other: Grid) -> tuple[float, float]:
        """Shift of this grid's origin from ``other``'s, in CRS units (x, y)."""
        return (
            float(self.transform.c - other.transform.c),
            float(self.transform.f - other.transform.f),
        )


#: GDAL drivers of a GeoTIFF file (a COG opens as GTiff; the COG driver only writes).
GEOTIFF_DRIVERS = ("GTiff", "COG")


@contextmanager
def quiet_gdal() -> Iterator[None]:
    """Silence GDAL's own messages and rasterio's NotGeoreferencedWarning while opening.

    What they say (no geotransform, an unrecognised format, a missing band) is checked and
    reported by the caller in one line naming the file; left on, they are a second line.
    """
    gdal_log = logging.getLogger("rasterio._env")
    level = gdal_log.level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            gdal_log.setLevel(logging.CRITICAL)
            yield
    finally:
        gdal_log.setLevel(level)


def require_geotiff(src: Any, path: Path | str) -> None:
    """Refuse a raster GDAL opened with another driver (a PNG or JPEG named ``.tif``)."""
    if src.driver not in GEOTIFF_DRIVERS:
        src.close()
        raise InputDataError(f"{path}: a {src.driver} file, not a GeoTIFF; expected a GeoTIFF")


def _open(path: Path):
    require_plain_file(path, path, "a GeoTIFF")
    if not Path(path).is_file():
        raise InputDataError(f"{path}: file not found")
    try:
        with quiet_gdal():
            src = rasterio.open(path)
    except RasterioError as err:
        raise InputDataError(f"{path}: not a readable GeoTIFF ({_first_line(err)})") from None
    require_geotiff(src, path)
    return src


def _first_line(err: BaseException) -> str:
    # rasterio often wraps GDAL's message ("TIFFReadEncodedTile failed") in a generic
    # "Read failed. See previous exception" error: prefer the cause's text.
    cause = err.__cause__ or err
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def read_grid(path: Path) -> Grid:
    """Read only the georeferencing of ``path``."""
    with _open(path) as src:
        return Grid(src.crs, src.transform, src.height, src.width)


def read_raster(
    path: Path,
    *,
    bands: int | None = None,
    window: Window | None = None,
    what: str = "raster",
) -> tuple[np.ndarray, Grid]:
    """Read ``path`` (optionally one window) as a (band, y, x) array and the window's grid.

    Args:
        path: GeoTIFF to read.
        bands: if given, the exact band count expected; otherwise any count.
        window: pixel window to read; the whole raster when ``None``.
        what: a short name for the content, used in error messages ("S2 (13 bands)").

    Raises:
        InputDataError: missing or unreadable file, truncated data, wrong band count, a window
            outside the raster.
    """
    with _open(path) as src:
        if bands is not None and src.count != bands:
            raise InputDataError(f"{path}: expected {what} with {bands} bands, found {src.count}")
        if window is not None:
            full = Window(0, 0, src.width, src.height)
            if (
                window.col_off < 0
                or window.row_off < 0
                or window.col_off + window.width > full.width
                or window.row_off + window.height > full.height
            ):
                raise InputDataError(
                    f"{path}: window {window} lies outside the {src.width}x{src.height} raster"
                )
        try:
            data = src.read(window=window)
        except RasterioError as err:
            raise InputDataError(
                f"{path}: cannot read pixel data, file truncated or corrupt ({_first_line(err)})"
            ) from None
        transform = src.window_transform(window) if window is not None else src.transform
        return data, Grid(src.crs, transform, data.shape[1], data.shape[2])


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: CRS | str,
    transform: Affine,
    band_descriptions: tuple[str, ...] | None = None,
    nodata: float | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tags: dict[str, str] | None = None,
    compress: str = "deflate",
) -> Path:
    """Write a (band, y, x) or (y, x) array as a tiled, compressed GeoTIFF, atomically.

    The file is written next to ``path`` under a temporary name and renamed at the end, so an
    interrupted write never leaves a file that a later step would trust.
    """
    path = Path(path)
    array = data[None] if data.ndim == 2 else data
    count, height, width = array.shape
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": array.dtype.name,
        "crs": CRS.from_user_input(crs),
        "transform": transform,
        "compress": compress,
        "nodata": nodata,
    }
    if height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress == "deflate":
        profile["predictor"] = 3 if array.dtype.kind == "f" else 2
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with rasterio.open(tmp_name, "w", **profile) as dst:
            if colormap is not None:
                # Before the pixels: libtiff cannot change the photometric tag after a write.
                dst.write_colormap(1, colormap)
            dst.write(array)
            if band_descriptions is not None:
                for index, name in enumerate(band_descriptions, start=1):
                    dst.set_band_description(index, name)
            if tags:
                dst.update_tags(**tags)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
