"""What a Sentinel-2 SAFE product must satisfy before its numbers are trusted.

GDAL's SENTINEL2 driver builds each resolution's raster from ``MTD_TL.xml`` and places every
band file at the tile's top-left corner, whatever the file's own grid: a 20 m raster where a
10 m band belongs, or a raster of the wrong size, is read as part of the band and the rest
padded with zeros (no data), silently. It also takes the radiometric offsets and the
quantification value as text, unchecked. And it (like reading ``manifest.safe`` here) reads a
metadata file whole. GDAL offers no option for any of these, so this module checks:

* metadata members (``manifest.safe``, the product's ``MTD_MSIL*.xml``, each granule's
  ``MTD_TL.xml``) are at most :data:`METADATA_CAP` bytes, before anything reads them;
* every band file lies on its band's nominal grid: the 10 m grid of ``MTD_TL.xml`` at the
  band's own 10, 20 or 60 m pixel size (same origin, same extent);
* the DN offsets are those Sentinel-2 products carry (0 or -1000) and the quantification
  value is 10000, both numbers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from tdpcr.core.errors import InputDataError
from tdpcr.core.files import require_plain_file
from tdpcr.core.specs import S2_BAND_INFO, S2_OFFSETS, S2_SCALE

#: Largest metadata file read (bytes). Real ones are far smaller (MTD_MSIL*.xml tens of kB,
#: MTD_TL.xml with its viewing-angle grids under 1 MB, manifest.safe tens of kB); a bigger one
#: is not Sentinel-2 metadata, and reading it whole could exhaust memory.
METADATA_CAP = 16 * 1024 * 1024
#: Fields of MTD_MSIL1C.xml / MTD_MSIL2A.xml that hold a band's DN offset (GDAL band tags).
OFFSET_FIELDS: tuple[str, ...] = ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET")
#: Fields that hold the quantification value (L1C, L2A); DN = reflectance x this.
QUANTIFICATION_FIELDS: tuple[str, ...] = ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE")


# --------------------------------------------------------------------------- metadata size


def _cap_text(size: int) -> str:
    cap = METADATA_CAP // 2**20
    return f"{size:,} bytes; expected Sentinel-2 metadata of at most {cap} MB (not read)"


def _is_read_metadata(parts: tuple[str, ...]) -> bool:
    """Whether a file at ``parts`` (below the SAFE folder) is metadata GDAL or tdpcr reads.

    The product level (``manifest.safe``, ``MTD_MSIL*.xml``) and each granule's tile metadata
    (``GRANULE/<id>/MTD_TL.xml``); datastrip and quality reports are never read.
    """
    name = parts[-1].lower()
    if len(parts) == 1:
        return name == "manifest.safe" or name.endswith(".xml")
    return len(parts) == 3 and parts[0].upper() == "GRANULE" and name.endswith(".xml")


def check_folder_metadata(safe: Path) -> None:
    """Refuse a SAFE folder whose metadata files exceed :data:`METADATA_CAP` (by their size).

    Raises:
        InputDataError: naming the file and its size.
    """
    # Any file of the product may be opened (by tdpcr or by GDAL): none may be a named pipe.
    for file in safe.rglob("*"):
        require_plain_file(file, safe, "a file of a Sentinel-2 SAFE product")
    candidates = [*safe.glob("*"), *safe.glob("GRANULE/*/*")]
    for file in candidates:
        parts = file.relative_to(safe).parts
        if _is_read_metadata(parts) and file.is_file():
            size = file.stat().st_size
            if size > METADATA_CAP:
                raise InputDataError(f"{file}: {_cap_text(size)}")


def check_zip_metadata(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse a SAFE zip whose metadata members exceed :data:`METADATA_CAP` (declared sizes).

    Both Python's zipfile and GDAL's /vsizip/ read no more of a member than its declared
    uncompressed size, so checking that size bounds what either reads.

    Raises:
        InputDataError: naming the zip, the member and its size.
    """
    for info in archive.infolist():
        parts = PurePosixPath(info.filename).parts
        below_safe = parts[1:] if parts and parts[0].upper().endswith(".SAFE") else parts
        if below_safe and _is_read_metadata(below_safe) and info.file_size > METADATA_CAP:
            raise InputDataError(f"{path}: member {info.filename}: {_cap_text(info.file_size)}")


def read_capped_member(archive: zipfile.ZipFile, member: str, path: Path) -> bytes:
    """The bytes of a metadata ``member`` of the zip at ``path``, refused above the cap.

    Raises:
        InputDataError: naming the zip and the member.
    """
    declared = archive.getinfo(member).file_size
    with archive.open(member) as stream:
        data = stream.read(METADATA_CAP + 1) if declared <= METADATA_CAP else b""
    if declared > METADATA_CAP or len(data) > METADATA_CAP:
        raise InputDataError(f"{path}: member {member}: {_cap_text(max(declared, len(data)))}")
    return data


def read_capped_file(path: Path) -> str:
    """The text of a metadata file, refused above the cap ("" when it cannot be read).

    Raises:
        InputDataError: naming the file and its size.
    """
    try:
        size = path.stat().st_size
        if size > METADATA_CAP:
            raise InputDataError(f"{path}: {_cap_text(size)}")
        with path.open("rb") as stream:
            return stream.read(METADATA_CAP).decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- naming


def shown(file: str, product: Path) -> str:
    """A file GDAL names as the user knows it: ``ZIP: member MEMBER`` in a zip, else the path."""
    if not file.startswith("/vsizip/"):
        return file
    inner = file[len("/vsizip/") :]
    cut = inner.lower().find(".zip/")
    return f"{product}: member {inner[cut + 5 :]}" if cut >= 0 else f"{product}: {inner}"


# --------------------------------------------------------------------------- band grids


def _tile_metadata(sub: Any) -> str:
    """The granule's MTD_TL.xml among the files of a SENTINEL2 subdataset (else the product's)."""
    names = [f for f in sub.files if f.lower().endswith(".xml")]
    tile = [f for f in names if "MTD_TL" in Path(f).name.upper() or "_TL_" in Path(f).name.upper()]
    return (tile or names or ["MTD_TL.xml"])[0]


def nominal_shape(grid: Any, band: str, tile_xml: str) -> tuple[int, int]:
    """Rows and columns of ``band``'s grid: the finest grid at the band's own pixel size.

    Raises:
        InputDataError: the tile's extent is no whole number of the band's pixels.
    """
    res = S2_BAND_INFO[band].gsd_m
    fine = abs(grid.transform.a)
    rows, cols = grid.height * fine / res, grid.width * fine / res
    if abs(rows - round(rows)) > 1e-6 or abs(cols - round(cols)) > 1e-6:
        raise InputDataError(
            f"{tile_xml}: a tile of {grid.height} x {grid.width} pixels of {fine:g} m is no whole "
            f"number of {res} m pixels (band {band}); expected a Sentinel-2 tile geocoding"
        )
    return round(rows), round(cols)


def _on_nominal_grid(src: Any, grid: Any, band: str, shape: tuple[int, int]) -> bool:
    res = S2_BAND_INFO[band].gsd_m
    t, g = src.transform, grid.transform
    return (
        (src.height, src.width) == shape
        and abs(abs(t.a) - res) <= 1e-6 * res
        and abs(abs(t.e) - res) <= 1e-6 * res
        and abs(t.c - g.c) <= 1e-3 * res
        and abs(t.f - g.f) <= 1e-3 * res
    )


def _grid_text(src: Any) -> str:
    t = src.transform
    return f"{src.height} x {src.width} pixels of {abs(t.a):g} m from ({t.c:.10g}, {t.f:.10g})"


def check_band_grid(sub: Any, band_file: Any | None, band: str, grid: Any, product: Path) -> None:
    """Refuse a band whose resolution raster or file is not on the band's nominal grid.

    ``sub`` is the SENTINEL2 subdataset the band comes from (its grid is what GDAL read from
    MTD_TL.xml), ``band_file`` the band's own open JP2 (None: not checked), ``grid`` the
    product's finest grid.

    Raises:
        InputDataError: naming MTD_TL.xml or the band file, and the grid expected.
    """
    tile_xml = shown(_tile_metadata(sub), product)
    shape = nominal_shape(grid, band, tile_xml)
    res = S2_BAND_INFO[band].gsd_m
    g = grid.transform
    expected = (
        f"expected band {band} on its {res} m grid: {shape[0]} x {shape[1]} pixels of {res} m "
        f"from ({g.c:.10g}, {g.f:.10g}) (the tile's {abs(g.a):g} m grid in MTD_TL.xml)"
    )
    if not _on_nominal_grid(sub, grid, band, shape):
        raise InputDataError(f"{tile_xml}: geocoding of {_grid_text(sub)}; {expected}")
    if band_file is not None and not _on_nominal_grid(band_file, grid, band, shape):
        where = shown(band_file.name, product)
        raise InputDataError(f"{where}: {_grid_text(band_file)}; {expected}")


# --------------------------------------------------------------------------- offsets


def _number(raw: str, where: str, field: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InputDataError(f"{where}: {field} is {raw.strip()!r}; expected a number") from None


def band_dn_offset(band_tags: dict[str, str], band: str, where: str) -> float:
    """The DN to subtract from ``band``: minus its RADIO_ADD_OFFSET / BOA_ADD_OFFSET (0 if none).

    Raises:
        InputDataError: a non-numeric offset, or one other than 0 / -1000 (any other would
            shift every reflectance, e.g. -10000 sends all of them to zero).
    """
    for field in OFFSET_FIELDS:
        raw = band_tags.get(field)
        if raw:
            value = _number(raw, where, f"{field} of band {band}")
            if -value not in S2_OFFSETS:
                allowed = " or ".join(f"{-o:g}" for o in S2_OFFSETS)
                raise InputDataError(
                    f"{where}: {field} of band {band} is {raw.strip()}; expected {allowed} (the "
                    "DN offsets of Sentinel-2 products before and since processing baseline "
                    "04.00)"
                )
            return -value
    return 0.0


def check_quantification(tags: dict[str, str], where: str) -> None:
    """Refuse a quantification value other than 10000 (DN = reflectance x 10000 in the model).

    Raises:
        InputDataError: naming the metadata file and the field.
    """
    for field in QUANTIFICATION_FIELDS:
        raw = tags.get(field)
        if raw and _number(raw, where, field) != S2_SCALE:
            raise InputDataError(
                f"{where}: {field} is {raw.strip()}; expected {S2_SCALE:.0f} (Sentinel-2 DN "
                "are reflectance x 10000)"
            )


def nodata_value(tags: dict[str, str], where: str) -> float:
    """SPECIAL_VALUE_NODATA as a number (0 when the product does not say).

    Raises:
        InputDataError: naming the metadata file when it is not a number.
    """
    return _number(tags.get("SPECIAL_VALUE_NODATA") or "0", where, "SPECIAL_VALUE_NODATA")
