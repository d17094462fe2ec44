"""Cut a source into patches and write the tile store (xarray + dask + Zarr v3).

Design, and why:

- One writer, region writes of whole shards. A template with every variable is written first
  (metadata only, from lazy dask arrays), then each group of ``shard_patches`` patches is read
  in parallel (dask threaded scheduler; rasterio releases the GIL) and written into its own
  shard. Writes never straddle shards, which zarr does not make safe, and peak memory is one
  group of patches, independent of dataset or scene size.
- Everything is written to a hidden temporary store beside the output and renamed at the end,
  so a failure (bad file, interrupt) never leaves a store a later step would trust.
- Per-patch metadata (cloud cover, CRS, transform) is collected while reading; the split needs
  every patch's cloud cover and is written last.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from tqdm.auto import tqdm
from zarr.codecs import BloscCodec

from tdpcr import __version__
from tdpcr.core.config import schema_default
from tdpcr.core.errors import InputDataError
from tdpcr.core.io import OWNER_KEY, atomic_folder, check_output_path
from tdpcr.core.specs import (
    CLASS_NAMES,
    CLOUD_BINS,
    CLOUDMASK_UNKNOWN,
    CORRUPTED_VALUES,
    IGNORE_INDEX,
    PIECES,
    S1_BANDS,
    S1_CLIP_DB,
    S2_BANDS,
    S2_LEVEL,
    S2_SCALE,
    SPLITS,
    cloud_bin_index,
)
from tdpcr.data.sources.base import PatchData, PatchRef, Source
from tdpcr.data.split import (
    apply_split,
    check_groups_within_splits,
    official_split,
    read_split_file,
    spatial_split,
)
from tdpcr.data.store import EVERY_CHUNK_ATTR, STORE_FORMAT_VERSION

log = logging.getLogger(__name__)

#: Visible bands (B2, B3, B4) used to estimate cloud cover when a source has no cloud mask.
VISIBLE_BAND_INDEXES = (1, 2, 3)
#: Mean visible brightening (reflectance) above which a pixel counts as cloud in that estimate.
DERIVED_CLOUD_THRESHOLD = 0.04
COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


@dataclass
class TilingSummary:
    """What a tiling run did; printed by the command line and used by the benchmark."""

    store: str
    source_layout: str
    patches: int
    pieces: list[str]
    splits: dict[str, int]
    groups: dict[str, int]
    cloud_cover_bins: dict[str, int]
    seconds: float
    input_megabytes: float
    store_megabytes: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def tile_source(
    source: Source,
    out: Path,
    *,
    shard_patches: int = 16,
    split_seed: int = 0,
    split_from: Path | None = None,
    split_method: str = "spatial",
    split_fractions: Sequence[float] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> TilingSummary:
    """Write every patch of ``source`` into a new tile store at ``out``.

    Args:
        source: a reader from :func:`tdpcr.data.sources.make_source`.
        out: the ``.zarr`` folder to create; an existing one is replaced (once the new one is
            complete) only if tdpcr wrote it, and it may not overlap the source.
        shard_patches: patches per shard (one file per shard and variable).
        split_seed: seed of the spatial split.
        split_from: reuse the split of an existing store or ``patch_id,split`` CSV.
        split_method: ``spatial`` (whole groups, stratified by cloud cover, see
            :func:`~tdpcr.data.split.spatial_split`) or ``official`` (the layout's published
            split, SEN12MS-CR only). Ignored with ``split_from``.
        split_fractions: train / val / test shares of the spatial split (default: the
            schema's ``tiling.split_fractions``).
        workers: threads reading patches.
        progress: show a progress bar.
    """
    started = time.perf_counter()
    out = Path(out)
    check_output_path(out, "zarr.json", inputs=_inputs_of(source, split_from))
    # Read a given split before any pixel is tiled: a bad file is refused at once.
    known = read_split_file(split_from) if split_from is not None else None
    refs = source.patches()
    if not refs:
        raise InputDataError(f"{source.root}: no patches found")
    pieces = [p for p in PIECES if p in source.pieces]
    required = [p for p in pieces if not PIECES[p].optional]
    for ref in refs:
        missing = [p for p in required if p not in ref.files]
        if missing:
            raise InputDataError(f"{source.root}: patch {ref.patch_id} has no {missing[0]} file")
    if known is not None:
        apply_split([ref.patch_id for ref in refs], known, split_from)  # every patch listed
    patch_size = _patch_size(source, refs[0])

    with atomic_folder(out) as tmp:
        _write_template(tmp, source, refs, pieces, patch_size, shard_patches)
        metadata = _write_pixels(
            tmp, source, refs, pieces, patch_size, shard_patches, workers, progress
        )
        check_groups_have_data(metadata, Path(source.root))
        splits = _splits(
            source, metadata, (split_from, known), split_method, split_fractions, split_seed
        )
        _write_patch_variables(tmp, metadata, splits)
        # Attributes last: appending variables resets them, and a store without them is
        # rejected by open_store, which also guards against a half-written store.
        zarr.open_group(tmp, mode="r+", zarr_format=3).attrs.update(
            _store_attrs(source, pieces, patch_size)
        )
        with warnings.catch_warnings():
            # Consolidated metadata is a zarr-python extension to v3; it lets a plain
            # xr.open_zarr(STORE) open the store without a fallback warning.
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(tmp, zarr_format=3)

    covers = np.array([m["cloud_cover"] for m in metadata], dtype=float)
    bins = {name: 0 for name in CLOUD_BINS}
    for cover in covers[np.isfinite(covers)]:
        bins[CLOUD_BINS[cloud_bin_index(cover)]] += 1
    return TilingSummary(
        store=str(out),
        source_layout=source.name,
        patches=len(refs),
        pieces=pieces,
        splits={name: int((splits == name).sum()) for name in SPLITS},
        groups=_groups_per_split(metadata, splits),
        cloud_cover_bins=bins,
        seconds=round(time.perf_counter() - started, 3),
        input_megabytes=round(sum(m["input_bytes"] for m in metadata) / 1e6, 3),
        store_megabytes=round(_folder_bytes(out) / 1e6, 3),
    )


def _inputs_of(source: Source, split_from: Path | None) -> list[Path]:
    """What the tiling reads: the output may neither replace nor sit inside any of it."""
    return [Path(source.root)] + ([Path(split_from)] if split_from is not None else [])


def _splits(
    source: Source,
    metadata: list[dict],
    given: tuple[Path | None, dict[str, str] | None],
    method: str,
    fractions: Sequence[float] | None,
    seed: int,
) -> np.ndarray:
    """The split of every patch; no spatial group may have patches in two splits.

    ``given`` is the ``--split-from`` path and what :func:`read_split_file` read from it.
    """
    if fractions is None:
        fractions = schema_default("tiling", "split_fractions")
    ids = [m["patch_id"] for m in metadata]
    groups = [m["group"] for m in metadata]
    split_from, known = given
    if split_from is not None and known is not None:
        splits = apply_split(ids, known, split_from)
    elif method == "official":
        splits = official_split(groups, source.official_splits(), source.name)
    else:
        splits = spatial_split(ids, groups, _covers_for_split(metadata), seed, fractions)
    check_groups_within_splits(groups, splits, split_from or f"{method} split")
    return splits


def _groups_per_split(metadata: list[dict], splits: np.ndarray) -> dict[str, int]:
    """Number of spatial groups in each split."""
    return {
        name: len({m["group"] for m, s in zip(metadata, splits, strict=True) if s == name})
        for name in SPLITS
    }


def _patch_size(source: Source, first: PatchRef) -> int:
    if first.window is not None:
        return int(first.window.width)
    data = source.read(first)
    if data.grid.height != data.grid.width:
        raise InputDataError(
            f"{next(iter(first.files.values()))}: patch is {data.grid.width}x{data.grid.height}; "
            "expected square patches"
        )
    return data.grid.height


def _write_template(
    tmp: Path,
    source: Source,
    refs: list[PatchRef],
    pieces: list[str],
    patch_size: int,
    shard_patches: int,
) -> None:
    """Create the store with every pixel variable's metadata (no data written yet)."""
    n = len(refs)
    variables = {}
    encoding = {}
    for piece in pieces:
        spec = PIECES[piece]
        shape = spec.shape(n, patch_size)
        chunks = (1, *shape[1:])
        variables[piece] = (
            spec.dims,
            da.zeros(shape, dtype=spec.dtype, chunks=(shard_patches, *shape[1:])),
        )
        encoding[piece] = {
            "chunks": chunks,
            "shards": (shard_patches, *shape[1:]),
            "compressors": (COMPRESSOR,),
            "fill_value": spec.fill,
        }
    ds = xr.Dataset(
        variables,
        coords={"patch": np.array([r.patch_id for r in refs], dtype=object)},
    )
    with warnings.catch_warnings():
        # Variable-length strings (patch ids) are not yet in the frozen Zarr v3 spec.
        warnings.simplefilter("ignore")
        ds.to_zarr(
            tmp, mode="w", zarr_format=3, consolidated=False, compute=False, encoding=encoding
        )


def _store_attrs(source: Source, pieces: list[str], patch_size: int) -> dict:
    mask_method = source.cloudmask_method
    if "cloudmask" in pieces:
        cover_method = "fraction of cloudmask 1 (cloud) or 2 (shadow) over known pixels"
        if mask_method:
            cover_method += f" (cloud mask from {mask_method.split(' on ')[0]})"
    else:
        cover_method = (
            "estimated: fraction of pixels whose mean B2-B4 reflectance is more than "
            f"{DERIVED_CLOUD_THRESHOLD} brighter in s2_cloudy than in s2_clear"
        )
    return {
        OWNER_KEY: "tile store",  # the mark that lets a later run replace this store
        EVERY_CHUNK_ATTR: True,
        "tdpcr_store_version": STORE_FORMAT_VERSION,
        "tdpcr_version": __version__,
        "source_layout": source.name,
        "source_root": str(Path(source.root).resolve()),
        "s2_bands": list(S2_BANDS),
        "s2_level": S2_LEVEL,
        "s1_bands": list(S1_BANDS),
        "class_names": list(CLASS_NAMES),
        "ignore_index": IGNORE_INDEX,
        "label_legend": getattr(source, "label_legend", "tdpcr classes 0..6 (class_names)"),
        "patch_size": patch_size,
        "transform_order": "GDAL (c, a, b, f, d, e)",
        "cloud_cover_method": cover_method,
        "cloud_mask_method": mask_method
        or ("from the source" if "cloudmask" in pieces else "none"),
        "normalisation": {
            "s2": f"reflectance = DN / {S2_SCALE:g}, clipped to [0, 1]",
            "s2_scale": S2_SCALE,
            "s1": "dB clipped per band to s1_clip_db, then scaled to [0, 1]; NaN -> 0",
            "s1_clip_db": {band: list(S1_CLIP_DB[band]) for band in S1_BANDS},
        },
    }


def _write_pixels(
    tmp: Path,
    source: Source,
    refs: list[PatchRef],
    pieces: list[str],
    patch_size: int,
    shard_patches: int,
    workers: int,
    progress: bool,
) -> list[dict]:
    """Read and write shard by shard; return per-patch metadata."""
    metadata: list[dict] = []
    bar = tqdm(
        total=len(refs),
        desc=f"tiling {source.name}",
        unit="patch",
        disable=not progress,
        mininterval=1.0,
    )
    for start in range(0, len(refs), shard_patches):
        group = refs[start : start + shard_patches]
        tasks = [dask.delayed(source.read, pure=False)(ref) for ref in group]
        patches: tuple[PatchData, ...] = dask.compute(
            *tasks, scheduler="threads", num_workers=max(1, workers)
        )
        arrays = {}
        for piece in pieces:
            spec = PIECES[piece]
            stacked = np.empty(spec.shape(len(group), patch_size), dtype=spec.dtype)
            for i, patch in enumerate(patches):
                stacked[i] = _piece_or_fill(patch, piece, group[i], stacked.shape[1:])
            arrays[piece] = (spec.dims, stacked)
        region = {"patch": slice(start, start + len(group))}
        # Every shard is stored, all-fill ones too, so a missing one is damage (check_complete).
        xr.Dataset(arrays).to_zarr(
            tmp, region=region, zarr_format=3, consolidated=False, write_empty_chunks=True
        )
        for ref, patch in zip(group, patches, strict=True):
            metadata.append(_patch_metadata(ref, patch))
        bar.update(len(group))
    bar.close()
    return metadata


def _piece_or_fill(
    patch: PatchData, piece: str, ref: PatchRef, shape: tuple[int, ...]
) -> np.ndarray:
    if piece not in patch.arrays:
        spec = PIECES[piece]
        return np.full(shape, spec.fill, dtype=spec.dtype)
    array = patch.arrays[piece]
    if array.shape != shape:
        raise InputDataError(
            f"{ref.files[piece]}: {piece} is {array.shape}, expected {shape} like the other patches"
        )
    return array


def _patch_metadata(ref: PatchRef, patch: PatchData) -> dict:
    arrays = patch.arrays
    return {
        "patch_id": ref.patch_id,
        "group": ref.spatial_group,
        "cloud_cover": estimate_cloud_cover(arrays),
        "cloud_bin": patch.cloud_bin,
        "crs_wkt": patch.grid.crs.to_wkt() if patch.grid.crs is not None else "",
        "transform": patch.grid.transform.to_gdal(),
        "s1_shift_m": patch.s1_shift_m,
        "input_bytes": sum(a.nbytes for a in arrays.values()),
        # S2 all 0 (the store's nodata) in every optical piece: nothing here to learn from.
        "empty": all(not arrays[p].any() for p in ("s2_cloudy", "s2_clear") if p in arrays),
    }


def check_groups_have_data(metadata: list[dict], root: Path) -> None:
    """Refuse a spatial group (a scene) whose every patch is nodata: it would enter a split."""
    empty: dict[str, bool] = {}
    for m in metadata:
        empty[m["group"]] = empty.get(m["group"], True) and m["empty"]
    bad = [group for group, is_empty in empty.items() if is_empty]
    if bad:
        raise InputDataError(
            f"{root}: {bad[0]} is entirely nodata (every Sentinel-2 pixel 0); remove it from "
            "the source"
        )


def estimate_cloud_cover(arrays: dict[str, np.ndarray]) -> float:
    """Cloud fraction of a patch: from its cloud mask, else from cloudy vs clear brightness.

    Returns NaN when neither is available (a scene with no clear reference and no mask).
    """
    mask = arrays.get("cloudmask")
    if mask is not None:
        known = mask != CLOUDMASK_UNKNOWN
        if known.any():
            return float(np.isin(mask[known], CORRUPTED_VALUES).mean())  # cloud or shadow
    if "s2_cloudy" in arrays and "s2_clear" in arrays:
        visible = list(VISIBLE_BAND_INDEXES)
        cloudy = arrays["s2_cloudy"][visible].astype(np.float32).mean(axis=0)
        clear = arrays["s2_clear"][visible].astype(np.float32).mean(axis=0)
        return float(((cloudy - clear) / S2_SCALE > DERIVED_CLOUD_THRESHOLD).mean())
    return float("nan")


def _covers_for_split(metadata: list[dict]) -> list[float]:
    """Cloud cover per patch for stratification; the source's bin stands in where unknown."""
    covers = []
    for m in metadata:
        cover = m["cloud_cover"]
        if not np.isfinite(cover) and m["cloud_bin"] in CLOUD_BINS:
            cover = (CLOUD_BINS.index(m["cloud_bin"]) + 0.5) / 5
        covers.append(cover if np.isfinite(cover) else 0.0)
    return covers


def _write_patch_variables(tmp: Path, metadata: list[dict], splits: np.ndarray) -> None:
    ds = xr.Dataset(
        {
            "split": ("patch", np.asarray(splits, dtype=object)),
            "group": ("patch", np.array([m["group"] for m in metadata], dtype=object)),
            "cloud_cover": ("patch", np.array([m["cloud_cover"] for m in metadata], np.float32)),
            "crs_wkt": ("patch", np.array([m["crs_wkt"] for m in metadata], dtype=object)),
            "transform": (("patch", "affine"), np.array([m["transform"] for m in metadata])),
            "s1_shift_m": (
                ("patch", "xy"),
                np.array([m["s1_shift_m"] for m in metadata], np.float32),
            ),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp, mode="a", zarr_format=3, consolidated=False)


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
