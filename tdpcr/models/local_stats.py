"""Test-time local statistics: global average poolings that average a local window instead.

A model trained on small crops pools each feature map over the whole crop (NAFNet's
simplified channel attention, TDP-CR's PGF global branch, squeeze-excitation). Predicting a
larger window would make every such pool see more of the scene than in training, which shifts
the statistic the following layers were trained on. Chu et al. ("Improving Image Restoration
by Revisiting Global Information Aggregation", ECCV 2022; NAFNet's "TLC") replace each global
pool at inference by a mean over a local window the size of the training input, so a large
window computes, per pixel, what a training-size window centred there would have pooled.

This module is written for this project from that idea:

* :func:`local_mean`: the per-pixel mean over a ``kh x kw`` window, from an integral image
  (two cumulative sums and four look-ups, whatever the window). Near a border the window is
  shifted inside the map rather than cut, so every pixel averages a full window (the
  replicate padding of TLC); a map not larger than the window gets the exact global mean.
* :class:`LocalAvgPool2d`: what replaces ``nn.AdaptiveAvgPool2d(1)``; its window is given in
  *input* pixels and scaled to the feature map (``window * h / H``, at least 1).
* :func:`use_local_statistics`: switches a built model (any architecture, no registry) on or
  off in place; off restores the original poolings, i.e. the exact global pool.

Consumers of the pooled statistic receive (B, C, H, W) instead of (B, C, 1, 1) when local
statistics are on; the models apply their layers after a pool per pixel (1x1 convs, or Linear
over the channel axis of a channels-last view).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Attribute of a switched model holding its :class:`_InputSize` and the hook's handle.
_STATE_ATTR = "_local_statistics"


class _InputSize:
    """The spatial size (H, W) of the model's current input, shared by its poolings."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None


def local_mean(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Mean of every ``kernel`` window of ``x``, one per pixel (the window shifted inside the
    map at the borders), or the global mean when the map is not larger than the window.

    The sums come from an integral image in float32 (float32 also for bf16 inputs: bf16's
    8-bit mantissa cannot hold a running sum), computed on the map minus its per-channel
    global mean: the running sums then grow with the deviations, not with the level of the
    map, which keeps the cancellation error of the four-corner difference near float32's
    rounding of the deviations (measured below 1e-6 relative on 1024 x 1024 maps, see
    tests/test_speed.py), at the cost of one extra mean.

    Shapes: x (B, C, H, W), kernel (kh, kw) >= 1 -> (B, C, H, W) in x's dtype; (B, C, 1, 1)
    (exactly ``F.adaptive_avg_pool2d(x, 1)``, the pooling it replaces) when kh >= H and kw >= W.
    """
    h, w = x.shape[-2:]
    kh, kw = min(max(int(kernel[0]), 1), h), min(max(int(kernel[1]), 1), w)
    if kh >= h and kw >= w:
        return F.adaptive_avg_pool2d(x, 1)
    level = x.mean(dim=(2, 3), keepdim=True, dtype=torch.float32)
    centred = x.float() - level
    # Zero row and column in front, so that sums[i, j] is the sum of centred[:i, :j].
    sums = F.pad(centred.cumsum(dim=2).cumsum(dim=3), (1, 0, 1, 0))
    # Window sums for every start that keeps the window inside: (H - kh + 1, W - kw + 1).
    windows = (
        sums[..., kh:, kw:] - sums[..., :-kh, kw:] - sums[..., kh:, :-kw] + sums[..., :-kh, :-kw]
    )
    # Pixel i takes the window starting at i - k // 2, clamped to the valid starts.
    rows = (torch.arange(h, device=x.device) - kh // 2).clamp(0, h - kh)
    cols = (torch.arange(w, device=x.device) - kw // 2).clamp(0, w - kw)
    means = windows.index_select(2, rows).index_select(3, cols) / (kh * kw) + level
    return means.to(x.dtype)


def feature_kernel(
    window: int, feature: tuple[int, int], source: tuple[int, int] | None
) -> tuple[int, int]:
    """A window of ``window`` input pixels in the pixels of a feature map.

    ``window * feature / source`` per axis, at least 1; ``source`` None (input size unknown)
    takes the feature map as the input resolution.
    """
    if source is None:
        return window, window
    return tuple(max(1, window * f // s) for f, s in zip(feature, source, strict=True))  # type: ignore[return-value]


class LocalAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(1)`` that averages a local window instead (see module doc).

    ``window``: side in input pixels; the input size comes from ``input_size`` (set by the
    hook :func:`use_local_statistics` registers on the model), else the feature map is taken
    as the input.

    Shapes: (B, C, h, w) -> (B, C, h, w), or (B, C, 1, 1) when the scaled window covers the
    whole map (then exactly the global pool).
    """

    def __init__(self, window: int, input_size: _InputSize | None = None) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"local statistics need a window of at least 1 pixel, got {window}")
        self.window = int(window)
        self.input_size = input_size

    def extra_repr(self) -> str:
        return f"window={self.window}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = self.input_size.size if self.input_size is not None else None
        return local_mean(x, feature_kernel(self.window, tuple(x.shape[-2:]), source))


def _is_global_pool(module: nn.Module) -> bool:
    if not isinstance(module, nn.AdaptiveAvgPool2d):
        return False
    size = module.output_size
    return size == 1 or tuple(size) == (1, 1)  # type: ignore[arg-type]


def _record_input_size(state: _InputSize) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor) and value.dim() == 4:
                state.size = (int(value.shape[-2]), int(value.shape[-1]))
                return

    return hook


def use_local_statistics(model: nn.Module, window: int | None) -> int:
    """Make every global average pooling of ``model`` average ``window`` input pixels; in place.

    Every ``nn.AdaptiveAvgPool2d(1)`` becomes a :class:`LocalAvgPool2d` (and back with
    ``window=None``, which restores the exact global pooling). The model's input size, which
    scales the window to each feature map, is read by a forward pre-hook from its first 4-D
    tensor argument (B, C, H, W). Parameters and state dict are untouched; calling it again
    changes the window.

    Returns:
        The number of poolings switched (0: the model has none, nothing changes).
    """
    if window is not None and window < 1:
        raise ValueError(f"local statistics need a window of at least 1 pixel, got {window}")
    previous = getattr(model, _STATE_ATTR, None)
    if previous is not None:
        previous[1].remove()
        delattr(model, _STATE_ATTR)
    state = _InputSize()
    switched = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if window is None and isinstance(child, LocalAvgPool2d):
                setattr(parent, name, nn.AdaptiveAvgPool2d(1))
                switched += 1
            elif window is not None and (
                _is_global_pool(child) or isinstance(child, LocalAvgPool2d)
            ):
                setattr(parent, name, LocalAvgPool2d(window, state))
                switched += 1
    if window is not None and switched:
        handle = model.register_forward_pre_hook(_record_input_size(state), with_kwargs=True)
        setattr(model, _STATE_ATTR, (state, handle))
    return switched


def local_statistics_window(model: nn.Module) -> int | None:
    """The window ``model``'s poolings average (None: global pooling, or none switched)."""
    for module in model.modules():
        if isinstance(module, LocalAvgPool2d):
            return module.window
    return None
