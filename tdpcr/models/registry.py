"""Model factory: build any model of the project by name from config keyword arguments.

Every size comes from the keyword arguments (the config's ``models:`` section); the modules
themselves hold only defaults. SegFormer is imported lazily because importing ``transformers``
takes seconds and most commands do not need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from tdpcr.core.errors import InputDataError

if TYPE_CHECKING:  # type-only: safetensors is not needed to build models (GPU benchmark)
    from tdpcr.core.checkpoint import Checkpoint


def _tdpcr(**kwargs: Any) -> nn.Module:
    from tdpcr.models.tdpcr import TDPCR

    return TDPCR(**kwargs)


def _dsen2cr(**kwargs: Any) -> nn.Module:
    from tdpcr.models.dsen2cr import DSen2CR

    return DSen2CR(**kwargs)


def _segformer(**kwargs: Any) -> nn.Module:
    from tdpcr.models.segformer import SegFormer

    return SegFormer(**kwargs)


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "tdpcr": _tdpcr,
    "dsen2cr": _dsen2cr,
    "segformer": _segformer,
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_FACTORIES)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with ``kwargs`` passed to its constructor.

    Names: ``tdpcr`` (TDPCR; ``num_classes=None`` for cloud removal only), ``dsen2cr``
    (DSen2CR), ``segformer`` (SegFormer). Raises ValueError for an unknown name and TypeError
    (naming the model) for an unknown keyword.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise TypeError(f"bad arguments for model {name!r}: {err}") from err


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
