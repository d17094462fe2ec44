"""Hostile inputs to ``tdpcr predict``: STAC Items of the wrong shape, asset hrefs that hang
(a server that never answers, a named pipe), SIGTERM while an input is opened, and --bbox
values that are out of range, non-finite or reach past the scene.

Commands that could hang run in a subprocess under a wall-time bound; the test servers listen
on 127.0.0.1 only and stop by themselves.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from tdpcr.cli import build_parser, main
from tdpcr.core.errors import TdpcrError
from tdpcr.data.rasters import Grid
from tdpcr.prediction.inputs import bbox_window, open_inputs
from tests.fake_products import ULX, ULY, make_stac_s1_rtc, make_stac_s2
from tests.fakes import UTM_CRS, silent_server
from tests.test_products import tiny_checkpoint
from tests.test_reliability import hidden_leftovers, one_line_refusal

SIZE = 60  # 10 m pixels of the fake tile (a multiple of 6)
REPO = Path(__file__).resolve().parents[1]
TERMINATED = "tdpcr: terminated by SIGTERM; temporary outputs removed"
#: A ``tdpcr`` whose GDAL stall timeout is 2 s instead of 30 s (the test's wall-time bound).
SHORT_TIMEOUTS = (
    "import sys; import tdpcr.prediction.access as access; "
    "access.REMOTE_GDAL_OPTIONS['GDAL_HTTP_LOW_SPEED_TIME'] = '2'; "
    "access.REMOTE_GDAL_OPTIONS['GDAL_HTTP_CONNECT_TIMEOUT'] = '2'; "
    "from tdpcr.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An L1C checkpoint, an S2 STAC Item and an S1 RTC Item (local COG assets)."""
    root = tmp_path_factory.mktemp("products")
    return {
        "checkpoint": tiny_checkpoint(root / "ckpt"),
        "s2": make_stac_s2(root / "s2", level="L1C", size10=SIZE),
        "s1": make_stac_s1_rtc(root / "s1", size10=SIZE),
    }


def predict_args(optical: Path, sar: Path, checkpoint: Path, out: Path, *extra: str) -> list:
    return [
        "predict", "--quiet", "--optical", optical, "--sar", sar, "--checkpoint", checkpoint,
        "--out", out, "--window", "32", "--overlap", "8", *extra,
    ]  # fmt: skip


def run_main(capsys, args: list) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def command(args: list, code: str | None = None) -> list[str]:
    """The command line of ``tdpcr ARGS`` in a fresh interpreter (``code``: instead of -m)."""
    head = ["-c", code] if code else ["-m", "tdpcr.cli"]
    return [sys.executable, *head, *map(str, args)]


def run_bounded(args: list, timeout: float, code: str | None = None) -> tuple[int, str, float]:
    """Exit status, stderr and seconds of ``tdpcr ARGS``, killed (a failure) after ``timeout``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            command(args, code), capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"tdpcr {' '.join(map(str, args))} still running after {timeout} s")
    return done.returncode, done.stderr, time.monotonic() - t0


def edited_item(src: Path, dest: Path, edit) -> Path:
    """A copy of the STAC Item ``src`` at ``dest``, its JSON changed by ``edit`` (in place or
    by returning a new value); asset hrefs are absolute, so the copy reads the same files."""
    data = json.loads(src.read_text())
    changed = edit(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(data if changed is None else changed))
    return dest


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert hidden_leftovers(out.parent) == []


# ---------------------------------------------------------------------------------------------
# Servers and files that never answer


def with_href(key: str, href: str):
    def edit(data: dict) -> None:
        data["assets"][key]["href"] = href

    return edit


def test_remote_asset_on_a_server_that_never_answers_fails_in_bounded_time(
    products: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "pred"
    with silent_server() as (url, _):
        href = f"{url}/B01.tif"
        item = edited_item(products["s2"], tmp_path / "remote.json", with_href("coastal", href))
        args = predict_args(item, products["s1"], products["checkpoint"], out)
        code, err, seconds = run_bounded(args, timeout=45, code=SHORT_TIMEOUTS)
    one_line_refusal(code, err, str(item), href, "cannot open asset 'coastal'")
    assert seconds < 45
    assert_nothing_left(out)


def test_remote_reads_get_finite_gdal_timeouts_unless_the_user_set_them(monkeypatch) -> None:
    from rasterio.env import getenv

    from tdpcr.prediction.access import input_gdal_env

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "7")
    with input_gdal_env():
        options = getenv()
    assert 0 < float(options["GDAL_HTTP_CONNECT_TIMEOUT"]) <= 60
    assert 0 < float(options["GDAL_HTTP_LOW_SPEED_TIME"]) <= 60
    assert float(options["GDAL_HTTP_LOW_SPEED_LIMIT"]) > 0
    assert "GDAL_HTTP_MAX_RETRY" not in options  # the user's own setting stays in force


def test_sigterm_while_a_remote_asset_is_opened_exits_143_in_one_line(
    products: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "pred"
    with silent_server() as (url, accepted):
        item = edited_item(
            products["s2"], tmp_path / "remote.json", with_href("coastal", f"{url}/B01.tif")
        )
        args = predict_args(item, products["s1"], products["checkpoint"], out)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            command(args, SHORT_TIMEOUTS), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 40
            while not accepted and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
            assert accepted, "predict never connected to the server"
            time.sleep(1.0)  # inside GDAL's wait for an answer
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 143, err
    assert [line for line in err.splitlines() if line.strip()] == [TERMINATED], err
    assert_nothing_left(out)


@pytest.mark.parametrize("role", ["optical", "sar", "asset"])
def test_a_named_pipe_as_input_is_refused_without_blocking(
    products: dict[str, Path], tmp_path: Path, role: str
) -> None:
    fifo = tmp_path / {"optical": "s2.tif", "sar": "s1.json", "asset": "B01.tif"}[role]
    os.mkfifo(fifo)
    optical, sar = products["s2"], products["s1"]
    if role == "optical":
        optical = fifo
    elif role == "sar":
        sar = fifo
    else:
        optical = edited_item(optical, tmp_path / "item.json", with_href("coastal", str(fifo)))
    out = tmp_path / "pred"
    code, err, _ = run_bounded(predict_args(optical, sar, products["checkpoint"], out), 30)
    expected = [str(fifo), "named pipe"] + ([str(optical)] if role == "asset" else [])
    one_line_refusal(code, err, *expected)
    assert_nothing_left(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fifo.name] + (["item.json"] if role == "asset" else [])
    )


# ---------------------------------------------------------------------------------------------
# STAC JSON of the wrong shape


def _collection(data: dict) -> dict:
    return {"type": "Collection", "id": "sentinel-2-l1c", "stac_version": "1.0.0", "links": []}


STAC_SHAPES = {
    "json-list": (lambda data: [data], "a JSON list"),
    "feature-collection": (
        lambda data: {"type": "FeatureCollection", "features": [data]},
        "'FeatureCollection'",
    ),
    "collection": (_collection, "'Collection'"),
    "assets-null": (lambda data: {**data, "assets": None}, "'assets' is null"),
    "assets-list": (lambda data: {**data, "assets": [1, 2]}, "'assets' is a list"),
    "asset-without-href": (
        lambda data: {**data, "assets": {**data["assets"], "coastal": {"title": "B01"}}},
        "asset 'coastal' is an object without href",
    ),
    "href-a-number": (
        lambda data: {**data, "assets": {**data["assets"], "coastal": {"href": 5}}},
        "asset 'coastal' is an object without href",
    ),
    "asset-a-string": (
        lambda data: {**data, "assets": {**data["assets"], "coastal": "B01.tif"}},
        "asset 'coastal' is a string",
    ),
}


def predict_refuses_edited_item(
    products: dict[str, Path], tmp_path: Path, capsys, edit, *expected: str
) -> None:
    """Predict on the S2 item after ``edit``: one line naming the item and ``expected``."""
    item = edited_item(products["s2"], tmp_path / "item.json", edit)
    out = tmp_path / "pred"
    code, err = run_main(capsys, predict_args(item, products["s1"], products["checkpoint"], out))
    one_line_refusal(code, err, str(item), *expected)
    assert_nothing_left(out)


@pytest.mark.parametrize("shape", sorted(STAC_SHAPES))
def test_stac_json_that_is_not_an_item_is_one_line(
    products: dict[str, Path], tmp_path: Path, capsys, shape: str
) -> None:
    edit, expected = STAC_SHAPES[shape]
    predict_refuses_edited_item(products, tmp_path, capsys, edit, expected)


def _raster(value) -> callable:
    def edit(data: dict) -> None:
        data["assets"]["coastal"]["raster:bands"] = value

    return edit


RASTER_BANDS = {
    "offset-a-string": (_raster([{"offset": "abc", "scale": 1e-4}]), "offset is 'abc'"),
    "scale-an-object": (_raster([{"offset": -0.1, "scale": {}}]), "scale is {}"),
    "not-a-list": (_raster({"offset": -0.1}), "raster:bands is an object"),
    "entries-not-objects": (_raster(["offset", "scale"]), "entries that are not objects"),
}


@pytest.mark.parametrize("case", sorted(RASTER_BANDS))
def test_raster_bands_of_the_wrong_types_are_one_line(
    products: dict[str, Path], tmp_path: Path, capsys, case: str
) -> None:
    edit, expected = RASTER_BANDS[case]
    predict_refuses_edited_item(products, tmp_path, capsys, edit, "asset 'coastal'", expected)


def test_s1_raster_bands_that_are_not_a_list_are_one_line(
    products: dict[str, Path], tmp_path: Path, capsys
) -> None:
    def edit(data: dict) -> None:
        data["assets"]["vv"]["raster:bands"] = "dB"

    sar = edited_item(products["s1"], tmp_path / "s1.json", edit)
    out = tmp_path / "pred"
    code, err = run_main(capsys, predict_args(products["s2"], sar, products["checkpoint"], out))
    one_line_refusal(code, err, str(sar), "asset 'vv'", "raster:bands is a string")
    assert_nothing_left(out)


# ---------------------------------------------------------------------------------------------
# --bbox


GRID = Grid(UTM_CRS, Affine(10.0, 0.0, ULX, 0.0, -10.0, ULY), SIZE, SIZE)


def test_a_whole_world_box_keeps_every_row_and_column_of_the_scene() -> None:
    world = (-180, -90, 180, 90)
    assert bbox_window(world, "EPSG:4326", GRID, Path("s2.json")) == Window(0, 0, SIZE, SIZE)


def test_a_box_past_one_edge_is_clipped_there_only() -> None:
    from rasterio.warp import transform_bounds

    # From inside the scene (column 10, row 20) to far past its east and south edges.
    west, _, _, north = transform_bounds(
        UTM_CRS, "EPSG:4326", ULX + 100, ULY - 300, ULX + 200, ULY - 200
    )
    window = bbox_window((west, -80.0, 179.0, north), "EPSG:4326", GRID, Path("s2.json"))
    assert window.col_off in (9, 10) and window.row_off in (19, 20)
    assert window.col_off + window.width == SIZE and window.row_off + window.height == SIZE


@pytest.mark.parametrize(
    ("bbox", "crs"),
    [
        (("10", "40", "20", "95"), "EPSG:4326"),
        (("200", "40", "210", "50"), "EPSG:4326"),
        (("-1e308", "40", "20", "50"), "EPSG:4326"),
        (("10", "-95", "20", "50"), "EPSG:4258"),
    ],
    ids=["latitude-95", "longitude-200", "longitude-1e308", "etrs89-latitude-95"],
)
def test_a_bbox_outside_the_degrees_of_a_geographic_crs_is_refused(
    products: dict[str, Path], tmp_path: Path, capsys, bbox, crs: str
) -> None:
    out = tmp_path / "pred"
    args = predict_args(products["s2"], products["s1"], products["checkpoint"], out)
    code, err = run_main(capsys, [*args, "--bbox", *bbox, "--bbox-crs", crs])
    one_line_refusal(code, err, "--bbox", "longitude -180..180, latitude -90..90")
    assert_nothing_left(out)


def test_negative_numbers_in_any_notation_are_read_as_bbox_values() -> None:
    args = build_parser().parse_args(
        ["predict", "--optical", "a", "--sar", "b", "--checkpoint", "c", "--out", "d",
         "--bbox", "-1e5", "-2.5E1", "-.5", "1e308"]
    )  # fmt: skip
    assert args.bbox == [-1e5, -25.0, -0.5, 1e308]


@pytest.mark.parametrize("value", ["-inf", "inf", "nan", "-nan"])
def test_a_non_finite_bbox_value_is_refused(tmp_path: Path, capsys, value: str) -> None:
    out = tmp_path / "pred"
    args = predict_args(tmp_path / "s2.tif", tmp_path / "s1.tif", tmp_path / "ckpt", out)
    with pytest.raises(SystemExit) as exit_:
        main([*map(str, args), "--bbox", value, "0", "1", "2"])
    one_line_refusal(exit_.value.code, capsys.readouterr().err, "--bbox", value, "finite")
    assert_nothing_left(out)


def test_the_library_refuses_a_non_finite_bbox() -> None:
    with pytest.raises(TdpcrError, match="--bbox .*finite"):
        bbox_window((float("-inf"), 0.0, 1.0, 1.0), UTM_CRS, GRID, Path("s2.json"))


# ---------------------------------------------------------------------------------------------
# Messages


def test_the_reprojection_warning_gives_pixel_sizes_in_the_crs_units(
    products: dict[str, Path], tmp_path: Path, caplog
) -> None:
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(
        UTM_CRS, "EPSG:4326", ULX, ULY - SIZE * 10, ULX + SIZE * 10, ULY
    )
    step = 0.0002  # degrees, about 20 m
    width, height = int((east - west) / step) + 2, int((north - south) / step) + 2
    sar = tmp_path / "s1_lonlat.tif"
    with rasterio.open(
        sar, "w", driver="GTiff", width=width, height=height, count=2, dtype="float32",
        crs="EPSG:4326", transform=Affine(step, 0, west - step, 0, -step, north + step),
    ) as dst:  # fmt: skip
        dst.write(np.full((2, height, width), -12.0, np.float32))
    with caplog.at_level(logging.WARNING, logger="tdpcr"), open_inputs(products["s2"], sar):
        pass
    [message] = [r.getMessage() for r in caplog.records if "reprojecting" in r.getMessage()]
    assert "0.0002 degree pixels" in message and "10 m)" in message, message


LIBRARY_NOTES = (
    "import logging, sys; import tdpcr.prediction.inputs as inputs; "
    "from tdpcr.cli import main; real = inputs.open_optical\n"
    "def noisy(*args):\n"
    "    logging.getLogger('rasterio._env').info('GDAL note')\n"
    "    return real(*args)\n"
    "inputs.open_optical = noisy; sys.exit(main(sys.argv[1:]))"
)


def test_library_info_logging_stays_off_stderr(products: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pred"
    args = predict_args(products["s2"], products["s1"], products["checkpoint"], out)
    code, err, _ = run_bounded([*args, "--bbox", "10", "40", "20", "95"], 60, LIBRARY_NOTES)
    one_line_refusal(code, err, "--bbox")
    assert_nothing_left(out)
