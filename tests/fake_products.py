"""Fake Sentinel products as analysts download them: SAFE folders and zips, STAC Items.

* :func:`make_safe` writes a Sentinel-2 SAFE (L1C or L2A) with the real folder structure
  (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` with the radiometric offset list, ``manifest.safe``,
  ``GRANULE/<id>/MTD_TL.xml`` with the tile geocoding, JPEG2000 bands at 10, 20 and 60 m in
  ``IMG_DATA`` (L1C) or ``IMG_DATA/R10m|R20m|R60m`` (L2A)). GDAL's SENTINEL2 driver reads it.
* :func:`make_s1_grd_safe` writes the skeleton of a raw Sentinel-1 GRD SAFE (manifest and
  measurement TIFFs in radar geometry), which predict must refuse.
* :func:`make_stac_s2` and :func:`make_stac_s1_rtc` write STAC Items (pystac) whose assets are
  local Cloud-Optimized GeoTIFFs, with the raster extension's scale / offset and eo bands
  named as Earth Search and the Planetary Computer name them.

Pixel values are known functions of the band and position (:func:`band_dn`), so a test can
check band order, resampling and the offset without reading the fake back.
"""

from __future__ import annotations

import shutil
import warnings
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from tests.fakes import UTM_CRS

#: Native resolution (m) of every Sentinel-2 band, model order.
BAND_RESOLUTION: dict[str, int] = {
    "B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
    "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20,
}  # fmt: skip
#: File band names (B01 .. B12, B8A) in the ESA band_id order of the metadata.
ESA_BAND_IDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
#: Earth Search v1 asset keys of the same bands (the names STAC catalogues use most).
EARTH_SEARCH_KEYS: dict[str, str] = {
    "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "rededge1",
    "B6": "rededge2", "B7": "rededge3", "B8": "nir", "B8A": "nir08", "B9": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip
#: Upper-left corner of the fake tile (UTM 33N), on the 60 m grid.
ULX, ULY = 499_980.0, 5_000_040.0
TILE = "T33TWM"
SENSING = "20240611T100559"


def band_dn(band: str, size10: int, offset: int) -> np.ndarray:
    """DN of ``band`` at its native resolution: a band-specific level plus a ramp, + offset.

    The level (1000 + 150 x band position) tells the bands apart after reordering; the ramp in
    x (constant over each 60 m block) makes resampling visible but never ambiguous.
    """
    res = BAND_RESOLUTION[band]
    n = size10 * 10 // res
    position = ESA_BAND_IDS.index(band if band == "B8A" else f"B{int(band[1:]):02d}")
    cols = np.arange(n) * res // 60  # index of the 60 m block of each column
    ramp = np.broadcast_to(cols * 10, (n, n))
    return (offset + 1000 + 150 * position + ramp).astype(np.uint16)


def write_jp2(
    path: Path, data: np.ndarray, res: float, origin: tuple[float, float] = (ULX, ULY)
) -> None:
    """A SAFE band file: JPEG2000 (lossless) of ``data`` with ``res`` m pixels from ``origin``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    transform = Affine(res, 0.0, origin[0], 0.0, -res, origin[1])
    mem = path.with_suffix(".tmp.tif")
    with rasterio.open(
        mem, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
        dtype="uint16", crs=UTM_CRS, transform=transform,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    rasterio.shutil.copy(mem, path, driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES")
    mem.unlink()
    Path(f"{path}.aux.xml").unlink(missing_ok=True)


@dataclass(frozen=True)
class FakeSafe:
    """Where a fake SAFE is and what its bands hold."""

    path: Path
    level: str
    offset: int
    size10: int
    bands: tuple[str, ...]


def make_safe(
    root: Path,
    *,
    level: str = "L1C",
    offset: int = 1000,
    size10: int = 120,
    drop: tuple[str, ...] = (),
    zipped: bool = False,
) -> FakeSafe:
    """A Sentinel-2 SAFE product of ``size10`` x ``size10`` 10 m pixels (a multiple of 6).

    ``offset`` is written as ``RADIO_ADD_OFFSET`` (L1C) / ``BOA_ADD_OFFSET`` (L2A) = -offset
    (processing baseline 05.10 when non-zero, 03.01 otherwise) and added to the DN. L2A has
    no B10, as in real products; ``drop`` removes more bands from the metadata and the files.
    """
    assert size10 % 6 == 0
    root = Path(root)
    baseline = "05.10" if offset else "03.01"
    name = f"S2A_MSI{level}_{SENSING}_N{baseline.replace('.', '')}_R022_{TILE}_{SENSING}.SAFE"
    safe = root / name
    granule = f"{level}_{TILE}_A046781_{SENSING}"
    bands = tuple(
        b for b in BAND_RESOLUTION if b not in drop and not (level == "L2A" and b == "B10")
    )
    image_files = []
    for band in bands:
        esa = ESA_BAND_IDS[list(BAND_RESOLUTION).index(band)]
        res = BAND_RESOLUTION[band]
        if level == "L1C":
            rel = f"GRANULE/{granule}/IMG_DATA/{TILE}_{SENSING}_{esa}"
        else:
            rel = f"GRANULE/{granule}/IMG_DATA/R{res}m/{TILE}_{SENSING}_{esa}_{res}m"
        write_jp2(safe / f"{rel}.jp2", band_dn(band, size10, offset), res)
        image_files.append(rel)
    (safe / f"MTD_MSI{level}.xml").write_text(
        _product_xml(level, name, baseline, image_files, offset)
    )
    (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(_tile_xml(level, size10))
    (safe / "manifest.safe").write_text(_manifest("SENTINEL-2", f"S2MSI{level[1:]}"))
    return FakeSafe(zip_safe(safe) if zipped else safe, level, offset, size10, bands)


def zip_safe(safe: Path) -> Path:
    """Zip the SAFE folder ``safe`` as downloads come (``NAME.zip`` holding ``NAME.SAFE/``).

    The folder is removed; the zip lies beside where it was.
    """
    path = safe.with_suffix(".zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(safe.rglob("*")):
            archive.write(file, file.relative_to(safe.parent))
    shutil.rmtree(safe)
    return path


def _product_xml(level: str, name: str, baseline: str, files: list[str], offset: int) -> str:
    root_tag = f"Level-{level[1:]}_User_Product"
    granules = "\n".join(f"            <IMAGE_FILE>{f}</IMAGE_FILE>" for f in files)
    if level == "L1C":
        quant = '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        tag, list_tag = "RADIO_ADD_OFFSET", "Radiometric_Offset_List"
    else:
        quant = (
            "<QUANTIFICATION_VALUES_LIST>"
            '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>'
            "</QUANTIFICATION_VALUES_LIST>"
        )
        tag, list_tag = "BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST"
    offsets = ""
    if offset:
        items = "".join(f'<{tag} band_id="{i}">-{offset}</{tag}>' for i in range(13))
        offsets = f"<{list_tag}>{items}</{list_tag}>"
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b}">'
        f"<RESOLUTION>{BAND_RESOLUTION[b]}</RESOLUTION></Spectral_Information>"
        for i, b in enumerate(BAND_RESOLUTION)
    )
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:{root_tag} xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_{root_tag[:8]}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2024-06-11T10:05:59.024Z</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>2024-06-11T10:05:59.024Z</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>2024-06-11T12:00:00.000000Z</GENERATION_TIME>
      <Datatake datatakeIdentifier="GS2A_{SENSING}_046781_N{baseline}">
        <SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME>
        <DATATAKE_SENSING_START>2024-06-11T10:05:59.024Z</DATATAKE_SENSING_START>
      </Datatake>
      <Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule granuleIdentifier="S2A_OPER_MSI_{level}_TL_{TILE}" imageFormat="JPEG2000">
{granules}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
      {quant}
      {offsets}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:{root_tag}>
"""


def _tile_xml(level: str, size10: int) -> str:
    sizes = "".join(
        f'<Size resolution="{r}"><NROWS>{size10 * 10 // r}</NROWS>'
        f"<NCOLS>{size10 * 10 // r}</NCOLS></Size>"
        for r in (10, 20, 60)
    )
    positions = "".join(
        f'<Geoposition resolution="{r}"><ULX>{ULX:.0f}</ULX><ULY>{ULY:.0f}</ULY>'
        f"<XDIM>{r}</XDIM><YDIM>-{r}</YDIM></Geoposition>"
        for r in (10, 20, 60)
    )
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{level[1:]}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{level[1:]}_Tile_Metadata.xsd">
  <n1:General_Info><SENSING_TIME>2024-06-11T10:05:59.024Z</SENSING_TIME></n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone 33N</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>{UTM_CRS}</HORIZONTAL_CS_CODE>
      {sizes}
      {positions}
    </Tile_Geocoding>
  </n1:Geometric_Info>
</n1:Level-{level[1:]}_Tile_ID>
"""


def _manifest(family: str, product_type: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:safe="http://www.esa.int/safe/sentinel/1.1">
  <metadataSection>
    <metadataObject ID="platform"><metadataWrap><xmlData>
      <safe:platform><safe:familyName>{family}</safe:familyName></safe:platform>
    </xmlData></metadataWrap></metadataObject>
    <metadataObject ID="generalProductInformation"><metadataWrap><xmlData>
      <productType>{product_type}</productType>
    </xmlData></metadataWrap></metadataObject>
  </metadataSection>
</xfdu:XFDU>
"""


def make_s1_grd_safe(root: Path, *, zipped: bool = False) -> Path:
    """The skeleton of a raw Sentinel-1 IW GRD SAFE: manifest and two measurement TIFFs."""
    name = "S1A_IW_GRDH_1SDV_20240611T052530_20240611T052555_054267_069A3F_1C2B.SAFE"
    safe = Path(root) / name
    (safe / "measurement").mkdir(parents=True)
    (safe / "annotation").mkdir()
    (safe / "manifest.safe").write_text(_manifest("SENTINEL-1", "GRD"))
    for pol in ("vv", "vh"):
        path = safe / "measurement" / f"s1a-iw-grd-{pol}-20240611t052530-001.tiff"
        with warnings.catch_warnings():
            # Radar geometry: a real GRD measurement has GCPs, not a geotransform.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(
                path, "w", driver="GTiff", height=20, width=30, count=1, dtype="uint16"
            ) as dst:
                dst.write(np.full((1, 20, 30), 120, np.uint16))
    if not zipped:
        return safe
    archive_path = Path(root) / name.replace(".SAFE", ".zip")
    with zipfile.ZipFile(archive_path, "w") as archive:
        for file in sorted(safe.rglob("*")):
            archive.write(file, file.relative_to(root))
    shutil.rmtree(safe)
    return archive_path


# --------------------------------------------------------------------------- STAC Items


def _write_cog(path: Path, data: np.ndarray, transform: Affine, nodata: float | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(
        tmp, "w", driver="GTiff", height=data.shape[-2], width=data.shape[-1], count=1,
        dtype=data.dtype.name, crs=UTM_CRS, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data.reshape(1, *data.shape[-2:]))
    rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="DEFLATE")
    tmp.unlink()
    return path


def _item(item_id: str, collection: str, size_m: float, properties: dict):
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    left, top = ULX, ULY
    right, bottom = left + size_m, top - size_m
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds(UTM_CRS, "EPSG:4326", left, bottom, right, top)
    geometry = {
        "type": "Polygon",
        "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=[w, s, e, n],
        datetime=datetime(2024, 6, 11, 10, 5, 59, tzinfo=UTC),
        properties=properties,
        collection=collection,
    )
    ProjectionExtension.add_to(item)
    ProjectionExtension.ext(item).code = UTM_CRS
    return item


def make_stac_s2(
    root: Path,
    *,
    level: str = "L2A",
    offset: int = 1000,
    size10: int = 120,
    keys: str = "earth-search",
    drop: tuple[str, ...] = (),
    missing_file: str | None = None,
) -> Path:
    """A STAC Item of a Sentinel-2 scene with one local COG asset per band (native resolution).

    ``keys``: "earth-search" (``coastal``, ``blue``, ... with ``eo:bands`` common names) or
    "planetary" (``B01`` .. ``B12``). The raster extension gives scale 1e-4 and offset
    -offset/1e4, as Earth Search v1 does. ``missing_file`` names a band whose asset points to
    a file that does not exist.
    """
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    root = Path(root)
    bands = [b for b in BAND_RESOLUTION if b not in drop and not (level == "L2A" and b == "B10")]
    item = _item(
        f"S2A_{TILE[1:]}_20240611_0_{level}",
        f"sentinel-2-{level.lower()}",
        size10 * 10.0,
        {"s2:processing_baseline": "05.10" if offset else "03.01"},
    )
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    for band in bands:
        esa = ESA_BAND_IDS[list(BAND_RESOLUTION).index(band)]
        key = EARTH_SEARCH_KEYS[band] if keys == "earth-search" else esa
        res = BAND_RESOLUTION[band]
        path = root / f"{esa}.tif"
        _write_cog(path, band_dn(band, size10, offset), Affine(res, 0, ULX, 0, -res, ULY), 0)
        href = str(path) if band != missing_file else str(root / f"{esa}-missing.tif")
        asset = pystac.Asset(href, media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(key, asset)
        EOExtension.ext(asset).bands = [Band.create(name=key if keys == "earth-search" else esa)]
        RasterExtension.ext(asset).bands = [
            RasterBand.create(nodata=0, data_type="uint16", scale=1e-4, offset=-offset / 1e4)
        ]
    path = root / "item.json"
    item.save_object(dest_href=str(path), include_self_link=False)
    return path


def s1_linear(size10: int) -> np.ndarray:
    """Gamma0 in linear power (VV, VH) of the fake S1 RTC: -8 .. -20 dB, a ramp in y."""
    rows = np.linspace(0.0, 1.0, size10, dtype=np.float32)[:, None]
    vv_db = np.broadcast_to(-8.0 - 6.0 * rows, (size10, size10))
    vh_db = vv_db - 6.0
    return (10.0 ** (np.stack([vv_db, vh_db]) / 10.0)).astype(np.float32)


def make_stac_s1_rtc(root: Path, *, size10: int = 120, nodata_corner: bool = True) -> Path:
    """A STAC Item of Sentinel-1 RTC (gamma0, linear power, float32) with ``vv``/``vh`` COGs.

    With ``nodata_corner`` the top-left 6 x 6 pixels are 0 (no data in RTC products).
    """
    import pystac

    root = Path(root)
    values = s1_linear(size10)
    if nodata_corner:
        values[:, :6, :6] = 0.0
    item = _item(
        "S1A_IW_GRDH_1SDV_20240611T052530_rtc",
        "sentinel-1-rtc",
        size10 * 10.0,
        {"sar:product_type": "RTC", "sar:polarizations": ["VV", "VH"]},
    )
    for index, pol in enumerate(("vv", "vh")):
        path = _write_cog(root / f"{pol}.tif", values[index], Affine(10, 0, ULX, 0, -10, ULY), None)
        item.add_asset(
            pol, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"])
        )
    path = root / "item.json"
    item.save_object(dest_href=str(path), include_self_link=False)
    return path
