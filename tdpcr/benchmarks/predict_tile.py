"""Whole-tile benchmark: how long ``tdpcr predict`` takes for one Sentinel-2 tile (10980 px).

Method (also written into the JSON):

* **Scenes.** Strips of the tile's full width (``tile_width``, 10980) holding a few rows of
  each side's own windows (``strip_rows``, default 2 and 4: 448 and 832 rows for 256-px
  windows with overlap 64, 960 and 1856 rows for 512 / 64), mosaicked from one synthetic
  scene (:mod:`tdpcr.benchmarks.scenes`). A full-width strip has the tile's memory profile
  exactly (the engine's memory grows with the scene width, not its height), so its peak RSS
  *is* the tile's; its time is a fraction of the tile's.
* **Extrapolation.** Per side, wall time is fitted as ``a + b * windows`` (least squares over
  the strips; exact for two) and evaluated at the tile's window count, which is what
  "measured linear scaling" means here: ``a`` holds start-up and warm-up (model load, a
  ``torch.compile`` compilation), ``b`` the cost of one more window including its reads,
  blending and writes. The COG conversion also scales with the area, so it is in ``b``.
* **Sides.** Each strip is predicted by ``today`` (:data:`TODAY`: the settings ``tdpcr
  predict`` had before its speed-up work, commit 3d99527: fp32 eager, batch 4, no malloc
  reuse, no I/O threads, torch's default threads), ``previous`` (:data:`PREVIOUS`: the default
  before local statistics, 256-px windows) and ``product`` (the config's ``predict``
  section), each in a fresh subprocess, alternating, so that a change in the machine's other
  load hits every side; extra candidate settings can be added as more sides. Each side has
  its own window, so its own tile window count; the ratio of the extrapolated tile times is
  the speed-up, measured in the same run. ``backend: auto`` is resolved for the *tile's*
  window count, and every run starts with an empty inductor cache: a compiled side's ``a``
  holds the compilation a user's first scene pays.
* **Guard.** With a trained checkpoint and a test scene, every side also predicts that scene
  and its PSNR and land cover are compared with the reference path
  (:mod:`tdpcr.benchmarks.guard`): speed is measured on random weights, accuracy needs
  trained ones.
* **Phases.** ``tdpcr predict`` reports seconds spent reading (GDAL), preparing windows
  (normalisation), in inference, blending (accumulation, quantisation) and writing (GDAL), plus
  the COG conversion; shares are of the side's wall time. With the pipeline on, reading and
  writing run in their own threads beside inference, so shares can add up to more than 1.
* **GFLOP/s.** 2 x fvcore MACs of one window x windows / inference seconds, next to the
  CPU's estimated peak (:func:`tdpcr.core.hardware.cpu_peak`; method in the JSON).

The model is a randomly initialised TDP-CR Full at the paper's size (``config/paper.yaml``):
speed does not depend on the weights.
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
import torch

from tdpcr.benchmarks.complexity import count_params_macs
from tdpcr.benchmarks.guard import guard_figures
from tdpcr.benchmarks.predict import random_checkpoint
from tdpcr.benchmarks.scenes import benchmark_scene
from tdpcr.benchmarks.sides import run_side
from tdpcr.core.hardware import cpu_peak
from tdpcr.core.io import write_json_atomic
from tdpcr.core.runtime import available_cpus, select_device
from tdpcr.core.specs import CLASS_NAMES, S1_BANDS, S2_BANDS
from tdpcr.models import create_model
from tdpcr.prediction.options import PredictOptions, resolve_backend
from tdpcr.prediction.windows import WindowPlan

#: Side of a Sentinel-2 L1C / L2A tile at 10 m (100 km).
TILE_SIDE = 10980
#: The settings ``tdpcr predict`` ran with before its speed-up work (commits 3d99527 to
#: d507a6d): the reference of every speed-up ratio.
TODAY: dict[str, Any] = {
    "window": 256,
    "overlap": 64,
    "batch_size": 4,
    "precision": "fp32",
    "backend": "eager",
    "channels_last": True,
    "pipeline": False,
    "malloc_reuse": False,
    "threads": None,
}
#: The default before test-time local statistics and larger windows (commit e773196):
#: 256-px windows with global statistics, fp32 eager, I/O pipeline, malloc reuse.
PREVIOUS: dict[str, Any] = {
    "window": 256,
    "overlap": 64,
    "batch_size": 8,
    "precision": "auto",
    "backend": "eager",
    "channels_last": True,
    "pipeline": True,
    "malloc_reuse": True,
    "local_stats": "off",
}
#: ``predict.*`` config keys that are prediction options.
OPTION_KEYS: tuple[str, ...] = (
    "window",
    "overlap",
    "batch_size",
    "precision",
    "channels_last",
    "backend",
    "pipeline",
    "malloc_reuse",
    "local_stats",
)


def product_options(predict_config: dict[str, Any]) -> dict[str, Any]:
    """The prediction options a config's ``predict`` section sets."""
    return {key: predict_config[key] for key in OPTION_KEYS}


def predict_side(spec: dict[str, Any]) -> dict[str, Any]:
    """``predict_scene`` with ``spec["options"]`` (threads None = torch's default, as before).

    ``spec["inductor_cache"]``, if given, is the inductor cache folder of this run.
    """
    from tdpcr.prediction.engine import predict_scene

    if "inductor_cache" in spec:
        # An empty inductor cache per run: a compiled side pays the compilation a user's
        # first scene pays, in every strip alike (a cache warmed by the previous strip would
        # bend the fit's slope).
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = spec["inductor_cache"]
    options = dict(spec["options"])
    legacy_threads = options.pop("threads", "auto") is None
    if legacy_threads:
        # Before the speed-up work predict left torch's default thread count alone.
        options["threads"] = torch.get_num_threads()
    result = predict_scene(
        Path(spec["optical"]), Path(spec["sar"]), Path(spec["checkpoint"]), Path(spec["out"]),
        PredictOptions(**options, progress=False),
    )  # fmt: skip
    return {
        "predict_seconds": result.seconds,
        "windows": result.windows,
        "phase_seconds": result.phase_seconds,
        "execution": result.execution,
        "runtime": result.runtime,
        "device": result.device,
    }


def calibrate_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Write an int8 side's calibration cache beside ``spec["checkpoint"]``; nothing timed.

    Calibration is once per checkpoint (cached beside it), not once per scene: done before
    the timed strips, every strip's run reuses it, as a user's every scene after the first.
    Without it the first strip alone paid it and the fit's slope came out negative.
    """
    from tdpcr.prediction.engine import load_predictor

    given = {k: v for k, v in spec["options"].items() if k != "threads"}
    options = PredictOptions(**{**given, "backend": "eager", "progress": False})
    predictor = load_predictor(Path(spec["checkpoint"]), force_cpu=True)
    predictor.prepare(options.execution)
    batch, window = options.batch_size, options.window
    # Only the shape matters: the graph is exported on it, the statistics come from the store.
    optical = np.zeros((batch, len(S2_BANDS), window, window), np.float32)
    sar = np.zeros((batch, len(S1_BANDS), window, window), np.float32)
    t0 = time.perf_counter()
    predictor(optical, sar)  # eager int8 builds (calibrates) on its first batch
    return {"seconds": round(time.perf_counter() - t0, 1), "windows": batch}


def for_the_tile(options: dict[str, Any], windows: int) -> dict[str, Any]:
    """``options`` with ``backend: auto`` replaced by what it picks for a tile of ``windows``.

    The strips have fewer windows than the tile, and ``auto`` decides by the scene's count:
    the strips must run the way the whole tile would.
    """
    if options.get("backend", PredictOptions.backend) != "auto":
        return dict(options)
    # The device predict_scene will pick (load_predictor goes through select_device too).
    device = select_device(options.get("force_cpu", PredictOptions.force_cpu))
    return {**options, "backend": resolve_backend("auto", device.type, windows)}


def tile_windows(side: int, window: int, overlap: int, divisor: int = 16) -> int:
    """Windows of a ``side`` x ``side`` scene."""
    return WindowPlan.make(side, side, window, overlap, divisor).count


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``y = a + b x`` (``a = 0`` through the origin for one x)."""
    if len(set(xs)) < 2:
        return 0.0, float(np.mean(ys)) / float(np.mean(xs))
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def _summarise(
    runs: list[dict[str, Any]], tile_pixels: int, n_tile: int, macs_per_window: int
) -> dict[str, Any]:
    windows = [run["windows"] for run in runs]
    a, b = fit_line(windows, [run["seconds"] for run in runs])
    largest = max(runs, key=lambda run: run["windows"])
    extrapolation = "linear fit a + b * windows"
    if b <= 0:
        # Noise larger than the difference between the strips (a loaded machine): scale the
        # largest strip in proportion instead, which counts its start-up once per strip.
        a, b = 0.0, largest["seconds"] / largest["windows"]
        extrapolation = "proportional to the largest strip (fit slope was not positive)"
    tile_seconds = a + b * n_tile
    inference = largest["phase_seconds"].get("inference", float("nan"))
    flops = 2.0 * macs_per_window * largest["windows"]
    return {
        "tile_seconds": round(tile_seconds, 1),
        "tile_minutes": round(tile_seconds / 60.0, 2),
        "tile_pixels_per_second": round(tile_pixels / tile_seconds, 1),
        "extrapolation": extrapolation,
        "fit_intercept_seconds": round(a, 2),
        "fit_seconds_per_window": round(b, 4),
        "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs), 1),
        # CPU time hardly depends on what else the machine runs: on a shared machine these
        # are the figures to compare (wall time follows the neighbours' load).
        "cpu_seconds_per_window": round(largest["cpu_seconds"] / largest["windows"], 4),
        "tile_cpu_seconds": round(largest["cpu_seconds"] / largest["windows"] * n_tile, 1),
        "gflop_per_cpu_second": round(flops / largest["cpu_seconds"] / 1e9, 1),
        "achieved_gflops_inference": round(flops / inference / 1e9, 1),
        "achieved_gflops_wall": round(flops / largest["seconds"] / 1e9, 1),
        "phase_share_of_wall": {
            k: round(v / largest["seconds"], 3) for k, v in largest["phase_seconds"].items()
        },
        "execution": largest["execution"],
        "runtime": largest["runtime"],
        "runs": [
            {
                "windows": run["windows"],
                "seconds": round(run["seconds"], 2),
                "cpu_seconds": round(run["cpu_seconds"], 2),
                "peak_rss_mb": round(run["peak_rss_mb"], 1),
                "phase_seconds": run["phase_seconds"],
                "load_average_1min": [round(v, 2) for v in run["load_average_1min"]],
                "cpu_steal_share": run.get("cpu_steal_share"),
            }
            for run in runs
        ],
    }


def strip_height(window: int, overlap: int, rows: int) -> int:
    """Height of a strip holding exactly ``rows`` rows of ``window`` windows (no padding)."""
    return window + (rows - 1) * (window - overlap)


def side_strips(options: dict[str, Any], strip_rows: tuple[int, ...]) -> list[int]:
    """The strip heights a side predicts: ``strip_rows`` rows of its own windows each.

    Per side, because a side with larger windows needs taller strips for whole windows: a
    strip shorter than its window would pay padded windows the tile does not have.
    """
    window = int(options.get("window", 256))
    overlap = int(options.get("overlap", 64))
    return [strip_height(window, overlap, rows) for rows in strip_rows]


def run_predict_tile_benchmark(
    out: Path,
    *,
    workdir: Path,
    model_kwargs: dict[str, Any],
    sides: dict[str, dict[str, Any]],
    tile_width: int = TILE_SIDE,
    strip_rows: tuple[int, ...] = (2, 4),
    seed: int = 0,
    repeats: int = 1,
    guard: tuple[Path, Path] | None = None,
    guard_extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Predict full-width strips with every side; extrapolate to the tile; write JSON.

    Args:
        out: JSON file to write.
        workdir: scratch folder (removed afterwards).
        model_kwargs: ``models.tdpcr`` sizes of the randomly initialised TDP-CR Full.
        sides: side name -> prediction options (keys of :class:`PredictOptions`); the first
            side is the reference of the speed-up ratios (``today``). Each side predicts with
            its own window and overlap, so each has its own tile window count.
        tile_width: scene width (and the tile side extrapolated to).
        strip_rows: rows of windows per strip (each side's own windows; at least one; two
            or more fit a line).
        repeats: runs per side and strip; the fastest counts.
        guard: ``(checkpoint, scene)``: each side's accuracy against the reference path
            (:mod:`tdpcr.benchmarks.guard`) on a trained model, in the JSON's ``guard``.
        guard_extra: more paths (name -> options) whose accuracy only is measured.
    """
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    names = list(sides)
    geometry = {
        name: (int(options.get("window", 256)), int(options.get("overlap", 64)))
        for name, options in sides.items()
    }
    n_tiles = {name: tile_windows(tile_width, *geometry[name]) for name in names}
    sides = {name: for_the_tile(options, n_tiles[name]) for name, options in sides.items()}
    heights = {name: side_strips(sides[name], strip_rows) for name in names}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    # A side with the same settings as an earlier one (the product when the config keeps the
    # previous default) is not run twice.
    same_as = {
        name: next((other for other in names[:i] if sides[other] == sides[name]), None)
        for i, name in enumerate(names)
    }
    try:
        t0 = time.perf_counter()
        checkpoint = random_checkpoint(workdir / "model", model_kwargs, seed)
        scenes = {
            h: benchmark_scene(workdir, h, tile_width, seed)
            for h in sorted({h for hs in heights.values() for h in hs})
        }
        generate_seconds = time.perf_counter() - t0
        calibration = {
            name: run_side(calibrate_side, {"checkpoint": str(checkpoint), "options": options})
            for name, options in sides.items()
            if options.get("precision") == "int8" and same_as[name] is None
        }
        # Strip by strip (the k-th strip of every side), sides alternating, so that a change
        # in the machine's other load hits every side alike.
        for k in range(len(strip_rows)):
            for name in names:
                twin = same_as.get(name)
                if twin is not None:  # the same settings as an earlier side: its runs
                    runs[name].append(runs[twin][k])
                    continue
                scene = scenes[heights[name][k]]
                best = None
                for _ in range(max(1, repeats)):
                    spec = {
                        "optical": str(scene / "s2_cloudy.tif"),
                        "sar": str(scene / "s1.tif"),
                        "checkpoint": str(checkpoint),
                        "out": str(workdir / f"out-{name}"),
                        "options": sides[name],
                        "inductor_cache": str(workdir / f"inductor-{len(runs[name])}-{name}"),
                    }
                    run = run_side(predict_side, spec)
                    shutil.rmtree(workdir / f"out-{name}", ignore_errors=True)
                    if best is None or run["seconds"] < best["seconds"]:
                        best = run
                runs[name].append(best)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    full = {**model_kwargs, "pgf_mode": "both", "num_classes": len(CLASS_NAMES)}
    model = create_model("tdpcr", **full)
    macs = {
        window: count_params_macs(
            model, (torch.rand(1, 13, window, window), torch.rand(1, 2, window, window))
        )[1]
        for window in sorted({window for window, _ in geometry.values()})
    }
    threads = available_cpus()
    peak = cpu_peak(cores=threads)
    tile_pixels = tile_width * tile_width
    summary = {
        name: _summarise(runs[name], tile_pixels, n_tiles[name], macs[geometry[name][0]])
        for name in names
    }
    reference = summary[names[0]]
    for name in names:
        side = summary[name]
        side["tile_speedup_over_" + names[0]] = round(
            reference["tile_seconds"] / side["tile_seconds"], 3
        )
        side["cpu_time_speedup_over_" + names[0]] = round(
            reference["tile_cpu_seconds"] / side["tile_cpu_seconds"], 3
        )
        side["options"] = sides[name]
        if name in calibration:  # once per checkpoint, before the timed strips
            side["calibration_seconds"] = calibration[name]["seconds"]
        side["window"], side["overlap"] = geometry[name]
        side["tile_windows"] = n_tiles[name]
        side["strip_pixels"] = [[h, tile_width] for h in heights[name]]
        side["macs_per_window"] = macs[geometry[name][0]]
        side["fraction_of_fp32_peak"] = (
            round(side["achieved_gflops_inference"] / peak.fp32_gflops, 3)
            if peak.fp32_gflops
            else None
        )
    product = summary[names[-1]] if "product" not in summary else summary["product"]
    result = {
        "benchmark": "predict_tile",
        "tile_pixels": [tile_width, tile_width],
        "strip_rows_of_windows": list(strip_rows),
        "model": f"TDP-CR Full, random init, models.tdpcr = {json.dumps(model_kwargs)}",
        "scene_generation_seconds": round(generate_seconds, 1),
        "sides": summary,
        "speedup_product_over_today": product["tile_speedup_over_" + names[0]],
        "cpu_time_speedup_product_over_today": product["cpu_time_speedup_over_" + names[0]],
        "speedup_product_over_previous": (
            round(summary["previous"]["tile_seconds"] / product["tile_seconds"], 3)
            if "previous" in summary
            else None
        ),
        "goals": {
            "speedup_min": 3.0,
            "speedup_met": bool(product["tile_speedup_over_" + names[0]] >= 3.0),
            "tile_minutes_stretch": 11.0,
            "stretch_met": bool(product["tile_minutes"] <= 11.0),
        },
        "cpu_peak": peak.as_dict(),
        "method": (
            f"full-width strips ({tile_width} px) holding {list(strip_rows)} rows of each "
            "side's own windows, mosaicked from one synthetic scene; per side wall time "
            "(fresh subprocess: imports excluded, model load, reads, inference, blending, "
            "writes and COG copies included) fitted as a + b * windows and evaluated at the "
            "side's tile window count (backend auto resolved for that count; a compiled side "
            "starts each run with an empty inductor cache, so its warm-up is in a); peak RSS "
            "= VmHWM of the full-width strips (memory grows with width only, so it is the "
            "tile's); sides alternate per strip; GFLOP/s = 2 x fvcore MACs per window x "
            "windows / inference seconds of the largest strip; guard = each side on a trained "
            "model and a test scene against fp32 eager 256 / 64 with global statistics"
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_available": threads,
            "cpu": peak.cpu,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
    }
    if guard is not None:
        checkpoint, scene = guard
        paths = {**sides, **(guard_extra or {})}
        result["guard"] = guard_figures(checkpoint, scene, paths, workdir / "guard")
    write_json_atomic(out, result)
    return result
