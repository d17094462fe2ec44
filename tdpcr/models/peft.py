"""Phase-2 helpers for TDP-CR: attach the segmentation head and choose what trains.

Strategies (the paper's phase 2 and its ablations):

* ``"peft"``: prompt generator + every PGF block + segmentation head train; both encoders
  and the reconstruction decoder are frozen (the paper's parameter-efficient fine-tuning);
* ``"fpft"``: everything trains (full-parameter fine-tuning; also joint training from scratch);
* ``"reconstruction"``: everything except the segmentation head (phase 1; a head, if present,
  stays frozen).
"""

from __future__ import annotations

from torch import nn

from tdpcr.models.tdpcr import TDPCR

#: Parameter groups of TDPCR.PARAM_GROUPS that train under each strategy.
STRATEGY_GROUPS: dict[str, tuple[str, ...]] = {
    "peft": ("prompt", "fusion", "head"),
    "fpft": ("optical_encoder", "sar_encoder", "prompt", "fusion", "decoder", "head"),
    "reconstruction": ("optical_encoder", "sar_encoder", "prompt", "fusion", "decoder"),
}
STRATEGIES: tuple[str, ...] = tuple(STRATEGY_GROUPS)


def attach_segmentation_head(model: TDPCR, num_classes: int, head_width: int = 8) -> TDPCR:
    """Add a segmentation head to a (phase-1) TDP-CR model in place and return the model.

    Every existing weight is kept; the head is built on the model's device and dtype.
    Raises ValueError if the model already has a head.
    """
    model.attach_head(num_classes, head_width)
    return model


def parameter_groups(model: TDPCR) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """(name, parameter) pairs of each group in ``TDPCR.PARAM_GROUPS``; absent modules are empty.

    Raises ValueError if a parameter belongs to no group (a new submodule nobody classified).
    """
    prefix_to_group = {
        prefix: group for group, prefixes in model.PARAM_GROUPS.items() for prefix in prefixes
    }
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in model.PARAM_GROUPS}
    for name, param in model.named_parameters():
        group = prefix_to_group.get(name.split(".", 1)[0])
        if group is None:
            raise ValueError(f"parameter {name!r} is in no group of TDPCR.PARAM_GROUPS")
        groups[group].append((name, param))
    return groups


def _check_strategy(strategy: str) -> tuple[str, ...]:
    if strategy not in STRATEGY_GROUPS:
        raise ValueError(f"unknown training strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGY_GROUPS[strategy]


def trainable_parameters(model: TDPCR, strategy: str) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs that train under ``strategy``, in model order; changes nothing."""
    wanted = set(_check_strategy(strategy))
    names = {
        name
        for group, pairs in parameter_groups(model).items()
        if group in wanted
        for name, _ in pairs
    }
    return [(n, p) for n, p in model.named_parameters() if n in names]


def set_trainable(model: TDPCR, strategy: str) -> list[str]:
    """Set ``requires_grad`` for ``strategy`` (True for its groups, False elsewhere).

    Returns the names of the trainable parameters. Pass only those to the optimiser (e.g.
    ``[p for p in model.parameters() if p.requires_grad]``). TDP-CR has no batch norm, so
    frozen parts need no eval-mode switch.
    """
    trainable = {name for name, _ in trainable_parameters(model, strategy)}
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    return [n for n, _ in model.named_parameters() if n in trainable]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
