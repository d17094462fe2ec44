"""What every source layout provides: a list of patch references and a reader for one patch.

A source (synthetic scenes, LuojiaSET-OSFCR, SEN12MS-CR, user scenes) only has to find its files
and say which file holds which piece; :func:`read_patch` does the reading, offset removal and the
grid checks the same way for all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from rasterio.windows import Window

from tdpcr.core.errors import ConfigError, InputDataError
from tdpcr.core.specs import (
    CLOUDMASK_UNKNOWN,
    CORRUPTED_VALUES,
    MAP_PIECES,
    OPTICAL_PIECES,
    PIECES,
)
from tdpcr.data.rasters import Grid, read_raster

log = logging.getLogger(__name__)

#: Cloud-mask values a source may already use (clear, cloud, shadow, unknown).
MASK_VALUES: tuple[int, ...] = (0, *CORRUPTED_VALUES, CLOUDMASK_UNKNOWN)
#: Largest tolerated misregistration between pieces, in reference pixels.
MAX_SUBPIXEL_SHIFT = 1.0
#: Largest S2 value of a float file still read as reflectance 0..1 (refused: DN expected).
S2_REFLECTANCE_MAX = 1.5


@dataclass(frozen=True)
class PatchRef:
    """Where one patch's pieces live.

    Attributes:
        patch_id: identifier taken from the source (``ROIs1970_fall_139_p839``, ``p22``,
            ``scene03_r2_c1``).
        files: piece name -> GeoTIFF path; pieces the source lacks for this patch are absent.
        window: pixel window inside every file (scenes); ``None`` reads whole files (patches).
        cloud_bin: cloud-cover bin given by the source layout (LuojiaSET folders), if any.
        s2_offset: DN offset to subtract from S2 (1000 for processing baseline >= 04.00 data).
        band_indexes: piece -> 1-based band indexes to read when a file holds more bands than
            the store keeps (SEN12MS land cover: IGBP is band 1 of 4).
        group: the spatial group the patch belongs to (its scene, ROI or SEN12MS-CR scene):
            neighbouring patches of one group share fields, roads, clouds and SAR texture, so
            splits keep every group in one split. Empty = the patch is a group of its own.
    """

    patch_id: str
    files: dict[str, Path]
    window: Window | None = None
    cloud_bin: str | None = None
    s2_offset: int = 0
    band_indexes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    group: str = ""

    @property
    def spatial_group(self) -> str:
        """The group used for splitting (the patch id when the source gives none)."""
        return self.group or self.patch_id


@dataclass
class PatchData:
    """The pieces of one patch, on the reference grid, in store dtypes."""

    patch_id: str
    arrays: dict[str, np.ndarray]
    grid: Grid
    s1_shift_m: tuple[float, float] = (0.0, 0.0)
    cloud_bin: str | None = None


class Source:
    """A dataset layout on disk.

    Subclasses find their files in ``__init__`` and hand the patches to :meth:`_set_patches`.
    ``pieces`` names what the source can hold; a piece in ``pieces`` that is missing for some
    patch is filled with the piece's no-data value by the tiler, a piece not in ``pieces`` is
    absent from the store. Every source takes the same options (:func:`make_source`), so the
    command line and the workflow build any of them the same way; ``patch_size`` and ``stride``
    only matter to scene sources (patch datasets keep their own 256 x 256 patches).
    """

    #: layout name: the ``--source`` choice, the config's ``datasets.*.source`` and the store's
    #: ``source_layout`` attribute
    name: ClassVar[str] = ""
    #: How the source makes cloud masks it has no files for (None: masks, if any, are files);
    #: recorded in the tile store's ``cloud_mask_method`` attribute.
    cloudmask_method: str | None = None
    #: Whether the user says the S2 DN offset (scene folders); patch datasets know theirs.
    takes_s2_offset: ClassVar[bool] = False

    def __init__(
        self,
        root: Path,
        *,
        patch_size: int = 256,
        stride: int | None = None,
        skip_incomplete: bool = False,
        s2_offset: int | None = None,
    ) -> None:
        self.root = Path(root)
        if s2_offset is not None and not self.takes_s2_offset:
            raise ConfigError(
                f"--s2-offset: the {self.name} layout knows its own offset; only scene "
                "folders (scenes, synthetic) take one"
            )
        self.s2_offset = s2_offset or 0
        self.patch_size = patch_size
        self.stride = stride or patch_size
        self.skip_incomplete = skip_incomplete
        self._refs: list[PatchRef] = []
        self._pieces: tuple[str, ...] = ()
        if not self.root.is_dir():
            raise InputDataError(f"{self.root}: source folder not found")

    def _set_patches(self, refs: list[PatchRef]) -> None:
        """Keep the patches found (sorted by id) and the pieces any of them has."""
        self._refs = sorted(refs, key=lambda ref: ref.patch_id)
        present = {piece for ref in self._refs for piece in ref.files}
        self._pieces = tuple(p for p in PIECES if p in present)

    @property
    def pieces(self) -> tuple[str, ...]:
        """Pieces present for at least one patch, in :data:`tdpcr.core.specs.PIECES` order."""
        return self._pieces

    def patches(self) -> list[PatchRef]:
        """Every patch, sorted by id, each with at least S2 (cloudy or clear)."""
        return list(self._refs)

    def official_splits(self) -> dict[str, str]:
        """Group -> split of a layout's published split (``tiling.split: official``); empty
        when the layout has none."""
        return {}

    def map_labels(self, landcover: np.ndarray) -> np.ndarray:
        """Map the source's label values onto the project's classes (0..6, 255 = no label)."""
        return landcover

    def read(self, ref: PatchRef) -> PatchData:
        """Read one patch; see :func:`read_patch`."""
        data = read_patch(ref)
        if "landcover" in data.arrays:
            data.arrays["landcover"] = self.map_labels(data.arrays["landcover"]).astype(np.uint8)
        return data


def read_patch(ref: PatchRef) -> PatchData:
    """Read every piece of ``ref``, check they share one grid, convert to store dtypes.

    - S2 DN: the source's offset is removed (clipped at 0) and kept as uint16 reflectance x 1e4.
    - S1: float32 dB; a sub-pixel shift from the S2 grid is tolerated and returned, anything
      larger (or a different size) raises.
    - NaN in S2 or S1: an all-NaN piece raises; isolated NaN in S1 are kept for the loader to
      handle, isolated NaN in integer pieces cannot occur.

    Raises:
        InputDataError: naming the file and what was expected.
    """
    reference_piece = next((p for p in OPTICAL_PIECES if p in ref.files), None)
    if reference_piece is None:
        raise InputDataError(
            f"{ref.patch_id}: no Sentinel-2 file found (expected s2_cloudy or s2_clear)"
        )
    arrays: dict[str, np.ndarray] = {}
    grids: dict[str, Grid] = {}
    for piece, path in ref.files.items():
        spec = PIECES[piece]
        bands, what = spec.band_count, spec.description
        indexes = ref.band_indexes.get(piece)
        data, grid = read_raster(
            path, bands=None if indexes else bands, window=ref.window, what=what
        )
        if indexes:
            if data.shape[0] < max(indexes):
                raise InputDataError(
                    f"{path}: expected {what} in band(s) {indexes}, file has {data.shape[0]}"
                )
            data = data[[i - 1 for i in indexes]]
        check_contract(piece, data, path)
        arrays[piece] = _to_store_dtype(piece, data, path, ref.s2_offset)
        grids[piece] = grid

    reference = grids[reference_piece]
    _check_crs(ref, grids, reference_piece)
    s1_shift = (0.0, 0.0)
    for piece, grid in grids.items():
        path = ref.files[piece]
        if (grid.height, grid.width) != (reference.height, reference.width):
            raise InputDataError(
                f"{path}: size {grid.width}x{grid.height} differs from "
                f"{ref.files[reference_piece].name} ({reference.width}x{reference.height})"
            )
        dx, dy = grid.offset_from(reference)
        if abs(dx) >= MAX_SUBPIXEL_SHIFT or abs(dy) >= MAX_SUBPIXEL_SHIFT:
            raise InputDataError(
                f"{path}: grid shifted by ({dx:.2f}, {dy:.2f}) pixels from "
                f"{ref.files[reference_piece].name}; expected co-registered (< 1 pixel)"
            )
        if abs(grid.transform.a - reference.transform.a) > 1e-6 * abs(reference.transform.a):
            raise InputDataError(
                f"{path}: pixel size {grid.transform.a} differs from "
                f"{ref.files[reference_piece].name} ({reference.transform.a})"
            )
        if piece == "s1":
            s1_shift = grid.shift_m_from(reference)

    for piece in ("s2_cloudy", "s2_clear"):
        if piece in arrays and arrays[piece].ndim != 3:
            raise InputDataError(f"{ref.files[piece]}: expected (band, y, x) data")
    for piece in MAP_PIECES:
        if piece in arrays:
            arrays[piece] = arrays[piece][0]
    return PatchData(ref.patch_id, arrays, reference, s1_shift, ref.cloud_bin)


def check_contract(piece: str, data: np.ndarray, path: Path) -> None:
    """Refuse S2 that is not DN and S1 that is not dB, before they are rounded into the store.

    Float reflectance 0..1 would round to DN 0 or 1 and uint8 has no room for DN; S1 with no
    negative value and a median below 1 is linear power (dB backscatter is mostly negative).
    """
    if piece in OPTICAL_PIECES:
        check_s2_dn(data, path)
    elif piece == "s1":
        values = data[np.isfinite(data) & (data != 0)]
        if values.size and not (values < 0).any() and float(np.median(values)) < 1.0:
            raise InputDataError(
                f"{path}: Sentinel-1 has no negative value (median {float(np.median(values)):.3g}"
                "), linear power, not dB; expected dB: convert with 10 * log10(power)"
            )


def check_s2_dn(data: np.ndarray, path: Path | str) -> None:
    """Refuse Sentinel-2 values that are not DN (reflectance x 1e4): uint8, or float 0..1.

    ``data`` may be a sample of the file (``tdpcr predict`` reads a few windows); a float
    sample whose largest finite value is at most :data:`S2_REFLECTANCE_MAX` is reflectance.
    """
    if data.dtype.kind not in "uif" or (data.dtype.kind in "iu" and data.dtype.itemsize < 2):
        raise InputDataError(
            f"{path}: Sentinel-2 is {data.dtype}; expected uint16 DN (reflectance x 1e4)"
        )
    finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
    top = float(finite.max(initial=0))
    if data.dtype.kind == "f" and 0 < top <= S2_REFLECTANCE_MAX:
        raise InputDataError(
            f"{path}: Sentinel-2 values are 0..{top:.3g}, reflectance, not DN; expected "
            "uint16 DN (reflectance x 1e4): multiply by 10000"
        )


def _check_crs(ref: PatchRef, grids: dict[str, Grid], reference_piece: str) -> None:
    """S2 and S1 must carry one CRS: without it, or across UTM zones, nothing co-registers."""
    reference = grids[reference_piece]
    for piece in (*OPTICAL_PIECES, "s1"):
        grid = grids.get(piece)
        if grid is None:
            continue
        if grid.crs is None:
            raise InputDataError(f"{ref.files[piece]}: no CRS; expected a georeferenced raster")
        if grid.crs != reference.crs:
            raise InputDataError(
                f"{ref.files[piece]}: CRS {grid.crs.to_string()} differs from "
                f"{ref.files[reference_piece].name} ({reference.crs.to_string()}); reproject "
                "both to one grid"
            )


def _cloudmask_values(data: np.ndarray) -> np.ndarray:
    """A source's cloud mask in the store's values: 0 clear, 1 cloud, 2 shadow, 255 unknown.

    Integer masks already in those values (the synthetic scenes, ``tdpcr synth``) are kept as
    they are; binary masks in other encodings (LuojiaSET's float 0/1, 0/255, percentages)
    become 0/1 with anything above half their range counted as cloud.
    """
    if data.dtype.kind in "iu":
        present = set(np.unique(data).tolist())
        if present <= set(MASK_VALUES) and present & set(CORRUPTED_VALUES):
            return data.astype(np.uint8)
    values = np.nan_to_num(data.astype(np.float32), nan=0.0)
    if values.max(initial=0) > 1.0:
        values = values / values.max()
    return (values >= 0.5).astype(np.uint8)


def _to_store_dtype(piece: str, data: np.ndarray, path: Path, s2_offset: int) -> np.ndarray:
    """Convert raw file values of ``piece`` to the store's dtype and value convention."""
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.any():
            raise InputDataError(f"{path}: every pixel is NaN or infinite; expected valid data")
    if piece in ("s2_cloudy", "s2_clear"):
        values = data.astype(np.float32)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            # A few NaN in a float S2 file: replace by the band mean, as DSen2-CR and GLF-CR do.
            band_mean = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=(1, 2))
            values = np.where(np.isfinite(values), values, band_mean[:, None, None])
        values = np.clip(values - s2_offset, 0, 65535)
        return np.rint(values).astype(np.uint16)
    if piece == "s1":
        return data.astype(np.float32)
    if piece == "cloudmask":
        return _cloudmask_values(data)
    if piece == "cloud_opacity":
        return np.clip(data.astype(np.float32), 0.0, 1.0)
    if piece == "landcover":
        if data.dtype.kind == "f":
            data = np.nan_to_num(data, nan=255)
        return (
            data.astype(np.uint8)
            if data.max(initial=0) <= 255
            else np.clip(data, 0, 255).astype(np.uint8)
        )
    raise ValueError(f"unknown piece {piece!r}")
