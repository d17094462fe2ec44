"""Inference throughput of TDP-CR against DSen2-CR, side by side in one process.

Both models at paper size (config/paper.yaml) on random 256 x 256 samples, batch sizes 1 and 8,
on CUDA when available, else CPU. Per model and batch size we report samples/s (from the
median time of ``repeats`` timed forward passes after ``warmup`` untimed ones), peak memory,
and the TDP-CR / DSen2-CR throughput ratio.

* both devices: ``torch.inference_mode`` and channels_last memory format (on this project's
  2-core CPU it measured faster for both models: TDP-CR ~1.3x, DSen2-CR ~1.4x);
* CUDA: bf16 autocast; peak memory from ``torch.cuda.max_memory_allocated`` (reset per case);
* CPU: float32 (bf16 autocast is slow without native bf16 units). Peak memory is the
  process's resident-set high-water mark (VmHWM, reset per case through
  /proc/self/clear_refs on Linux; ru_maxrss, the whole process lifetime, elsewhere), so it
  includes the Python process and libraries, not only the model.

On Linux/glibc CPUs the benchmark first calls :func:`reuse_freed_cpu_memory` (opt out with
``reuse_cpu_memory=False``): by default glibc serves every block over 32 MiB with a fresh mmap
and unmaps it on free, so each batch-8 forward pass page-faults gigabytes of new memory (on this
project's 2-core VM: 2.7 M page faults and 7 s of kernel time per TDP-CR batch-8 pass, 2.9x
slower than with reuse). Both models run under the same setting.

A DSen2-CR forward pass on one 256 x 256 sample is 1.24 TMAC, ~15-25 s on 2 CPU cores, so on
CPU keep ``repeats`` and ``warmup`` small; ``time_budget_s`` stops timed repeats of one case
once exceeded (at least one timed pass always runs).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdpcr.benchmarks.complexity import paper_sizes
from tdpcr.core.hardware import cpu_model_name
from tdpcr.core.io import write_json_atomic
from tdpcr.core.runtime import (
    peak_rss_mb,
    release_free_cpu_memory,
    reset_peak_rss,
    reuse_freed_cpu_memory,
)
from tdpcr.models import create_model

#: Benchmarked entries: label -> (registry name, extra kwargs). "tdpcr" is the
#: cloud-removal-only model (same task as DSen2-CR); "tdpcr_full" adds the segmentation head.
BENCH_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "tdpcr": ("tdpcr", {"num_classes": None}),
    "tdpcr_full": ("tdpcr", {"num_classes": 7}),
    "dsen2cr": ("dsen2cr", {}),
}
#: The reference model of the throughput ratios.
REFERENCE = "dsen2cr"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


def _time_case(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    device: torch.device,
    use_autocast: bool,
    repeats: int,
    warmup: int,
    time_budget_s: float,
) -> tuple[list[float], float, str]:
    """Seconds of each timed forward pass, peak memory (MiB) and how it was measured."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        mem_kind = "cuda_max_memory_allocated"
    else:
        gc.collect()
        release_free_cpu_memory()
        mem_kind = reset_peak_rss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast)
    times: list[float] = []
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(*inputs)
        _sync(device)
        start = time.perf_counter()
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            model(*inputs)
            _sync(device)
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > time_budget_s:
                break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 1024.0**2
    else:
        peak = peak_rss_mb()
    return times, peak, mem_kind


def run_inference_benchmark(
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    batch_sizes: Sequence[int] = (1, 8),
    image_size: int = 256,
    device: str | torch.device | None = None,
    repeats: int = 3,
    warmup: int = 1,
    time_budget_s: float = 120.0,
    models: Sequence[str] = ("tdpcr", "tdpcr_full", "dsen2cr"),
    channels_last: bool = True,
    reuse_cpu_memory: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Time TDP-CR and DSen2-CR inference side by side; returns a JSON-ready dict.

    ``sizes`` maps registry name -> constructor kwargs (default :func:`paper_sizes`). ``models``
    picks entries of ``BENCH_MODELS``. ``device`` None = CUDA if available, else CPU.
    ``channels_last`` puts models and inputs in channels-last memory format.
    ``reuse_cpu_memory`` calls :func:`reuse_freed_cpu_memory` before a CPU run (process-wide).

    Returned keys: ``device``, ``device_name``, ``torch_version``, ``torch_threads``,
    ``precision``, ``channels_last``, ``cpu_malloc_reuse``, ``image_size``, ``repeats``,
    ``warmup``, ``results`` (one dict per model and batch size: ``model``, ``batch_size``,
    ``params_M``, ``seconds`` (each timed pass), ``median_s``,
    ``samples_per_s``, ``peak_memory_MiB``, ``memory_kind``) and ``ratios``
    (``"<model>/dsen2cr"`` -> {batch size as str: throughput ratio}).
    """
    sizes = paper_sizes() if sizes is None else sizes
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    use_autocast = dev.type == "cuda"
    unknown = [m for m in models if m not in BENCH_MODELS]
    if unknown:
        raise ValueError(f"unknown benchmark models {unknown}; known: {', '.join(BENCH_MODELS)}")
    malloc_reuse = dev.type == "cpu" and reuse_cpu_memory and reuse_freed_cpu_memory()

    results: list[dict[str, Any]] = []
    for label in models:
        name, extra = BENCH_MODELS[label]
        torch.manual_seed(seed)
        model = create_model(name, **{**dict(sizes.get(name, {})), **extra}).eval().to(dev)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        in_channels = (getattr(model, "in_optical", 13), getattr(model, "in_sar", 2))
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        for bs in batch_sizes:
            gen = torch.Generator().manual_seed(seed)
            inputs = tuple(
                torch.rand(bs, c, image_size, image_size, generator=gen)
                .to(dev)
                .contiguous(memory_format=fmt)
                for c in in_channels
            )
            times, peak, mem_kind = _time_case(
                model, inputs, dev, use_autocast, repeats, warmup, time_budget_s
            )
            median = statistics.median(times)
            results.append(
                {
                    "model": label,
                    "batch_size": bs,
                    "params_M": round(params_m, 4),
                    "seconds": [round(t, 4) for t in times],
                    "median_s": round(median, 4),
                    "samples_per_s": round(bs / median, 4),
                    "peak_memory_MiB": round(peak, 1),
                    "memory_kind": mem_kind,
                }
            )
            del inputs
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    by_key = {(r["model"], r["batch_size"]): r["samples_per_s"] for r in results}
    ratios: dict[str, dict[str, float]] = {}
    for label in models:
        if label == REFERENCE or REFERENCE not in models:
            continue
        ratios[f"{label}/{REFERENCE}"] = {
            str(bs): round(by_key[(label, bs)] / by_key[(REFERENCE, bs)], 2) for bs in batch_sizes
        }
    return {
        "device": dev.type,
        "device_name": _device_name(dev),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if use_autocast else "fp32",
        "channels_last": channels_last,
        "cpu_malloc_reuse": malloc_reuse,
        "image_size": image_size,
        "repeats": repeats,
        "warmup": warmup,
        "results": results,
        "ratios": ratios,
    }


def write_inference_benchmark(out_path: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
    """Run :func:`run_inference_benchmark` with ``kwargs`` and write its result as JSON."""
    result = run_inference_benchmark(**kwargs)
    write_json_atomic(out_path, result)
    return result
