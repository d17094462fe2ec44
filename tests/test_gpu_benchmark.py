"""The GPU benchmark module runs where only torch is installed (here: on the CPU, tiny size).

Every process it starts (itself and its one-process torchrun) runs with rasterio, zarr,
xarray, dask, MLflow, safetensors and jsonschema blocked through a ``sitecustomize`` that
poisons ``sys.modules``: an import of any of them, at module level or later, fails the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tdpcr.core.config import shipped_config
from tests.conftest import REPO

#: Modules a bare CUDA machine (torch + a few pure-Python wheels) does not have.
BLOCKED = ("rasterio", "zarr", "xarray", "dask", "mlflow", "safetensors", "jsonschema")


def blocked_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose Python processes cannot import any of :data:`BLOCKED`."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
    )
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}


def test_the_blocked_modules_really_fail_to_import(tmp_path: Path) -> None:
    """The poisoning itself works (else the test below would prove nothing)."""
    for name in BLOCKED:
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"], env=blocked_env(tmp_path),
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode != 0 and "halted; None in sys.modules" in done.stderr, name


def test_gpu_benchmark_runs_without_the_data_stack(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = blocked_env(tmp_path)
    command = [
        sys.executable, "-m", "tdpcr.benchmarks.gpu", "--out", str(out), "--size", "tiny",
        "--device", "cpu", "--batch", "2", "--crop", "32", "--infer-batch", "2", "--image",
        "64", "--warmup", "1", "--steps", "1", "--compile-backend", "eager",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    expected = {
        "train/phase1", "train/phase1/compiled", "train/phase2", "train/phase2/compiled",
        "infer/tdpcr_full", "infer/dsen2cr", "ddp",
    }  # fmt: skip
    assert set(result["cases"]) == expected
    for name, case in result["cases"].items():
        if name != "ddp":
            assert case["samples_per_s"] > 0 and case["peak_memory_mb"] > 0, name
    assert result["cases"]["ddp"]["ok"] and result["cases"]["ddp"]["world_size"] == 1
    assert result["cases"]["ddp"]["backend"] == "gloo"
    # Phase 2 (PEFT) trains a fraction of phase 1's parameters.
    phase1, phase2 = result["cases"]["train/phase1"], result["cases"]["train/phase2"]
    assert 0 < phase2["trainable_params"] < phase1["trainable_params"]


def test_gpu_benchmark_sizes_are_the_shipped_configs() -> None:
    from tdpcr.benchmarks.gpu import model_sizes

    for size in ("paper", "default", "tiny"):
        assert model_sizes(size) == shipped_config(size)["models"]
