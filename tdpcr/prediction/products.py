"""Opening the products analysts download: GeoTIFF, Sentinel-2 SAFE (folder or zip), STAC Item.

Every reader returns the same thing: a :class:`Product`, the bands it has by their
:data:`~tdpcr.core.specs.S2_BANDS` (or VV / VH) name, each a band of an open dataset on the
product's finest grid, with the DN offset to remove and what is known of the processing level.
:mod:`tdpcr.prediction.inputs` turns that into the model's inputs, so the engine has one code
path whatever the product.

* **GeoTIFF** (an Earth Engine export, a stacked L1C file): bands by their descriptions when
  they are Sentinel-2 band names (B1 / B01 / coastal ...), else by position (13 bands in the
  model's order). A DN offset comes from GDAL's band offset and scale (``offset / scale``).
* **SAFE** (``S2?_MSIL1C_*.SAFE`` / ``MSIL2A``, folder or ``.zip``): GDAL's SENTINEL2 driver
  (JP2OpenJPEG underneath) opens the 10, 20 and 60 m subdatasets; each band is taken at its
  native resolution. The offset is the band's ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET``
  (L2A) that GDAL reads from ``MTD_MSIL*.xml`` (processing baseline >= 04.00). Before any
  band is trusted, :mod:`.safe_checks` caps the size of the metadata files, checks every band
  file against its band's nominal grid and the offsets and quantification value.
* **STAC Item** (a local JSON file, read with pystac; assets local files or URLs, which GDAL
  streams): S2 band assets by key, ``eo:bands`` name or common name; the offset from the
  raster extension (``-offset / scale``), else 1000 DN for ``s2:processing_baseline`` >=
  04.00; the level from ``s2:product_type``, ``processing:level`` or the collection id. S1
  items need ``vv`` and ``vh`` assets (e.g. an RTC item).

Bands on a coarser grid (20 and 60 m) are resampled onto the finest grid through a GDAL
warped VRT with **bilinear** resampling, which works per window read, so memory stays bounded.
Raw Sentinel-1 GRD (SAFE, or a STAC item / file in radar geometry) is refused: it needs
radiometric calibration and terrain correction first.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT

from tdpcr.core.errors import InputDataError
from tdpcr.core.files import require_plain_file
from tdpcr.core.specs import S1_BANDS, S2_BANDS, S2_LEVEL_BANDS, S2_PB04_OFFSET, s2_band_name
from tdpcr.data.rasters import Grid, quiet_gdal, require_geotiff
from tdpcr.prediction.access import is_remote, local_path
from tdpcr.prediction.safe_checks import (
    band_dn_offset,
    check_band_grid,
    check_folder_metadata,
    check_quantification,
    check_zip_metadata,
    nodata_value,
    read_capped_file,
    read_capped_member,
    shown,
)

log = logging.getLogger(__name__)

#: Resampling of 20 m and 60 m bands onto the 10 m grid (and of S1 onto the S2 grid).
RESAMPLING = Resampling.bilinear
#: What to say when raw Sentinel-1 GRD is given: it needs processing this project does not do.
GRD_ADVICE = (
    "raw Sentinel-1 GRD is in radar geometry and uncalibrated; tdpcr needs terrain-corrected "
    "backscatter on a map grid: run radiometric calibration and terrain correction first "
    "(ESA SNAP: Calibrate, Terrain-Flattening, Terrain-Correction; or pyroSAR), or use a "
    "Sentinel-1 RTC product"
)


@dataclass
class BandRef:
    """One band of a product: band ``index`` (1-based) of ``reader``, on the product grid."""

    name: str
    reader: Any  # DatasetReader or WarpedVRT: both offer read(indexes, window=...)
    index: int
    dn_offset: float = 0.0
    native_m: float = 10.0
    href: str = ""


@dataclass
class Product:
    """An opened optical or SAR product (see the module docstring).

    Attributes:
        path: what the user passed.
        kind: "geotiff", "safe" or "stac".
        bands: the bands found, by name (S2 names, or VV / VH), on ``grid``.
        grid: the finest grid of the product; every band reads on it.
        nodata: the DN or value that marks no data (None: none declared).
        level: "L1C" / "L2A" when the product says, else None (S1: None).
        units: S1 only: "db", "linear" or None (unknown: decided from the values).
        datetime: acquisition time (ISO 8601) when the product says.
        product_id: the product's own name (SAFE name, STAC id, file name).
        sources: files or URLs the bands were read from (``derived_from`` of the output).
    """

    path: Path
    kind: str
    bands: dict[str, BandRef]
    grid: Grid
    nodata: float | None
    level: str | None = None
    units: str | None = None
    datetime: str | None = None
    product_id: str = ""
    sources: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """E.g. "Sentinel-2 L2A SAFE product", "STAC Item", "GeoTIFF of unknown level"."""
        what = {"safe": "SAFE product", "stac": "STAC Item", "geotiff": "GeoTIFF"}[self.kind]
        return f"{self.level} {what}" if self.level else f"{what} of unknown level"


# --------------------------------------------------------------------------- detection


def product_kind(path: Path) -> str:
    """What ``path`` is: "stac", "safe", "s1-safe", "folder" or "geotiff" (name and content)."""
    name = path.name.upper()
    if path.suffix.lower() == ".json":
        return "stac"
    if name.startswith("S1") and (name.endswith(".SAFE") or name.endswith(".ZIP")):
        return "s1-safe"
    if path.is_dir():
        if (path / "manifest.safe").is_file() and "SENTINEL-1" in read_capped_file(
            path / "manifest.safe"
        ):
            return "s1-safe"
        if list(path.glob("MTD_MSIL*.xml")) or name.endswith(".SAFE"):
            return "safe"
        return "folder"
    if path.suffix.lower() == ".zip":
        return "s1-safe" if _zip_is_s1(path) else "safe"
    return "geotiff"


def _zip_is_s1(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            manifests = [n for n in names if n.endswith("manifest.safe")]
            if manifests:
                text = read_capped_member(archive, manifests[0], path).decode(errors="replace")
                return "SENTINEL-1" in text
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def _open(path: str, what: str, where: Path | str) -> Any:
    try:
        # The SENTINEL2 container has no geotransform (its subdatasets have), and GDAL's own
        # warnings (e.g. "B8A.jp2 not found ... Skipping it") would be a second line beside
        # ours: files without georeferencing and missing bands are refused later, naming them.
        with quiet_gdal():
            return rasterio.open(path)
    except (RasterioError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputDataError(f"{where}: cannot open {what} ({first})") from None


def _open_geotiff(path: Path, stack: ExitStack) -> Any:
    src = stack.enter_context(_open(str(path), "a GeoTIFF", path))
    require_geotiff(src, path)
    return src


def _grid(src: Any) -> Grid:
    return Grid(src.crs, src.transform, src.height, src.width)


def _on_grid(src: Any, grid: Grid, stack: ExitStack, nodata: float | None) -> Any:
    """``src`` itself when it is on ``grid``, else a warped VRT of it onto ``grid``."""
    same = (
        src.crs == grid.crs
        and src.transform.almost_equals(grid.transform, precision=1e-6)
        and (src.height, src.width) == (grid.height, grid.width)
    )
    if same:
        return src
    return stack.enter_context(
        WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=RESAMPLING,
            src_nodata=nodata,
            nodata=nodata,
        )
    )


# --------------------------------------------------------------------------- Sentinel-2


def open_optical(path: Path, stack: ExitStack) -> Product:
    """Open a GeoTIFF, SAFE or STAC Item of Sentinel-2 (resources are closed with ``stack``).

    Raises:
        InputDataError: missing file, unreadable product, a Sentinel-1 product, no CRS.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"{path}: not found (expected a Sentinel-2 GeoTIFF, SAFE folder or zip, or STAC "
            "Item JSON)"
        )
    kind = product_kind(path)
    if kind == "s1-safe":
        raise InputDataError(f"{path}: a Sentinel-1 product given as --optical (Sentinel-2)")
    if kind == "folder":
        raise InputDataError(
            f"{path}: a folder without MTD_MSIL1C.xml / MTD_MSIL2A.xml (expected a Sentinel-2 "
            "SAFE folder)"
        )
    if kind == "safe":
        return _open_safe(path, stack)
    if kind == "stac":
        return _open_stac_s2(path, stack)
    return _open_geotiff_s2(path, stack)


def _open_geotiff_s2(path: Path, stack: ExitStack) -> Product:
    src = _open_geotiff(path, stack)
    names = [s2_band_name(d) if d else None for d in src.descriptions]
    named = {n: i for i, n in enumerate(names, start=1) if n is not None}
    if len(named) < 3:  # no band names (or not Sentinel-2 ones): the model order by position
        if src.count != len(S2_BANDS):
            raise InputDataError(
                f"{path}: expected Sentinel-2 L1C (B1..B12 incl. B8A) with {len(S2_BANDS)} "
                f"bands, found {src.count} (bands without Sentinel-2 names are taken in the "
                "model's order)"
            )
        named = {band: i for i, band in enumerate(S2_BANDS, start=1)}
    bands = {}
    for band, index in named.items():
        scale, offset = src.scales[index - 1] or 1.0, src.offsets[index - 1] or 0.0
        bands[band] = BandRef(band, src, index, -offset / scale if offset else 0.0)
    level = _level_from_text(src.tags().get("PROCESSING_LEVEL", ""))
    return Product(
        path, "geotiff", bands, _grid(src), src.nodata, level=level,
        datetime=src.tags().get("DATETIME") or None, product_id=path.stem,
        sources=[str(path)],
    )  # fmt: skip


def _level_from_text(text: str) -> str | None:
    text = text.upper().replace("-", "").replace("_", "")
    for level in S2_LEVEL_BANDS:
        if level in text or f"LEVEL{level[1:]}" in text or f"MSI{level[1:]}" in text:
            return level
    return None


def _open_safe(path: Path, stack: ExitStack) -> Product:
    target = str(path)
    if path.is_dir():
        mtd = sorted(path.glob("MTD_MSIL*.xml"))
        if not mtd:
            raise InputDataError(f"{path}: SAFE folder without MTD_MSIL1C.xml / MTD_MSIL2A.xml")
        check_folder_metadata(path)
        target = str(mtd[0])
    else:
        _check_zip_metadata(path)
    container = stack.enter_context(_open(target, "a Sentinel-2 SAFE product", path))
    if container.driver != "SENTINEL2":
        raise InputDataError(f"{path}: not a Sentinel-2 SAFE product (GDAL: {container.driver})")
    # Subdatasets per resolution (10m, 20m, 60m, TCI): each band from the finest that has it.
    resolutions = [s for s in container.subdatasets if ":TCI:" not in s]
    if not resolutions:
        raise InputDataError(f"{path}: SAFE product without image bands")
    subsets = [stack.enter_context(_open(s, "a SAFE subdataset", path)) for s in resolutions]
    subsets.sort(key=lambda s: abs(s.transform.a))
    tags = container.tags()
    metadata = shown(subsets[0].files[0], path)  # MTD_MSIL1C.xml / MTD_MSIL2A.xml
    check_quantification(tags, metadata)
    level = _level_from_text(tags.get("PRODUCT_TYPE", "") or tags.get("PROCESSING_LEVEL", ""))
    nodata = nodata_value(tags, metadata)
    grid = _grid(subsets[0])
    bands: dict[str, BandRef] = {}
    for sub in subsets:
        reader = None
        on_disk = _safe_band_files(sub.files)
        for index in range(1, sub.count + 1):
            band_tags = sub.tags(index)
            band = s2_band_name(band_tags.get("BANDNAME", ""))
            # GDAL lists every band of the resolution, and reads a band whose JP2 is absent as
            # zeros: only bands with their file count as present.
            if band is None or band in bands or band not in on_disk:
                continue
            _check_band_files(sub, on_disk[band], band, grid, path, stack)
            reader = reader or _on_grid(sub, grid, stack, nodata)
            offset = band_dn_offset(band_tags, band, metadata)
            bands[band] = BandRef(band, reader, index, offset, abs(sub.transform.a))
    return Product(
        path, "safe", bands, grid, nodata, level=level,
        datetime=tags.get("PRODUCT_START_TIME") or None,
        product_id=tags.get("PRODUCT_URI", path.name).removesuffix(".SAFE"),
        sources=[str(path)],
    )  # fmt: skip


def _check_zip_metadata(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_metadata(archive, path)
    except (OSError, zipfile.BadZipFile):
        return  # GDAL's open names what is wrong with the file


def _check_band_files(
    sub: Any, files: list[str], band: str, grid: Grid, path: Path, stack: ExitStack
) -> None:
    """A compact SAFE has one file per band, which must cover the tile on the band's grid.

    Products in the pre-2017 format put several granules in one tile, each file covering
    its own part: GDAL places those by the granule metadata, so only the tile is checked.
    """
    band_file = None
    if len(files) == 1:
        band_file = stack.enter_context(_open(files[0], f"band {band}", path))
    check_band_grid(sub, band_file, band, grid, path)


def _safe_band_files(files: list[str]) -> dict[str, list[str]]:
    """The JP2 band files of a SAFE subdataset by band name (``..._B8A.jp2``, ``_B02_20m``)."""
    found: dict[str, list[str]] = {}
    for file in files:
        stem = Path(file).stem
        if file.lower().endswith(".jp2"):
            parts = stem.split("_")
            token = parts[-2] if parts[-1].endswith("m") and len(parts) > 2 else parts[-1]
            band = s2_band_name(token)
            if band is not None:
                found.setdefault(band, []).append(file)
    return found


def _read_item(path: Path) -> Any:
    """The STAC Item of ``path``, its shape checked first (pystac assumes it, and a
    Collection, a FeatureCollection or ``assets: null`` would fail deep inside it)."""
    import pystac

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputDataError(f"{path}: not a readable STAC Item JSON ({first})") from None
    _check_item_shape(data, path)
    try:
        # from_dict with the file's href: relative asset hrefs resolve against the item.
        item = pystac.Item.from_dict(data, href=str(path), migrate=True, preserve_dict=False)
    except (KeyError, TypeError, ValueError, AttributeError, pystac.STACError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputDataError(
            f"{path}: not a readable STAC Item ({type(err).__name__}: {first})"
        ) from None
    return item


def _check_item_shape(data: Any, path: Path) -> None:
    """Refuse JSON that is not one STAC Item: a GeoJSON Feature whose ``assets`` map keys to
    objects with a string ``href``."""
    kind = data.get("type") if isinstance(data, dict) else type(data).__name__
    if kind != "Feature":
        found = f"type {kind!r}" if isinstance(data, dict) else f"a JSON {kind}"
        raise InputDataError(
            f"{path}: {found}; expected one STAC Item (a GeoJSON Feature with assets), not a "
            "Collection, FeatureCollection or search result"
        )
    assets = data.get("assets")
    if not isinstance(assets, dict):
        raise InputDataError(
            f"{path}: 'assets' is {_json_kind(assets)}; expected a mapping of asset keys to "
            "objects with an href"
        )
    for key, asset in assets.items():
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or not href.strip():
            what = _json_kind(asset) if not isinstance(asset, dict) else "an object without href"
            raise InputDataError(
                f"{path}: asset {key!r} is {what}; expected an object with a string href"
            )


def _json_kind(value: Any) -> str:
    """How JSON names ``value``'s type, for messages: null, a list, a string ..."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")


def _stac_level(item: Any) -> str | None:
    props = item.properties
    for key in ("s2:product_type", "processing:level", "s2:processing_level"):
        if props.get(key):
            level = _level_from_text(str(props[key]))
            if level:
                return level
    return _level_from_text(item.collection_id or "") or _level_from_text(item.id)


def _asset_band_rank(key: str, asset: Any) -> tuple[str, tuple[int, int]] | None:
    """The band an asset holds and how good a source of it the asset is (lower is better).

    Only single-band data assets count: ``visual`` (true colour) lists red, green and blue in
    ``eo:bands`` and must never stand in for B4. The asset key naming the band beats an
    ``eo:bands`` name (Earth Search also has ``red-jp2`` copies), and a (Cloud-Optimized)
    GeoTIFF beats another format.
    """
    roles = set(asset.roles or [])
    if roles & {"visual", "overview", "thumbnail", "metadata"}:
        return None
    listed = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    # Malformed band lists (not a list of objects) name no band; the asset key still may.
    listed = [b for b in listed if isinstance(b, dict)] if isinstance(listed, list) else []
    if len(listed) > 1:
        return None
    tiff = 0 if "tiff" in (asset.media_type or "image/tiff").lower() else 1
    band = s2_band_name(key)
    if band is not None:
        return band, (0, tiff)
    for entry in listed:
        # Common names are unique except "rededge" (B5..B7), which maps to no band here.
        for name in (entry.get("name"), entry.get("common_name"), entry.get("eo:common_name")):
            band = s2_band_name(name) if name else None
            if band is not None:
                return band, (1, tiff)
    return None


def _open_stac_asset(item_path: Path, key: str, asset: Any, stack: ExitStack) -> Any:
    href = asset.get_absolute_href() or asset.href
    if not is_remote(href):
        require_plain_file(local_path(href), item_path, f"asset {key!r} to be a raster file")
    # Remote hrefs get finite HTTP timeouts from input_gdal_env (entered by open_inputs).
    src = stack.enter_context(_open(href, f"asset {key!r} ({href})", item_path))
    if src.crs is None:
        detail = "only GCPs: radar geometry; " + GRD_ADVICE if src.gcps[0] else "no CRS"
        raise InputDataError(f"{item_path}: asset {key!r} ({href}) has {detail}")
    return src


def _raster_bands(item_path: Path, key: str, asset: Any) -> list[dict[str, Any]]:
    """The asset's ``raster:bands`` entries, checked to be a list of objects."""
    bands = asset.extra_fields.get("raster:bands")
    if bands is None:
        return []
    if not isinstance(bands, list) or not all(isinstance(b, dict) for b in bands):
        raise InputDataError(
            f"{item_path}: asset {key!r}: raster:bands is {_json_kind(bands)}"
            f"{'' if not isinstance(bands, list) else ' with entries that are not objects'}; "
            "expected a list of objects (STAC raster extension)"
        )
    return bands


def _raster_number(
    item_path: Path, key: str, band: dict[str, Any], name: str, default: float
) -> float:
    """``band[name]`` as a finite number (``default`` when absent or null)."""
    value = band.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputDataError(
            f"{item_path}: asset {key!r}: raster:bands {name} is {value!r}; expected a finite "
            "number (STAC raster extension)"
        )
    return float(value)


def _raster_dn_offset(item_path: Path, key: str, asset: Any) -> float | None:
    bands = _raster_bands(item_path, key, asset)
    if not bands:
        return None
    scale = _raster_number(item_path, key, bands[0], "scale", 1.0) or 1.0
    offset = _raster_number(item_path, key, bands[0], "offset", 0.0)
    return -offset / scale


def _open_stac_s2(path: Path, stack: ExitStack) -> Product:
    item = _read_item(path)
    ranked: dict[str, tuple[tuple[int, int], str, Any]] = {}
    for key, asset in item.assets.items():
        match = _asset_band_rank(key, asset)
        if match is not None and (match[0] not in ranked or match[1] < ranked[match[0]][0]):
            ranked[match[0]] = (match[1], key, asset)
    found = {band: (key, asset) for band, (_, key, asset) in ranked.items()}
    if not found:
        keys = ", ".join(sorted(item.assets)) or "none"
        raise InputDataError(
            f"{path}: STAC Item {item.id!r} has no Sentinel-2 band assets (assets: {keys})"
        )
    baseline = str(item.properties.get("s2:processing_baseline", "00.00"))
    default_offset = S2_PB04_OFFSET if _baseline_at_least(baseline, 4.0) else 0
    opened = {
        band: (key, asset, _open_stac_asset(path, key, asset, stack))
        for band, (key, asset) in found.items()
    }
    finest = min(opened.values(), key=lambda v: abs(v[2].transform.a))[2]
    grid = _grid(finest)
    nodata = finest.nodata
    bands = {}
    for band in (b for b in S2_BANDS if b in opened):
        key, asset, src = opened[band]
        offset = _raster_dn_offset(path, key, asset)
        reader = _on_grid(src, grid, stack, src.nodata)
        bands[band] = BandRef(
            band, reader, 1, default_offset if offset is None else offset,
            abs(src.transform.a), asset.get_absolute_href() or asset.href,
        )  # fmt: skip
    when = item.datetime.isoformat() if item.datetime else None
    return Product(
        path, "stac", bands, grid, nodata, level=_stac_level(item), datetime=when,
        product_id=item.id, sources=[str(path)],
    )  # fmt: skip


def _baseline_at_least(baseline: str, value: float) -> bool:
    try:
        return float(baseline) >= value
    except ValueError:
        return False


# --------------------------------------------------------------------------- Sentinel-1


def open_sar(path: Path, stack: ExitStack) -> Product:
    """Open a Sentinel-1 GeoTIFF (VV, VH) or STAC Item with ``vv`` / ``vh`` assets.

    Raises:
        InputDataError: missing file, raw GRD (SAFE or radar geometry), missing polarisation,
            wrong band count, no CRS.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"{path}: file not found (expected a Sentinel-1 GeoTIFF with VV, VH, or a STAC Item "
            "with vv / vh assets)"
        )
    kind = product_kind(path)
    if kind == "s1-safe":
        raise InputDataError(f"{path}: {GRD_ADVICE}")
    if kind in ("safe", "folder"):
        raise InputDataError(
            f"{path}: a folder or SAFE given as --sar; expected a Sentinel-1 GeoTIFF (VV, VH) or "
            "a STAC Item JSON"
        )
    if kind == "stac":
        return _open_stac_s1(path, stack)
    src = _open_geotiff(path, stack)
    if src.crs is None and src.gcps[0]:
        raise InputDataError(f"{path}: only GCPs, no map grid; {GRD_ADVICE}")
    if src.count != len(S1_BANDS):
        raise InputDataError(
            f"{path}: expected Sentinel-1 (VV, VH) with {len(S1_BANDS)} bands, found {src.count}"
        )
    names = [(d or "").strip().upper() for d in src.descriptions]
    order = (
        [names.index(b) + 1 for b in S1_BANDS] if set(names) == set(S1_BANDS) else [1, 2]
    )  # named bands in any order; unnamed: VV, VH
    bands = {b: BandRef(b, src, i) for b, i in zip(S1_BANDS, order, strict=True)}
    units = {(u or "").strip().lower() for u in src.units} - {""}
    return Product(
        path, "geotiff", bands, _grid(src), src.nodata, units=_units(units),
        product_id=path.stem, sources=[str(path)],
    )  # fmt: skip


def _units(declared: set[str]) -> str | None:
    if declared and declared <= {"db", "decibel", "decibels"}:
        return "db"
    if declared and declared <= {"linear", "power", "linear power", "1", "none"}:
        return "linear"
    return None


def _open_stac_s1(path: Path, stack: ExitStack) -> Product:
    item = _read_item(path)
    collection = (item.collection_id or "").lower()
    if "grd" in collection and "rtc" not in collection:
        raise InputDataError(f"{path}: a {item.collection_id} item; {GRD_ADVICE}")
    lower = {key.lower(): key for key in item.assets}
    missing = [b for b in S1_BANDS if b.lower() not in lower]
    if missing:
        keys = ", ".join(sorted(item.assets)) or "none"
        raise InputDataError(
            f"{path}: STAC Item {item.id!r} has no {missing[0].lower()!r} asset (assets: {keys}; "
            "expected vv and vh)"
        )
    opened = {}
    for band in S1_BANDS:
        key = lower[band.lower()]
        asset = item.assets[key]
        opened[band] = (asset, _open_stac_asset(path, key, asset, stack))
    first = opened[S1_BANDS[0]][1]
    grid = _grid(first)
    bands, declared = {}, set()
    for band, (asset, src) in opened.items():
        reader = _on_grid(src, grid, stack, src.nodata)
        href = asset.get_absolute_href() or asset.href
        bands[band] = BandRef(band, reader, 1, 0.0, abs(src.transform.a), href)
        for raster_band in _raster_bands(path, lower[band.lower()], asset):
            if raster_band.get("unit"):
                declared.add(str(raster_band["unit"]).lower())
    when = item.datetime.isoformat() if item.datetime else None
    return Product(
        path, "stac", bands, grid, first.nodata, units=_units(declared), datetime=when,
        product_id=item.id, sources=[str(path)],
    )  # fmt: skip
