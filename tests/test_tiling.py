"""The tile store contract, tiling of every source layout, splits and georeferencing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
import zarr

from tdpcr.core.specs import CLASS_NAMES, S2_BANDS, SPLITS, cloud_bin_index
from tdpcr.data.sources import make_source
from tdpcr.data.sources.scenes import grid_offsets
from tdpcr.data.split import stratified_split
from tdpcr.data.store import open_store, write_patch_geotiff
from tdpcr.data.tiling import tile_source
from tests.conftest import REALDATA
from tests.fakes import make_luojiaset, make_scenes, read_tif


def test_grid_offsets_cover_every_pixel_with_full_patches() -> None:
    assert grid_offsets(80, 32, 32) == [0, 32, 48]
    assert grid_offsets(64, 32, 32) == [0, 32]
    assert grid_offsets(100, 32, 16)[-1] == 68
    assert grid_offsets(20, 32, 32) == []


def test_store_opens_with_plain_xarray_and_follows_contract(scene_store: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no consolidated-metadata fallback warning for users
        ds = xr.open_zarr(scene_store)
    assert ds.sizes["patch"] == 120
    assert ds["s2_cloudy"].dims == ("patch", "band", "y", "x")
    assert ds["s2_cloudy"].dtype == np.uint16 and ds["s2_clear"].dtype == np.uint16
    assert ds["s1"].dims == ("patch", "sar_band", "y", "x") and ds["s1"].dtype == np.float32
    assert ds["landcover"].dims == ("patch", "y", "x") and ds["landcover"].dtype == np.uint8
    assert ds["cloudmask"].dtype == np.uint8
    assert ds["transform"].shape == (120, 6)
    assert set(ds["split"].values) == set(SPLITS)
    assert ds.attrs["s2_bands"] == list(S2_BANDS)
    assert ds.attrs["class_names"] == list(CLASS_NAMES)
    assert ds.attrs["source_layout"] == "scenes"
    assert ds.attrs["normalisation"]["s1_clip_db"]["VH"] == [-32.5, 0.0]
    assert ds["patch"].values[0] == "scene0_r0_c0"
    # One chunk per patch, grouped in shards, compressed.
    array = zarr.open_group(scene_store, mode="r")["s2_cloudy"]
    assert array.chunks == (1, 13, 32, 32)
    assert array.shards == (4, 13, 32, 32)
    assert array.compressors and "Blosc" in type(array.compressors[0]).__name__
    open_store(scene_store)  # the package's own contract check passes


def test_patch_values_equal_source_windows(scene_store: Path, scenes_root: Path) -> None:
    ds = open_store(scene_store)
    source = make_source("scenes", scenes_root, patch_size=32)
    for index in (0, 7, 11, 119):
        ref = source.patches()[index]
        assert ds["patch"].values[index] == ref.patch_id
        for piece in ("s2_cloudy", "s1", "landcover", "cloudmask"):
            with rasterio.open(ref.files[piece]) as src:
                raw = src.read(window=ref.window)
            stored = ds[piece].isel(patch=index).values
            np.testing.assert_array_equal(stored, raw[0] if stored.ndim == 2 else raw)


def test_cloud_cover_comes_from_the_mask(scene_store: Path) -> None:
    ds = open_store(scene_store)
    mask = ds["cloudmask"].values
    expected = (mask == 1).mean(axis=(1, 2))
    np.testing.assert_allclose(ds["cloud_cover"].values, expected, atol=1e-6)


def test_patch_written_back_keeps_georeferencing(scene_store: Path, tmp_path: Path) -> None:
    ds = open_store(scene_store)
    index = int(np.flatnonzero(ds["patch"].values == "scene3_r1_c2")[0])
    out = write_patch_geotiff(ds, index, "s2_clear", tmp_path / "patch.tif")
    with rasterio.open(out) as written:
        # scene3 origin x = 530 km; row 1 -> 32 px down, col 2 -> 64 px right, 10 m pixels.
        assert written.transform.c == pytest.approx(530_000.0 + 64 * 10)
        assert written.transform.f == pytest.approx(5_000_000.0 - 32 * 10)
        assert written.crs.to_epsg() == 32633
        assert written.descriptions == S2_BANDS
        np.testing.assert_array_equal(written.read(), ds["s2_clear"].isel(patch=index).values)


def test_absent_pieces_are_absent_variables(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2, pieces=("s2_cloudy", "s1"))
    tile_source(make_source("scenes", root, patch_size=32), tmp_path / "s.zarr", progress=False)
    ds = open_store(tmp_path / "s.zarr")
    assert "landcover" not in ds and "cloudmask" not in ds and "s2_clear" not in ds
    assert np.isnan(ds["cloud_cover"].values).all()


def test_luojiaset_store_removes_offset_and_fills_missing_optional_piece(tmp_path: Path) -> None:
    root = make_luojiaset(
        tmp_path / "luojia",
        bins={"0-20%": [1, 2, 3], "60%-80%": [4, 5, 6]},
        omit=[("60%-80%", 5, "land_cover_maps")],
    )
    source = make_source("luojiaset", root)
    tile_source(source, tmp_path / "l.zarr", progress=False)
    ds = open_store(tmp_path / "l.zarr")
    assert ds.attrs["source_layout"] == "luojiaset"
    for index, ref in enumerate(source.patches()):
        raw = read_tif(ref.files["s2_cloudy"]).astype(int)
        np.testing.assert_array_equal(ds["s2_cloudy"].isel(patch=index).values, raw - 1000)
        if "landcover" not in ref.files:
            assert (ds["landcover"].isel(patch=index).values == 255).all()
    shifts = ds["s1_shift_m"].values
    np.testing.assert_allclose(shifts, [[3.69, -4.13]] * 6, atol=1e-3)


def test_split_is_stratified_by_cloud_bin_and_deterministic() -> None:
    ids = [f"p{i}" for i in range(200)]
    covers = np.linspace(0, 1, 200)
    first = stratified_split(ids, covers, seed=3)
    again = stratified_split(list(reversed(ids)), covers[::-1], seed=3)[::-1]
    np.testing.assert_array_equal(first, again)  # independent of discovery order
    assert not np.array_equal(first, stratified_split(ids, covers, seed=4))
    bins = np.array([cloud_bin_index(c) for c in covers])
    for b in range(5):
        counts = pd.Series(first[bins == b]).value_counts()
        assert counts["train"] == 32 and counts["val"] == 4 and counts["test"] == 4


def test_small_bins_still_get_val_and_test() -> None:
    split = stratified_split(["a", "b", "c", "d"], [0.1] * 4, seed=0)
    assert sorted(split) == ["test", "train", "train", "val"]


def test_split_reused_from_store_and_csv(scene_store: Path, scenes_root: Path, tmp_path: Path):
    original = open_store(scene_store)["split"].values
    source = make_source("scenes", scenes_root, patch_size=32)
    tile_source(source, tmp_path / "a.zarr", split_seed=99, split_from=scene_store, progress=False)
    np.testing.assert_array_equal(open_store(tmp_path / "a.zarr")["split"].values, original)

    csv = tmp_path / "split.csv"
    ids = open_store(scene_store)["patch"].values
    pd.DataFrame({"patch_id": ids, "split": ["test"] * len(ids)}).to_csv(csv, index=False)
    tile_source(source, tmp_path / "b.zarr", split_from=csv, progress=False)
    assert set(open_store(tmp_path / "b.zarr")["split"].values) == {"test"}

    different_seed = tile_source(source, tmp_path / "c.zarr", split_seed=99, progress=False)
    assert different_seed.patches == 120
    assert not np.array_equal(open_store(tmp_path / "c.zarr")["split"].values, original)


def test_tiling_twice_gives_identical_stores(scenes_root: Path, tmp_path: Path) -> None:
    source = make_source("scenes", scenes_root, patch_size=32)
    for name in ("x.zarr", "y.zarr"):
        tile_source(source, tmp_path / name, shard_patches=8, workers=2, progress=False)
    x, y = open_store(tmp_path / "x.zarr"), open_store(tmp_path / "y.zarr")
    for variable in ("s2_cloudy", "s1", "split", "cloud_cover"):
        np.testing.assert_array_equal(x[variable].values, y[variable].values)


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata not present")
def test_real_sen12mscr_flat_sample_round_trips(tmp_path: Path) -> None:
    root = REALDATA / "sen12ms-cr-flat"
    source = make_source("sen12mscr", root)
    tile_source(source, tmp_path / "real.zarr", progress=False)
    ds = open_store(tmp_path / "real.zarr")
    assert ds["patch"].values.tolist() == ["ROIs1970_fall_139_p839", "ROIs2017_winter_112_p797"]
    assert "landcover" not in ds
    # SEN12MS-CR has no cloud mask: s2cloudless makes one, and cloud cover comes from it.
    assert ds.attrs["cloud_mask_method"].startswith("s2cloudless")
    assert "s2cloudless" in ds.attrs["cloud_cover_method"]
    masks = ds["cloudmask"].values
    assert set(np.unique(masks)) <= {0, 1}
    np.testing.assert_allclose(ds["cloud_cover"].values, masks.mean(axis=(1, 2)), rtol=1e-6)
    for index, patch_id in enumerate(ds["patch"].values):
        raw = read_tif(root / "s2_cloudy" / f"{patch_id}.tif")
        np.testing.assert_array_equal(ds["s2_cloudy"].isel(patch=index).values, raw)
        out = write_patch_geotiff(ds, index, "s1", tmp_path / f"{patch_id}.tif")
        with rasterio.open(out) as written, rasterio.open(root / "s1" / f"{patch_id}.tif") as src:
            assert written.transform.almost_equals(src.transform)
            assert written.crs == src.crs
            np.testing.assert_array_equal(written.read(), src.read())
    assert 0.0 <= float(ds["cloud_cover"].values.max()) <= 1.0


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata not present")
def test_real_luojiaset_sample_tiles_its_complete_patches(tmp_path: Path) -> None:
    root = REALDATA / "luojiaset-osfcr-sample"
    source = make_source("luojiaset", root, skip_incomplete=True)
    usable = [ref for ref in source.patches() if ref.patch_id in ("p4", "p22", "p23")]
    source.patches = lambda: usable  # p1/p3 are defective upstream (see realdata README)
    tile_source(source, tmp_path / "luojia.zarr", progress=False)
    ds = open_store(tmp_path / "luojia.zarr")
    assert ds["patch"].values.tolist() == ["p22", "p23", "p4"]
    b10 = S2_BANDS.index("B10")
    assert int(ds["s2_clear"].isel(band=b10).min()) < 100  # +1000 offset removed
    np.testing.assert_allclose(ds["s1_shift_m"].values[0], [3.69, -4.13], atol=0.01)
