"""Model factory: build any model of the project by name from config keyword arguments.

Every size comes from the keyword arguments (the config's ``models:`` section); the modules
themselves hold only defaults. SegFormer is imported lazily because importing ``transformers``
takes seconds and most commands do not need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


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
