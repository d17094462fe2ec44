"""Tiling benchmark: ``tdpcr tile`` against a plain rasterio + zarr baseline on one large scene.

Both sides run in their own fresh subprocess, one after the other on the same scene files, so
each peak RSS is that side's own (the scene generator's memory is not counted) and the
throughput ratio is measured under the same machine load.

- tdpcr: the real tiler (scene source, xarray region writes, dask threaded reads, split,
  metadata, consolidated store).
- baseline: a rasterio windowed read of every patch of every piece, in one thread, written
  with zarr directly into arrays with the same chunks, shards and compressor.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import zarr
from rasterio.windows import Window

from tdpcr.benchmarks.sides import run_side
from tdpcr.core.io import write_json_atomic
from tdpcr.core.specs import PIECES
from tdpcr.data.sources import make_source
from tdpcr.data.sources.scenes import grid_offsets
from tdpcr.data.tiling import COMPRESSOR, tile_source

#: Patch side and patches per shard of both sides.
PATCH_SIZE = 256
SHARD_PATCHES = 16


def tdpcr_side(spec: dict[str, Any]) -> dict[str, Any]:
    """The real tiler on ``spec["root"]`` into ``spec["out"]`` with ``spec["workers"]``."""
    source = make_source("scenes", Path(spec["root"]), patch_size=PATCH_SIZE)
    summary = tile_source(
        source, Path(spec["out"]), shard_patches=SHARD_PATCHES, workers=spec["workers"],
        progress=False,
    )  # fmt: skip
    return {
        "patches": summary.patches,
        "input_megabytes": summary.input_megabytes,
        "store_megabytes": summary.store_megabytes,
    }


def baseline_side(spec: dict[str, Any]) -> dict[str, Any]:
    """rasterio windowed reads of every patch of every piece, in one thread, written with
    zarr directly into arrays with the same chunks, shards and compressor."""
    root, out = Path(spec["root"]), Path(spec["out"])
    scene = next(p for p in sorted(root.iterdir()) if p.is_dir())
    pieces = [p for p in PIECES if (scene / f"{p}.tif").exists()]
    srcs = {p: rasterio.open(scene / f"{p}.tif") for p in pieces}
    height, width = srcs[pieces[0]].height, srcs[pieces[0]].width
    windows = [
        Window(c, r, PATCH_SIZE, PATCH_SIZE)
        for r in grid_offsets(height, PATCH_SIZE, PATCH_SIZE)
        for c in grid_offsets(width, PATCH_SIZE, PATCH_SIZE)
    ]
    group = zarr.open_group(out, mode="w", zarr_format=3)
    arrays = {}
    for piece, src in srcs.items():
        inner = PIECES[piece].shape(1, PATCH_SIZE)[1:]
        arrays[piece] = group.create_array(
            piece,
            shape=(len(windows), *inner),
            chunks=(1, *inner),
            shards=(SHARD_PATCHES, *inner),
            dtype=src.dtypes[0],
            compressors=(COMPRESSOR,),
        )
    nbytes = 0
    for start in range(0, len(windows), SHARD_PATCHES):
        batch = windows[start : start + SHARD_PATCHES]
        for piece, src in srcs.items():
            data = np.stack([src.read(window=win) for win in batch])
            if src.count == 1:
                data = data[:, 0]
            nbytes += data.nbytes
            arrays[piece][start : start + len(batch)] = data
    for src in srcs.values():
        src.close()
    return {"patches": len(windows), "input_megabytes": nbytes / 1e6}


def write_bench_scene(workdir: Path, size: int, seed: int) -> Path:
    """Write one synthetic scene of ``size`` x ``size`` pixels; return the scenes root."""
    from tdpcr.data.synthetic import write_synthetic_scenes

    root = workdir / "scenes"
    write_synthetic_scenes(root, 1, size, seed)
    return root


def run_tiling_benchmark(
    out: Path, *, size: int = 5490, seed: int = 0, workdir: Path, workers: int = 2
) -> dict:
    """Run both sides on one scene and write the JSON report to ``out`` (atomically)."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        root = write_bench_scene(workdir, size, seed)
        generate_seconds = time.perf_counter() - t0
        scene_megabytes = sum(f.stat().st_size for f in root.rglob("*.tif")) / 1e6
        baseline = run_side(baseline_side, {"root": str(root), "out": str(workdir / "b.zarr")})
        tdpcr = run_side(
            tdpcr_side, {"root": str(root), "out": str(workdir / "t.zarr"), "workers": workers}
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for side in (baseline, tdpcr):
        side["throughput_mb_per_s"] = side["input_megabytes"] / side["seconds"]
    ratio = tdpcr["throughput_mb_per_s"] / baseline["throughput_mb_per_s"]
    result = {
        "benchmark": "tiling",
        "scene_pixels": [size, size],
        "scene_files_megabytes": round(scene_megabytes, 1),
        "scene_generation_seconds": round(generate_seconds, 2),
        "patch_size": PATCH_SIZE,
        "tdpcr": tdpcr,
        "baseline": baseline,
        "throughput_ratio_tdpcr_over_baseline": round(ratio, 3),
        "goals": {
            "throughput_ratio_min": 0.5,
            "peak_rss_mb_max": 1500,
            "met": bool(ratio >= 0.5 and tdpcr["peak_rss_mb"] < 1500),
        },
        "notes": "input MB = uncompressed bytes of every piece read; baseline reads in one "
        f"thread, tdpcr with {workers} reader threads",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    write_json_atomic(out, result)
    return result
