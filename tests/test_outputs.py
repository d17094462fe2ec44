"""Analysis-ready outputs: proven COGs, reflectance in GDAL's metadata, quality.tif, item.json.

Checked with the tools users open the outputs with: rio-cogeo's validator (GDAL's COG rules,
not only the LAYOUT tag), rioxarray with ``mask_and_scale=True``, stac-pydantic's models and
pystac's JSON-schema validation of the core Item against the schemas pystac ships (no
network), pystac's extension readers for projection, eo, raster and classification.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.warp
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from tdpcr.core.specs import CLASS_NAMES, LANDCOVER_COLORS, S2_BANDS, quality_band_names
from tdpcr.prediction import PredictOptions, predict_scene
from tests.fake_products import make_safe, make_stac_s1_rtc, make_stac_s2
from tests.test_products import SIZE, TINY, tiny_checkpoint


@pytest.fixture(scope="module")
def prediction(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """One prediction from STAC Items (S2 L1C, S1 RTC) with a tiny TDP-CR Full, prompt on."""
    root = tmp_path_factory.mktemp("outputs")
    item = make_stac_s2(root / "s2", level="L1C", size10=SIZE)
    rtc = make_stac_s1_rtc(root / "s1", size10=SIZE)
    checkpoint = tiny_checkpoint(root / "tdpcr-full")
    out = root / "pred"
    options = PredictOptions(window=64, overlap=16, progress=False, write_prompt=True)
    predict_scene(item, rtc, checkpoint, out, options)
    return out, item, rtc


def test_every_raster_output_is_a_valid_cog(prediction) -> None:
    from rio_cogeo.cogeo import cog_validate

    out, _, _ = prediction
    for name in ("cloudfree.tif", "landcover.tif", "quality.tif", "prompt.tif"):
        valid, errors, _ = cog_validate(str(out / name), quiet=True)
        assert valid, (name, errors)


def test_cloudfree_opens_as_reflectance_in_rioxarray(prediction) -> None:
    import rioxarray

    out, _, _ = prediction
    with rasterio.open(out / "cloudfree.tif") as src:
        assert src.scales == (1e-4,) * 13 and src.offsets == (0.0,) * 13
        dn = src.read()
    data = rioxarray.open_rasterio(out / "cloudfree.tif", mask_and_scale=True)
    values = data.values
    assert values.dtype.kind == "f" and values.shape == (13, SIZE, SIZE)
    finite = values[np.isfinite(values)]
    assert finite.size == values.size  # no nodata in this scene
    assert finite.min() >= 0.0 and finite.max() <= 1.0
    np.testing.assert_allclose(values, dn * 1e-4, rtol=1e-6)
    assert data.rio.crs.to_epsg() == 32633
    assert list(data.attrs["long_name"]) == list(S2_BANDS)


def test_quality_layer_bands_units_and_ranges(prediction) -> None:
    out, _, _ = prediction
    with rasterio.open(out / "quality.tif") as src:
        stages = len(src.descriptions) - 2  # + prompt_degradation and reflectance_change
        names = quality_band_names(stages, True)
        assert stages == len(TINY["enc_blocks"]) and src.descriptions == names
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        assert "SAR" in src.tags(1)["description"]
        data = src.read()
    assert names[0] == "sar_weight" and names[-2:] == ("prompt_degradation", "reflectance_change")
    for band, values in zip(names, data, strict=True):
        assert np.isfinite(values).all(), band
        assert values.min() >= 0.0 and values.max() <= 1.0, band
    # The blended SAR weight varies in space (windows are blended, not constant per scene).
    assert data[0].std() > 0


def test_item_json_validates_offline_and_describes_the_outputs(prediction) -> None:
    from stac_pydantic import Item as PydanticItem

    out, s2_item, s1_item = prediction
    data = json.loads((out / "item.json").read_text())
    PydanticItem.model_validate(data)  # stac-pydantic: the STAC Item model
    # The core Item JSON schema that pystac ships (looked up locally, never fetched).
    JsonSchemaSTACValidator().validate_core(data, pystac.STACObjectType.ITEM, data["stac_version"])

    item = pystac.Item.from_dict(data)
    proj = ProjectionExtension.ext(item)
    assert proj.code == "EPSG:32633" and proj.shape == [SIZE, SIZE]
    with rasterio.open(out / "cloudfree.tif") as src:
        assert proj.transform == list(src.transform)[:6]
        west, south, east, north = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    assert item.bbox == pytest.approx([west, south, east, north], abs=1e-4)

    cloudfree = item.assets["cloudfree"]
    eo_bands = EOExtension.ext(cloudfree).bands
    assert [b.name for b in eo_bands] == list(S2_BANDS)
    assert eo_bands[S2_BANDS.index("B4")].common_name == "red"
    raster = RasterExtension.ext(cloudfree).bands
    assert {(b.scale, b.offset, b.nodata) for b in raster} == {(1e-4, 0.0, 0)}
    classes = ClassificationExtension.ext(item.assets["landcover"]).classes
    named = {c.value: (c.description, c.color_hint) for c in classes if not c.nodata}
    for index, name in enumerate(CLASS_NAMES):
        r, g, b, _ = LANDCOVER_COLORS[index]
        assert named[index] == (name, f"{r:02X}{g:02X}{b:02X}")
    quality = item.assets["quality"]
    assert "sar_weight" in quality.description and "reflectance units" in quality.description

    props = item.properties
    assert props["tdpcr:variant"] == "tdpcr-full" and props["tdpcr:model"] == "tdpcr"
    assert props["tdpcr:s1_units"] == "linear" and props["tdpcr:s2_dn_offset"] == [1000] * 13
    assert props["processing:software"]["tdpcr"]
    assert item.datetime.isoformat().startswith("2024-06-11")  # the acquisition, from the item
    derived = {link.href for link in item.links if link.rel == "derived_from"}
    assert derived == {str(s2_item.resolve()), str(s1_item.resolve())}
    for asset in item.assets.values():  # relative hrefs: the folder can be moved
        assert (out / asset.href).is_file(), asset.href


def test_prediction_without_quality_layer(tmp_path: Path) -> None:
    safe = make_safe(tmp_path, size10=SIZE)
    rtc = make_stac_s1_rtc(tmp_path / "s1", size10=SIZE)
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["extra"]["s2_level"] == "L1C"
    out = tmp_path / "pred"
    options = PredictOptions(window=64, overlap=16, progress=False, write_quality=False)
    result = predict_scene(safe.path, rtc, checkpoint, out, options)
    assert "quality.tif" not in result.files
    item = json.loads((out / "item.json").read_text())
    assert "quality" not in item["assets"] and "landcover" in item["assets"]


def test_quality_figure_reports_correlations_with_the_true_mask(tmp_path: Path, capsys) -> None:
    from tdpcr.cli import main
    from tdpcr.data.synthetic import write_synthetic_scenes
    from tdpcr.prediction.figures import quality_correlations

    scene = write_synthetic_scenes(tmp_path / "synth", n_scenes=2, size=64, seed=3)[1]
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    png = tmp_path / "fig" / "quality.png"
    code = main([
        "quality-figure", "--scene", str(scene), "--checkpoint", str(checkpoint),
        "--out", str(png), "--window", "64", "--overlap", "16",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert png.stat().st_size > 10_000
    report = json.loads(png.with_suffix(".json").read_text())
    assert set(report["correlation"]) >= {"sar_weight", "prompt_degradation", "reflectance_change"}
    for values in report["correlation"].values():
        r = values["cloud_mask"]
        assert r is None or -1.0 <= r <= 1.0
    # The correlation itself: a band equal to the mask has r = 1, its negation -1.
    mask = np.array([[0, 1], [1, 255]], dtype=np.uint8)
    bands = np.stack([mask.astype(np.float32), -mask.astype(np.float32)])
    got = quality_correlations(bands, ("a", "b"), mask, None)
    assert got["a"]["cloud_mask"] == pytest.approx(1.0)
    assert got["b"]["cloud_mask"] == pytest.approx(-1.0)
