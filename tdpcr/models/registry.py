"""Model factory: build any model of the project by name from config keyword arguments.

Every size comes from the keyword arguments (the config's ``models:`` section); the modules
themselves hold only defaults. SegFormer is imported lazily because importing ``transformers``
takes seconds and most commands do not need it.

A size is checked before anything is allocated: :func:`create_model` first builds the model on
PyTorch's ``meta`` device (shapes without storage), which counts its parameters exactly at no
memory cost, and refuses a model whose weights alone exceed the machine's memory (else the
allocator fails, or the kernel kills the process, minutes into building it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tdpcr.core.errors import InputDataError

if TYPE_CHECKING:  # type-only: safetensors is not needed to build models (GPU benchmark)
    from tdpcr.core.checkpoint import Checkpoint


def _tdpcr() -> type[nn.Module]:
    from tdpcr.models.tdpcr import TDPCR

    return TDPCR


def _dsen2cr() -> type[nn.Module]:
    from tdpcr.models.dsen2cr import DSen2CR

    return DSen2CR


def _emrdm() -> type[nn.Module]:
    from tdpcr.models.emrdm import EMRDM

    return EMRDM


def _segformer() -> type[nn.Module]:
    from tdpcr.models.segformer import SegFormer

    return SegFormer


#: Each model's class, imported when first asked for.
_CLASSES: dict[str, Callable[[], type[nn.Module]]] = {
    "tdpcr": _tdpcr,
    "dsen2cr": _dsen2cr,
    "emrdm": _emrdm,
    "segformer": _segformer,
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_CLASSES)


#: Bytes per parameter: float32 weights; training adds their gradient and AdamW's two moments.
BYTES_PER_PARAMETER = {"inference": 4, "training": 16}


class ModelTooLarge(ValueError):
    """A model whose parameters alone need more memory than the machine has."""


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with ``kwargs`` passed to its constructor.

    Names: ``tdpcr`` (TDPCR; ``num_classes=None`` for cloud removal only), ``dsen2cr``
    (DSen2CR), ``emrdm`` (EMRDM, a diffusion model: ``forward`` runs its seeded sampler and
    training goes through its ``training_loss``), ``segformer`` (SegFormer). Raises
    ValueError for an unknown name, :class:`ModelTooLarge` (a ValueError) for weights beyond
    the machine's memory, counted before anything is allocated, and TypeError (naming the
    model) for an unknown keyword.
    """
    check_model_fits(name, kwargs, "inference")
    return _build(name, kwargs)


def _build(name: str, kwargs: dict[str, Any], device: str | None = None) -> nn.Module:
    load = _CLASSES.get(name)
    if load is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    model_class = load()  # imported outside the device context: module constants stay real
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return model_class(**kwargs)
    except TypeError as err:
        raise TypeError(f"bad arguments for model {name!r}: {err}") from err


#: Parameter counts by (model, repr of its kwargs): training checks a size, then builds it.
_COUNTS: dict[tuple[str, str], int] = {}


def parameter_count(name: str, kwargs: dict[str, Any]) -> int:
    """Parameters of model ``name`` built with ``kwargs``, counted without allocating them.

    Raises:
        ModelTooLarge: a tensor size overflows what PyTorch can address.
        ValueError: sizes PyTorch refuses (a negative width). TypeError: an unknown keyword.
    """
    key = (name, repr(sorted(kwargs.items())))
    if key not in _COUNTS:
        try:
            model = _build(name, kwargs, device="meta")  # shapes only: no storage, no init work
        except RuntimeError as err:
            if "overflow" in str(err):  # "Storage size calculation overflowed with sizes=..."
                raise ModelTooLarge(
                    f"model {name!r}: sizes beyond what PyTorch can address"
                ) from None
            problem = str(err).splitlines()[0][:160]
            raise ValueError(f"bad sizes for model {name!r}: {problem}") from None
        _COUNTS[key] = sum(p.numel() for p in model.parameters())
    return _COUNTS[key]


def memory_bytes() -> int:
    """The machine's physical memory (what no process can exceed, swap aside)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_model_fits(name: str, kwargs: dict[str, Any], purpose: str = "inference") -> int:
    """The parameter count of model ``name``; refuse it when its parameters (and, for
    ``purpose="training"``, their gradients and AdamW state) exceed the machine's memory.

    A lower bound of the need (activations come on top), so a refusal is always right.

    Raises:
        ModelTooLarge: naming the model, its parameter count, the need and the memory.
    """
    count = parameter_count(name, kwargs)
    need, have = count * BYTES_PER_PARAMETER[purpose], memory_bytes()
    if need > have:
        raise ModelTooLarge(
            f"model {name!r} would have {count:.3g} parameters: {purpose} needs "
            f"{need / 2**30:.3g} GiB for them alone, more than the {have / 2**30:.3g} GiB of "
            "memory of this machine"
        )
    return count


def create_model_from(checkpoint: Checkpoint) -> nn.Module:
    """The model a checkpoint describes (``meta.json``), with its weights loaded.

    Raises:
        InputDataError: ``meta.json`` names an unknown model or arguments it does not take,
            or the weights do not fit (one line naming the file).
    """
    meta = checkpoint.meta
    try:
        model = create_model(meta.model_name, **meta.model_kwargs)
    except (ValueError, TypeError) as err:
        where = checkpoint.folder / "meta.json"
        raise InputDataError(f"{where}: cannot build the model ({err})") from None
    return checkpoint.load_into(model)
