"""Bad input through the command line: one line naming the file or key, exit 2, no store left."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tdpcr.cli import main
from tests.fakes import (
    LUOJIA_S1_SHIFT_M,
    luojiaset_path,
    make_luojiaset,
    make_scenes,
    transform_at,
    truncate_file,
    write_tif,
)

REPO = Path(__file__).resolve().parents[1]


def run_tile(capsys, source: str, root: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = main(
        [
            "tile",
            "--source",
            source,
            "--root",
            str(root),
            "--out",
            str(out),
            "--quiet",
            "--patch-size",
            "32",
            *extra,
        ]
    )
    return code, capsys.readouterr().err


def assert_failed_cleanly(code: int, err: str, out: Path, *expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert lines[0].startswith("tdpcr")
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert leftovers == []


def test_truncated_geotiff(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2)
    truncate_file(root / "scene1" / "s2_clear.tif", 0.3)
    out = tmp_path / "out" / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out)
    assert_failed_cleanly(code, err, out, "scene1/s2_clear.tif")


def test_wrong_band_count(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2)
    write_tif(root / "scene0" / "s2_cloudy.tif", np.zeros((4, 80, 100), np.uint16))
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out)
    assert_failed_cleanly(code, err, out, "scene0/s2_cloudy.tif", "13 bands, found 4")


def test_s1_and_s2_of_different_sizes(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2)
    write_tif(root / "scene1" / "s1.tif", np.zeros((2, 60, 100), np.float32))
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out)
    assert_failed_cleanly(code, err, out, "scene1/s1.tif", "100x60", "100x80")


def test_s1_grid_shifted_beyond_a_pixel(tmp_path: Path, capsys) -> None:
    root = make_luojiaset(tmp_path / "luojia", bins={"0-20%": [1, 2]})
    bad = luojiaset_path(root, "0-20%", "s1", 2)
    write_tif(bad, np.zeros((2, 32, 32), np.float32), transform=transform_at(1, shift_m=(25, 0)))
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "luojiaset", root, out)
    assert_failed_cleanly(code, err, out, bad.name, "pixels", "< 1 pixel")
    assert LUOJIA_S1_SHIFT_M[0] < 10  # the tolerated real shift is sub-pixel


def test_all_nan_patch(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=2)
    s1 = -np.ones((2, 80, 100), np.float32)
    s1[:, 32:64, 32:64] = np.nan  # exactly patch r1_c1
    write_tif(
        root / "scene1" / "s1.tif",
        s1,
        transform=rasterio_transform(root / "scene1" / "s2_cloudy.tif"),
    )
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "scenes", root, out)
    assert_failed_cleanly(code, err, out, "scene1/s1.tif", "NaN")


def rasterio_transform(path: Path):
    import rasterio

    with rasterio.open(path) as src:
        return src.transform


@pytest.mark.parametrize("source", ["scenes", "synthetic", "luojiaset", "sen12mscr"])
def test_folder_without_matching_files(tmp_path: Path, capsys, source: str) -> None:
    root = tmp_path / "empty"
    (root / "unrelated").mkdir(parents=True)
    (root / "unrelated" / "notes.txt").write_text("nothing to see")
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, source, root, out)
    assert_failed_cleanly(code, err, out, str(root))


def test_missing_source_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "sen12mscr", tmp_path / "nope", out)
    assert_failed_cleanly(code, err, out, "nope", "not found")


def test_luojiaset_with_a_piece_missing_for_some_patches(tmp_path: Path, capsys) -> None:
    root = make_luojiaset(tmp_path / "luojia", bins={"0-20%": [1, 2, 3]}, omit=[("0-20%", 2, "s1")])
    out = tmp_path / "t.zarr"
    code, err = run_tile(capsys, "luojiaset", root, out)
    assert_failed_cleanly(code, err, out, "p2", "s1")
    # Asked to, it drops that patch and goes on.
    code, err = run_tile(capsys, "luojiaset", root, out, "--skip-incomplete")
    assert code == 0 and out.exists()


def test_unknown_source(tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.zarr"
    with pytest.raises(SystemExit) as exit_info:
        main(["tile", "--source", "sentinel3", "--root", str(tmp_path), "--out", str(out)])
    assert_failed_cleanly(
        exit_info.value.code, capsys.readouterr().err, out, "sentinel3", "luojiaset"
    )


def test_output_not_a_zarr_path(tmp_path: Path, capsys) -> None:
    root = make_scenes(tmp_path / "src", n_scenes=1)
    out = tmp_path / "t.nc"
    code, err = run_tile(capsys, "scenes", root, out)
    assert_failed_cleanly(code, err, out, "--out", ".zarr")


def test_config_key_typo_in_cli_and_workflow(tmp_path: Path, capsys) -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["tiling"]["shard_patchez"] = config["tiling"].pop("shard_patches")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tiling.shard_patchez" in err

    config["tiling"]["shard_patches"] = "sixteen"
    del config["tiling"]["shard_patchez"]
    bad.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(bad)]) == 2
    assert "tiling.shard_patches" in capsys.readouterr().err

    if shutil.which("snakemake") is None:
        pytest.skip("snakemake not installed")
    config["tiling"]["shard_patchez"] = 16
    config["tiling"]["shard_patches"] = 16
    bad.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "tiling.shard_patchez" in errors[0]


def test_default_config_is_valid(capsys) -> None:
    assert main(["check-config", str(REPO / "config" / "config.yaml")]) == 0
