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
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from tdpcr.core.checkpoint import (
    CheckpointMeta,
    ModelSpec,
    input_bands_from_store,
    load_checkpoint,
    load_training_state,
    read_meta,
    save_checkpoint,
    weights_digest,
)
from tdpcr.core.errors import ConfigError, InputDataError, TdpcrError
from tdpcr.core.io import folder_kept_only_if_used
from tdpcr.core.metrics import ReconstructionMeter, SegmentationMeter
from tdpcr.core.runtime import Runtime, autocast, setup_runtime
from tdpcr.core.specs import CLASS_NAMES, IGNORE_INDEX
from tdpcr.data.dataset import ResumableSampler, make_loader
from tdpcr.models import create_model
from tdpcr.models.peft import parameter_groups, set_trainable
from tdpcr.models.registry import check_model_fits
from tdpcr.training.averaging import WeightAverage
from tdpcr.training.steps import compute_loss, forward
from tdpcr.training.variants import Variant, get_variant, model_kwargs, step_budget

log = logging.getLogger(__name__)

#: Exit status after a SIGTERM / Ctrl-C with a saved resume point (128 + SIGTERM).
EXIT_INTERRUPTED = 143


class Interrupted(SystemExit):
    """Raised after the resume point is saved on SIGTERM / SIGINT."""

    def __init__(self, step: int, folder: Path) -> None:
        super().__init__(EXIT_INTERRUPTED)
        self.step, self.folder = step, folder


class Diverged(TdpcrError):
    """The loss became NaN or infinite: the settings, not the code, need a change."""


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


def family_of(variant: Variant) -> str:
    """The model family (parent MLflow run) of a variant: its phases share one parent."""
    if variant.name == "tdpcr-fpft":
        return "tdpcr"
    return variant.name.removesuffix("-cr").removesuffix("-full")


# --------------------------------------------------------------------------- named steps
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
    checkpoint = load_checkpoint(init_dir, expect=ModelSpec(init_variant.model, init_kwargs))
    model = checkpoint.load_into(create_model(variant.model, **init_kwargs))
    if variant.segmentation and model.num_classes is None:
        head = {k: kwargs[k] for k in ("head_width",) if k in kwargs}
        model.attach_head(num_classes, **head)
    return model, kwargs


def load_teacher(
    variant: Variant, config: dict, teacher_dir: Path | None, runtime: Runtime
) -> nn.Module | None:
    """The frozen teacher a distillation student learns from (eval mode, no gradients)."""
    if variant.teacher is None:
        return None
    if teacher_dir is None:
        raise ConfigError(f"variant {variant.name} learns from {variant.teacher}: pass --teacher")
    teacher_variant = get_variant(variant.teacher)
    kwargs = model_kwargs(teacher_variant, config["models"], len(CLASS_NAMES))
    checkpoint = load_checkpoint(teacher_dir, expect=ModelSpec(teacher_variant.model, kwargs))
    teacher = checkpoint.load_into(create_model(teacher_variant.model, **kwargs))
    return teacher.requires_grad_(False).eval().to(runtime.device)


def refuse_a_model_beyond_memory(variant: Variant, config: dict) -> None:
    """Refuse, before anything is allocated, a model whose parameters, gradients and AdamW
    state alone exceed the machine's memory (its size keys are counted on the meta device)."""
    kwargs = model_kwargs(variant, config["models"], len(CLASS_NAMES))
    try:
        check_model_fits(variant.model, kwargs, "training")
    except ValueError as err:  # ModelTooLarge, or sizes PyTorch refuses
        raise ConfigError(f"config key 'models.{variant.model}': {err}") from None


def make_optimizer(
    model: nn.Module, train: dict, total_steps: int, variant: Variant
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters; 5 % linear warm-up, then cosine decay to 0.

    A variant that starts from a checkpoint (phase 2, FPFT) gives each TDP-CR parameter group
    (``TDPCR.PARAM_GROUPS``: the new head, the pretrained prompt generator and PGF, ...) the
    learning rate ``train.finetune_lr.<group>``, ``train.lr`` where none is set.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr = float(train["lr"])
    groups: list[dict[str, Any]] = [{"params": trainable}]
    if variant.init_from is not None and variant.model == "tdpcr":
        groups = _finetune_groups(model, train["finetune_lr"], lr)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=float(train["weight_decay"]))
    warmup = max(1, int(0.05 * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        ),
    )
    return optimizer, scheduler


def _finetune_groups(model: nn.Module, rates: dict, lr: float) -> list[dict[str, Any]]:
    """One optimizer group per trainable TDP-CR parameter group, with its learning rate."""
    named = parameter_groups(model)
    unknown = sorted(set(rates) - set(named))
    if unknown:
        raise ConfigError(
            f"config key 'train.finetune_lr.{unknown[0]}': not a TDP-CR parameter group; "
            f"expected one of {', '.join(named)}"
        )
    groups = []
    for group, pairs in named.items():
        params = [p for _, p in pairs if p.requires_grad]
        if params:
            rate = rates.get(group)
            groups.append({"params": params, "lr": lr if rate is None else float(rate)})
    return groups


@dataclass
class Progress:
    """Where a run stands: the step reached and the best validation so far."""

    step: int = 0
    best_value: float = -math.inf
    best_metrics: dict[str, float] = field(default_factory=dict)


def resume(
    last_dir: Path,
    digest: str,
    spec: ModelSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    average: WeightAverage | None = None,
) -> Progress:
    """Restore ``last/`` when it was saved with this config; else start over (and say so)."""
    if not (last_dir / "meta.json").is_file():
        return Progress()
    previous = read_meta(last_dir)
    if previous.extra.get("config_hash") != digest:
        log.warning("%s was saved with another config; starting over", last_dir)
        shutil.rmtree(last_dir)
        return Progress()
    load_checkpoint(last_dir, expect=spec).load_into(model)
    load_training_state(last_dir, optimizer, scheduler, average.model if average else None)
    if average is not None:  # the average continues where it stopped: no first-update copy
        average.updates = previous.step
        average.averaged.n_averaged.fill_(previous.step)
    print(f"resumed from step {previous.step} ({last_dir})", flush=True)
    return Progress(
        previous.step,
        previous.extra.get("best_value", -math.inf),
        previous.extra.get("best_metrics", {}),
    )


def make_loaders(
    store: Path, variant: Variant, train: dict, runtime: Runtime
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader, ResumableSampler]:
    """Training loader (seeded, resumable epochs) and validation loader of the tile store."""
    from tdpcr.data.store import open_store

    store_ds = open_store(store)
    missing = [p for p in variant.pieces if p not in store_ds]
    if missing:
        raise InputDataError(f"{store}: variant {variant.name} needs {missing[0]!r}, absent")
    pieces = [p for p in (*variant.pieces, "cloudmask") if p in store_ds]
    batch_size, seed = int(train["batch_size"]), int(train["seed"])
    n_train = int((store_ds["split"].values == "train").sum())
    if n_train < batch_size * runtime.world:
        raise InputDataError(
            f"{store}: {n_train} training patches, fewer than one batch of {batch_size}"
        )
    sampler = ResumableSampler(n_train, batch_size, seed, runtime.rank, runtime.world)
    cache_mb = float(train["cache_mb"])
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
    return train_loader, val_loader, sampler


#: What :func:`validate` scores for reconstruction: what it logs and the selection reads.
VALIDATION_SCORES = ("psnr", "ssim")


@torch.inference_mode()
def validate(
    model: nn.Module, variant: Variant, loader, runtime: Runtime, max_batches: int | None
) -> dict[str, float]:
    """PSNR / SSIM (reconstruction) and PA / mIoU (segmentation) on the validation split."""
    model.eval()
    rec_meter = ReconstructionMeter(scores=VALIDATION_SCORES)
    seg_meter = SegmentationMeter(num_classes=len(CLASS_NAMES), ignore_index=IGNORE_INDEX)
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        batch = runtime.to_device(batch)
        with autocast(runtime.cuda):
            out = forward(model, variant, batch)
        cloudmask = batch.get("cloudmask")
        if variant.reconstruction:  # all pixels only: nothing reads the cloudy / clear split
            rec_meter.update(out["image"].float(), batch["s2_clear"])
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


def selection_score(variant: Variant, metrics: dict[str, float], psnr_weight: float) -> float:
    """The validation score that picks the best checkpoint (higher is better).

    Cloud removal alone: PSNR (dB); segmentation alone: mIoU. A variant with both tasks
    (TDP-CR phase 2, FPFT, joint training) weighs both: ``mIoU + psnr_weight * PSNR``, so with
    the default 0.01 one dB of PSNR counts as much as one point of mIoU and a checkpoint that
    gains segmentation by giving up reconstruction is not preferred.
    """
    if variant.segmentation and variant.reconstruction:
        return metrics["val/miou"] + psnr_weight * metrics["val/psnr"]
    return metrics["val/miou"] if variant.segmentation else metrics["val/psnr"]


def selection_name(variant: Variant, psnr_weight: float) -> str:
    """How the best checkpoint was chosen, as recorded in its metadata."""
    if variant.segmentation and variant.reconstruction:
        return f"val/miou + {psnr_weight:g} * val/psnr"
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


# --------------------------------------------------------------------------- the run
@dataclass
class _Run:
    """Everything one training run holds; its methods are the steps of :func:`train_variant`."""

    config: dict
    variant: Variant
    runtime: Runtime
    out_dir: Path
    model: nn.Module
    kwargs: dict
    optimizer: torch.optim.Optimizer
    scheduler: Any
    digest: str
    total_steps: int
    tracker: Any | None
    progress: Progress = field(default_factory=Progress)
    #: The moving average of the weights, for variants evaluated with it (EMRDM).
    average: WeightAverage | None = None
    #: The frozen teacher of a distillation student (CloudSeg).
    teacher: nn.Module | None = None
    #: S2 bands and level of the store (checkpoint metadata: predict checks inputs by them).
    input_bands: dict = field(default_factory=dict)

    @property
    def train(self) -> dict:
        return self.config["train"]

    @property
    def last_dir(self) -> Path:
        return self.out_dir / "last"

    @property
    def best_dir(self) -> Path:
        return self.out_dir / "best"

    @property
    def evaluated(self) -> nn.Module:
        """The weights validation scores and ``best/`` keeps: the average where there is one."""
        return self.average.model if self.average is not None else self.model

    def meta(self, step: int, metrics: dict, extra: dict) -> CheckpointMeta:
        return CheckpointMeta(
            model_name=self.variant.model,
            model_kwargs=json.loads(json.dumps(self.kwargs)),
            variant=self.variant.name,
            step=step,
            metrics=metrics,
            config=self.config,
            extra={"config_hash": self.digest, **self.input_bands, **extra},
        )

    def save_resume(self, step: int) -> None:
        if not self.runtime.main:
            return
        best = self.progress
        extra = {"best_value": best.best_value, "best_metrics": best.best_metrics}
        meta = self.meta(step, best.best_metrics, extra)
        average = self.average.model if self.average is not None else None
        save_checkpoint(self.last_dir, self.model, meta, self.optimizer, self.scheduler, average)

    def tracking_context(self, store: Path):
        """The MLflow run of this variant, nested in its family's parent run, reading ``store``."""
        if self.tracker is None or not self.runtime.main:
            return nullcontext()
        from tdpcr.tracking import flatten, git_commit

        tags = {
            "tdpcr.variant": self.variant.name,
            "tdpcr.phase": str(self.variant.phase),
            "tdpcr.model": self.variant.model,
            "tdpcr.dataset": self.config["dataset"],
            "tdpcr.config_hash": self.digest,
            "tdpcr.git_commit": git_commit(),
        }
        family = family_of(self.variant)
        parent = self.tracker.parent_run(family, digest_of_family(self.config, family), tags)
        return self.tracker.run(
            self.variant.name,
            params=flatten(self.config),
            tags=tags,
            parent_run_id=parent,
            store=store,
        )

    def log_step(self, step: int, loss: torch.Tensor, parts: dict, rate: float) -> None:
        if self.tracker is None or not self.runtime.main or step % self.train["log_every"]:
            return
        self.tracker.log_metrics(
            {
                "train/loss": float(loss.detach()),
                "train/samples_per_s": rate,
                "train/lr": self.scheduler.get_last_lr()[0],
                **{f"train/{k}": v for k, v in parts.items()},
            },
            step,
        )

    def validate_and_save(self, step: int, val_loader) -> None:
        """Validate, keep ``best/`` when the selection metric improved, save ``last/``."""
        if self.runtime.main:
            max_batches = self.train["val_max_batches"]
            metrics = validate(self.evaluated, self.variant, val_loader, self.runtime, max_batches)
            if self.tracker is not None:
                self.tracker.log_metrics(metrics, step)
            weight = float(self.train["selection_psnr_weight"])
            selection = selection_name(self.variant, weight)
            value = selection_score(self.variant, metrics, weight)
            log.info("%s step %d: %s", self.variant.name, step, metrics)
            best = self.progress
            if value > best.best_value or not (self.best_dir / "meta.json").exists():
                best.best_value, best.best_metrics = value, {**metrics, "step": step}
                extra = {"selection": selection, "selection_value": value}
                meta = self.meta(step, best.best_metrics, extra)
                save_checkpoint(self.best_dir, self.evaluated, meta)
        self.save_resume(step)

    def stop(self, step: int, signum: int) -> None:
        """Save the resume point and leave with :data:`EXIT_INTERRUPTED`."""
        self.save_resume(step)
        print(
            f"interrupted by signal {signum} at step {step}; saved {self.last_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
            flush=True,
        )
        raise Interrupted(step, self.last_dir)

    def finish(self) -> None:
        """Publish the best checkpoint as the variant's outputs and record it."""
        if not self.runtime.main:
            return
        _publish(self.best_dir, self.out_dir)
        if self.tracker is None:
            return
        best = self.progress.best_metrics
        self.tracker.log_metrics(
            {f"best/{k.removeprefix('val/')}": v for k, v in best.items() if k != "step"},
            self.total_steps,
        )
        checkpoint = (self.out_dir / "model.safetensors").resolve()
        self.tracker.set_tags({"tdpcr.checkpoint": str(checkpoint)})
        self.tracker.log_model(self.out_dir, self.variant.pieces, self.total_steps)

    def loop(self, train_loader, val_loader, show_progress: bool) -> None:
        """Optimizer steps until ``total_steps``, validating every ``val_every`` steps."""
        step, samples, started = self.progress.step, 0, time.perf_counter()
        batch_size = int(self.train["batch_size"])
        bar = tqdm(
            total=self.total_steps,
            initial=step,
            desc=self.variant.name,
            unit="step",
            disable=not (show_progress and self.runtime.main),
            mininterval=2.0,
        )
        with _StopFlag() as stop, bar:
            self.model.train()
            while step < self.total_steps:
                for batch in train_loader:
                    loss, parts = self.step(self.runtime.to_device(batch), step)
                    step += 1
                    self.progress.step = step
                    samples += batch_size * self.runtime.world
                    rate = samples / max(time.perf_counter() - started, 1e-9)
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", samples_s=f"{rate:.1f}")
                    self.log_step(step, loss, parts, rate)
                    if step % self.train["val_every"] == 0 or step == self.total_steps:
                        self.validate_and_save(step, val_loader)
                    if stop.signal is not None:
                        bar.close()
                        self.stop(step, stop.signal)
                    if step >= self.total_steps:
                        break

    def diverged(self, value: float, step: int) -> Diverged:
        """The one-line report of a diverged run; ``last/`` is never overwritten by it."""
        kept = (
            f"the last good checkpoint {self.last_dir} is kept"
            if (self.last_dir / "meta.json").exists()
            else "no checkpoint was saved yet"
        )
        return Diverged(
            f"{self.variant.name}: training diverged (loss {value}) at step {step}; lower "
            f"train.lr (now {float(self.train['lr']):g}) or check the store for bad values; "
            f"{kept}"
        )

    def step(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        """One optimizer step on ``batch``."""
        with autocast(self.runtime.cuda):
            out = forward(self.model, self.variant, batch, self.teacher)
        loss, parts = compute_loss(self.variant, out, batch, self.train)
        if not torch.isfinite(loss):
            raise self.diverged(float(loss.detach()), step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update(self.model)
        return loss, parts


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
    teacher_dir: Path | None = None,
) -> dict[str, float]:
    """Train one variant; return the best validation metrics.

    Args:
        config: the validated workflow config.
        variant_name: a key of :data:`tdpcr.training.variants.VARIANTS`.
        store: the tile store (``results/tiles/<dataset>.zarr``).
        out_dir: ``results/models/<variant>``.
        init_dir: checkpoint folder of the variant this one starts from (phase 2).
        teacher_dir: checkpoint folder of a distillation student's frozen teacher.
        threads: CPU threads granted (Snakemake ``threads``).
        tracker: a :class:`tdpcr.tracking.Tracker` (or None for no tracking).
    """
    variant = get_variant(variant_name)
    refuse_a_model_beyond_memory(variant, config)
    with folder_kept_only_if_used(out_dir) as out:
        return _train(config, variant, Path(store), out, init_dir, threads, progress,
                      force_cpu, tracker, teacher_dir)  # fmt: skip


def _train(
    config: dict,
    variant: Variant,
    store: Path,
    out_dir: Path,
    init_dir: Path | None,
    threads: int,
    progress: bool,
    force_cpu: bool,
    tracker: Any | None,
    teacher_dir: Path | None = None,
) -> dict[str, float]:
    train = config["train"]
    runtime = setup_runtime(threads, force_cpu=force_cpu)
    total_steps = step_budget(variant, train["steps"])
    digest = config_hash(config, variant)

    seed = int(train["seed"])
    torch.manual_seed(seed)
    np.random.seed(seed)
    model, kwargs = build_model(variant, config, init_dir, len(CLASS_NAMES))
    if variant.model == "tdpcr":
        set_trainable(model, variant.strategy)
    model.to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, train, total_steps, variant)
    run = _Run(
        config, variant, runtime, out_dir, model, kwargs, optimizer, scheduler, digest,
        total_steps, tracker,
    )  # fmt: skip
    run.average = WeightAverage(model) if variant.ema else None
    run.teacher = load_teacher(variant, config, teacher_dir, runtime)
    spec = ModelSpec(variant.model, kwargs)
    run.progress = resume(run.last_dir, digest, spec, model, optimizer, scheduler, run.average)
    if runtime.world > 1:
        device_ids = [runtime.device.index] if runtime.cuda else None
        run.model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    train_loader, val_loader, sampler = make_loaders(store, variant, train, runtime)
    from tdpcr.data.store import open_store

    run.input_bands = input_bands_from_store(open_store(store).attrs)
    sampler.start_at(run.progress.step)
    with run.tracking_context(store):
        run.loop(train_loader, val_loader, progress)
        if runtime.world > 1:
            check_replicas(model, runtime)
        run.finish()
    if runtime.world > 1:
        dist.barrier()
    return run.progress.best_metrics


def check_replicas(model: nn.Module, runtime: Runtime) -> str:
    """Compare the weights of every data-parallel rank; raise if any differs.

    DDP keeps replicas identical by construction (same initial broadcast, averaged gradients,
    same optimizer); a rank that diverged (a non-deterministic kernel, a missed all-reduce)
    would silently train another model, so each rank prints its digest and all must agree.
    """
    digest = weights_digest(model)
    digests: list[str | None] = [None] * runtime.world
    dist.all_gather_object(digests, digest)
    print(f"rank {runtime.rank}/{runtime.world}: weights sha256 {digest}", flush=True)
    if len(set(digests)) != 1:
        raise RuntimeError(
            f"data-parallel replicas diverged: weight digests {sorted(set(digests))}"
        )
    return digest
