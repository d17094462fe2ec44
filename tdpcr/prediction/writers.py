"""The outputs of a prediction: GeoTIFFs written row band by row band, then made COGs.

Rows go to uncompressed tiled GeoTIFFs in the prediction's temporary folder (row bands of any
height are rewritten in place); each is then copied with GDAL's COG driver (deflate,
overviews, 512 x 512 blocks). The folder becomes ``--out`` only when everything is written
(:func:`tdpcr.core.io.atomic_folder`), so a failure leaves nothing there.

Nodata: 0 in ``cloudfree.tif`` (valid pixels are clipped to >= 1 DN so they never read as
nodata), 255 in ``landcover.tif`` (the project's ignore label), NaN in ``prompt.tif`` and
``quality.tif``. ``cloudfree.tif`` carries GDAL's band scale (1e-4) and offset (0), so GDAL,
QGIS, rioxarray (``mask_and_scale=True``) and odc read reflectance directly.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from tdpcr.core.errors import OutputSpaceError
from tdpcr.core.io import check_output_path
from tdpcr.core.specs import (
    CLASS_NAMES,
    IGNORE_INDEX,
    LANDCOVER_COLORS,
    S2_BANDS,
    S2_SCALE,
    quality_description,
)
from tdpcr.data.rasters import Grid

#: GDAL band scale of ``cloudfree.tif``: reflectance = DN x scale + offset.
REFLECTANCE_SCALE = 1.0 / S2_SCALE
REFLECTANCE_OFFSET = 0.0
#: Nodata of ``cloudfree.tif`` (valid pixels are clipped to >= 1 DN).
CLOUDFREE_NODATA = 0
#: Nodata of ``landcover.tif`` (the project's ignore label).
LANDCOVER_NODATA = IGNORE_INDEX
#: GDAL block cache for the writes and the COG copies: bounds GDAL's share of the memory.
GDAL_CACHE_MB = 256


def raw_profile(grid: Grid, count: int, dtype: str, nodata: float | None) -> dict[str, Any]:
    """Uncompressed tiled GeoTIFF: row bands of any height are rewritten in place."""
    return {
        "driver": "GTiff",
        "height": grid.height,
        "width": grid.width,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "interleave": "band",
        "bigtiff": "if_safer",
    }


def convert_to_cog(raw: Path, final: Path, *, resampling: str, threads: int = 1) -> Path:
    """Copy a tiled GeoTIFF to a Cloud-Optimized GeoTIFF (deflate, overviews), remove ``raw``.

    Band descriptions, tags, nodata and colour tables carry over (GDAL's CreateCopy).
    """
    with rasterio.open(raw) as src:
        dtype = src.dtypes[0]
    options = {
        "compress": "DEFLATE",
        "predictor": "3" if dtype.startswith("float") else "2",
        "blocksize": "512",
        "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
        "num_threads": str(max(1, threads)),
    }
    rasterio.shutil.copy(str(raw), str(final), driver="COG", **options)
    Path(raw).unlink()
    return final


def check_out(out: Path, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an ``--out`` tdpcr did not write (no marked ``prediction.json``) or that overlaps
    an input; files named like our outputs are no proof, a user's ``landcover.tif`` is not ours.
    """
    check_output_path(out, "prediction.json", inputs=inputs)


class SceneWriter:
    """The raw output GeoTIFFs of one scene, open for windowed writes of blended values.

    ``values`` handed to :meth:`write` stack the channels the model produced: the
    ``image_bands`` reflectance bands (named ``band_names``), then ``classes`` class scores
    (land cover = their argmax), then ``prompt_channels`` prompt channels, then the
    ``quality_bands``; zero counts mean no such output.
    """

    def __init__(
        self,
        folder: Path,
        grid: Grid,
        *,
        image_bands: int,
        classes: int = 0,
        prompt_channels: int = 0,
        tags: dict[str, str] | None = None,
        band_names: tuple[str, ...] = S2_BANDS,
        quality_bands: tuple[str, ...] = (),
    ) -> None:
        self.folder, self.grid = Path(folder), grid
        self.image_bands, self.classes, self.prompt_channels = image_bands, classes, prompt_channels
        self.band_names, self.quality_bands = band_names, quality_bands
        self.nodata_pixels = 0
        self.raw: dict[str, Path] = {"cloudfree": self.folder / ".cloudfree.raw.tif"}
        if classes:
            self.raw["landcover"] = self.folder / ".landcover.raw.tif"
        if quality_bands:
            self.raw["quality"] = self.folder / ".quality.raw.tif"
        if prompt_channels:
            self.raw["prompt"] = self.folder / ".prompt.raw.tif"
        self._check_free_space()
        self._stack = ExitStack()
        self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        self.dst = {name: self._open(name, dict(tags or {})) for name in self.raw}

    def raw_bytes(self) -> int:
        """Size of the uncompressed row-band files: what the disk must hold before the COGs."""
        per_pixel = 2 * self.image_bands + (1 if self.classes else 0)
        per_pixel += 4 * (len(self.quality_bands) + self.prompt_channels)
        return self.grid.height * self.grid.width * per_pixel

    def _check_free_space(self) -> None:
        """Refuse before any window runs when the raw files cannot fit: once the disk fills,
        libtiff prints its own errors straight to stderr, one per strip, and the run is lost."""
        need, free = self.raw_bytes(), shutil.disk_usage(self.folder).free
        if need > free:
            raise OutputSpaceError(
                f"{self.folder.parent}: no space left for the outputs ({need / 1e6:.1f} MB needed "
                f"uncompressed, {free / 1e6:.1f} MB free); free space or write elsewhere"
            )

    def _open(self, name: str, tags: dict[str, str]) -> Any:
        grid = self.grid
        if name == "cloudfree":
            profile = raw_profile(grid, self.image_bands, "uint16", CLOUDFREE_NODATA)
            dst = rasterio.open(self.raw[name], "w", **profile)
            dst.update_tags(**tags, scale="reflectance x 10000")
            for index, band in enumerate(self.band_names[: self.image_bands], start=1):
                dst.set_band_description(index, band)
            # GDAL's own scale / offset: readers that honour them get reflectance in [0, 1].
            dst.scales = (REFLECTANCE_SCALE,) * self.image_bands
            dst.offsets = (REFLECTANCE_OFFSET,) * self.image_bands
        elif name == "landcover":
            profile = raw_profile(grid, 1, "uint8", LANDCOVER_NODATA)
            dst = rasterio.open(self.raw[name], "w", **profile)
            # Before any pixel: libtiff cannot change the photometric tag after a write.
            dst.write_colormap(1, LANDCOVER_COLORS)
            dst.set_band_description(1, "landcover")
            known = self.classes == len(CLASS_NAMES)
            names = CLASS_NAMES if known else tuple(map(str, range(self.classes)))
            dst.update_tags(**tags, class_names=",".join(names), nodata_label="255 = no data")
            dst.update_tags(
                1,
                CLASS_NAMES=",".join(names),
                **{f"CLASS_{i}": class_name for i, class_name in enumerate(names)},
            )
        elif name == "quality":
            profile = raw_profile(grid, len(self.quality_bands), "float32", float("nan"))
            dst = rasterio.open(self.raw[name], "w", **profile)
            dst.update_tags(**tags)
            for index, band in enumerate(self.quality_bands, start=1):
                dst.set_band_description(index, band)
                dst.update_tags(index, description=quality_description(band))
        else:
            profile = raw_profile(grid, self.prompt_channels, "float32", float("nan"))
            dst = rasterio.open(self.raw[name], "w", **profile)
            dst.update_tags(**tags)
            for index in range(1, self.prompt_channels + 1):
                dst.set_band_description(index, f"prompt_{index - 1}")
        return self._stack.enter_context(dst)

    def encode(self, values: np.ndarray, invalid: np.ndarray) -> dict[str, np.ndarray]:
        """The output arrays of blended ``values`` (C, h, w) with nodata mask ``invalid``.

        cloudfree: uint16 reflectance x 1e4 (valid >= 1); landcover: uint8 argmax of the class
        scores; prompt and quality: float32. Nodata pixels get each file's nodata value.
        """
        n_img, n_cls = self.image_bands, self.classes
        image = np.rint(np.clip(values[:n_img], 0.0, 1.0) * np.float32(S2_SCALE))
        image = np.maximum(image, 1).astype(np.uint16)  # 0 is nodata: keep valid pixels >= 1
        image[:, invalid] = CLOUDFREE_NODATA
        encoded = {"cloudfree": image, "_nodata_pixels": np.asarray(int(invalid.sum()))}
        if n_cls:
            labels = values[n_img : n_img + n_cls].argmax(axis=0).astype(np.uint8)
            labels[invalid] = LANDCOVER_NODATA
            encoded["landcover"] = labels[None]
        n_prm = self.prompt_channels
        if n_prm:
            prompt = values[n_img + n_cls : n_img + n_cls + n_prm].astype(np.float32, copy=True)
            prompt[:, invalid] = np.nan
            encoded["prompt"] = prompt
        if self.quality_bands:
            quality = values[n_img + n_cls + n_prm :].astype(np.float32, copy=True)
            quality[:, invalid] = np.nan
            encoded["quality"] = quality
        return encoded

    def write_encoded(self, encoded: dict[str, np.ndarray], window: Window) -> None:
        """Write what :meth:`encode` returned at ``window`` (safe from one writer thread)."""
        self.nodata_pixels += int(encoded["_nodata_pixels"])
        for name, dst in self.dst.items():
            dst.write(encoded[name], window=window)

    def write(self, values: np.ndarray, invalid: np.ndarray, window: Window) -> None:
        """Write blended ``values`` (C, h, w) with nodata mask ``invalid`` (h, w) at ``window``."""
        self.write_encoded(self.encode(values, invalid), window)

    def close(self) -> None:
        """Close the raw files (idempotent)."""
        self._stack.close()

    def __enter__(self) -> SceneWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def to_cogs(self, threads: int = 1) -> list[str]:
        """Close the raw files and copy each to its COG beside them; return the file names."""
        self.close()
        files = []
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            for name, path in self.raw.items():
                resampling = "NEAREST" if name == "landcover" else "AVERAGE"
                final = self.folder / f"{name}.tif"
                convert_to_cog(path, final, resampling=resampling, threads=threads)
                files.append(f"{name}.tif")
        return files
