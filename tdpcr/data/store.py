"""The tile store: one Zarr v3 store of co-registered patches that every later stage reads.

Contract (checked by :func:`check_store`, relied on by training, evaluation and prediction):

===============  ======================  =======  ==========================================
variable         dims                    dtype    meaning
===============  ======================  =======  ==========================================
``s2_cloudy``    patch, band, y, x       uint16   reflectance x 1e4, radiometric offset removed
``s2_clear``     patch, band, y, x       uint16   same, cloud-free reference
``s1``           patch, sar_band, y, x   float32  backscatter in dB (VV, VH)
``landcover``    patch, y, x             uint8    class index, 255 = no label
``cloudmask``    patch, y, x             uint8    0 clear, 1 cloud, 2 shadow, 255 unknown
``split``        patch                   str      train / val / test (whole groups per split)
``group``        patch                   str      spatial group: scene, ``ROIs_<roi>``, ...
``cloud_cover``  patch                   float32  cloud fraction of the patch (NaN if unknown)
``crs_wkt``      patch                   str      CRS of the patch as WKT
``transform``    patch, affine           float64  GDAL geotransform (c, a, b, f, d, e)
``s1_shift_m``   patch, xy               float32  S1 grid origin minus S2 grid origin (m)
===============  ======================  =======  ==========================================

Pieces a source does not have are absent variables, never zeros. The ``patch`` coordinate holds
the source's patch ids. Band names, class names, the source layout and normalisation constants
are attributes. Every pixel variable has one chunk per patch, grouped into shards.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from rasterio.transform import Affine

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import PIECES
from tdpcr.data.rasters import write_geotiff

STORE_FORMAT_VERSION = 2
#: Attribute of stores whose every shard was written, all-fill ones included (zarr skips
#: those by default, so only then is a missing shard proof of damage, not of empty data).
EVERY_CHUNK_ATTR = "every_chunk_written"
PATCH_VARIABLES: tuple[str, ...] = (
    "split",
    "group",
    "cloud_cover",
    "crs_wkt",
    "transform",
    "s1_shift_m",
)
REQUIRED_ATTRS: tuple[str, ...] = (
    "tdpcr_store_version",
    "source_layout",
    "s2_bands",
    "s1_bands",
    "class_names",
    "normalisation",
    "patch_size",
)


def open_store(path: Path) -> xr.Dataset:
    """Open a tile store lazily (dask-backed) and check its contract.

    Raises:
        InputDataError: the path is missing, not a Zarr store, or breaks the contract.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: tile store not found; build it with `tdpcr tile`")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(path, consolidated=None)
    except Exception as err:  # zarr raises a zoo of types for a broken store
        raise InputDataError(f"{path}: not a readable Zarr store ({err})") from None
    check_store(ds, path)
    check_complete(ds, path)
    return ds


def check_store(ds: xr.Dataset, path: Path | str = "store") -> None:
    """Raise InputDataError naming the first way ``ds`` breaks the store contract."""
    missing_attrs = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing_attrs:
        raise InputDataError(
            f"{path}: not a tdpcr tile store (attribute {missing_attrs[0]!r} missing)"
        )
    version = ds.attrs["tdpcr_store_version"]
    if version != STORE_FORMAT_VERSION:
        raise InputDataError(
            f"{path}: tile store format {version}, this tdpcr reads {STORE_FORMAT_VERSION}; "
            "re-run `tdpcr tile`"
        )
    for name in PATCH_VARIABLES:
        if name not in ds:
            raise InputDataError(f"{path}: variable {name!r} missing")
    if "s2_cloudy" not in ds and "s2_clear" not in ds:
        raise InputDataError(f"{path}: neither s2_cloudy nor s2_clear present")
    for name, spec in PIECES.items():
        if name in ds and (ds[name].dims != spec.dims or ds[name].dtype != np.dtype(spec.dtype)):
            raise InputDataError(
                f"{path}: variable {name!r} is {ds[name].dims} {ds[name].dtype}, "
                f"expected {spec.dims} {spec.dtype}"
            )


def pixel_variables(ds: xr.Dataset) -> list[str]:
    """The store's per-patch pixel variables (one chunk per patch, grouped into shards)."""
    return [name for name in PIECES if name in ds]


def _shard_patches(path: Path, variable: str) -> int:
    """Patches per shard of ``variable``, from its Zarr metadata."""
    meta = json.loads((path / variable / "zarr.json").read_text())
    return int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])


def _shard_file(path: Path, variable: str, shard: int, ndim: int) -> Path:
    # Zarr v3 default chunk-key encoding: c/<i>/<j>/...; one shard spans every inner axis.
    return path / variable / "c" / str(shard) / Path(*["0"] * (ndim - 1))


def _patch_range(ds: xr.Dataset, start: int, size: int) -> str:
    ids = ds["patch"].values
    stop = min(start + size, len(ids)) - 1
    return f"patches {start}..{stop} ({ids[start]} ...)"


def check_complete(ds: xr.Dataset, path: Path | str) -> None:
    """Every shard of every pixel variable exists (one stat per shard, cheap on open).

    A deleted shard would otherwise read back as fill values, zeros that pass as real data.
    Stores from before :data:`EVERY_CHUNK_ATTR` may lack all-fill shards, so they are not
    checked.
    """
    path = Path(path)
    if not ds.attrs.get(EVERY_CHUNK_ATTR):
        return
    patches = int(ds.sizes["patch"])
    for name in pixel_variables(ds):
        size = _shard_patches(path, name)
        for shard in range(-(-patches // size)):
            if not _shard_file(path, name, shard, ds[name].ndim).is_file():
                raise InputDataError(
                    f"{path}: variable {name!r}, {_patch_range(ds, shard * size, size)}: "
                    "shard file missing; the store is damaged, re-run `tdpcr tile`"
                )


def check_readable(ds: xr.Dataset, path: Path | str) -> int:
    """Read every shard of every pixel variable; return the number of shards read.

    Raises:
        InputDataError: naming the store, variable and patches of the first unreadable shard.
    """
    path = Path(path)
    group = zarr.open_group(path, mode="r")
    patches, shards = int(ds.sizes["patch"]), 0
    for name in pixel_variables(ds):
        array, size = group[name], _shard_patches(path, name)
        for start in range(0, patches, size):
            try:
                array[start : start + size]
            except Exception as err:  # zarr and numcodecs raise many types for damaged bytes
                raise InputDataError(
                    f"{path}: variable {name!r}, {_patch_range(ds, start, size)}: unreadable "
                    f"({type(err).__name__}); the store is damaged, re-run `tdpcr tile`"
                ) from None
            shards += 1
    return shards


def patch_transform(ds: xr.Dataset, index: int) -> Affine:
    """The rasterio Affine of patch ``index`` (stored in GDAL order)."""
    return Affine.from_gdal(*ds["transform"].values[index].tolist())


def write_patch_geotiff(ds: xr.Dataset, index: int, variable: str, path: Path) -> Path:
    """Write one patch of ``variable`` back to a georeferenced GeoTIFF."""
    if variable not in ds:
        raise InputDataError(f"store has no variable {variable!r}; present: {list(ds.data_vars)}")
    data = np.asarray(ds[variable].isel(patch=index).values)
    spec = PIECES.get(variable)
    optional = spec is not None and spec.optional
    return write_geotiff(
        path,
        data,
        crs=str(ds["crs_wkt"].values[index]),
        transform=patch_transform(ds, index),
        band_descriptions=spec.bands if spec is not None else None,
        nodata=spec.fill if optional else None,
    )
