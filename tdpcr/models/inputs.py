"""Input checks shared by the SAR-optical models."""

from __future__ import annotations

import torch


def check_paired_inputs(
    model: str, optical: torch.Tensor, sar: torch.Tensor, divisor: int, why: str
) -> None:
    """Refuse sides that are not multiples of ``divisor`` (``why`` says where it comes from)
    and optical / SAR tensors of different batch size or grid, with a ValueError naming
    ``model`` and the shapes.

    Shapes: optical (B, C_opt, H, W), sar (B, C_sar, H, W).
    """
    b, _, h, w = optical.shape
    if h % divisor or w % divisor:
        raise ValueError(
            f"{model} input height and width must be divisible by {divisor} ({why}), "
            f"got {h}x{w}; crop or pad the input"
        )
    if sar.shape[0] != b or sar.shape[-2:] != optical.shape[-2:]:
        raise ValueError(
            f"optical {tuple(optical.shape)} and SAR {tuple(sar.shape)} must share "
            "batch size, height and width"
        )
