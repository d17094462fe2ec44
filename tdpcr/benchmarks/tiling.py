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

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tdpcr.io import write_json_atomic

# Peak RSS is read from VmHWM (/proc/self/status): unlike getrusage's ru_maxrss it is not
# inherited from the parent process across fork + exec (the parent held the generated scene).
_PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_TDPCR_SIDE = _PEAK_RSS + """
import json, sys, time
from pathlib import Path
from tdpcr.data.sources import make_source
from tdpcr.data.tiling import tile_source
root, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
summary = tile_source(make_source("scenes", root, patch_size=256), out, workers=workers,
                      progress=False)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "patches": summary.patches,
                  "input_megabytes": summary.input_megabytes,
                  "store_megabytes": summary.store_megabytes,
                  "peak_rss_mb": peak_rss_mb()}))
"""

_BASELINE_SIDE = _PEAK_RSS + """
import json, sys, time
from pathlib import Path
import numpy as np, rasterio, zarr
from rasterio.windows import Window
from tdpcr.constants import PIECES
from tdpcr.data.tiling import COMPRESSOR
root, out = Path(sys.argv[1]), Path(sys.argv[2])
scene = next(p for p in sorted(root.iterdir()) if p.is_dir())
pieces = [p for p in PIECES if (scene / f"{p}.tif").exists()]
t0 = time.perf_counter()
srcs = {p: rasterio.open(scene / f"{p}.tif") for p in pieces}
h, w = srcs[pieces[0]].height, srcs[pieces[0]].width
size, shard = 256, 16
def offsets(n):
    o = list(range(0, n - size + 1, size))
    return o + [n - size] if o[-1] + size < n else o
windows = [Window(c, r, size, size) for r in offsets(h) for c in offsets(w)]
group = zarr.open_group(out, mode="w", zarr_format=3)
arrays = {}
for p, src in srcs.items():
    inner = (src.count, size, size) if src.count > 1 else (size, size)
    arrays[p] = group.create_array(p, shape=(len(windows), *inner), chunks=(1, *inner),
                                   shards=(shard, *inner), dtype=src.dtypes[0],
                                   compressors=(COMPRESSOR,))
nbytes = 0
for start in range(0, len(windows), shard):
    batch = windows[start:start + shard]
    for p, src in srcs.items():
        data = np.stack([src.read(window=win) for win in batch])
        if src.count == 1:
            data = data[:, 0]
        nbytes += data.nbytes
        arrays[p][start:start + len(batch)] = data
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "patches": len(windows), "input_megabytes": nbytes / 1e6,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def _run_side(code: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark side failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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
        baseline = _run_side(_BASELINE_SIDE, str(root), str(workdir / "baseline.zarr"))
        tdpcr = _run_side(_TDPCR_SIDE, str(root), str(workdir / "tdpcr.zarr"), str(workers))
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
        "patch_size": 256,
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
