"""LuojiaSET-OSFCR and SEN12MS-CR sources: discovery, reading and bad inputs.

Fake layouts are built in ``tmp_path`` by :mod:`tests.fakes`; the ``realdata`` tests read the
unmodified upstream samples in ``../shared/realdata`` and skip when it is absent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import CLASS_NAMES, IGNORE_INDEX
from tdpcr.data.sources.luojiaset import LuojiaSetSource
from tdpcr.data.sources.sen12mscr import IGBP_TO_CLASS, Sen12MSCRSource
from tests.fakes import (
    SEN12MSCR_PATCHES,
    fake_s1,
    fake_s2,
    luojiaset_path,
    make_luojiaset,
    make_sen12mscr_flat,
    make_sen12mscr_nested,
    read_tif,
    sen12mscr_id,
    sen12mscr_nested_path,
    transform_at,
    truncate_file,
    write_tif,
)

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
LUOJIA_SAMPLE = REALDATA / "luojiaset-osfcr-sample"
FLAT_SAMPLE = REALDATA / "sen12ms-cr-flat"
LC_SAMPLE = REALDATA / "sen12ms-lc"
PAIRS_SAMPLE = REALDATA / "sen12ms-cr-pairs"


def _ref(source, patch_id):
    return next(r for r in source.patches() if r.patch_id == patch_id)


# ======================================================================= LuojiaSET (fakes)


def test_luojiaset_discovery_ids_bins_and_pieces(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4, 7], "60%-80%": [22, 3]})
    source = LuojiaSetSource(root)
    assert source.name == "luojiaset"
    assert [r.patch_id for r in source.patches()] == ["p22", "p3", "p4", "p7"]
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask")
    ref = _ref(source, "p22")
    assert ref.cloud_bin == "60%-80%"
    assert ref.s2_offset == 1000
    assert ref.files["s2_cloudy"] == luojiaset_path(root, "60%-80%", "s2_cloudy", 22)
    assert ref.files["cloudmask"].name == "ROIs_01_s2_cloudy_p22.tif"
    assert _ref(source, "p4").cloud_bin == "0-20%"


def test_luojiaset_read_removes_offset_and_records_s1_shift(tmp_path):
    root = make_luojiaset(tmp_path / "lj")
    source = LuojiaSetSource(root)
    data = source.read(_ref(source, "p4"))
    for piece in ("s2_clear", "s2_cloudy"):
        raw = read_tif(luojiaset_path(root, "0-20%", piece, 4)).astype(np.int32)
        assert data.arrays[piece].dtype == np.uint16
        np.testing.assert_array_equal(data.arrays[piece], raw - 1000)
    np.testing.assert_array_equal(data.arrays["s2_clear"], fake_s2(4))  # the DN before +1000
    np.testing.assert_array_equal(data.arrays["s1"], fake_s1(4))
    assert data.s1_shift_m == pytest.approx((3.69, -4.13), abs=1e-6)
    assert data.cloud_bin == "0-20%"
    assert data.grid.transform == transform_at(4)
    assert data.arrays["landcover"].shape == (32, 32)
    assert set(np.unique(data.arrays["cloudmask"])) == {0, 1}


def test_luojiaset_landcover_values_kept_and_unknown_become_ignore(tmp_path):
    root = make_luojiaset(
        tmp_path / "lj", {"0-20%": [4]}, landcover_values=(0, 2, 3, 6, 7, 9, 200, 255)
    )
    source = LuojiaSetSource(root)
    raw = read_tif(luojiaset_path(root, "0-20%", "landcover", 4))[0]
    labels = source.read(source.patches()[0]).arrays["landcover"]
    assert labels.dtype == np.uint8
    keep = raw <= 6
    np.testing.assert_array_equal(labels[keep], raw[keep])
    assert (labels[~keep] == IGNORE_INDEX).all()
    assert set(np.unique(labels)) == {0, 2, 3, 6, IGNORE_INDEX}


def test_luojiaset_same_number_in_two_bins_gets_bin_prefix(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4, 22], "60%-80%": [22]})
    ids = [r.patch_id for r in LuojiaSetSource(root).patches()]
    assert ids == ["0-20_p22", "60-80_p22", "p4"]


def test_luojiaset_same_number_in_two_rois_of_one_bin_stays_apart(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]})
    for piece in ("s2_cloudy", "s2_clear", "s1"):
        src = luojiaset_path(root, "0-20%", piece, 4)
        shutil.copy(src, luojiaset_path(root, "0-20%", piece, 4, roi="02"))
    source = LuojiaSetSource(root)
    assert [r.patch_id for r in source.patches()] == ["ROIs_01_p4", "ROIs_02_p4"]
    assert "landcover" not in _ref(source, "ROIs_02_p4").files


def test_luojiaset_missing_required_piece_names_expected_file(tmp_path):
    root = make_luojiaset(tmp_path / "lj", omit=[("60%-80%", 22, "s1")])
    expected = luojiaset_path(root, "60%-80%", "s1", 22)
    with pytest.raises(InputDataError, match="p22") as err:
        LuojiaSetSource(root)
    assert str(expected) in str(err.value)


def test_luojiaset_skip_incomplete_drops_patch_with_warning(tmp_path, caplog):
    root = make_luojiaset(tmp_path / "lj", omit=[("0-20%", 7, "s2_cloudy")])
    with caplog.at_level(logging.WARNING):
        source = LuojiaSetSource(root, skip_incomplete=True)
    assert [r.patch_id for r in source.patches()] == ["p22", "p4"]
    assert "p7" in caplog.text
    assert str(luojiaset_path(root, "0-20%", "s2_cloudy", 7)) in caplog.text


def test_luojiaset_missing_optional_pieces_allowed(tmp_path):
    root = make_luojiaset(tmp_path / "lj", cloudmask=False, omit=[("0-20%", 7, "landcover")])
    source = LuojiaSetSource(root)
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "landcover")
    assert "landcover" not in _ref(source, "p7").files
    data = source.read(_ref(source, "p7"))
    assert set(data.arrays) == {"s2_cloudy", "s2_clear", "s1"}
    assert "landcover" in source.read(_ref(source, "p4")).arrays


def test_luojiaset_accepts_parent_of_dataset_folder(tmp_path):
    make_luojiaset(tmp_path / "repo" / "LuojiaSET-OSFCR")
    (tmp_path / "repo" / "README.md").write_text("upstream readme")
    source = LuojiaSetSource(tmp_path / "repo")
    assert [r.patch_id for r in source.patches()] == ["p22", "p4", "p7"]


@pytest.mark.parametrize("with_bins", [False, True])
def test_luojiaset_empty_folder_names_root_and_layout(tmp_path, with_bins):
    root = tmp_path / "empty"
    root.mkdir()
    if with_bins:
        (root / "0-20%" / "s1").mkdir(parents=True)
        (root / "0-20%" / "s1" / "notes.txt").write_text("no patches here")
    with pytest.raises(InputDataError, match="no LuojiaSET-OSFCR patch") as err:
        LuojiaSetSource(root)
    assert str(root) in str(err.value)
    assert "cloud_detection_results" in str(err.value)


def test_luojiaset_missing_root_raises(tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        LuojiaSetSource(tmp_path / "nowhere")


def test_luojiaset_two_files_for_one_piece_raise(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]})
    shutil.copy(
        luojiaset_path(root, "0-20%", "s1", 4),
        luojiaset_path(root, "0-20%", "s1", 4).with_name("ROIs_01_s2_p4.tif"),
    )
    with pytest.raises(InputDataError, match="one file per patch"):
        LuojiaSetSource(root)


def test_discovery_does_not_open_rasters(tmp_path, monkeypatch):
    lj = make_luojiaset(tmp_path / "lj")
    flat = make_sen12mscr_flat(tmp_path / "flat")
    nested = make_sen12mscr_nested(tmp_path / "nested")

    def fail(*args, **kwargs):
        raise AssertionError("discovery opened a raster")

    monkeypatch.setattr(rasterio, "open", fail)
    LuojiaSetSource(lj)
    Sen12MSCRSource(flat)
    Sen12MSCRSource(nested)


# ------------------------------------------------------------------ bad rasters (read_patch)


def test_s1_shifted_by_more_than_a_pixel_raises(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]}, s1_shift_m=(15.0, 0.0))
    source = LuojiaSetSource(root)
    with pytest.raises(InputDataError, match="shifted") as err:
        source.read(source.patches()[0])
    assert str(luojiaset_path(root, "0-20%", "s1", 4)) in str(err.value)


def test_s1_of_different_size_raises(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]})
    s1 = luojiaset_path(root, "0-20%", "s1", 4)
    write_tif(s1, fake_s1(4, size=30), transform=transform_at(4))
    source = LuojiaSetSource(root)
    with pytest.raises(InputDataError, match="size 30x30") as err:
        source.read(source.patches()[0])
    assert str(s1) in str(err.value)


def test_s2_with_four_bands_raises_naming_file(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]})
    s2 = luojiaset_path(root, "0-20%", "s2_clear", 4)
    write_tif(s2, fake_s2(4, bands=4, offset=1000), transform=transform_at(4))
    source = LuojiaSetSource(root)
    with pytest.raises(InputDataError, match="13 bands, found 4") as err:
        source.read(source.patches()[0])
    assert str(s2) in str(err.value)


@pytest.mark.parametrize("piece", ["s2_cloudy", "s1"])
def test_truncated_geotiff_raises_naming_file(tmp_path, piece):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]})
    path = truncate_file(luojiaset_path(root, "0-20%", piece, 4), 0.5)
    source = LuojiaSetSource(root)
    with pytest.raises(InputDataError) as err:
        source.read(source.patches()[0])
    assert str(err.value).startswith(str(path))


def test_all_nan_s1_raises(tmp_path):
    root = make_luojiaset(tmp_path / "lj", {"0-20%": [4]}, s1_shift_m=(0.0, 0.0))
    s1 = luojiaset_path(root, "0-20%", "s1", 4)
    write_tif(s1, np.full((2, 32, 32), np.nan, dtype=np.float32), transform=transform_at(4))
    source = LuojiaSetSource(root)
    with pytest.raises(InputDataError, match="NaN") as err:
        source.read(source.patches()[0])
    assert str(s1) in str(err.value)


# ======================================================================= SEN12MS-CR (fakes)


def test_nested_discovery_and_read(tmp_path):
    root = make_sen12mscr_nested(tmp_path / "cr")
    source = Sen12MSCRSource(root)
    assert source.name == "sen12mscr"
    assert source.layout == "nested"
    ids = [sen12mscr_id(*p) for p in SEN12MSCR_PATCHES]
    assert [r.patch_id for r in source.patches()] == sorted(ids)
    assert "ROIs1970_fall_139_p839" in ids
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask")
    assert source.source_splits() == {}

    ref = _ref(source, "ROIs1970_fall_139_p839")
    assert ref.band_indexes == {"landcover": (1,)}
    assert ref.s2_offset == 0
    assert ref.files["s2_cloudy"] == sen12mscr_nested_path(
        root, "s2_cloudy", "ROIs1970_fall", 139, 839
    )
    data = source.read(ref)
    for piece in ("s2_cloudy", "s2_clear", "s1"):
        raw = read_tif(ref.files[piece])
        assert data.arrays[piece].dtype == raw.dtype
        np.testing.assert_array_equal(data.arrays[piece], raw)
    assert data.s1_shift_m == (0.0, 0.0)
    igbp = read_tif(ref.files["landcover"])[0]
    labels = data.arrays["landcover"]
    assert labels.shape == igbp.shape and labels.dtype == np.uint8
    for value, expected in [(1, 0), (5, 0), (6, 1), (8, 0), (10, 2), (12, 3), (13, 4), (17, 5)]:
        assert (labels[igbp == value] == expected).all()
    assert (labels[(igbp == 0) | (igbp == 15)] == IGNORE_INDEX).all()


def test_igbp_mapping_table(tmp_path):
    source = Sen12MSCRSource(make_sen12mscr_nested(tmp_path / "cr"))
    igbp = np.arange(0, 20, dtype=np.uint8)
    mapped = source.map_labels(igbp)
    names = [CLASS_NAMES[v] if v != IGNORE_INDEX else None for v in mapped]
    assert names == [
        None,  # 0 no data
        "tree", "tree", "tree", "tree", "tree",  # 1-5 forests
        "shrub", "shrub",  # 6-7 shrublands
        "tree",  # 8 woody savanna
        "grass", "grass",  # 9 savanna, 10 grassland
        "grass",  # 11 permanent wetland
        "crop",  # 12 cropland
        "built-up",  # 13 urban
        "crop",  # 14 cropland/natural vegetation mosaic
        None,  # 15 snow and ice
        "bare",  # 16 barren
        "water",  # 17 water bodies
        None, None,  # unknown
    ]  # fmt: skip
    assert set(IGBP_TO_CLASS) == set(range(1, 18)) - {15}
    assert mapped.dtype == np.uint8


def test_nested_without_landcover_and_partial_landcover(tmp_path):
    root = make_sen12mscr_nested(tmp_path / "cr", landcover=False)
    source = Sen12MSCRSource(root)
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "cloudmask")
    assert all(r.band_indexes == {} for r in source.patches())

    root = make_sen12mscr_nested(tmp_path / "cr2", omit=[(1, "landcover")])
    source = Sen12MSCRSource(root)
    assert "landcover" in source.pieces
    assert "landcover" not in _ref(source, "ROIs1970_fall_139_p840").files


def test_nested_landcover_without_sen12mscr_patch_is_ignored(tmp_path):
    root = make_sen12mscr_nested(tmp_path / "cr")
    extra = ("ROIs1158_spring", 1, 30)
    make_sen12mscr_nested(tmp_path / "lc_only", [extra])
    lc = sen12mscr_nested_path(root, "landcover", *extra)
    lc.parent.mkdir(parents=True)
    shutil.copy(sen12mscr_nested_path(tmp_path / "lc_only", "landcover", *extra), lc)
    source = Sen12MSCRSource(root)
    assert len(source.patches()) == 3
    assert "ROIs1158_spring_1_p30" not in [r.patch_id for r in source.patches()]


def test_nested_missing_s1_names_expected_path(tmp_path):
    root = make_sen12mscr_nested(tmp_path / "cr", omit=[(2, "s1")])
    expected = sen12mscr_nested_path(root, "s1", "ROIs2017_winter", 112, 797)
    with pytest.raises(InputDataError, match="ROIs2017_winter_112_p797") as err:
        Sen12MSCRSource(root)
    assert str(expected) in str(err.value)
    source = Sen12MSCRSource(root, skip_incomplete=True)
    assert "ROIs2017_winter_112_p797" not in [r.patch_id for r in source.patches()]
    assert len(source.patches()) == 2


def test_flat_with_glfcr_csv(tmp_path):
    root = make_sen12mscr_flat(tmp_path / "flat", splits=(1, 2, 3))
    source = Sen12MSCRSource(root)
    assert source.layout == "flat"
    assert source.csv_path == root / "data.csv"
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "cloudmask")
    assert source.source_splits() == {
        "ROIs1970_fall_139_p839": "train",
        "ROIs1970_fall_139_p840": "val",
        "ROIs2017_winter_112_p797": "test",
    }
    ref = _ref(source, "ROIs2017_winter_112_p797")
    assert ref.files["s2_clear"] == root / "s2_cloudfree" / "ROIs2017_winter_112_p797.tif"
    data = source.read(ref)
    np.testing.assert_array_equal(data.arrays["s2_cloudy"], read_tif(ref.files["s2_cloudy"]))


def test_flat_with_dsen2cr_tab_csv_and_header(tmp_path):
    root = make_sen12mscr_flat(
        tmp_path / "flat", csv_name="datasetfilelist.csv", sep="\t", clear_dir="s2_cloudFree"
    )
    csv_path = root / "datasetfilelist.csv"
    csv_path.write_text("split\ts1\tcloudfree\tcloudy\tfile\n" + csv_path.read_text())
    source = Sen12MSCRSource(root)
    assert source.csv_path == csv_path
    assert len(source.patches()) == 3
    assert set(source.source_splits().values()) == {"train", "val", "test"}
    assert _ref(source, "ROIs1970_fall_139_p839").files["s2_clear"].parent.name == "s2_cloudFree"


def test_flat_without_csv_lists_cloudy_folder(tmp_path):
    root = make_sen12mscr_flat(tmp_path / "flat", splits=None)
    source = Sen12MSCRSource(root)
    assert source.csv_path is None
    assert [r.patch_id for r in source.patches()] == sorted(
        sen12mscr_id(*p) for p in SEN12MSCR_PATCHES
    )
    assert source.source_splits() == {}


def test_flat_missing_file_names_expected_path(tmp_path, caplog):
    root = make_sen12mscr_flat(tmp_path / "flat", omit=[(0, "s2_clear")])
    expected = root / "s2_cloudfree" / "ROIs1970_fall_139_p839.tif"
    with pytest.raises(InputDataError, match="ROIs1970_fall_139_p839") as err:
        Sen12MSCRSource(root)
    assert str(expected) in str(err.value)
    with caplog.at_level(logging.WARNING):
        source = Sen12MSCRSource(root, skip_incomplete=True)
    assert "ROIs1970_fall_139_p839" not in source.source_splits()
    assert len(source.patches()) == 2
    assert str(expected) in caplog.text


def test_flat_malformed_or_ambiguous_csv(tmp_path):
    root = make_sen12mscr_flat(tmp_path / "flat")
    (root / "data.csv").write_text("1,s1,s2_cloudfree,s2_cloudy,a.tif\n7,s1,x,y,b.tif\n")
    with pytest.raises(InputDataError, match="line 2"):
        Sen12MSCRSource(root)
    (root / "data.csv").unlink()
    (root / "a.csv").write_text("1,s1,s2_cloudfree,s2_cloudy,a.tif\n")
    (root / "b.csv").write_text("1,s1,s2_cloudfree,s2_cloudy,a.tif\n")
    with pytest.raises(InputDataError, match="several csv"):
        Sen12MSCRSource(root)


def test_sen12mscr_empty_folder_names_root_and_both_layouts(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(InputDataError, match="no SEN12MS-CR patch") as err:
        Sen12MSCRSource(root)
    message = str(err.value)
    assert str(root) in message
    assert "official layout" in message and "flat" in message


def test_sen12mscr_both_layouts_in_one_root_raise(tmp_path):
    root = make_sen12mscr_nested(tmp_path / "cr")
    make_sen12mscr_flat(root)
    with pytest.raises(InputDataError, match="both"):
        Sen12MSCRSource(root)


# ======================================================================= real samples

realdata = pytest.mark.realdata


@realdata
@pytest.mark.skipif(not FLAT_SAMPLE.exists(), reason=f"{FLAT_SAMPLE} absent")
def test_real_flat_sen12mscr_sample():
    source = Sen12MSCRSource(FLAT_SAMPLE)
    covers = {}
    assert source.layout == "flat"
    assert [r.patch_id for r in source.patches()] == [
        "ROIs1970_fall_139_p839",
        "ROIs2017_winter_112_p797",
    ]
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "cloudmask")
    assert source.source_splits() == {
        "ROIs2017_winter_112_p797": "train",
        "ROIs1970_fall_139_p839": "test",
    }
    for ref in source.patches():
        data = source.read(ref)
        assert data.arrays["s2_cloudy"].shape == (13, 256, 256)
        assert data.arrays["s2_clear"].shape == (13, 256, 256)
        assert data.arrays["s1"].shape == (2, 256, 256)
        assert data.arrays["s2_cloudy"].dtype == np.uint16
        assert data.arrays["s1"].dtype == np.float32
        for piece in ("s2_cloudy", "s2_clear", "s1"):
            np.testing.assert_array_equal(data.arrays[piece], read_tif(ref.files[piece]))
        assert data.s1_shift_m == (0.0, 0.0)
        assert data.grid.crs.to_epsg() in (32650, 32631)  # UTM 50N, 31N
        covers[ref.patch_id] = float(data.arrays["cloudmask"].mean())
        assert set(np.unique(data.arrays["cloudmask"])) <= {0, 1}
    # s2cloudless: p839's cloudy image is mostly cloud, p797's is clear (seen in the files).
    assert covers["ROIs1970_fall_139_p839"] > 0.5 > 0.1 > covers["ROIs2017_winter_112_p797"]
    assert "s2cloudless" in source.cloudmask_method


@realdata
@pytest.mark.skipif(not PAIRS_SAMPLE.exists(), reason=f"{PAIRS_SAMPLE} absent")
def test_s2cloudless_separates_real_high_and_low_cloud_patches():
    """The sample's folders tag SEN12MS-CR pairs by cloud percentage (high_cp, low_cp)."""
    from tdpcr.data.cloudmask import detect_clouds

    def cover(folder: str) -> list[float]:
        files = sorted((PAIRS_SAMPLE / folder / "s2_cloudy").glob("*.tif"))
        assert files
        return [float(detect_clouds(read_tif(f)).mean()) for f in files]

    high, low = cover("high_cp"), cover("low_cp")
    assert min(high) > max(low), (high, low)


@realdata
@pytest.mark.skipif(not LUOJIA_SAMPLE.exists(), reason=f"{LUOJIA_SAMPLE} absent")
def test_real_luojiaset_sample_is_incomplete_upstream():
    # 80%-100%/cloud_detection_results/ROIs_01_s2_p22.tif has no s1/s2/s2_cloudy beside it.
    with pytest.raises(InputDataError, match="p22 in 80%-100%") as err:
        LuojiaSetSource(LUOJIA_SAMPLE)
    assert "80%-100%/s2_cloudy/ROIs_01_s2_p22.tif" in str(err.value)


@realdata
@pytest.mark.skipif(not LUOJIA_SAMPLE.exists(), reason=f"{LUOJIA_SAMPLE} absent")
def test_real_luojiaset_sample():
    source = LuojiaSetSource(LUOJIA_SAMPLE, skip_incomplete=True)
    refs = {r.patch_id: r for r in source.patches()}
    # p1 and p3 have a file in every folder, but all of them are one land-cover map (p1) or
    # one cloud mask (p3): discovery cannot tell, reading does.
    assert sorted(refs) == ["p1", "p22", "p23", "p3", "p4"]
    assert {i: r.cloud_bin for i, r in refs.items()} == {
        "p1": "40%-60%",
        "p22": "60%-80%",
        "p23": "80%-100%",
        "p3": "20%-40%",
        "p4": "0-20%",
    }
    assert source.pieces == ("s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask")
    for bad in ("p1", "p3"):
        with pytest.raises(InputDataError, match="13 bands, found 1") as err:
            source.read(refs[bad])
        assert str(refs[bad].files["s2_cloudy"]) in str(err.value)

    for patch_id in ("p4", "p22", "p23"):
        ref = refs[patch_id]
        data = source.read(ref)
        raw = read_tif(ref.files["s2_clear"]).astype(np.int32)
        assert data.arrays["s2_clear"].shape == (13, 256, 256)
        np.testing.assert_array_equal(data.arrays["s2_clear"], raw - 1000)
        b10 = data.arrays["s2_clear"][10]
        assert 0 <= int(b10.min()) <= 20 and int(np.median(b10)) < 50  # not ~1009
        # Upstream defect: the "cloudy" S2 is byte-identical to the clear one.
        np.testing.assert_array_equal(data.arrays["s2_cloudy"], data.arrays["s2_clear"])
        assert data.s1_shift_m == pytest.approx((3.688, -4.128), abs=1e-3)
        assert data.grid.crs.to_epsg() == 32755  # Tasmania
        np.testing.assert_array_equal(data.arrays["s1"], read_tif(ref.files["s1"]))
        assert set(np.unique(data.arrays["landcover"])) <= {2, 3, 4, 5, 6}
    assert "cloudmask" not in refs["p4"].files and "cloudmask" not in refs["p23"].files
    mask = source.read(refs["p22"]).arrays["cloudmask"]
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}


@realdata
@pytest.mark.skipif(not LC_SAMPLE.exists(), reason=f"{LC_SAMPLE} absent")
def test_real_sen12ms_landcover_through_nested_layout(tmp_path):
    # The real lc + S1 of ROIs1158_spring_1_p30; no S2 exists for it, so fake S2 on its grid.
    key = ("ROIs1158_spring", 1, 30)
    root = tmp_path / "cr"
    for piece, name in (("landcover", "ROIs1158_spring_lc_1_p30.tif"),
                        ("s1", "ROIs1158_spring_s1_1_p30.tif")):  # fmt: skip
        target = sen12mscr_nested_path(root, piece, *key)
        target.parent.mkdir(parents=True)
        shutil.copy(LC_SAMPLE / name, target)
    with rasterio.open(LC_SAMPLE / "ROIs1158_spring_lc_1_p30.tif") as src:
        crs, transform = src.crs.to_wkt(), src.transform
    for piece in ("s2_clear", "s2_cloudy"):
        write_tif(sen12mscr_nested_path(root, piece, *key), fake_s2(0, 256), crs, transform)
    source = Sen12MSCRSource(root)
    assert [r.patch_id for r in source.patches()] == ["ROIs1158_spring_1_p30"]
    data = source.read(source.patches()[0])
    igbp = read_tif(LC_SAMPLE / "ROIs1158_spring_lc_1_p30.tif")[0]
    assert set(np.unique(igbp)) == {4, 5, 8, 9}
    expected = np.where(igbp == 9, 2, 0)  # forests and woody savanna -> tree, savanna -> grass
    np.testing.assert_array_equal(data.arrays["landcover"], expected)
