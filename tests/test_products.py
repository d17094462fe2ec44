"""Predicting from what analysts download: SAFE folders and zips, STAC Items, named GeoTIFFs.

The products are generated here (:mod:`tests.fake_products`: the real SAFE structure with JP2
bands at 10 / 20 / 60 m and the offset in MTD_MSIL*.xml; STAC Items with local COG assets),
plus a STAC Item over BigEarthNet's real per-band L2A files when ``../shared/realdata`` exists.
Pixel values are known functions of band and position, so band order, resampling, the offset
and the S1 units are checked on the arrays predict feeds the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from tdpcr.cli import main
from tdpcr.core.checkpoint import CheckpointMeta, read_meta, save_checkpoint, trained_input_bands
from tdpcr.core.config import shipped_config
from tdpcr.core.specs import CLASS_NAMES, S2_BANDS, S2_LEVEL_BANDS
from tdpcr.models.registry import create_model
from tdpcr.prediction import PredictOptions, predict_scene
from tdpcr.prediction.inputs import open_inputs, read_row_strip
from tests.conftest import REALDATA
from tests.fake_products import (
    BAND_RESOLUTION,
    ULX,
    ULY,
    band_dn,
    make_s1_grd_safe,
    make_safe,
    make_stac_s1_rtc,
    make_stac_s2,
    s1_linear,
)
from tests.fakes import UTM_CRS

TINY = shipped_config("tiny")["models"]["tdpcr"]
SIZE = 120  # 10 m pixels of the fake tile (60 x 60 at 20 m, 20 x 20 at 60 m)
TILE_TRANSFORM = Affine(10.0, 0.0, ULX, 0.0, -10.0, ULY)
BIGEARTHNET = REALDATA / "bigearthnet-example"


def tiny_checkpoint(folder: Path, level: str = "L1C", *, record_bands: bool = True) -> Path:
    """A tiny untrained TDP-CR Full whose meta.json says it was trained on ``level`` bands."""
    bands = S2_LEVEL_BANDS[level]
    kwargs = {**TINY, "in_optical": len(bands), "out_channels": len(bands)}
    kwargs["num_classes"] = len(CLASS_NAMES)
    torch.manual_seed(0)
    model = create_model("tdpcr", **kwargs)
    extra = {"s2_bands": list(bands), "s2_level": level} if record_bands else {}
    meta = CheckpointMeta("tdpcr", kwargs, "tdpcr-full", 0, extra=extra)
    return save_checkpoint(folder, model, meta)


@pytest.fixture(scope="module")
def l1c_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tdpcr-full")


@pytest.fixture(scope="module")
def s1_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """S1 in dB (VV, VH) on the fake tile's 10 m grid."""
    path = tmp_path_factory.mktemp("s1") / "s1.tif"
    db = 10 * np.log10(s1_linear(SIZE))
    with rasterio.open(
        path, "w", driver="GTiff", height=SIZE, width=SIZE, count=2, dtype="float32",
        crs=UTM_CRS, transform=TILE_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(db)
    return path


def strips(optical: Path, sar: Path, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """What predict feeds the model, for the whole scene: S2 DN, S1 dB, nodata, and the grid."""
    with open_inputs(optical, sar, **kwargs) as inputs:
        grid = inputs.grid
        s2, s1, invalid = read_row_strip(inputs, optical, sar, 0, grid.height)
        info = {
            "grid": grid,
            "offset": inputs.s2_dn_offset,
            "units": inputs.sar.units,
            "reprojected": inputs.s1_reprojected,
        }
    return s2, s1, invalid, info


def run_predict(capsys, *args: str) -> tuple[int, str]:
    code = main(["predict", "--quiet", *args])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, out: Path, *expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


# --------------------------------------------------------------------------- SAFE


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_safe_bands_in_model_order_resampled_offset_removed(
    tmp_path: Path, s1_tif: Path, zipped: bool
) -> None:
    safe = make_safe(tmp_path, offset=1000, size10=SIZE, zipped=zipped)
    s2, _, invalid, info = strips(safe.path, s1_tif)
    assert s2.shape == (13, SIZE, SIZE) and not invalid.any()
    assert info["grid"].transform == TILE_TRANSFORM and info["grid"].crs == UTM_CRS
    assert list(info["offset"]) == [1000] * 13  # RADIO_ADD_OFFSET = -1000, from MTD_MSIL1C.xml
    for index, band in enumerate(S2_BANDS):
        assert_bilinear(s2[index], band)


def assert_bilinear(got: np.ndarray, band: str) -> None:
    """``got`` (10 m) is ``band``'s native grid resampled bilinearly (pixel-centre convention).

    The fake's values vary along x only, so the expectation is 1-D linear interpolation
    between native pixel centres, clamped at the edges; rounding to uint16 allows 1 DN.
    """
    native = band_dn(band, SIZE, 0)[0].astype(float)
    factor = BAND_RESOLUTION[band] // 10
    coarse = (np.arange(SIZE) + 0.5) / factor - 0.5
    want = np.interp(coarse, np.arange(native.size), native)
    assert np.abs(got.astype(float) - want[None]).max() <= 1.0, band
    if factor > 1:  # nearest neighbour would differ by up to a block step at block edges
        nearest = native[np.arange(SIZE) // factor]
        assert np.abs(got[0].astype(float) - nearest).max() >= 3, band


def test_l2a_safe_given_to_an_l1c_model_is_refused_naming_b10(
    tmp_path: Path, s1_tif: Path, l1c_checkpoint: Path, capsys
) -> None:
    safe = make_safe(tmp_path, level="L2A", size10=SIZE)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(safe.path), "--sar", str(s1_tif),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(safe.path), "band B10 missing", "L2A", "trained on L1C")


def test_l2a_safe_is_read_by_an_l2a_model(tmp_path: Path, s1_tif: Path) -> None:
    safe = make_safe(tmp_path, level="L2A", size10=SIZE)
    bands = S2_LEVEL_BANDS["L2A"]
    s2, _, _, info = strips(safe.path, s1_tif, bands=bands, level="L2A")
    assert s2.shape == (12, SIZE, SIZE)
    assert list(info["offset"]) == [1000] * 12  # BOA_ADD_OFFSET from MTD_MSIL2A.xml
    assert_bilinear(s2[bands.index("B11")], "B11")


def test_l1c_safe_missing_a_band_names_it(
    tmp_path: Path, s1_tif: Path, l1c_checkpoint: Path, capsys
) -> None:
    safe = make_safe(tmp_path, drop=("B8A",), size10=SIZE)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(safe.path), "--sar", str(s1_tif),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(safe.path), "band B8A missing", "L1C")


def test_s2_offset_overrides_the_metadata(tmp_path: Path, s1_tif: Path) -> None:
    safe = make_safe(tmp_path, offset=1000, size10=SIZE)
    s2, _, _, info = strips(safe.path, s1_tif, s2_offset=0)
    assert list(info["offset"]) == [0] * 13
    assert s2[1, 0, 0] == band_dn("B2", SIZE, 1000)[0, 0]


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_raw_s1_grd_safe_is_refused_naming_a_tool(
    tmp_path: Path, l1c_checkpoint: Path, capsys, zipped: bool
) -> None:
    safe = make_safe(tmp_path, size10=SIZE)
    grd = make_s1_grd_safe(tmp_path, zipped=zipped)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(safe.path), "--sar", str(grd),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(grd), "GRD", "terrain correction", "SNAP")


def test_whole_safe_prediction_keeps_the_tile_georeferencing(
    tmp_path: Path, s1_tif: Path, l1c_checkpoint: Path
) -> None:
    safe = make_safe(tmp_path, size10=SIZE)
    out = tmp_path / "pred"
    options = PredictOptions(window=64, overlap=16, progress=False)
    result = predict_scene(safe.path, s1_tif, l1c_checkpoint, out, options)
    assert result.inputs["optical_kind"] == "safe" and result.inputs["optical_level"] == "L1C"
    with rasterio.open(out / "cloudfree.tif") as src:
        assert src.transform == TILE_TRANSFORM and src.crs == UTM_CRS
        assert src.shape == (SIZE, SIZE)
    item = json.loads((out / "item.json").read_text())
    derived = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
    assert str(safe.path.resolve()) in derived and str(s1_tif.resolve()) in derived
    assert item["properties"]["tdpcr:s2_dn_offset"] == [1000] * 13


# --------------------------------------------------------------------------- STAC


@pytest.mark.parametrize("keys", ["earth-search", "planetary"])
def test_stac_items_s2_and_s1_rtc(tmp_path: Path, keys: str) -> None:
    item = make_stac_s2(tmp_path / "s2", level="L1C", offset=1000, size10=SIZE, keys=keys)
    rtc = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    s2, s1, invalid, info = strips(item, rtc)
    assert info["grid"].transform == TILE_TRANSFORM and info["grid"].crs == UTM_CRS
    assert list(info["offset"]) == [1000] * 13  # raster:bands offset -0.1 / scale 1e-4
    for index, band in enumerate(S2_BANDS):
        assert_bilinear(s2[index], band)
    # S1 RTC: linear power detected and converted; the 0 (no data) corner becomes NaN.
    assert info["units"] == "linear" and not info["reprojected"]
    want = 10 * np.log10(s1_linear(SIZE))
    assert np.isnan(s1[:, :6, :6]).all()
    np.testing.assert_allclose(s1[:, 6:, 6:], want[:, 6:, 6:], atol=1e-4)
    assert not invalid.any()


def test_stac_item_with_a_missing_asset_file_is_refused(
    tmp_path: Path, l1c_checkpoint: Path, capsys
) -> None:
    item = make_stac_s2(tmp_path / "s2", level="L1C", size10=SIZE, missing_file="B11")
    rtc = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(item), "--sar", str(rtc),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(item), "asset 'swir16'", "B11-missing.tif")


def test_stac_s1_item_without_vh_is_refused(tmp_path: Path, l1c_checkpoint: Path, capsys) -> None:
    item = make_stac_s2(tmp_path / "s2", level="L1C", size10=SIZE)
    rtc = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    loaded = pystac.Item.from_file(str(rtc))
    del loaded.assets["vh"]
    loaded.save_object(dest_href=str(rtc), include_self_link=False)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(item), "--sar", str(rtc),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(rtc), "no 'vh' asset")


def test_l2a_stac_item_to_an_l1c_model_is_refused(
    tmp_path: Path, l1c_checkpoint: Path, capsys
) -> None:
    item = make_stac_s2(tmp_path / "s2", level="L2A", size10=SIZE)
    rtc = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(item), "--sar", str(rtc),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(item), "band B10 missing", "L2A")


# --------------------------------------------------------------------------- GeoTIFF, S1 units


def _write(path: Path, data: np.ndarray, descriptions: tuple[str, ...] | None = None) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
        count=data.shape[0], dtype=data.dtype.name, crs=UTM_CRS, transform=TILE_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(data)
        for index, name in enumerate(descriptions or (), start=1):
            dst.set_band_description(index, name)
    return path


def test_geotiff_bands_are_taken_by_name_in_any_order(tmp_path: Path, s1_tif: Path) -> None:
    """An Earth Engine export names its bands (B1 .. B12, B8A) and may add others (QA60)."""
    shuffled = ["QA60", *reversed(S2_BANDS)]
    data = np.stack([np.full((SIZE, SIZE), 100 + i) for i in range(len(shuffled))])
    optical = _write(tmp_path / "ee.tif", data.astype(np.uint16), tuple(shuffled))
    s2, _, _, _ = strips(optical, s1_tif)
    for index, band in enumerate(S2_BANDS):
        assert s2[index, 0, 0] == 100 + shuffled.index(band), band


def test_geotiff_missing_b10_by_name_is_refused(tmp_path: Path, s1_tif: Path) -> None:
    bands = S2_LEVEL_BANDS["L2A"]
    data = np.full((len(bands), SIZE, SIZE), 500, np.uint16)
    optical = _write(tmp_path / "sr.tif", data, bands)
    with pytest.raises(Exception, match="band B10 missing") as caught:
        strips(optical, s1_tif)
    assert str(optical) in str(caught.value)


def test_s1_linear_geotiff_is_detected_and_converted(tmp_path: Path) -> None:
    optical = _write(tmp_path / "s2.tif", np.full((13, SIZE, SIZE), 800, np.uint16))
    sar = _write(tmp_path / "s1_linear.tif", s1_linear(SIZE))
    _, s1, _, info = strips(optical, sar)
    assert info["units"] == "linear"
    np.testing.assert_allclose(s1, 10 * np.log10(s1_linear(SIZE)), atol=1e-4)


@pytest.mark.parametrize(
    ("values", "units", "expected"),
    [
        (np.linspace(-5, 40, SIZE * SIZE), "auto", "cannot tell whether S1 is in dB or linear"),
        (np.linspace(-20, -5, SIZE * SIZE), "linear", "given as linear power but"),
    ],
    ids=["ambiguous", "linear-but-negative"],
)
def test_s1_units_that_cannot_be_right_are_refused(
    tmp_path: Path, l1c_checkpoint: Path, capsys, values, units, expected
) -> None:
    optical = _write(tmp_path / "s2.tif", np.full((13, SIZE, SIZE), 800, np.uint16))
    data = np.stack([values, values]).reshape(2, SIZE, SIZE).astype(np.float32)
    sar = _write(tmp_path / "s1.tif", data)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(optical), "--sar", str(sar), "--s1-units", units,
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(sar), expected, "--s1-units")


# --------------------------------------------------------------------------- bbox


def test_bbox_cuts_the_scene_before_inference(tmp_path: Path, s1_tif: Path) -> None:
    safe = make_safe(tmp_path, size10=SIZE)
    # 400 m x 300 m inside the tile, in its own CRS: 40 x 30 pixels from column 10, row 20.
    left, top = ULX + 100, ULY - 200
    bbox = (left, top - 300, left + 400, top)
    s2, s1, _, info = strips(safe.path, s1_tif, bbox=bbox, bbox_crs=UTM_CRS)
    assert s2.shape == (13, 30, 40) and s1.shape == (2, 30, 40)
    assert info["grid"].transform == Affine(10, 0, left, 0, -10, top)
    full, full_s1, _, _ = strips(safe.path, s1_tif)
    assert np.array_equal(s2, full[:, 20:50, 10:50])
    assert np.array_equal(s1, full_s1[:, 20:50, 10:50])


def test_bbox_in_lon_lat_gives_outputs_on_the_cut(
    tmp_path: Path, s1_tif: Path, l1c_checkpoint: Path
) -> None:
    from rasterio.warp import transform_bounds

    safe = make_safe(tmp_path, size10=SIZE)
    bbox = transform_bounds(UTM_CRS, "EPSG:4326", ULX + 200, ULY - 900, ULX + 900, ULY - 200)
    out = tmp_path / "pred"
    options = PredictOptions(window=32, overlap=8, progress=False, bbox=bbox)
    result = predict_scene(safe.path, s1_tif, l1c_checkpoint, out, options)
    with rasterio.open(out / "cloudfree.tif") as src:
        # The lon/lat box's UTM envelope, snapped outwards to whole pixels of the tile.
        assert ULX + 180 <= src.transform.c <= ULX + 200
        assert ULY - 200 <= src.transform.f <= ULY - 180
        assert 70 <= src.width <= 74 and 70 <= src.height <= 74
    assert result.inputs["window"][2:] == [result.width, result.height]


def test_bbox_outside_the_scene_is_refused(
    tmp_path: Path, s1_tif: Path, l1c_checkpoint: Path, capsys
) -> None:
    safe = make_safe(tmp_path, size10=SIZE)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(safe.path), "--sar", str(s1_tif),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
        "--bbox", "2.0", "48.0", "2.1", "48.1",
    )  # fmt: skip
    assert_refused(code, err, out, str(safe.path), "lies outside the scene", "EPSG:4326")


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_without_bands_is_treated_as_l1c_13_bands(tmp_path: Path) -> None:
    folder = tiny_checkpoint(tmp_path / "old", record_bands=False)
    assert trained_input_bands(read_meta(folder)) == (S2_BANDS, "L1C")
    folder = tiny_checkpoint(tmp_path / "l2a", level="L2A")
    assert trained_input_bands(read_meta(folder)) == (S2_LEVEL_BANDS["L2A"], "L2A")


# --------------------------------------------------------------------------- real data


def _bigearthnet_items(tmp_path: Path) -> tuple[Path, Path]:
    """STAC Items (Planetary Computer asset keys) over one real BigEarthNet S2 L2A / S1 patch."""
    s2_dir = next(iter(sorted((BIGEARTHNET / "BigEarthNet-S2-Example").iterdir())))
    patch = s2_dir.name.split("_", 3)[-1]  # e.g. 87_48
    s1_dir = next(d for d in (BIGEARTHNET / "BigEarthNet-S1-Example").iterdir()
                  if d.name.endswith(f"_{patch}"))  # fmt: skip
    with rasterio.open(next(s2_dir.glob("*_B02.tif"))) as src:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}

    def item(item_id: str, collection: str, assets: dict[str, Path], props: dict) -> Path:
        from datetime import UTC, datetime

        stac = pystac.Item(item_id, geometry, [w, s, e, n], datetime(2017, 6, 13, tzinfo=UTC),
                           props, collection=collection)  # fmt: skip
        for key, path in assets.items():
            stac.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF))
        path = tmp_path / f"{collection}.json"
        stac.save_object(dest_href=str(path), include_self_link=False)
        return path

    s2_assets = {f.stem.rsplit("_", 1)[-1]: f for f in s2_dir.glob("*_B*.tif")}
    s1_assets = {f.stem.rsplit("_", 1)[-1].lower(): f for f in s1_dir.glob("*_V?.tif")}
    # BigEarthNet's processing baseline is 02.x: no offset in the DN.
    optical = item(s2_dir.name, "sentinel-2-l2a", s2_assets, {"s2:processing_baseline": "02.05"})
    sar = item(s1_dir.name, "sentinel-1-rtc", s1_assets, {})
    return optical, sar


@pytest.mark.realdata
@pytest.mark.skipif(not BIGEARTHNET.exists(), reason="realdata absent")
def test_real_bigearthnet_l2a_bands_at_native_resolution(tmp_path: Path) -> None:
    optical, sar = _bigearthnet_items(tmp_path)
    bands = S2_LEVEL_BANDS["L2A"]
    s2, s1, invalid, info = strips(optical, sar, bands=bands, level="L2A")
    assert s2.shape == (12, 120, 120) and info["units"] == "db"  # BigEarthNet S1 is in dB
    assert list(info["offset"]) == [0] * 12
    item = pystac.Item.from_file(str(optical))
    for band in ("B2", "B5", "B1"):
        key = f"B{int(band[1:]):02d}"
        with rasterio.open(item.assets[key].get_absolute_href()) as src:
            native, factor = src.read(1), int(src.res[0] // 10)
        centre = factor // 2  # a 10 m pixel near the centre of each native pixel
        got = s2[bands.index(band)][centre::factor, centre::factor]
        if factor == 1:
            assert np.array_equal(got, native), band
        else:  # bilinear at native pixel centres is the native value (up to interpolation)
            inner = (slice(1, -1), slice(1, -1))
            assert np.abs(got[inner].astype(int) - native[inner]).mean() < 0.1 * native.mean()
    assert not invalid.any() and np.isfinite(s1).all()


@pytest.mark.realdata
@pytest.mark.skipif(not BIGEARTHNET.exists(), reason="realdata absent")
def test_real_bigearthnet_l2a_refused_by_l1c_and_predicted_by_l2a_model(
    tmp_path: Path, l1c_checkpoint: Path, capsys
) -> None:
    optical, sar = _bigearthnet_items(tmp_path)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(optical), "--sar", str(sar),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(optical), "band B10 missing", "L2A")
    l2a = tiny_checkpoint(tmp_path / "l2a", level="L2A")
    options = PredictOptions(window=64, overlap=16, progress=False)
    result = predict_scene(optical, sar, l2a, out, options)
    with rasterio.open(out / "cloudfree.tif") as dst, rasterio.open(
        pystac.Item.from_file(str(optical)).assets["B02"].get_absolute_href()
    ) as ref:  # fmt: skip
        assert dst.count == 12 and dst.descriptions == S2_LEVEL_BANDS["L2A"]
        assert dst.transform == ref.transform and dst.crs == ref.crs
    assert result.model["s2_level"] == "L2A"


def test_stac_true_colour_and_jp2_copies_never_stand_in_for_a_band(tmp_path: Path) -> None:
    """Earth Search items also carry ``visual`` (eo:bands red, green, blue) and ``*-jp2``."""
    item_path = make_stac_s2(tmp_path / "s2", level="L1C", size10=SIZE)
    item = pystac.Item.from_file(str(item_path))
    decoy = tmp_path / "s2" / "decoy.tif"
    with rasterio.open(item.assets["red"].get_absolute_href()) as src:
        profile = src.profile
    with rasterio.open(decoy, "w", **{**profile, "driver": "GTiff"}) as dst:
        dst.write(np.full((1, SIZE, SIZE), 7, np.uint16))
    visual = pystac.Asset(str(decoy), media_type=pystac.MediaType.COG, roles=["visual"])
    visual.extra_fields["eo:bands"] = [{"name": n} for n in ("red", "green", "blue")]
    jp2 = pystac.Asset(str(decoy), media_type="image/jp2", roles=["data"])
    jp2.extra_fields["eo:bands"] = [{"name": "red"}]
    item.assets = {"visual": visual, "red-jp2": jp2, **item.assets}
    item.save_object(dest_href=str(item_path), include_self_link=False)
    rtc = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    s2, _, _, _ = strips(item_path, rtc)
    assert_bilinear(s2[S2_BANDS.index("B4")], "B4")  # from "red", not the decoys (all 7)


def test_s1_in_db_with_zero_fill_is_still_db(tmp_path: Path) -> None:
    """A third of the scene 0 (no data outside the swath, no nodata tag): still dB."""
    optical = _write(tmp_path / "s2.tif", np.full((13, SIZE, SIZE), 800, np.uint16))
    db = (10 * np.log10(s1_linear(SIZE))).astype(np.float32)
    db[:, :, : SIZE // 3] = 0.0
    _, _, _, info = strips(optical, _write(tmp_path / "s1.tif", db))
    assert info["units"] == "db"


def test_s1_grd_stac_item_is_refused(tmp_path: Path, l1c_checkpoint: Path, capsys) -> None:
    item = make_stac_s2(tmp_path / "s2", level="L1C", size10=SIZE)
    grd = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    loaded = pystac.Item.from_file(str(grd))
    loaded.collection_id = "sentinel-1-grd"
    loaded.save_object(dest_href=str(grd), include_self_link=False)
    out = tmp_path / "pred"
    code, err = run_predict(
        capsys, "--optical", str(item), "--sar", str(grd),
        "--checkpoint", str(l1c_checkpoint), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, out, str(grd), "sentinel-1-grd", "terrain correction")
