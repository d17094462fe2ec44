"""Checkpoints that never unpickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder::

    model.safetensors       the model's state dict
    meta.json               model name and constructor kwargs, variant, step, metrics, config
    optimizer.safetensors   optimizer tensors (resume checkpoints only), keys state.<i>.<name>
    optimizer.json          optimizer param groups and the non-tensor state
    rng.safetensors         torch CPU (and CUDA) RNG states (resume checkpoints only)

Folders are written under a temporary name and renamed, so a kill while saving leaves the
previous checkpoint intact. :func:`load_checkpoint` is the one reader every stage uses
(training's init and resume, evaluation, prediction): it checks that the checkpoint's
architecture (model name and constructor kwargs) is what the caller expects and refuses it
otherwise with one line. Building the module is the models' business
(:func:`tdpcr.models.create_model_from`).

``model.safetensors`` carries the SHA-256 of the ``meta.json`` written with it (safetensors
metadata ``tdpcr.meta_sha256``): a meta.json edited afterwards (another band order, model or
config) or paired with other weights is refused, since the model would be built or fed
otherwise than it was trained. Checkpoints saved before that record are read, but their band
list must be the standard order of their level: the tile stores tdpcr trains on hold no other.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tdpcr import __version__
from tdpcr.core.errors import InputDataError
from tdpcr.core.io import atomic_folder
from tdpcr.core.specs import S2_BANDS, S2_LEVEL, S2_LEVEL_BANDS

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
#: safetensors metadata key of the SHA-256 of the meta.json saved with the weights.
META_DIGEST_KEY = "tdpcr.meta_sha256"


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


def input_bands_from_store(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The S2 bands and processing level a model trained on a store sees (``meta.extra``)."""
    return {"s2_bands": list(attrs["s2_bands"]), "s2_level": attrs.get("s2_level", S2_LEVEL)}


def trained_input_bands(meta: CheckpointMeta) -> tuple[tuple[str, ...], str]:
    """(bands, level) a checkpoint was trained on; older checkpoints without them: L1C, 13."""
    bands = tuple(meta.extra.get("s2_bands") or S2_BANDS)
    return bands, str(meta.extra.get("s2_level") or S2_LEVEL)


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    # safetensors refuses shared storage and non-contiguous views: store plain copies.
    return {k: v.detach().contiguous().cpu().clone() for k, v in module.state_dict().items()}


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state (names, dtypes, shapes and bytes, in key order).

    Equal digests mean bit-identical weights: data-parallel replicas compare theirs after
    training, and a saved checkpoint loaded into a model gives the digest it was saved with.
    """
    digest = hashlib.sha256()
    for name, tensor in _state_dict_for_saving(model).items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
    averaged: nn.Module | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temporary folder, then rename).

    ``averaged``: the moving average of the weights (a resume point of a model evaluated with
    averaged weights), written beside the training state as ``averaged.safetensors``.
    """
    with atomic_folder(folder) as tmp:
        record = {META_DIGEST_KEY: meta_digest(meta)}
        save_file(_state_dict_for_saving(model), str(tmp / "model.safetensors"), metadata=record)
        (tmp / "meta.json").write_text(json.dumps(meta.__dict__, indent=2, default=str))
        if optimizer is not None:
            tensors, described = _flatten_optimizer(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            if scheduler is not None:
                described["scheduler"] = scheduler.state_dict()
            (tmp / "optimizer.json").write_text(json.dumps(described))
            rng = {"torch_cpu": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng.update(
                    {f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
                )
            save_file(rng, str(tmp / "rng.safetensors"))
        if averaged is not None:
            save_file(_state_dict_for_saving(averaged), str(tmp / "averaged.safetensors"))
    return Path(folder)


def meta_digest(meta: CheckpointMeta) -> str:
    """SHA-256 of what meta.json holds, as canonical JSON (key order and spacing do not count)."""
    content = json.loads(json.dumps(meta.__dict__, default=str))  # as written and read back
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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


@dataclass(frozen=True)
class ModelSpec:
    """The architecture a caller expects: registry name, constructor kwargs, optional variant."""

    name: str
    kwargs: Mapping[str, Any]
    variant: str | None = None


@dataclass
class Checkpoint:
    """A checkpoint read from disk: its folder, metadata and weights (CPU tensors)."""

    folder: Path
    meta: CheckpointMeta
    state: dict[str, torch.Tensor]

    def load_into(self, model: nn.Module, *, strict: bool = True) -> nn.Module:
        """Load the weights into ``model`` (unwrapping DDP); one-line error when they do not fit.

        ``strict=False`` allows weights the checkpoint lacks (a head attached later) but still
        refuses weights the model has no place for.
        """
        module = model.module if hasattr(model, "module") else model
        path = self.folder / "model.safetensors"
        try:
            result = module.load_state_dict(self.state, strict=strict)
        except RuntimeError as err:  # missing / unexpected keys, shape mismatch
            first = str(err).strip().splitlines()[0]
            message = f"{path}: weights do not fit meta.json's model ({first})"
            raise InputDataError(message) from None
        if not strict and result.unexpected_keys:
            raise InputDataError(f"{path}: unexpected weights {result.unexpected_keys[:3]}")
        return model


def load_checkpoint(folder: Path, *, expect: ModelSpec | None = None) -> Checkpoint:
    """Read a checkpoint folder; with ``expect``, refuse one of another architecture.

    Raises:
        InputDataError: the folder, ``meta.json`` or the weights are missing or unreadable, or
            the checkpoint's variant, model or constructor kwargs differ from ``expect``
            (naming the first difference).
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if expect is not None:
        if expect.variant is not None and meta.variant != expect.variant:
            raise InputDataError(
                f"{folder}: checkpoint of variant {meta.variant!r}, not {expect.variant!r}"
            )
        check_compatible(meta, expect.name, dict(expect.kwargs), folder)
    path = folder / "model.safetensors"
    if not path.is_file():
        raise InputDataError(f"{path}: checkpoint weights missing")
    try:
        with safe_open(str(path), framework="pt") as weights:
            recorded = (weights.metadata() or {}).get(META_DIGEST_KEY)
            state = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise InputDataError(f"{path}: unreadable weights ({err})") from None
    check_meta_record(meta, recorded, folder)
    return Checkpoint(folder, meta, state)


def check_meta_record(meta: CheckpointMeta, recorded: str | None, folder: Path) -> None:
    """Refuse a meta.json that is not the one saved with the weights (``recorded`` digest).

    Without a record (saved before tdpcr wrote one) only the band order can be checked: it
    must be the standard order of the checkpoint's level, the only one tile stores hold.
    """
    where = folder / "meta.json"
    if recorded is not None:
        if recorded != meta_digest(meta):
            raise InputDataError(
                f"{where}: edited since training: meta.json and the weights in "
                f"{folder / 'model.safetensors'} do not fit (the digest saved with the weights "
                "differs; model, band order or config changed); restore the meta.json saved "
                "with these weights"
            )
        return
    bands, level = trained_input_bands(meta)
    if level in S2_LEVEL_BANDS and bands != S2_LEVEL_BANDS[level]:
        raise InputDataError(
            f"{where}: extra.s2_bands {list(bands)} is not the {level} band order "
            f"{list(S2_LEVEL_BANDS[level])} of any tile store; meta.json was edited"
        )
    log.warning(
        "%s: saved without a record of its meta.json (older tdpcr); model and band order "
        "cannot be checked against the weights",
        folder / "model.safetensors",
    )


def load_training_state(
    folder: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
    averaged: nn.Module | None = None,
) -> None:
    """Restore optimizer, scheduler, RNG and averaged-weight states saved by
    :func:`save_checkpoint`."""
    folder = Path(folder)
    path = folder / "optimizer.safetensors"
    try:
        tensors = load_file(str(path))
        path = folder / "optimizer.json"
        described = json.loads(path.read_text())
        optimizer.load_state_dict(_unflatten_optimizer(tensors, described))
        if scheduler is not None and "scheduler" in described:
            scheduler.load_state_dict(described["scheduler"])
        path = folder / "rng.safetensors"
        rng = load_file(str(path))
        if averaged is not None:
            path = folder / "averaged.safetensors"
            averaged.load_state_dict(load_file(str(path)))
    except Exception as err:  # truncated or foreign files: safetensors / json / torch errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputDataError(
            f"{path}: unreadable resume state ({first}); delete {folder} to start over"
        ) from None
    torch.set_rng_state(rng["torch_cpu"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
