"""Opening and checking a scene's inputs, and cutting them into normalised model windows.

The products themselves (GeoTIFF, SAFE, STAC Item) are opened by :mod:`.products`; this module
checks them against the checkpoint and each other and returns :class:`OpenInputs`, the one
contract the engine reads: S2 bands in the checkpoint's order on the S2 grid (cut to the
``bbox``), with the product's DN offset removed; S1 (VV, VH) in dB on the same grid.

Value conventions are the training ones (:mod:`tdpcr.data.normalize`): S2 digital numbers
(reflectance x 1e4) and S1 backscatter in dB. Nodata: an S2 pixel is nodata when all bands
equal the product's nodata value, or are all 0, or any band is NaN (decided before the offset
is removed); it is fed to the model as 0 and written as nodata by :mod:`.writers`. S1 nodata
(the file's nodata value, NaN, outside the S1 footprint, and linear power <= 0) becomes the
normalised floor 0, as in training; the optical pixel stays valid.

S1 units: ``--s1-units db`` or ``linear`` say it; ``auto`` (the default) takes what the
product declares (GDAL band units, STAC ``raster:bands`` unit) and otherwise decides from the
values: mostly negative is dB, all >= 0 with a median below 1 is linear power, anything else
is refused as ambiguous. Linear power becomes 10 log10(x) after any resampling (power is what
averages physically).

Inputs are read in row strips (windowed reads; bands and S1 on another grid through GDAL warped
VRTs, which resample only what is read), so memory grows with the scene width only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from tdpcr.core.errors import InputDataError, TdpcrError
from tdpcr.core.files import require_plain_file
from tdpcr.core.specs import S1_BANDS, S1_UNITS, S2_BANDS, S2_LEVEL
from tdpcr.data.normalize import normalise_s1, normalise_s2
from tdpcr.data.rasters import Grid
from tdpcr.data.sources.base import check_s2_dn
from tdpcr.prediction.access import input_gdal_env
from tdpcr.prediction.products import RESAMPLING, BandRef, Product, open_optical, open_sar

log = logging.getLogger(__name__)

#: S1 is sampled in UNITS_SAMPLE_WINDOWS x UNITS_SAMPLE_WINDOWS windows of UNITS_SAMPLE_SIDE
#: pixels to decide or check its units (65,536 values at most).
UNITS_SAMPLE_WINDOWS = 8
UNITS_SAMPLE_SIDE = 32


class StackReader:
    """Bands of one or more datasets on one grid, read together as (bands, rows, cols).

    ``row_off`` / ``col_off`` place window (0, 0) on the datasets' grid (the ``--bbox`` cut).
    Consecutive bands of one dataset are read in one call.
    """

    def __init__(self, refs: list[BandRef], row_off: int = 0, col_off: int = 0) -> None:
        self.refs = refs
        self.row_off, self.col_off = row_off, col_off
        self.groups: list[tuple[Any, list[int]]] = []
        for ref in refs:
            if self.groups and self.groups[-1][0] is ref.reader:
                self.groups[-1][1].append(ref.index)
            else:
                self.groups.append((ref.reader, [ref.index]))

    @property
    def count(self) -> int:
        return len(self.refs)

    def read(self, window: Window) -> np.ndarray:
        """The bands of ``window`` (in this reader's coordinates), (bands, rows, cols)."""
        shifted = Window(
            window.col_off + self.col_off, window.row_off + self.row_off,
            window.width, window.height,
        )  # fmt: skip
        parts = [reader.read(indexes, window=shifted) for reader, indexes in self.groups]
        if len(parts) == 1:
            return parts[0]
        dtype = np.result_type(*parts)
        return np.concatenate([p.astype(dtype, copy=False) for p in parts])


@dataclass
class OpenInputs:
    """Open, checked inputs (see the module docstring) and what was learnt checking them.

    Attributes:
        s2, s1: readers of the S2 bands (checkpoint order) and of VV, VH on ``grid``.
        grid: the grid of the outputs: the S2 grid, cut to the bbox.
        s2_nodata, s1_nodata: nodata values as read (``s1_nodata`` None when S1 is warped:
            its nodata then reads as NaN).
        s1_reprojected: S1 was resampled onto the S2 grid.
        s2_dn_offset: (bands,) uint16 DN removed from each S2 band (0 where none).
        s1_linear: S1 is linear power (converted to dB when read).
        optical, sar: the products, for the outputs' metadata.
        window: the bbox cut, in pixels of the full S2 grid.
    """

    s2: Any
    s1: Any
    grid: Grid
    s2_nodata: float | None
    s1_nodata: float | None
    s1_reprojected: bool
    s2_dn_offset: np.ndarray = field(default_factory=lambda: np.zeros(13, np.uint16))
    s1_linear: bool = False
    optical: Product | None = None
    sar: Product | None = None
    window: Window | None = None


def check_bands(product: Product, bands: tuple[str, ...], level: str, checkpoint: str) -> None:
    """Refuse a product whose level or bands differ from what the checkpoint was trained on.

    The message names the first missing band and both levels, e.g. an L2A product (no B10)
    given to a model trained on L1C.
    """
    missing = [b for b in bands if b not in product.bands]
    trained = f"the checkpoint {checkpoint} was trained on {level} bands {', '.join(bands)}"
    if missing:
        raise InputDataError(
            f"{product.path}: band {missing[0]} missing ({len(missing)} of {len(bands)} "
            f"missing) in this Sentinel-2 {product.describe()}; {trained}"
        )
    if product.level is not None and product.level != level:
        reflectance = "surface" if product.level == "L2A" else "top-of-atmosphere"
        raise InputDataError(
            f"{product.path}: a Sentinel-2 {product.level} product ({reflectance} reflectance); "
            f"{trained}: give the {level} product of this scene"
        )


def bbox_window(
    bbox: tuple[float, float, float, float], bbox_crs: str, grid: Grid, where: Path
) -> Window:
    """Pixels of ``grid`` covering ``bbox`` (minx, miny, maxx, maxy in ``bbox_crs``).

    The window is the part of the scene inside the box: a box reaching past the scene (up to
    the whole world) is clipped at the scene's edges, and keeps every row and column of the
    scene it covers.

    Raises:
        TdpcrError: a bbox that is not finite, has min >= max, lies outside longitude
            -180..180 / latitude -90..90 in a geographic CRS, or an unknown CRS.
        InputDataError: a bbox that does not overlap the scene ``where``.
    """
    crs = _bbox_crs(bbox_crs)
    check_bbox(bbox, crs.is_geographic)
    minx, miny, maxx, maxy = bbox
    try:
        left, bottom, right, top = _scene_part(bbox, crs, grid)
    except Exception as err:  # CRSError, projection errors: both one line for the user
        raise TdpcrError(f"--bbox-crs {bbox_crs}: cannot transform the bbox ({err})") from None
    window = from_bounds(left, bottom, right, top, grid.transform)
    # Within a millionth of a pixel is on the edge (transforms are not exact): without this
    # a box ending on a pixel edge would take one more column.
    col0 = max(math.floor(window.col_off + 1e-6), 0)
    row0 = max(math.floor(window.row_off + 1e-6), 0)
    col1 = min(math.ceil(window.col_off + window.width - 1e-6), grid.width)
    row1 = min(math.ceil(window.row_off + window.height - 1e-6), grid.height)
    if col1 <= col0 or row1 <= row0:
        scene = transform_bounds(grid.crs, crs, *_bounds(grid), densify_pts=21)
        raise InputDataError(
            f"{where}: --bbox {minx} {miny} {maxx} {maxy} ({bbox_crs}) lies outside the scene "
            f"(scene bounds in {bbox_crs}: {', '.join(f'{v:.5g}' for v in scene)})"
        )
    return Window(col0, row0, col1 - col0, row1 - row0)


def _bbox_crs(bbox_crs: str) -> CRS:
    try:
        return CRS.from_user_input(bbox_crs)
    except CRSError as err:
        raise TdpcrError(f"--bbox-crs {bbox_crs}: not a CRS rasterio knows ({err})") from None


def check_bbox(bbox: tuple[float, float, float, float], geographic: bool) -> None:
    """Refuse a bbox that is not finite, has min >= max, or (``geographic``: in degrees of
    longitude, latitude) lies outside -180..180, -90..90.

    Out-of-range degrees are not clipped: latitude 95 is a typing error, and a projection
    library would fold it onto another place rather than refuse it.

    Raises:
        TdpcrError: naming --bbox and what was expected.
    """
    minx, miny, maxx, maxy = bbox
    given = f"--bbox {minx} {miny} {maxx} {maxy}"
    if not all(math.isfinite(v) for v in bbox):
        raise TdpcrError(f"{given}: expected finite numbers minx miny maxx maxy")
    if not (minx < maxx and miny < maxy):
        raise TdpcrError(f"{given}: expected minx miny maxx maxy with minx < maxx, miny < maxy")
    if geographic and (minx < -180 or maxx > 180 or miny < -90 or maxy > 90):
        raise TdpcrError(
            f"{given}: outside longitude -180..180, latitude -90..90 (a geographic --bbox-crs "
            "takes minlon minlat maxlon maxlat in degrees)"
        )


def _scene_part(
    bbox: tuple[float, float, float, float], crs: CRS, grid: Grid
) -> tuple[float, float, float, float]:
    """Bounds, in the grid's CRS, of the part of ``bbox`` over the scene.

    Intersected in the bbox's CRS first: transforming a box much larger than the scene (the
    whole world) into the scene's projection gives bounds that are meaningless far from its
    zone, and cut into the scene.
    """
    s_left, s_bottom, s_right, s_top = transform_bounds(grid.crs, crs, *_bounds(grid), 21)
    if s_left <= s_right:  # not across the antimeridian: intersect there
        minx, miny, maxx, maxy = bbox
        left, right = max(minx, s_left), min(maxx, s_right)
        bottom, top = max(miny, s_bottom), min(maxy, s_top)
        if left >= right or bottom >= top:
            return (0.0, 0.0, 0.0, 0.0)  # outside: an empty window
        bbox = (left, bottom, right, top)
    return transform_bounds(crs, grid.crs, *bbox, densify_pts=21)


def _bounds(grid: Grid) -> tuple[float, float, float, float]:
    t = grid.transform
    xs = (t.c, t.c + t.a * grid.width)
    ys = (t.f, t.f + t.e * grid.height)
    return min(xs), min(ys), max(xs), max(ys)


def pixel_size(grid: Grid) -> str:
    """The pixel width of ``grid`` in its CRS's units: "10 m", "0.0001 degree", "30 US survey
    foot"."""
    if grid.crs is None:
        return f"{abs(grid.transform.a):.4g} (no CRS)"
    unit, _ = grid.crs.units_factor
    return f"{abs(grid.transform.a):.4g} {'m' if unit in ('metre', 'meter') else unit}"


def _footprint_coverage(s2: Grid, s1: Grid) -> float:
    """Fraction of the S2 footprint inside the S1 footprint (bounding boxes, in S2's CRS)."""
    left, bottom, right, top = transform_bounds(s1.crs, s2.crs, *_bounds(s1), densify_pts=21)
    b_left, b_bottom, b_right, b_top = _bounds(s2)
    width = min(right, b_right) - max(left, b_left)
    height = min(top, b_top) - max(bottom, b_bottom)
    if width <= 0 or height <= 0:
        return 0.0
    return float(width * height / ((b_right - b_left) * (b_top - b_bottom)))


def _same_grid(a: Grid, b: Grid) -> bool:
    """Same CRS, shape and pixel grid (origins within 1/1000 pixel, sizes within 1e-6)."""
    if a.crs != b.crs or (a.height, a.width) != (b.height, b.width):
        return False
    ta, tb = a.transform, b.transform
    pixel = max(abs(ta.a), abs(ta.e))
    same_size = all(
        abs(x - y) <= 1e-6 * pixel
        for x, y in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e))
    )
    return same_size and abs(ta.c - tb.c) <= 1e-3 * pixel and abs(ta.f - tb.f) <= 1e-3 * pixel


def _s2_reader(
    optical: Product, bands: tuple[str, ...], window: Window, s2_offset: float | None
) -> tuple[StackReader, np.ndarray]:
    refs = [optical.bands[b] for b in bands]
    offsets = [s2_offset if s2_offset is not None else ref.dn_offset for ref in refs]
    for band, value in zip(bands, offsets, strict=True):
        if not 0 <= value < 10_000:
            raise InputDataError(
                f"{optical.path}: DN offset {value:g} of band {band} outside [0, 10000); "
                "override it with --s2-offset"
            )
    reader = StackReader(refs, int(window.row_off), int(window.col_off))
    return reader, np.rint(offsets).astype(np.uint16)


def _s1_reader(
    sar: Product, grid: Grid, full: Grid, window: Window, stack: ExitStack
) -> tuple[StackReader, bool, float | None]:
    """VV, VH on ``grid`` (the cut of ``full``): direct reads when S1 is on ``full``."""
    refs = [sar.bands[b] for b in S1_BANDS]
    if all(_same_grid(_grid_of(r.reader), full) for r in refs):
        return StackReader(refs, int(window.row_off), int(window.col_off)), False, sar.nodata
    warped = {}
    for ref in refs:
        if id(ref.reader) not in warped:
            # A warped VRT reprojects only the windows read, so memory stays bounded. Pixels
            # outside the S1 footprint read as NaN (-> the normalised floor 0 later).
            warped[id(ref.reader)] = stack.enter_context(
                WarpedVRT(
                    ref.reader, crs=grid.crs, transform=grid.transform, width=grid.width,
                    height=grid.height, resampling=RESAMPLING, src_nodata=ref.reader.nodata,
                    nodata=float("nan"), dtype="float32",
                )
            )  # fmt: skip
    moved = [BandRef(r.name, warped[id(r.reader)], r.index) for r in refs]
    return StackReader(moved), True, None


def _grid_of(src: Any) -> Grid:
    return Grid(src.crs, src.transform, src.height, src.width)


def decide_s1_units(values: np.ndarray, requested: str, declared: str | None, path: Path) -> str:
    """The units of S1 ``values`` (finite samples), "db" or "linear", or refuse them.

    See the module docstring. Exact zeros are left out: products fill no data with 0 in
    either unit (and SEN12MS-CR caps its dB at 0), so they tell nothing about the unit.
    """
    values = values[values != 0]
    negative = float(np.mean(values < 0)) if values.size else 0.0
    median = float(np.median(values)) if values.size else float("nan")
    seen = f"{100 * negative:.0f} % of the values are negative, median {median:.3g}"
    units = requested if requested != "auto" else declared
    if units == "linear" and negative > 0.01:
        raise InputDataError(
            f"{path}: S1 given as linear power but {seen}; power is >= 0 (is it in dB? use "
            "--s1-units db)"
        )
    if units is not None:
        return units
    if values.size == 0:
        return "db"  # no valid S1 at all: every pixel gets the floor either way
    if negative >= 0.9:
        return "db"
    if negative == 0.0 and median < 1.0 and float(np.percentile(values, 99)) < 100.0:
        return "linear"
    raise InputDataError(
        f"{path}: cannot tell whether S1 is in dB or linear power ({seen}); say it with "
        "--s1-units db or --s1-units linear"
    )


def _sample(reader: StackReader, grid: Grid) -> np.ndarray:
    """Values (in the file's dtype) of up to UNITS_SAMPLE_WINDOWS^2 small windows spread over
    the scene, flattened.

    Small windows, not a decimated read of the whole scene: through a warped VRT the latter
    would resample all of S1 once just to look at it.
    """
    side = UNITS_SAMPLE_SIDE
    parts = []
    for row in _spread(grid.height, side):
        for col in _spread(grid.width, side):
            window = Window(col, row, min(side, grid.width - col), min(side, grid.height - row))
            parts.append(reader.read(window).ravel())
    return np.concatenate(parts)


def _s1_sample(reader: StackReader, grid: Grid, nodata: float | None) -> np.ndarray:
    """Valid S1 values of the sample windows (see :func:`_sample`), float32."""
    data = _sample(reader, grid).astype("float32", copy=False)
    valid = np.isfinite(data)
    if nodata is not None and not math.isnan(nodata):
        valid &= data != np.float32(nodata)
    return data[valid]


def _spread(length: int, side: int) -> list[int]:
    """Up to UNITS_SAMPLE_WINDOWS window starts spread evenly over ``length`` pixels."""
    if length <= side:
        return [0]
    count = min(UNITS_SAMPLE_WINDOWS, length // side)
    return sorted({round(i * (length - side) / max(count - 1, 1)) for i in range(count)})


@contextmanager
def open_inputs(
    optical: Path,
    sar: Path,
    *,
    bands: tuple[str, ...] = S2_BANDS,
    level: str = S2_LEVEL,
    checkpoint: str = "",
    s2_offset: float | None = None,
    s1_units: str = "auto",
    bbox: tuple[float, float, float, float] | None = None,
    bbox_crs: str = "EPSG:4326",
) -> Iterator[OpenInputs]:
    """Open and check the S2 and S1 products; S1 on another grid is warped onto S2's.

    Args:
        optical, sar: the products (see :mod:`.products`).
        bands, level, checkpoint: what the model was trained on (and its name, for messages).
        s2_offset: DN offset to remove from every S2 band instead of the product's own.
        s1_units: "auto", "db" or "linear".
        bbox, bbox_crs: cut this area out of the scene first.

    Raises:
        InputDataError: a product missing, unreadable or of another level, a band missing,
            no CRS, footprints that do not overlap, S1 units that cannot be told.
    """
    optical, sar = Path(optical), Path(sar)
    if s1_units not in S1_UNITS:
        raise TdpcrError(f"--s1-units {s1_units}: expected one of {', '.join(S1_UNITS)}")
    with ExitStack() as stack:
        # Finite HTTP timeouts for remote assets, for the opens here and every read after.
        stack.enter_context(input_gdal_env())
        require_plain_file(optical, optical, "a Sentinel-2 product (--optical)")
        require_plain_file(sar, sar, "a Sentinel-1 product (--sar)")
        s2_product = open_optical(optical, stack)
        check_bands(s2_product, bands, level, checkpoint or "(this model)")
        s1_product = open_sar(sar, stack)
        for product, what in ((s2_product, "S2 scene"), (s1_product, "S1 scene")):
            if product.grid.crs is None:
                raise InputDataError(
                    f"{product.path}: no CRS; expected a georeferenced {what} (outputs take the "
                    "S2 CRS and transform)"
                )
        full = s2_product.grid
        window = Window(0, 0, full.width, full.height)
        if bbox is not None:
            window = bbox_window(bbox, bbox_crs, full, optical)
        grid = Grid(full.crs, window_transform(window, full.transform),
                    int(window.height), int(window.width))  # fmt: skip
        coverage = _footprint_coverage(grid, s1_product.grid)
        if coverage <= 0.0:
            s1b, s2b = _bounds(s1_product.grid), _bounds(grid)
            raise InputDataError(
                f"{sar}: footprint does not overlap the S2 scene {optical} (S1 bounds "
                f"{tuple(round(v, 1) for v in s1b)} in {s1_product.grid.crs.to_string()}, S2 "
                f"bounds {tuple(round(v, 1) for v in s2b)} in {grid.crs.to_string()})"
            )
        s2_reader, offsets = _s2_reader(s2_product, bands, window, s2_offset)
        # Before any work: float reflectance or uint8 would give an image (exit 0) from
        # values the model never saw; the same rule as ``tdpcr tile`` (sampled here).
        check_s2_dn(_sample(s2_reader, grid), optical)
        s1_reader, reprojected, s1_nodata = _s1_reader(s1_product, grid, full, window, stack)
        if reprojected:
            log.warning(
                "%s: S1 is not on the S2 grid of %s (%s, %s pixels vs %s, %s); "
                "reprojecting it onto the S2 grid (bilinear)",
                sar, optical, s1_product.grid.crs.to_string(), pixel_size(s1_product.grid),
                grid.crs.to_string(), pixel_size(grid),
            )  # fmt: skip
        if coverage < 0.999:
            log.warning(
                "%s: covers only %.1f %% of the S2 scene %s; S2 pixels without S1 get the "
                "S1 floor value (as missing S1 in training)",
                sar, 100 * coverage, optical,
            )  # fmt: skip
        sample = _s1_sample(s1_reader, grid, s1_nodata)
        units = decide_s1_units(sample, s1_units, s1_product.units, sar)
        s1_product.units = units
        yield OpenInputs(
            s2_reader, s1_reader, grid, s2_product.nodata, s1_nodata, reprojected,
            s2_dn_offset=offsets, s1_linear=units == "linear", optical=s2_product,
            sar=s1_product, window=window,
        )  # fmt: skip


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
    """S2 DN (offset removed), S1 dB (nodata -> NaN) and the S2 nodata mask of ``rows`` rows.

    Shapes: (bands, rows, width), (2, rows, width), (rows, width).
    """
    width = inputs.grid.width
    s2 = read_strip(inputs.s2, optical, row, rows, width)
    s1 = read_strip(inputs.s1, sar, row, rows, width, "float32")
    if inputs.s1_nodata is not None and not math.isnan(inputs.s1_nodata):
        s1[s1 == np.float32(inputs.s1_nodata)] = np.nan
    if inputs.s1_linear:
        s1 = linear_to_db(s1)
    invalid = nodata_mask(s2, inputs.s2_nodata)
    offsets = inputs.s2_dn_offset
    if offsets.any() and s2.dtype.kind == "u":
        # DN below the offset are 0 reflectance (the model clips at 0 anyway); unsigned
        # arithmetic keeps the strip in its own dtype (half the memory of float32).
        off = offsets.astype(s2.dtype)[:, None, None]
        s2 = np.maximum(s2, off) - off
    elif offsets.any():
        s2 = np.clip(s2 - offsets.astype(s2.dtype)[:, None, None], 0, None)
    return s2, s1, invalid


def linear_to_db(power: np.ndarray) -> np.ndarray:
    """10 log10 of linear power; zeros, negatives and NaN (no data in RTC products) -> NaN."""
    out = np.full(power.shape, np.nan, dtype=np.float32)
    positive = power > 0
    out[positive] = 10.0 * np.log10(power[positive])
    return out


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

    ``s2`` comes from :func:`read_row_strip` (offset already removed); ``s2_offset`` removes a
    further one. Windows reaching past the strip (a scene smaller than a window, or the last
    tile of plain tiling) are mirror-padded.
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
