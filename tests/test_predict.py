"""Whole-scene prediction: georeferencing, COG outputs, seamless blending, nodata, bad inputs.

Models are tiny and untrained (built and saved as checkpoints here, no training), or stand-ins
with a known output where a property of the engine, not of a model, is checked.
"""

from __future__ import annotations

import json
import logging
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from torch import nn

from tdpcr.cli import main
from tdpcr.core.checkpoint import CheckpointMeta, save_checkpoint
from tdpcr.core.config import shipped_config
from tdpcr.core.specs import CLASS_NAMES, LANDCOVER_COLORS, S2_BANDS
from tdpcr.data.rasters import write_geotiff
from tdpcr.models.registry import create_model
from tdpcr.prediction import PredictOptions, Predictor, predict_scene
from tdpcr.prediction.windows import taper, window_offsets
from tdpcr.prediction.writers import convert_to_cog
from tests.conftest import REALDATA

CRS = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
#: The shipped tiny config's TDP-CR size (config/tiny.yaml).
TINY_TDPCR = shipped_config("tiny")["models"]["tdpcr"]
SEN12MSCR_PATCH = "ROIs1970_fall_139_p839.tif"


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


def _save(folder: Path, name: str, kwargs: dict, variant: str, model: nn.Module | None = None):
    torch.manual_seed(0)
    model = model if model is not None else create_model(name, **kwargs)
    # An untrained reconstruction model is the identity (its last conv starts at zero); these
    # stand in for trained ones, whose outputs depend on their whole window, so that conv gets
    # random weights.
    last = getattr(model, "ending", None) or getattr(model, "tail", None)
    if last is not None:
        nn.init.normal_(last.weight, std=0.05)
    return save_checkpoint(folder, model, CheckpointMeta(name, kwargs, variant, 0))


#: The tiny config's model sizes (config/tiny.yaml), not a copy of them.
TINY_MODELS: dict = shipped_config("tiny")["models"]
#: Each baseline's extra constructor arguments beside its sizes.
BASELINES: dict[str, dict] = {
    "glfcr": {},
    "hpncr": {},
    "emrdm": {},
    "cloudseg": {"num_classes": len(CLASS_NAMES)},
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny TDP-CR Full, TDP-CR CR-only, DSen2-CR and a (stand-in) SegFormer checkpoint."""
    root = tmp_path_factory.mktemp("checkpoints")
    full = {**TINY_TDPCR, "pgf_mode": "both", "num_classes": len(CLASS_NAMES)}
    cr = {**TINY_TDPCR, "pgf_mode": "both", "num_classes": None}
    return {
        "full": _save(root / "tdpcr-full", "tdpcr", full, "tdpcr-full"),
        "cr": _save(root / "tdpcr-cr", "tdpcr", cr, "tdpcr-cr"),
        "dsen2cr": _save(root / "dsen2cr", "dsen2cr", {"features": 8, "num_blocks": 1}, "dsen2cr"),
        # The published baselines at the tiny config's sizes (CloudSeg also segments).
        **{
            name: _save(root / name, name, dict(TINY_MODELS[name], **extra), name)
            for name, extra in BASELINES.items()
        },
        # Only meta.json decides the refusal; the weights need not be a real SegFormer.
        "segformer": _save(
            root / "segformer-clear",
            "segformer",
            {"in_channels": 13, "num_classes": 7},
            "segformer-clear",
            nn.Conv2d(1, 1, 1),
        ),
    }


def write_scene(
    folder: Path,
    height: int,
    width: int,
    *,
    s2: np.ndarray | None = None,
    s1: np.ndarray | None = None,
    s2_nodata: float | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """S2 (uint16 DN) and S1 (float32 dB) GeoTIFFs on one 10 m UTM grid; random by default."""
    rng = np.random.default_rng(seed)
    if s2 is None:
        s2 = rng.integers(300, 4000, (13, height, width)).astype(np.uint16)
    if s1 is None:
        s1 = rng.uniform(-22.0, -6.0, (2, height, width)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    optical = write_geotiff(folder / "s2.tif", s2, crs=CRS, transform=TRANSFORM, nodata=s2_nodata)
    sar = write_geotiff(folder / "s1.tif", s1, crs=CRS, transform=TRANSFORM)
    return optical, sar


def smooth_scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear ramps in both directions: S2 1000..3000 DN (band-scaled), S1 -20..-10 dB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xx / width + yy / height) / 2
    s2 = (1000 + 2000 * ramp)[None] * np.linspace(0.6, 1.4, 13, dtype=np.float32)[:, None, None]
    s1 = (-20 + 10 * ramp)[None] * np.array([1.0, 1.3], dtype=np.float32)[:, None, None]
    return s2.astype(np.uint16), s1.astype(np.float32)


def border_and_inside_jumps(image: np.ndarray, window: int, overlap: int) -> tuple[float, float]:
    """Largest |difference| between neighbouring pixels across a window border and elsewhere.

    Both axes; a border pair is (p, p + 1) where a window starts at p + 1 or ends at p.
    """
    border_max, inside_max = 0.0, 0.0
    for axis in (1, 2):
        length = image.shape[axis]
        diffs = np.abs(np.diff(image.astype(np.float64), axis=axis))
        offsets = window_offsets(length, window, window - overlap)
        pairs = {o - 1 for o in offsets if o > 0} | {
            o + window - 1 for o in offsets if o + window < length
        }
        is_border = np.zeros(length - 1, dtype=bool)
        is_border[sorted(pairs)] = True
        moved = np.moveaxis(diffs, axis, 0)
        if is_border.any():  # one window along this axis: no border to cross
            border_max = max(border_max, float(moved[is_border].max()))
        inside_max = max(inside_max, float(moved[~is_border].max()))
    return border_max, inside_max


class WindowOffsetModel(nn.Module):
    """Stand-in model with a known, smooth output: the input plus a per-window constant.

    The constant changes from one window to the next (as a real model's output does: zero
    padding, global pooling over a different area), so plain tiling shows seams.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> dict[str, torch.Tensor]:
        offsets = [0.01 * ((self.calls + i) % 7) for i in range(optical.shape[0])]
        self.calls += optical.shape[0]
        shift = torch.tensor(offsets, dtype=optical.dtype).view(-1, 1, 1, 1)
        return {"image": optical + shift}


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), src.profile


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", "--quiet", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_failed_cleanly(code: int, err: str, out: Path, *expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert lines[0].startswith("tdpcr: error: ")
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------
# Outputs


def test_scene_not_a_multiple_of_the_window_keeps_shape_crs_transform(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = write_scene(tmp_path / "in", 300, 237)
    out = tmp_path / "pred"
    # Default window 256 / overlap 64: two window rows, and a width below one window (padded).
    code, stdout, err = run_cli(
        capsys,
        "--optical", str(optical), "--sar", str(sar),
        "--checkpoint", str(checkpoints["full"]), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "cloudfree.tif, landcover.tif, quality.tif, item.json" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "cloudfree.tif",
        "item.json",
        "landcover.tif",
        "prediction.json",
        "quality.tif",
    ]
    with rasterio.open(out / "cloudfree.tif") as src:
        assert (src.height, src.width, src.count) == (300, 237, 13)
        assert src.crs.to_string() == CRS and src.transform == TRANSFORM
        assert src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.descriptions == S2_BANDS
        assert src.read().min() >= 1  # valid pixels never read as nodata
    with rasterio.open(out / "landcover.tif") as src:
        assert (src.height, src.width, src.count) == (300, 237, 1)
        assert src.crs.to_string() == CRS and src.transform == TRANSFORM
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.descriptions == ("landcover",)
        colormap = src.colormap(1)
        for value, rgba in LANDCOVER_COLORS.items():
            assert colormap[value] == rgba
        assert src.tags(1)["CLASS_NAMES"] == ",".join(CLASS_NAMES)
        assert src.tags(1)["CLASS_4"] == "built-up"
        labels = src.read(1)
        assert labels.max() < len(CLASS_NAMES)


def test_outputs_are_cloud_optimized(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    optical, sar = write_scene(tmp_path / "in", 96, 80)
    out = tmp_path / "pred"
    options = PredictOptions(window=64, overlap=16, progress=False, write_prompt=True)
    result = predict_scene(optical, sar, checkpoints["full"], out, options)
    assert result.files == ["cloudfree.tif", "landcover.tif", "quality.tif", "prompt.tif"]
    for name in result.files:
        with rasterio.open(out / name) as src:
            assert src.driver == "GTiff"
            assert src.profile["tiled"] is True
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.profile["compress"] == "deflate"
    with rasterio.open(out / "prompt.tif") as src:
        assert src.count == TINY_TDPCR["prompt_channels"] and src.dtypes[0] == "float32"
        assert src.descriptions[0] == "prompt_0"
    # Scenes larger than one 512 x 512 COG block get overviews.
    raw = tmp_path / "big.raw.tif"
    data = np.random.default_rng(0).integers(1, 9, (1, 1100, 1030)).astype(np.uint8)
    write_geotiff(raw, data, crs=CRS, transform=TRANSFORM, compress="none")
    with rasterio.open(convert_to_cog(raw, tmp_path / "big.tif", resampling="NEAREST")) as src:
        assert src.overviews(1) == [2, 4]
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert not raw.exists()


def test_cloud_removal_only_models_write_no_landcover(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    optical, sar = write_scene(tmp_path / "in", 70, 50)
    options = PredictOptions(window=64, overlap=16, progress=False)
    for name in ("cr", "dsen2cr"):
        result = predict_scene(optical, sar, checkpoints[name], tmp_path / name, options)
        assert result.files == ["cloudfree.tif", "quality.tif"]
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [
            "cloudfree.tif",
            "item.json",
            "prediction.json",
            "quality.tif",
        ]
        image, profile = read(tmp_path / name / "cloudfree.tif")
        assert image.shape == (13, 70, 50) and profile["transform"] == TRANSFORM


def test_rerun_replaces_a_previous_prediction(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    optical, sar = write_scene(tmp_path / "in", 40, 40)
    out = tmp_path / "pred"
    options = PredictOptions(window=32, overlap=8, progress=False)
    predict_scene(optical, sar, checkpoints["full"], out, options)
    predict_scene(optical, sar, checkpoints["cr"], out, options)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cloudfree.tif", "item.json", "prediction.json", "quality.tif"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------------------------
# Blending


def test_taper_never_reaches_zero_and_overlapping_ramps_sum_to_one() -> None:
    w = taper(64, 16, True, True)
    assert w.min() > 0 and w.max() == 1.0
    assert np.allclose(w[:16] + w[-16:], 1.0)  # next window's ramp starts where this one ends
    assert (taper(64, 16, False, False) == 1).all()  # scene edges keep full weight


def test_blending_leaves_no_seam_on_a_smooth_input(tmp_path: Path) -> None:
    """Stand-in model with a per-window offset: plain tiling has seams, blending none."""
    height, width, window = 150, 170, 32
    s2, s1 = smooth_scene(height, width)
    optical, sar = write_scene(tmp_path / "in", height, width, s2=s2, s1=s1)
    predictor = Predictor(WindowOffsetModel(), None, None, 16, torch.device("cpu"))
    jumps = {}
    for overlap in (0, 8):
        out = tmp_path / f"overlap{overlap}"
        options = PredictOptions(window=window, overlap=overlap, batch_size=3, progress=False)
        predict_scene(optical, sar, predictor, out, options)
        image, _ = read(out / "cloudfree.tif")
        jumps[overlap] = border_and_inside_jumps(image, window, overlap)
    plain_border, plain_inside = jumps[0]
    border, inside = jumps[8]
    assert plain_border > 3 * plain_inside  # the stand-in does make seams
    assert border <= inside, jumps  # blended: no jump at any window border
    assert border < plain_border / 5


def test_blending_tiny_tdpcr_leaves_no_seam(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    """The real (untrained) tiny TDP-CR on a ramp: border jumps no larger than inside ones."""
    height, width, window, overlap = 64, 400, 64, 16
    s2, s1 = smooth_scene(height, width)
    optical, sar = write_scene(tmp_path / "in", height, width, s2=s2, s1=s1)
    jumps = {}
    for ov in (0, overlap):
        out = tmp_path / f"overlap{ov}"
        options = PredictOptions(window=window, overlap=ov, progress=False)
        predict_scene(optical, sar, checkpoints["cr"], out, options)
        image, _ = read(out / "cloudfree.tif")
        jumps[ov] = border_and_inside_jumps(image, window, ov)
    border, inside = jumps[overlap]
    assert border <= inside, jumps
    assert border < jumps[0][0], jumps  # smaller than plain tiling's seams


def test_memory_is_bounded_by_the_row_band_not_the_scene(tmp_path: Path) -> None:
    """No full-scene float array: accumulators span one window of rows, and the traced peak
    (numpy buffers) does not grow with the scene height.

    The stand-in model keeps the runs fast; the accumulators do not depend on the model.
    """
    width, window = 64, 64
    predictor = Predictor(WindowOffsetModel(), None, None, 16, torch.device("cpu"))
    options = PredictOptions(window=window, overlap=16, progress=False)
    peaks = {}
    for height in (200, 1000, 3000):  # the first run only warms up (imports, caches)
        optical, sar = write_scene(tmp_path / f"in{height}", height, width)
        tracemalloc.start()
        try:
            result = predict_scene(optical, sar, predictor, tmp_path / f"p{height}", options)
            peaks[height] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # 13 reflectance bands + quality.tif's reflectance_change (the stand-in has no PGF)
        assert result.accumulator_shape == [13 + 1, window, width]
    full_scene_accumulator = 13 * 3000 * width * 4
    assert peaks[3000] < 1.25 * peaks[1000], peaks
    assert peaks[3000] < full_scene_accumulator / 4, (peaks, full_scene_accumulator)


# ---------------------------------------------------------------------------------------------
# Inputs


def test_nodata_stays_nodata(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    rng = np.random.default_rng(1)
    s2 = rng.integers(300, 4000, (13, 80, 90)).astype(np.uint16)
    s2[:, :20, :30] = 0  # all bands 0: nodata by convention
    s2[:, 50:, 60:] = 65535  # the file's nodata value
    optical, sar = write_scene(tmp_path / "in", 80, 90, s2=s2, s2_nodata=65535)
    out = tmp_path / "pred"
    options = PredictOptions(window=32, overlap=8, progress=False, write_prompt=True)
    result = predict_scene(optical, sar, checkpoints["full"], out, options)
    invalid = np.zeros((80, 90), dtype=bool)
    invalid[:20, :30] = True
    invalid[50:, 60:] = True
    assert result.nodata_pixels == invalid.sum()
    image, _ = read(out / "cloudfree.tif")
    labels, _ = read(out / "landcover.tif")
    prompt, _ = read(out / "prompt.tif")
    assert (image[:, invalid] == 0).all() and (image[:, ~invalid] >= 1).all()
    assert (labels[0][invalid] == 255).all() and (labels[0][~invalid] < 7).all()
    assert np.isnan(prompt[:, invalid]).all() and np.isfinite(prompt[:, ~invalid]).all()


def test_s1_on_another_grid_is_reprojected_with_a_warning(
    tmp_path: Path, checkpoints: dict[str, Path], caplog
) -> None:
    optical, _ = write_scene(tmp_path / "in", 64, 80)
    # 20 m pixels, origin shifted by half a 10 m pixel, covering the S2 footprint and more.
    s1_transform = Affine(20.0, 0.0, 499_995.0, 0.0, -20.0, 5_000_005.0)
    s1 = np.random.default_rng(2).uniform(-20, -8, (2, 34, 42)).astype(np.float32)
    sar = write_geotiff(tmp_path / "in" / "s1_20m.tif", s1, crs=CRS, transform=s1_transform)
    out = tmp_path / "pred"
    with caplog.at_level(logging.WARNING, logger="tdpcr.prediction.inputs"):
        result = predict_scene(
            optical,
            sar,
            checkpoints["full"],
            out,
            PredictOptions(window=32, overlap=8, progress=False),
        )
    assert result.s1_reprojected
    assert any("reprojecting it onto the S2 grid" in r.getMessage() for r in caplog.records)
    _, profile = read(out / "cloudfree.tif")
    assert profile["crs"].to_string() == CRS and profile["transform"] == TRANSFORM
    assert (profile["height"], profile["width"]) == (64, 80)


def test_s1_on_the_same_grid_is_read_directly(
    tmp_path: Path, checkpoints: dict[str, Path], caplog
) -> None:
    optical, sar = write_scene(tmp_path / "in", 40, 40)
    with caplog.at_level(logging.WARNING, logger="tdpcr.prediction.inputs"):
        result = predict_scene(
            optical, sar, checkpoints["cr"], tmp_path / "p", PredictOptions(progress=False)
        )
    assert not result.s1_reprojected
    assert caplog.records == []


def _bad_s2_bands(tmp: Path) -> tuple[Path, Path, str]:
    optical, sar = write_scene(tmp, 40, 40)
    data = np.ones((12, 40, 40), dtype=np.uint16)
    write_geotiff(optical, data, crs=CRS, transform=TRANSFORM)
    return optical, sar, "expected Sentinel-2 L1C (B1..B12 incl. B8A) with 13 bands, found 12"


def _bad_s1_bands(tmp: Path) -> tuple[Path, Path, str]:
    optical, sar = write_scene(tmp, 40, 40)
    write_geotiff(sar, np.zeros((3, 40, 40), np.float32), crs=CRS, transform=TRANSFORM)
    return optical, sar, "with 2 bands, found 3"


def _no_crs(tmp: Path) -> tuple[Path, Path, str]:
    optical, sar = write_scene(tmp, 40, 40)
    profile = {"driver": "GTiff", "height": 40, "width": 40, "count": 13, "dtype": "uint16"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(optical, "w", **profile) as dst:
            dst.write(np.ones((13, 40, 40), dtype=np.uint16))
    return optical, sar, "no CRS"


def _no_overlap(tmp: Path) -> tuple[Path, Path, str]:
    optical, sar = write_scene(tmp, 40, 40)
    far = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_000_000.0)
    write_geotiff(sar, np.zeros((2, 40, 40), np.float32), crs=CRS, transform=far)
    return optical, sar, "footprint does not overlap the S2 scene"


def _missing_s1(tmp: Path) -> tuple[Path, Path, str]:
    optical, sar = write_scene(tmp, 40, 40)
    sar.unlink()
    return optical, sar, "file not found"


@pytest.mark.parametrize(
    "make",
    [_bad_s2_bands, _bad_s1_bands, _no_crs, _no_overlap, _missing_s1],
    ids=lambda f: f.__name__,
)
def test_bad_inputs_fail_in_one_line_and_leave_no_output(
    tmp_path: Path, checkpoints: dict[str, Path], capsys, make
) -> None:
    optical, sar, expected = make(tmp_path / "in")
    bad = sar if make in (_bad_s1_bands, _no_overlap, _missing_s1) else optical
    out = tmp_path / "pred"
    code, _, err = run_cli(
        capsys,
        "--optical", str(optical), "--sar", str(sar),
        "--checkpoint", str(checkpoints["full"]), "--out", str(out),
    )  # fmt: skip
    assert_failed_cleanly(code, err, out, str(bad), expected)


@pytest.mark.parametrize(
    ("checkpoint", "extra", "expected"),
    [
        ("segformer", [], "only segments; predict needs a cloud-removal model"),
        ("missing", [], "checkpoint folder not found"),
        ("dsen2cr", ["--prompt"], "has no prompt generator"),
        ("full", ["--window", "100"], "--window 100: must be a positive multiple of 16"),
        ("full", ["--overlap", "200"], "--overlap 200: must be between 0 and window/2"),
    ],
)
def test_bad_checkpoints_and_options_fail_in_one_line(
    tmp_path: Path, checkpoints: dict[str, Path], capsys, checkpoint, extra, expected
) -> None:
    optical, sar = write_scene(tmp_path / "in", 40, 40)
    folder = checkpoints.get(checkpoint, tmp_path / "no-such-checkpoint")
    out = tmp_path / "pred"
    code, _, err = run_cli(
        capsys,
        "--optical", str(optical), "--sar", str(sar),
        "--checkpoint", str(folder), "--out", str(out), *extra,
    )  # fmt: skip
    assert_failed_cleanly(code, err, out, expected)
    if checkpoint in ("segformer", "missing"):
        assert str(folder) in err


def test_out_folder_with_other_files_is_refused(
    tmp_path: Path, checkpoints: dict[str, Path], capsys
) -> None:
    optical, sar = write_scene(tmp_path / "in", 40, 40)
    out = tmp_path / "pred"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(
        capsys,
        "--optical", str(optical), "--sar", str(sar),
        "--checkpoint", str(checkpoints["full"]), "--out", str(out),
    )  # fmt: skip
    assert code == 2 and "not written by tdpcr" in err
    assert (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
@pytest.mark.skipif(not (REALDATA / "sen12ms-cr-flat").exists(), reason="realdata absent")
def test_real_sen12mscr_triplet_keeps_its_georeferencing(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    root = REALDATA / "sen12ms-cr-flat"
    optical, sar = root / "s2_cloudy" / SEN12MSCR_PATCH, root / "s1" / SEN12MSCR_PATCH
    out = tmp_path / "pred"
    result = predict_scene(optical, sar, checkpoints["full"], out, PredictOptions(progress=False))
    assert not result.s1_reprojected  # SEN12MS-CR S1 and S2 share one grid
    with rasterio.open(optical) as src:
        crs, transform, shape = src.crs, src.transform, src.shape
    for name in ("cloudfree.tif", "landcover.tif"):
        with rasterio.open(out / name) as dst:
            assert dst.crs == crs
            assert dst.transform == transform
            assert dst.shape == shape
    image, _ = read(out / "cloudfree.tif")
    assert image.min() >= 1 and image.dtype == np.uint16


@pytest.mark.realdata
@pytest.mark.skipif(not (REALDATA / "sen12ms-cr-flat").exists(), reason="realdata absent")
@pytest.mark.parametrize("name", ["dsen2cr", *BASELINES])
def test_every_reconstruction_model_predicts_the_real_triplet(
    tmp_path: Path, checkpoints: dict[str, Path], name: str
) -> None:
    root = REALDATA / "sen12ms-cr-flat"
    optical, sar = root / "s2_cloudy" / SEN12MSCR_PATCH, root / "s1" / SEN12MSCR_PATCH
    out = tmp_path / name
    predict_scene(optical, sar, checkpoints[name], out, PredictOptions(progress=False))
    with rasterio.open(optical) as src:
        crs, transform, shape = src.crs, src.transform, src.shape
    # Land cover only from a model with a segmentation head; PGF bands only from TDP-CR.
    segments = name == "cloudseg"
    assert (out / "landcover.tif").exists() == segments
    for tif in ("cloudfree.tif", "quality.tif", *(["landcover.tif"] if segments else [])):
        with rasterio.open(out / tif) as dst:
            assert (dst.crs, dst.transform, dst.shape) == (crs, transform, shape), tif
            assert dst.profile.get("tiled") or dst.block_shapes[0][0] < shape[0]  # a COG
    with rasterio.open(out / "quality.tif") as quality:
        assert quality.descriptions == ("reflectance_change",)
    item = json.loads((out / "item.json").read_text())
    assert (item["properties"]["tdpcr:model"], item["properties"]["tdpcr:variant"]) == (name, name)
    assert ("landcover" in item["assets"]) == segments
    image, _ = read(out / "cloudfree.tif")
    assert image.dtype == np.uint16 and image.max() > 0
