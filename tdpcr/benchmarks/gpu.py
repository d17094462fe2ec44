"""GPU benchmark for a bare CUDA machine: ``python -m tdpcr.benchmarks.gpu --out gpu.json``.

Needs only torch, the ``tdpcr`` package's model and training code (:mod:`tdpcr.models`,
:mod:`tdpcr.training.steps`) and two small pure-Python wheels (``pytorch-msssim`` for the SSIM
loss, ``PyYAML`` to read ``config/paper.yaml``): nothing here imports rasterio, zarr, xarray or
MLflow, so it runs on a machine where only torch is installed (a test imports it with those
modules blocked). From a clone::

    pip install --no-deps pytorch-msssim pyyaml   # torch already there
    PYTHONPATH=. python -m tdpcr.benchmarks.gpu --out gpu.json

Cases, at the paper's model size (``config/paper.yaml``) unless ``--size`` says otherwise, each
reporting seconds per step (median of the timed steps after warm-up), samples/s and peak memory
(``torch.cuda.max_memory_allocated``, reset per case; VmHWM on a CPU):

* ``train/phase1`` and ``train/phase2``: optimizer steps of TDP-CR CR-only (all but the head
  train) and of phase 2 (PEFT: prompt generator, PGF and head train) on random 128 x 128 crops,
  batch 32, bf16 autocast, channels_last, AdamW; each eager and with ``torch.compile`` (the
  compiled case also reports its compile time = first step minus a timed step);
* ``infer/tdpcr_full`` and ``infer/dsen2cr``: forward passes on 256 x 256 samples, batch 32,
  ``torch.inference_mode``, bf16 autocast, channels_last;
* ``ddp``: one DistributedDataParallel training step in a one-process ``torchrun`` (NCCL on
  CUDA, gloo on a CPU), checking that the distributed setup works on the machine.

``--size tiny`` with small batches is what the CPU test runs to keep the module working.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tdpcr.core.io import write_json_atomic
from tdpcr.core.runtime import peak_rss_mb, reset_peak_rss, reuse_freed_cpu_memory
from tdpcr.core.specs import CLASS_NAMES
from tdpcr.models import create_model
from tdpcr.models.peft import set_trainable
from tdpcr.training.steps import compute_loss, forward
from tdpcr.training.variants import get_variant, model_kwargs

#: Loss weights of benchmarked steps (they scale the loss, not its cost).
LOSS_WEIGHTS = {"lambda_ssim": 0.1, "lambda_rec": 1.0, "lambda_seg": 1.0, "label_smoothing": 0.1}
#: Phases benchmarked: case name -> trainer variant.
PHASES: dict[str, str] = {"phase1": "tdpcr-cr", "phase2": "tdpcr-full"}
#: Where the shipped configs live (the repository's config/ folder).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def model_sizes(size: str) -> dict[str, Any]:
    """``models`` section of a shipped config (``paper``, ``default`` or ``tiny``).

    Read with PyYAML directly, not :func:`tdpcr.core.config.shipped_config`, which validates
    with jsonschema (not installed on a bare GPU machine); a test checks both agree.
    """
    import yaml

    path = CONFIG_DIR / ("config.yaml" if size == "default" else f"{size}.yaml")
    return yaml.safe_load(path.read_text())["models"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _time(fn: Callable[[], None], device: torch.device, warmup: int, steps: int) -> dict:
    """Seconds of the first call, then the median of ``steps`` timed calls after ``warmup``."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, steps)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"first_call_s": round(first, 3), "seconds": [round(t, 4) for t in times],
            "median_s": round(median, 4)}  # fmt: skip


def _training_batch(batch: int, crop: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "s2_cloudy": torch.rand(batch, 13, crop, crop, generator=gen),
        "s2_clear": torch.rand(batch, 13, crop, crop, generator=gen),
        "s1": torch.rand(batch, 2, crop, crop, generator=gen),
        "landcover": torch.randint(0, len(CLASS_NAMES), (batch, crop, crop), generator=gen),
    }
    return {
        k: v.to(device).contiguous(memory_format=torch.channels_last) if v.ndim == 4
        else v.to(device)
        for k, v in tensors.items()
    }  # fmt: skip


def training_model(phase: str, sizes: dict, device: torch.device) -> tuple[nn.Module, Any]:
    """The trainer's model of ``phase`` (trainable groups set), channels_last on ``device``."""
    variant = get_variant(PHASES[phase])
    torch.manual_seed(0)
    model = create_model("tdpcr", **model_kwargs(variant, sizes, len(CLASS_NAMES)))
    set_trainable(model, variant.strategy)
    return model.to(device=device, memory_format=torch.channels_last).train(), variant


def train_case(
    phase: str, sizes: dict, device: torch.device, *, batch: int, crop: int, compile_backend:
    str | None, warmup: int, steps: int,
) -> dict[str, Any]:  # fmt: skip
    """Optimizer steps of ``phase`` (bf16 autocast, channels_last, AdamW), eager or compiled."""
    model, variant = training_model(phase, sizes, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    run = torch.compile(model, backend=compile_backend) if compile_backend else model
    data = _training_batch(batch, crop, device)

    def step() -> None:
        with _autocast(device):
            out = forward(run, variant, data)
        loss, _ = compute_loss(variant, out, data, LOSS_WEIGHTS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    _reset_peak(device)
    timing = _time(step, device, warmup, steps)
    result = {
        "batch_size": batch,
        "crop": crop,
        "compile": compile_backend or False,
        "trainable_params": sum(p.numel() for p in params),
        **timing,
        "samples_per_s": round(batch / timing["median_s"], 2),
        "peak_memory_mb": round(_peak_mb(device), 1),
    }
    if compile_backend:
        result["compile_seconds"] = round(timing["first_call_s"] - timing["median_s"], 2)
    return result


def inference_case(
    name: str, sizes: dict, device: torch.device, *, batch: int, image: int, warmup: int,
    steps: int,
) -> dict[str, Any]:  # fmt: skip
    """Forward passes of TDP-CR Full or DSen2-CR (inference_mode, bf16 autocast, NHWC)."""
    torch.manual_seed(0)
    if name == "tdpcr_full":
        kwargs = {**sizes["tdpcr"], "num_classes": len(CLASS_NAMES)}
        model = create_model("tdpcr", **kwargs)
    else:
        model = create_model("dsen2cr", **sizes["dsen2cr"])
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(batch, c, image, image, generator=gen)
        .to(device)
        .contiguous(memory_format=torch.channels_last)
        for c in (13, 2)
    ]

    def call() -> None:
        with torch.inference_mode(), _autocast(device):
            model(*inputs)

    _reset_peak(device)
    timing = _time(call, device, warmup, steps)
    return {
        "batch_size": batch,
        "image_size": image,
        **timing,
        "samples_per_s": round(batch / timing["median_s"], 2),
        "peak_memory_mb": round(_peak_mb(device), 1),
    }


# ------------------------------------------------------------------------------------ DDP
def ddp_worker(args: argparse.Namespace) -> None:
    """One DDP step under torchrun; rank 0 writes the result to ``args.out``."""
    import torch.distributed as dist

    cuda = args.device == "cuda"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    model, variant = training_model("phase1", model_sizes(args.size), device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = _training_batch(args.batch, args.crop, device)

    def step() -> None:
        with _autocast(device):
            out = forward(ddp, variant, data)
        loss, _ = compute_loss(variant, out, data, LOSS_WEIGHTS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timing = _time(step, device, 1, 1)
    dist.barrier()
    if rank == 0:
        result = {"world_size": world, "backend": dist.get_backend(), "ok": True, **timing}
        Path(args.out).write_text(json.dumps(result))
    dist.destroy_process_group()


def ddp_case(size: str, device: torch.device, *, batch: int, crop: int) -> dict[str, Any]:
    """Run :func:`ddp_worker` in a one-process torchrun; its result or the error's tail."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "1", "-m", "tdpcr.benchmarks.gpu", "--ddp-worker", "--size", size, "--device",
            device.type, "--batch", str(batch), "--crop", str(crop), "--out", str(out),
        ]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = round(time.perf_counter() - t0, 2)
        if done.returncode != 0 or not out.is_file():
            return {"ok": False, "returncode": done.returncode, "stderr": done.stderr[-2000:]}
        return {**json.loads(out.read_text()), "wall_s_including_startup": seconds}


# ------------------------------------------------------------------------------------ main
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def run_gpu_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every case of the module docstring; returns the JSON-ready result."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    else:
        reuse_freed_cpu_memory()
    sizes = model_sizes(args.size)
    cases: dict[str, Any] = {}
    compile_modes = [None] if args.no_compile else [None, args.compile_backend]
    for phase in PHASES:
        for backend in compile_modes:
            name = f"train/{phase}" + ("/compiled" if backend else "")
            cases[name] = train_case(
                phase, sizes, device, batch=args.batch, crop=args.crop, compile_backend=backend,
                warmup=args.warmup, steps=args.steps,
            )  # fmt: skip
            print(f"{name}: {cases[name]['samples_per_s']} samples/s", flush=True)
    for name in ("tdpcr_full", "dsen2cr"):
        cases[f"infer/{name}"] = inference_case(
            name, sizes, device, batch=args.infer_batch, image=args.image, warmup=args.warmup,
            steps=args.steps,
        )  # fmt: skip
        print(f"infer/{name}: {cases[f'infer/{name}']['samples_per_s']} samples/s", flush=True)
    if not args.no_ddp:
        cases["ddp"] = ddp_case(args.size, device, batch=args.batch, crop=args.crop)
        print(f"ddp: ok={cases['ddp']['ok']}", flush=True)
    tdpcr_rate = cases["infer/tdpcr_full"]["samples_per_s"]
    return {
        "benchmark": "gpu",
        "device": device.type,
        "device_name": _device_name(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "size": args.size,
        "models": sizes,
        "precision": "bf16 autocast",
        "channels_last": True,
        "cases": cases,
        "inference_ratio_tdpcr_over_dsen2cr": round(
            tdpcr_rate / cases["infer/dsen2cr"]["samples_per_s"], 2
        ),
        "notes": "random tensors (no data loading); seconds per step = median of the timed "
        "steps after warm-up; peak memory = torch.cuda.max_memory_allocated per case (VmHWM "
        "on a CPU); compile_seconds = first compiled step minus a timed one",
    }


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's argument parser (exposed for the command-line reference)."""
    parser = argparse.ArgumentParser(
        prog="python -m tdpcr.benchmarks.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument(
        "--size",
        default="paper",
        choices=("paper", "default", "tiny"),
        help="model sizes of config/paper.yaml, config/config.yaml (default) or config/tiny.yaml",
    )
    parser.add_argument(
        "--device", choices=("cuda", "cpu"), help="where to run; default: cuda when available"
    )
    parser.add_argument("--batch", type=int, default=32, help="training batch")
    parser.add_argument("--crop", type=int, default=128, help="training crop side")
    parser.add_argument("--infer-batch", type=int, default=32, help="inference batch")
    parser.add_argument("--image", type=int, default=256, help="inference sample side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls (first included)")
    parser.add_argument("--steps", type=int, default=10, help="timed calls per case")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled cases")
    parser.add_argument("--no-ddp", action="store_true", help="skip the torchrun DDP step")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.device is None:  # resolved here, so the parser's default does not depend on the host
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args)
        return
    result = run_gpu_benchmark(args)
    print(f"wrote {write_json_atomic(args.out, result)}")


if __name__ == "__main__":
    main()
