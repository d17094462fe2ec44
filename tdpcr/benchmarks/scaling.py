"""Scaling curve: time and peak RSS of ``tdpcr tile`` and ``tdpcr predict`` against scene side.

For each side in ``sides`` (default 1024, 2048, 4096, 8192 px) a square scene is mosaicked
from one synthetic scene (:mod:`tdpcr.benchmarks.scenes`), tiled into a store and predicted,
each command in its own fresh subprocess (:func:`tdpcr.benchmarks.sides.run_side`), so each
peak RSS (VmHWM) is that run's own. Prediction uses the config's ``predict`` options and a
randomly initialised TDP-CR Full at the config's ``models.tdpcr`` size (``--model-size paper``
for the paper's).

What should hold, and what the JSON reports to check it:

* time grows linearly with the area: a least-squares line ``seconds = a + b * pixels`` with its
  R^2, and the seconds per megapixel of each side;
* memory stays flat, or grows with the width only: peak RSS per side, and its growth from the
  smallest to the largest side next to the growth of the area.

The figure (PNG) plots both: wall and CPU seconds against megapixels (CPU time hardly
depends on other load on a shared machine), peak RSS against the side.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.benchmarks.predict import random_checkpoint
from tdpcr.benchmarks.predict_tile import predict_side, product_options
from tdpcr.benchmarks.scenes import benchmark_scene
from tdpcr.benchmarks.sides import run_side
from tdpcr.core.io import write_json_atomic
from tdpcr.core.runtime import available_cpus


def tile_side(spec: dict[str, Any]) -> dict[str, Any]:
    """``tdpcr tile`` of a scenes root (one scene) into ``spec["out"]``."""
    from tdpcr.data.sources import make_source
    from tdpcr.data.tiling import tile_source

    source = make_source("scenes", Path(spec["root"]), patch_size=spec["patch_size"])
    summary = tile_source(source, Path(spec["out"]), workers=spec["workers"], progress=False)
    return {"patches": summary.patches, "store_megabytes": summary.store_megabytes}


def linear_fit(pixels: list[float], seconds: list[float]) -> dict[str, float]:
    """``seconds = a + b * pixels`` by least squares, with R^2 (1 = perfectly linear)."""
    x, y = np.asarray(pixels, float), np.asarray(seconds, float)
    if len(set(pixels)) < 2:
        return {"intercept_s": 0.0, "seconds_per_megapixel": float(y.mean() / x.mean() * 1e6),
                "r2": 1.0}  # fmt: skip
    b, a = np.polyfit(x, y, 1)
    residual = float(((y - (a + b * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum()) or 1.0
    return {"intercept_s": round(float(a), 2),
            "seconds_per_megapixel": round(float(b) * 1e6, 3),
            "r2": round(1.0 - residual / total, 4)}  # fmt: skip


def _summary(side_runs: list[dict[str, Any]], sides: list[int]) -> dict[str, Any]:
    pixels = [s * s for s in sides]
    seconds = [run["seconds"] for run in side_runs]
    rss = [run["peak_rss_mb"] for run in side_runs]
    return {
        "seconds": [round(v, 2) for v in seconds],
        "seconds_per_megapixel": [
            round(t / p * 1e6, 3) for t, p in zip(seconds, pixels, strict=True)
        ],
        "peak_rss_mb": [round(v, 1) for v in rss],
        "fit": linear_fit(pixels, seconds),
        "rss_growth_smallest_to_largest": round(rss[-1] / rss[0], 3),
    }


def scaling_figure(result: dict[str, Any], path: Path) -> Path:
    """Seconds vs megapixels and peak RSS vs side, for tile and predict (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = result["sides"]
    mpx = [s * s / 1e6 for s in sides]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=150)
    for name, style in (("predict", "o-"), ("tile", "s-")):
        data = result[name]
        fit = data["fit"]
        label = f"tdpcr {name} ({fit['seconds_per_megapixel']:.2f} s/Mpx, R² {fit['r2']:.3f})"
        (line,) = ax_t.plot(mpx, data["seconds"], style, label=label)
        cpu = [run["cpu_seconds"] for run in result["runs"][name]]
        color = line.get_color()
        ax_t.plot(mpx, cpu, style[0] + "--", color=color, alpha=0.6, label=f"{name}, CPU s")
        ax_m.plot(sides, [v / 1024 for v in data["peak_rss_mb"]], style, color=color,
                  label=f"tdpcr {name}")  # fmt: skip
    ax_t.set_xlabel("scene area (megapixels)")
    ax_t.set_ylabel("seconds (wall; CPU dashed)")
    ax_t.set_title("time grows with the area")
    ax_m.set_xlabel("scene side (pixels)")
    ax_m.set_ylabel("peak RSS (GiB)")
    ax_m.set_ylim(bottom=0)
    ax_m.set_title("memory stays bounded")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(result["figure_title"], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_scaling_benchmark(
    out: Path,
    figure: Path,
    *,
    workdir: Path,
    sides: list[int],
    model_kwargs: dict[str, Any],
    predict_config: dict[str, Any],
    seed: int = 0,
    workers: int = 2,
    patch_size: int = 256,
) -> dict[str, Any]:
    """Tile (``patch_size`` patches) and predict one scene per side; write JSON and figure."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    sides = sorted(sides)
    options = product_options(predict_config)
    runs: dict[str, list[dict[str, Any]]] = {"tile": [], "predict": []}
    try:
        checkpoint = random_checkpoint(workdir / "model", model_kwargs, seed)
        for side in sides:
            t0 = time.perf_counter()
            scene = benchmark_scene(workdir, side, side, seed)
            generate = time.perf_counter() - t0
            runs["tile"].append(
                run_side(tile_side, {"root": str(scene.parent), "out": str(workdir / "t.zarr"),
                                     "workers": workers, "patch_size": patch_size})
            )  # fmt: skip
            shutil.rmtree(workdir / "t.zarr", ignore_errors=True)
            runs["predict"].append(
                run_side(predict_side, {
                    "optical": str(scene / "s2_cloudy.tif"), "sar": str(scene / "s1.tif"),
                    "checkpoint": str(checkpoint), "out": str(workdir / "pred"),
                    "options": options,
                })
            )  # fmt: skip
            runs["predict"][-1]["scene_generation_seconds"] = round(generate, 1)
            shutil.rmtree(workdir / "pred", ignore_errors=True)
            shutil.rmtree(scene.parent, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "benchmark": "scaling",
        "sides": sides,
        "predict": _summary(runs["predict"], sides),
        "tile": _summary(runs["tile"], sides),
        "area_growth_smallest_to_largest": round((sides[-1] / sides[0]) ** 2, 1),
        "width_growth_smallest_to_largest": round(sides[-1] / sides[0], 1),
        "predict_options": options,
        "model": f"TDP-CR Full, random init, models.tdpcr = {json.dumps(model_kwargs)}",
        "tile_workers": workers,
        "tile_patch_size": patch_size,
        "runs": runs,
        "method": "one square scene per side mosaicked from a 512 x 512 synthetic scene; tdpcr "
        "tile (the config's tiling.patch_size) and tdpcr predict each in a fresh subprocess "
        "(wall time of the call, VmHWM); lines fitted by least squares over the sides",
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_available": available_cpus(),
            "python": platform.python_version(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
    }
    result["figure_title"] = (
        f"tdpcr tile and tdpcr predict ({result['model'][:60]}...), {available_cpus()} CPUs"
    )
    write_json_atomic(out, result)
    scaling_figure(result, Path(figure))
    return result
