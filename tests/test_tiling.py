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

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import CLASS_NAMES, S2_BANDS, SPLITS, cloud_bin_index
from tdpcr.data.sources import make_source
from tdpcr.data.sources.scenes import grid_offsets
from tdpcr.data.split import spatial_split
from tdpcr.data.store import open_store, write_patch_geotiff
from tdpcr.data.synthetic import write_synthetic_scenes
from tdpcr.data.tiling import tile_source
from tests.conftest import REALDATA
from tests.fakes import (
    make_luojiaset,
    make_scenes,
    make_sen12mscr_flat,
    make_sen12mscr_nested,
    read_tif,
)

#: The shares of the spatial split the tests use (the schema's default).
FRACTIONS = (0.8, 0.1, 0.1)


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
    """Singleton groups (every patch its own group) give the exact 8:1:1 per cloud bin."""
    ids = [f"p{i}" for i in range(200)]
    covers = np.linspace(0, 1, 200)
    first = spatial_split(ids, ids, covers, 3, FRACTIONS)
    again = spatial_split(ids[::-1], ids[::-1], covers[::-1], 3, FRACTIONS)[::-1]
    np.testing.assert_array_equal(first, again)  # independent of discovery order
    assert not np.array_equal(first, spatial_split(ids, ids, covers, 4, FRACTIONS))
    bins = np.array([cloud_bin_index(c) for c in covers])
    for b in range(5):
        counts = pd.Series(first[bins == b]).value_counts()
        assert counts["train"] == 32 and counts["val"] == 4 and counts["test"] == 4


def test_small_bins_still_get_val_and_test() -> None:
    split = spatial_split(["a", "b", "c", "d"], ["a", "b", "c", "d"], [0.1] * 4, 0, FRACTIONS)
    assert sorted(split) == ["test", "train", "train", "val"]


def test_spatial_split_keeps_every_group_in_one_split() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 30, 40)
    groups = [f"scene{g:02d}" for g, n in enumerate(sizes) for _ in range(n)]
    ids = [f"{g}_{i}" for i, g in enumerate(groups)]
    covers = [(int(g[5:]) % 5) / 5 + rng.uniform(0, 0.19) for g in groups]
    split = spatial_split(ids, groups, covers, 0, FRACTIONS)
    frame = pd.DataFrame({"group": groups, "split": split})
    assert frame.groupby("group")["split"].nunique().max() == 1
    shares = frame["split"].value_counts(normalize=True)
    assert set(shares.index) == {"train", "val", "test"}
    assert abs(shares["test"] - 0.1) < 0.08 and abs(shares["train"] - 0.8) < 0.1
    # Stratified by cover: the 4 test groups (of 40, 10 % by patches) come from 4 cover strata,
    # not from one end of the cloud-cover range.
    group_bins = frame.assign(bin=[cloud_bin_index(c) for c in covers]).groupby("group").first()
    test_bins = group_bins.loc[group_bins["split"] == "test", "bin"]
    assert test_bins.nunique() >= 3, test_bins


def _assert_groups_within_splits(store: Path) -> None:
    ds = open_store(store)
    frame = pd.DataFrame({"group": ds["group"].values, "split": ds["split"].values})
    assert frame.groupby("group")["split"].nunique().max() == 1, frame


def test_no_group_crosses_splits_on_scene_sources(scene_store: Path) -> None:
    ds = open_store(scene_store)
    groups = {pid.rsplit("_r", 1)[0] for pid in ds["patch"].values}
    assert set(ds["group"].values) == groups  # a scene is a group
    _assert_groups_within_splits(scene_store)


def test_no_group_crosses_splits_on_synthetic_scenes(tmp_path: Path) -> None:
    root = write_synthetic_scenes(tmp_path / "synthetic", 5, 96, 0)[0].parent
    out = tmp_path / "synthetic.zarr"
    tile_source(make_source("synthetic", root, patch_size=32), out, progress=False)
    assert len(set(open_store(out)["group"].values)) == 5
    _assert_groups_within_splits(out)


def test_no_group_crosses_splits_on_luojiaset(tmp_path: Path) -> None:
    root = tmp_path / "luojia"
    for roi, numbers in (("01", [1, 2, 3]), ("02", [4, 5]), ("03", [6]), ("04", [7, 8])):
        for number in numbers:
            make_luojiaset(root, {"0-20%": [number]})
            for path in root.rglob(f"ROIs_01_*_p{number}.tif"):
                path.rename(path.with_name(path.name.replace("ROIs_01_", f"ROIs_{roi}_")))
    out = tmp_path / "l.zarr"
    tile_source(make_source("luojiaset", root), out, progress=False)
    assert set(open_store(out)["group"].values) == {"ROIs_01", "ROIs_02", "ROIs_03", "ROIs_04"}
    _assert_groups_within_splits(out)


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_no_group_crosses_splits_on_sen12mscr(tmp_path: Path, layout: str) -> None:
    patches = [
        ("ROIs1970_fall", 139, 839),
        ("ROIs1970_fall", 139, 840),
        ("ROIs1970_fall", 12, 5),
        ("ROIs2017_winter", 112, 797),
        ("ROIs1158_spring", 106, 1),
    ]
    make = make_sen12mscr_nested if layout == "nested" else make_sen12mscr_flat
    root = make(tmp_path / layout, patches)
    out = tmp_path / "s.zarr"
    tile_source(make_source("sen12mscr", root), out, progress=False)
    ds = open_store(out)
    assert ds["group"].values.tolist()[:2] == ["ROIs1158_spring_106", "ROIs1970_fall_12"]
    _assert_groups_within_splits(out)
    # The official scene split (UnCRtainTS): ROIs1970_fall 139 and ROIs1158_spring 106 are test.
    official = tmp_path / "o.zarr"
    tile_source(make_source("sen12mscr", root), official, split_method="official", progress=False)
    ds = open_store(official)
    splits = dict(zip(ds["patch"].values, ds["split"].values, strict=True))
    assert splits["ROIs1970_fall_139_p839"] == splits["ROIs1158_spring_106_p1"] == "test"
    assert splits["ROIs2017_winter_112_p797"] == "train"


def test_official_split_refused_where_a_layout_has_none(scenes_root: Path, tmp_path: Path):
    source = make_source("scenes", scenes_root, patch_size=32)
    with pytest.raises(InputDataError, match="no published split"):
        tile_source(source, tmp_path / "x.zarr", split_method="official", progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_reused_split_that_cuts_a_group_is_refused(scene_store: Path, scenes_root: Path, tmp_path):
    ids = open_store(scene_store)["patch"].values
    csv = tmp_path / "split.csv"
    splits = ["train"] * len(ids)
    splits[0] = "test"  # one patch of scene0 in test, its neighbours in train
    pd.DataFrame({"patch_id": ids, "split": splits}).to_csv(csv, index=False)
    source = make_source("scenes", scenes_root, patch_size=32)
    with pytest.raises(InputDataError, match="spatial group 'scene0' has patches in both"):
        tile_source(source, tmp_path / "c.zarr", split_from=csv, progress=False)


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
