"""One training code path for every variant: device, data, losses, checkpoints, tracking.

Output folder of a variant (``results/models/<variant>/``)::

    model.safetensors, meta.json   the best checkpoint by validation metric; written only
                                   when training completes (Snakemake's outputs)
    best/                          best checkpoint so far
    last/                          resume point (model, optimizer, scheduler, RNG, step)

A SIGTERM (what SLURM sends before preemption or on ``scancel``) or Ctrl-C stops after the
current step, saves ``last/`` and exits with status 143; running the same command again
resumes from ``last/`` and gives the same result as an uninterrupted run (CPU, same seed and
thread count).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from tdpcr.constants import CLASS_NAMES, IGNORE_INDEX
from tdpcr.data.dataset import ResumableSampler, make_loader
from tdpcr.errors import ConfigError, InputDataError
from tdpcr.models import create_model
from tdpcr.models.peft import set_trainable
from tdpcr.training.checkpoint import (
    CheckpointMeta,
    check_compatible,
    load_model_state,
    load_training_state,
    read_meta,
    save_checkpoint,
)
from tdpcr.training.losses import reconstruction_loss, segmentation_loss
from tdpcr.training.variants import Variant, get_variant, model_kwargs

log = logging.getLogger(__name__)

#: Exit status after a SIGTERM / Ctrl-C with a saved resume point (128 + SIGTERM).
EXIT_INTERRUPTED = 143


class Interrupted(SystemExit):
    """Raised after the resume point is saved on SIGTERM / SIGINT."""

    def __init__(self, step: int, folder: Path) -> None:
        super().__init__(EXIT_INTERRUPTED)
        self.step, self.folder = step, folder


@dataclass
class Runtime:
    """Where training runs: device, data-parallel rank and the CPU thread budget."""

    device: torch.device
    rank: int = 0
    world: int = 1
    torch_threads: int = 1
    loader_workers: int = 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main(self) -> bool:
        return self.rank == 0


def available_cpus() -> int:
    """CPUs this process may use (affinity, i.e. a SLURM allocation), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def setup_runtime(threads: int, *, force_cpu: bool = False) -> Runtime:
    """Pick the device (CUDA when usable), join torchrun's process group, split threads.

    ``threads`` is the rule's thread count; it is capped by the CPUs really available, so
    ``--cores 8`` on a 2-core machine does not oversubscribe. A quarter of them (none below 4)
    feed the data loader; the rest run torch's intra-op kernels.
    """
    # Under torchrun the job's CPUs are shared by its LOCAL_WORLD_SIZE processes.
    local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cpus = max(1, min(threads, available_cpus()) // local_world)
    workers = cpus // 4
    torch_threads = max(1, cpus - workers)
    torch.set_num_threads(torch_threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available() and not force_cpu
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(local_rank)
        print(f"device: {device} ({name}), rank {rank}/{world}", flush=True)
    else:
        device = torch.device("cpu")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        reason = f"CUDA_VISIBLE_DEVICES={visible}, no usable GPU" if visible else "no GPU"
        print(
            f"device: cpu ({reason}), {torch_threads} torch threads, {workers} loader "
            f"workers, rank {rank}/{world}",
            flush=True,
        )
    return Runtime(device, rank, world, torch_threads, workers)


def config_hash(config: dict, variant: Variant) -> str:
    """Hash of everything that defines a variant's training (for resume and MLflow tags)."""
    relevant = {
        "variant": variant.name,
        "model": config["models"].get(variant.model),
        "train": config["train"],
        "dataset": config["datasets"][config["dataset"]],
        "tiling": config["tiling"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def build_model(
    variant: Variant, config: dict, init_dir: Path | None, num_classes: int
) -> tuple[nn.Module, dict]:
    """The variant's model, initialised from ``init_dir`` (phase 2) when it has one."""
    kwargs = model_kwargs(variant, config["models"], num_classes)
    if variant.init_from is None:
        return create_model(variant.model, **kwargs), kwargs
    if init_dir is None:
        raise ConfigError(f"variant {variant.name} starts from {variant.init_from}: pass --init")
    init_variant = get_variant(variant.init_from)
    init_kwargs = model_kwargs(init_variant, config["models"], num_classes)
    check_compatible(read_meta(init_dir), init_variant.model, init_kwargs, init_dir)
    model = create_model(variant.model, **init_kwargs)
    load_model_state(init_dir, model)
    if variant.segmentation and model.num_classes is None:
        model.attach_head(num_classes, kwargs.get("head_width", 8))
    return model, kwargs


def _forward(model: nn.Module, variant: Variant, batch: dict) -> dict[str, torch.Tensor]:
    if variant.model == "segformer":
        return model(batch[variant.seg_input])
    return model(batch["s2_cloudy"], batch["s1"])


def _loss(variant: Variant, out: dict, batch: dict, train: dict) -> tuple[torch.Tensor, dict]:
    total = torch.zeros((), device=next(iter(out.values())).device)
    parts: dict[str, float] = {}
    if variant.reconstruction:
        rec, rec_parts = reconstruction_loss(out["image"], batch["s2_clear"], train["lambda_ssim"])
        weight = train["lambda_rec"] if variant.segmentation else 1.0
        total = total + weight * rec
        parts.update(rec_parts, rec=float(rec.detach()))
    if variant.segmentation:
        seg, seg_parts = segmentation_loss(
            out["logits"], batch["landcover"], train["label_smoothing"]
        )
        weight = train["lambda_seg"] if variant.reconstruction else 1.0
        total = total + weight * seg
        parts.update(seg_parts)
    return total, parts


def _to_device(batch: dict, runtime: Runtime) -> dict:
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(runtime.device, non_blocking=True)
            if runtime.cuda and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


@torch.inference_mode()
def validate(
    model: nn.Module, variant: Variant, loader, runtime: Runtime, max_batches: int | None
) -> dict[str, float]:
    """PSNR / SSIM (reconstruction) and PA / mIoU (segmentation) on the validation split."""
    from tdpcr.evaluation.metrics import ReconstructionMeter, SegmentationMeter

    model.eval()
    rec_meter = ReconstructionMeter()
    seg_meter = SegmentationMeter(num_classes=len(CLASS_NAMES), ignore_index=IGNORE_INDEX)
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        batch = _to_device(batch, runtime)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=runtime.cuda):
            out = _forward(model, variant, batch)
        cloudmask = batch.get("cloudmask")
        if variant.reconstruction:
            rec_meter.update(out["image"].float(), batch["s2_clear"], cloudmask)
        if variant.segmentation:
            seg_meter.update(out["logits"].argmax(1), batch["landcover"], cloudmask)
    model.train()
    metrics: dict[str, float] = {}
    if variant.reconstruction:
        computed = rec_meter.compute()
        metrics.update({"val/psnr": computed["psnr"], "val/ssim": computed["ssim"]})
    if variant.segmentation:
        computed = seg_meter.compute()
        metrics.update({"val/miou": computed["miou"], "val/pa": computed["pa"]})
    return {k: float(v) for k, v in metrics.items()}


def selection_metric(variant: Variant) -> str:
    """The validation metric that picks the best checkpoint."""
    return "val/miou" if variant.segmentation else "val/psnr"


class _StopFlag:
    """Turns SIGTERM / SIGINT into a flag checked between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _publish(best: Path, out_dir: Path) -> None:
    """Copy the best checkpoint to the variant folder; meta.json last, each file atomic."""
    for name in ("model.safetensors", "meta.json"):
        tmp = out_dir / f".{name}.tmp"
        shutil.copyfile(best / name, tmp)
        os.replace(tmp, out_dir / name)


def train_variant(
    config: dict,
    variant_name: str,
    store: Path,
    out_dir: Path,
    *,
    init_dir: Path | None = None,
    threads: int = 1,
    progress: bool = True,
    force_cpu: bool = False,
    tracker: Any | None = None,
) -> dict[str, float]:
    """Train one variant; return the best validation metrics.

    Args:
        config: the validated workflow config.
        variant_name: a key of :data:`tdpcr.training.variants.VARIANTS`.
        store: the tile store (``results/tiles/<dataset>.zarr``).
        out_dir: ``results/models/<variant>``.
        init_dir: checkpoint folder of the variant this one starts from (phase 2).
        threads: CPU threads granted (Snakemake ``threads``).
        tracker: a :class:`tdpcr.tracking.Tracker` (or None for no tracking).
    """
    variant = get_variant(variant_name)
    train = config["train"]
    runtime = setup_runtime(threads, force_cpu=force_cpu)
    out_dir, store = Path(out_dir), Path(store)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_dir, best_dir = out_dir / "last", out_dir / "best"
    seed = int(train["seed"])
    total_steps = int(train["steps"][variant.steps_key])
    digest = config_hash(config, variant)

    torch.manual_seed(seed)
    np.random.seed(seed)
    num_classes = len(CLASS_NAMES)
    model, kwargs = build_model(variant, config, init_dir, num_classes)
    if variant.model == "tdpcr":
        set_trainable(model, variant.strategy)
    model.to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=float(train["lr"]), weight_decay=float(train["weight_decay"])
    )
    warmup = max(1, int(0.05 * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        ),
    )

    start_step, best_value, best_metrics = 0, -math.inf, {}
    if (last_dir / "meta.json").is_file():
        previous = read_meta(last_dir)
        if previous.extra.get("config_hash") != digest:
            log.warning("%s was saved with another config; starting over", last_dir)
            shutil.rmtree(last_dir)
        else:
            check_compatible(previous, variant.model, kwargs, last_dir)
            load_model_state(last_dir, model)
            load_training_state(last_dir, optimizer, scheduler)
            start_step = previous.step
            best_value = previous.extra.get("best_value", -math.inf)
            best_metrics = previous.extra.get("best_metrics", {})
            print(f"resumed from step {start_step} ({last_dir})", flush=True)

    if runtime.world > 1:
        device_ids = [runtime.device.index] if runtime.cuda else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    from tdpcr.data.store import open_store

    store_ds = open_store(store)
    missing = [p for p in variant.pieces if p not in store_ds]
    if missing:
        raise InputDataError(f"{store}: variant {variant.name} needs {missing[0]!r}, absent")
    pieces = [p for p in (*variant.pieces, "cloudmask") if p in store_ds]
    batch_size = int(train["batch_size"])
    n_train = int((store_ds["split"].values == "train").sum())
    if n_train < batch_size * runtime.world:
        raise InputDataError(
            f"{store}: {n_train} training patches, fewer than one batch of {batch_size}"
        )
    sampler = ResumableSampler(n_train, batch_size, seed, runtime.rank, runtime.world)
    cache_mb = float(train.get("cache_mb", 0))
    train_loader = make_loader(
        store,
        "train",
        batch_size=batch_size,
        train=True,
        crop=int(train["crop"]),
        workers=runtime.loader_workers,
        seed=seed,
        pieces=pieces,
        sampler=sampler,
        cache_mb=cache_mb,
    )
    val_loader = make_loader(
        store,
        "val",
        batch_size=int(train["val_batch_size"]),
        train=False,
        workers=0,
        pieces=pieces,
        cache_mb=cache_mb,
    )
    sampler.start_at(start_step)

    meta_common = {
        "model_name": variant.model,
        "model_kwargs": json.loads(json.dumps(kwargs)),
        "variant": variant.name,
        "config": config,
    }
    tags = {
        "tdpcr.variant": variant.name,
        "tdpcr.phase": str(variant.phase),
        "tdpcr.model": variant.model,
        "tdpcr.dataset": config["dataset"],
        "tdpcr.config_hash": digest,
    }
    if tracker is not None and runtime.main:
        from tdpcr.tracking import flatten, git_commit

        tags["tdpcr.git_commit"] = git_commit()
        family = variant.name.removesuffix("-cr").removesuffix("-full")
        if variant.name == "tdpcr-fpft":
            family = "tdpcr"
        parent = tracker.parent_run(family, digest_of_family(config, family), tags)
        run_context = tracker.run(
            variant.name, params=flatten(config), tags=tags, parent_run_id=parent
        )
    else:
        from contextlib import nullcontext

        run_context = nullcontext()

    def save_resume(step: int) -> None:
        if not runtime.main:
            return
        meta = CheckpointMeta(
            **meta_common,
            step=step,
            metrics=best_metrics,
            extra={"config_hash": digest, "best_value": best_value, "best_metrics": best_metrics},
        )
        save_checkpoint(last_dir, model, meta, optimizer, scheduler)

    samples = 0
    started = time.perf_counter()
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc=variant.name,
        unit="step",
        disable=not (progress and runtime.main),
        mininterval=2.0,
    )
    with run_context, _StopFlag() as stop:
        step = start_step
        model.train()
        while step < total_steps:
            for batch in train_loader:
                batch = _to_device(batch, runtime)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=runtime.cuda):
                    out = _forward(model, variant, batch)
                loss, parts = _loss(variant, out, batch, train)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"{variant.name}: loss became {float(loss)} at step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                samples += batch_size * runtime.world
                rate = samples / max(time.perf_counter() - started, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", samples_s=f"{rate:.1f}")
                if tracker is not None and runtime.main and step % train["log_every"] == 0:
                    tracker.log_metrics(
                        {
                            "train/loss": float(loss.detach()),
                            "train/samples_per_s": rate,
                            "train/lr": scheduler.get_last_lr()[0],
                            **{f"train/{k}": v for k, v in parts.items()},
                        },
                        step,
                    )
                if step % train["val_every"] == 0 or step == total_steps:
                    if runtime.main:
                        metrics = validate(
                            model, variant, val_loader, runtime, train.get("val_max_batches")
                        )
                        if tracker is not None:
                            tracker.log_metrics(metrics, step)
                        value = metrics[selection_metric(variant)]
                        log.info("%s step %d: %s", variant.name, step, metrics)
                        if value > best_value or not (best_dir / "meta.json").exists():
                            best_value, best_metrics = value, {**metrics, "step": step}
                            save_checkpoint(
                                best_dir,
                                model,
                                CheckpointMeta(
                                    **meta_common,
                                    step=step,
                                    metrics=best_metrics,
                                    extra={
                                        "config_hash": digest,
                                        "selection": selection_metric(variant),
                                    },
                                ),
                            )
                    save_resume(step)
                if stop.signal is not None:
                    save_resume(step)
                    bar.close()
                    print(
                        f"interrupted by signal {stop.signal} at step {step}; saved {last_dir}; "
                        "run the same command again to resume",
                        file=sys.stderr,
                        flush=True,
                    )
                    raise Interrupted(step, last_dir)
                if step >= total_steps:
                    break
        bar.close()
        if runtime.main:
            _publish(best_dir, out_dir)
            if tracker is not None:
                tracker.log_metrics(
                    {
                        f"best/{k.removeprefix('val/')}": v
                        for k, v in best_metrics.items()
                        if k != "step"
                    },
                    total_steps,
                )
                tracker.set_tags(
                    {"tdpcr.checkpoint": str((out_dir / "model.safetensors").resolve())}
                )
                tracker.log_artifact(out_dir / "meta.json", "checkpoint")
    if runtime.world > 1:
        dist.barrier()
    return best_metrics


def digest_of_family(config: dict, family: str) -> str:
    """Hash tying a family's parent MLflow run to one config (model size, data, training)."""
    relevant = {
        "family": family,
        "models": config["models"],
        "train": config["train"],
        "dataset": config["datasets"][config["dataset"]],
        "name": config["name"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
