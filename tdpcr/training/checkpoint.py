"""Checkpoints that never unpickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder::

    model.safetensors       the model's state dict
    meta.json               model name and constructor kwargs, variant, step, metrics, config
    optimizer.safetensors   optimizer tensors (resume checkpoints only), keys state.<i>.<name>
    optimizer.json          optimizer param groups and the non-tensor state
    rng.safetensors         torch CPU (and CUDA) RNG states (resume checkpoints only)

Folders are written under a temporary name and renamed, so a kill while saving leaves the
previous checkpoint intact. Loading checks that the checkpoint's architecture (model name and
constructor kwargs) matches what the caller builds and refuses it otherwise with one line.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tdpcr import __version__
from tdpcr.errors import InputDataError

CHECKPOINT_FORMAT = 1


@dataclass
class CheckpointMeta:
    """What ``meta.json`` holds."""

    model_name: str
    model_kwargs: dict[str, Any]
    variant: str
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = CHECKPOINT_FORMAT
    tdpcr_version: str = __version__


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    # safetensors refuses shared storage and non-contiguous views: store plain copies.
    return {k: v.detach().contiguous().cpu().clone() for k, v in module.state_dict().items()}


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], described: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in described["plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": described["param_groups"]}


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    meta: CheckpointMeta,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temporary folder, then rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_state_dict_for_saving(model), str(tmp / "model.safetensors"))
    (tmp / "meta.json").write_text(json.dumps(meta.__dict__, indent=2, default=str))
    if optimizer is not None:
        tensors, described = _flatten_optimizer(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        if scheduler is not None:
            described["scheduler"] = scheduler.state_dict()
        (tmp / "optimizer.json").write_text(json.dumps(described))
        rng = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, str(tmp / "rng.safetensors"))
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def read_meta(folder: Path) -> CheckpointMeta:
    """Read ``meta.json`` of a checkpoint folder (or of the folder holding model.safetensors)."""
    folder = Path(folder)
    path = folder / "meta.json"
    if not path.is_file():
        raise InputDataError(f"{folder}: not a tdpcr checkpoint (meta.json missing)")
    try:
        raw = json.loads(path.read_text())
        meta = CheckpointMeta(**raw)
    except (json.JSONDecodeError, TypeError) as err:
        raise InputDataError(f"{path}: unreadable checkpoint metadata ({err})") from None
    if meta.format != CHECKPOINT_FORMAT:
        raise InputDataError(
            f"{path}: checkpoint format {meta.format}, this tdpcr reads {CHECKPOINT_FORMAT}"
        )
    return meta


def check_compatible(meta: CheckpointMeta, model_name: str, model_kwargs: dict, where: Path):
    """Refuse a checkpoint built for another architecture, naming the first difference."""
    if meta.model_name != model_name:
        raise InputDataError(
            f"{where}: checkpoint is a {meta.model_name!r} model, expected {model_name!r}"
        )
    wanted = json.loads(json.dumps(model_kwargs))  # tuples -> lists, as stored
    for key in sorted(set(wanted) | set(meta.model_kwargs)):
        if key in ("num_classes",) and key not in wanted:
            continue
        if meta.model_kwargs.get(key) != wanted.get(key):
            raise InputDataError(
                f"{where}: incompatible checkpoint: {key}={meta.model_kwargs.get(key)!r} "
                f"in the checkpoint, {wanted.get(key)!r} expected"
            )


def load_model_state(folder: Path, model: nn.Module, *, strict: bool = True) -> CheckpointMeta:
    """Load ``model.safetensors`` into ``model``; return the metadata."""
    folder = Path(folder)
    meta = read_meta(folder)
    path = folder / "model.safetensors"
    if not path.is_file():
        raise InputDataError(f"{path}: checkpoint weights missing")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise InputDataError(f"{path}: unreadable weights ({err})") from None
    module = model.module if hasattr(model, "module") else model
    result = module.load_state_dict(state, strict=strict)
    if strict is False and result.unexpected_keys:
        raise InputDataError(f"{path}: unexpected weights {result.unexpected_keys[:3]}")
    return meta


def load_training_state(
    folder: Path, optimizer: torch.optim.Optimizer, scheduler: Any | None = None
) -> None:
    """Restore optimizer, scheduler and RNG states saved by :func:`save_checkpoint`."""
    folder = Path(folder)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    described = json.loads((folder / "optimizer.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(tensors, described))
    if scheduler is not None and "scheduler" in described:
        scheduler.load_state_dict(described["scheduler"])
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
