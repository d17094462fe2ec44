"""Training benchmark: step throughput and memory (phase 1, phase 2) and the loader alone.

Every case runs in its own fresh subprocess, one after the other, so each peak memory is that
case's own (VmHWM on CPU, ``torch.cuda.max_memory_allocated`` on GPU) and all ratios are
measured under the same machine load. Steps are the trainer's own (:func:`~tdpcr.training.steps.
forward` and :func:`~tdpcr.training.steps.compute_loss`), on random tensors of the configured
crop and batch size, so data loading is excluded from the step figure and measured separately
on the real store. The paper size is read from the shipped ``config/paper.yaml``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from tdpcr.benchmarks.gpu import LOSS_WEIGHTS
from tdpcr.benchmarks.sides import run_side
from tdpcr.core.config import shipped_config
from tdpcr.core.io import write_json_atomic
from tdpcr.core.runtime import autocast, peak_rss_mb, setup_runtime
from tdpcr.data.dataset import ResumableSampler, make_loader
from tdpcr.data.store import open_store
from tdpcr.models import create_model
from tdpcr.models.peft import set_trainable
from tdpcr.training.steps import compute_loss, forward
from tdpcr.training.variants import get_variant, model_kwargs


def step_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Optimizer steps of one variant on random tensors: samples/s and peak memory."""
    runtime = setup_runtime(spec["threads"])
    variant = get_variant(spec["variant"])
    torch.manual_seed(0)
    model = create_model("tdpcr", **model_kwargs(variant, {"tdpcr": spec["model"]}, 7))
    set_trainable(model, variant.strategy)
    model.to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    b, c = spec["batch_size"], spec["crop"]
    batch = {
        "s2_cloudy": torch.rand(b, 13, c, c),
        "s2_clear": torch.rand(b, 13, c, c),
        "s1": torch.rand(b, 2, c, c),
        "landcover": torch.randint(0, 7, (b, c, c)),
    }
    batch = runtime.to_device(batch)

    def step() -> None:
        with autocast(runtime.cuda):
            out = forward(model, variant, batch)
        loss, _ = compute_loss(variant, out, batch, LOSS_WEIGHTS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if runtime.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    if runtime.cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if runtime.cuda else peak_rss_mb()
    return {
        "samples_per_s": spec["steps"] * b / seconds,
        "seconds_per_step": seconds / spec["steps"],
        "peak_memory_mb": peak,
        "memory_kind": "cuda_max_allocated" if runtime.cuda else "process_vmhwm",
        "device": str(runtime.device),
        "trainable_params": sum(p.numel() for p in params),
    }


def loader_side(spec: dict[str, Any]) -> dict[str, Any]:
    """The training loader on the real store: samples/s in the steady state.

    With a cache, the first epoch fills it: time the epochs after it (the steady state
    training sees). Without, time from the second batch (the first pays worker start-up).
    """
    runtime = setup_runtime(spec["threads"])
    ds = open_store(spec["store"])
    n = int((ds["split"].values == "train").sum())
    b = spec["batch_size"]
    loader = make_loader(
        spec["store"],
        "train",
        batch_size=b,
        train=True,
        crop=spec["crop"],
        workers=runtime.loader_workers,
        sampler=ResumableSampler(n, b, 0),
        cache_mb=spec["cache_mb"],
        pieces=["s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask"],
    )
    warmup_batches = len(loader) if spec["cache_mb"] > 0 else 1
    seen, t0, batches = 0, None, 0
    while seen < spec["samples"]:
        for batch in loader:
            batches += 1
            if batches == warmup_batches:
                t0 = time.perf_counter()
                continue
            if t0 is None:
                continue
            seen += batch["s2_cloudy"].shape[0]
            if seen >= spec["samples"]:
                break
    seconds = time.perf_counter() - t0
    return {
        "samples_per_s": seen / seconds,
        "samples": seen,
        "workers": runtime.loader_workers,
        "cache_mb": spec["cache_mb"],
        "timed_from_batch": warmup_batches + 1,
    }


def run_training_benchmark(
    config: dict,
    store: Path,
    out: Path,
    *,
    threads: int = 2,
    steps: int = 3,
    paper_steps: int = 2,
) -> dict[str, Any]:
    """Benchmark the default and paper sizes and the loader; write JSON to ``out``."""
    train = config["train"]
    sizes = {
        "default": (config["models"]["tdpcr"], int(train["crop"]), int(train["batch_size"]), steps),
        # The paper trains on 128 x 128 crops; batch 8 as the default config.
        "paper": (
            shipped_config("paper")["models"]["tdpcr"],
            128,
            int(train["batch_size"]),
            paper_steps,
        ),
    }
    cases: dict[str, Any] = {}
    for size, (model, crop, batch, n_steps) in sizes.items():
        model = {k: v for k, v in model.items() if k != "pgf_mode"}
        for phase, variant in (("phase1", "tdpcr-cr"), ("phase2_peft", "tdpcr-full")):
            spec = {
                "variant": variant,
                "model": model,
                "crop": crop,
                "batch_size": batch,
                "steps": n_steps,
                "threads": threads,
            }
            cases[f"{size}/{phase}"] = {
                "crop": crop,
                "batch_size": batch,
                **run_side(step_side, spec),
            }
    loaders = {}
    # "store": every sample read and decoded from Zarr (what a dataset larger than the cache
    # gets); "configured": the loader as training runs it, with the config's cache_mb.
    for name, cache_mb in (("store", 0.0), ("configured", float(train["cache_mb"]))):
        loaders[name] = run_side(
            loader_side,
            {
                "store": str(store),
                "crop": int(train["crop"]),
                "batch_size": int(train["batch_size"]),
                "threads": threads,
                "samples": 40 * int(train["batch_size"]),
                "cache_mb": cache_mb,
            },
        )
    step = cases["default/phase1"]["samples_per_s"]
    ratio = loaders["configured"]["samples_per_s"] / step
    result = {
        "benchmark": "training",
        "cases": cases,
        "loader": loaders["configured"],
        "loader_store_reads": loaders["store"],
        "loader_over_default_phase1_step": round(ratio, 2),
        "store_reads_over_default_phase1_step": round(loaders["store"]["samples_per_s"] / step, 2),
        "goal": {"loader_over_step_min": 3.0, "met": bool(ratio >= 3.0)},
        "notes": "samples/s of optimizer steps on random tensors (data loading excluded); "
        "the loader reads the real tile store with the training crop, flips and workers; "
        "'loader' is the configured one (train.cache_mb) timed after its first epoch, "
        "'loader_store_reads' reads every sample from the store",
        "machine": {
            "cpus": os.cpu_count(),
            "threads": threads,
            "python": platform.python_version(),
        },
    }
    write_json_atomic(out, result)
    return result
