"""The whole-tile and scaling benchmarks at tiny size (tiny config): they run and report."""

from __future__ import annotations

import json
from pathlib import Path

from tdpcr.cli import main
from tests.conftest import REPO

TINY = str(REPO / "config" / "tiny.yaml")


def test_predict_tile_benchmark_reports_the_tile(tmp_path: Path) -> None:
    from tdpcr.benchmarks.tile_report import render_tile_table

    out = tmp_path / "predict_tile.json"
    main(["bench", "predict-tile", "--config", TINY, "--model-size", "", "--out", str(out),
          "--workdir", str(tmp_path / "work"),
          "--side", "large:window=128,overlap=16,local_stats=64,batch_size=1"])  # fmt: skip
    result = json.loads(out.read_text())
    assert list(result["sides"]) == ["today", "previous", "large", "product"]
    for name, side in result["sides"].items():
        # The tile is extrapolated from strips smaller than it.
        assert side["tile_windows"] > max(run["windows"] for run in side["runs"]), name
        assert side["tile_seconds"] > 0 and side["peak_rss_mb"] > 0
        assert {"read", "inference", "blend", "write", "cog"} <= set(side["phase_share_of_wall"])
        assert side["achieved_gflops_inference"] > 0
        # Each side predicts strips of whole rows of its own windows.
        window, overlap = side["window"], side["overlap"]
        heights = [h for h, _ in side["strip_pixels"]]
        assert heights == [window, 2 * window - overlap], name
    # Each side counts its own windows over the 512 px tile: 3 x 3 of 256/64, 5 x 5 of 128/16.
    assert result["sides"]["today"]["tile_windows"] == 9
    assert result["sides"]["large"]["tile_windows"] == 25
    today = result["sides"]["today"]
    assert today["runtime"] == {"torch_threads": today["runtime"]["torch_threads"],
                                "pipeline": False, "malloc_reuse": False}  # fmt: skip
    assert result["sides"]["product"]["runtime"]["pipeline"] is True
    assert result["sides"]["large"]["execution"]["local_stats"] == 64
    assert result["cpu_peak"]["fp32_flop_per_cycle"] > 0 and "method" in result
    assert not (tmp_path / "work").exists()
    table = render_tile_table(result).splitlines()
    assert len(table) == 2 + 4 and "local statistics 64" in table[4]


def test_scaling_benchmark_writes_curve_and_figure(tmp_path: Path) -> None:
    out, figure = tmp_path / "scaling.json", tmp_path / "scaling.png"
    main(["bench", "scaling", "--config", TINY, "--out", str(out), "--figure", str(figure),
          "--workdir", str(tmp_path / "work")])  # fmt: skip
    result = json.loads(out.read_text())
    assert result["sides"] == [128, 256]
    for name in ("predict", "tile"):
        assert len(result[name]["seconds"]) == 2 and min(result[name]["peak_rss_mb"]) > 0
        assert "r2" in result[name]["fit"]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
