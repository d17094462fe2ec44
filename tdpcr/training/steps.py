"""One training step's pieces, shared by the trainer and the training benchmark.

:func:`forward` runs a variant's model on a batch, :func:`compute_loss` turns its outputs into
the variant's loss (L1 + lambda_ssim (1 - SSIM) for reconstruction, cross-entropy for
segmentation, weighted by lambda_rec / lambda_seg when a variant has both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tdpcr.training.losses import reconstruction_loss, segmentation_loss
from tdpcr.training.variants import Variant


def forward(model: nn.Module, variant: Variant, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The model's outputs on ``batch``: a segmenter reads its own input, TDP-CR and DSen2-CR
    the cloudy optical image and SAR."""
    if variant.model == "segformer":
        return model(batch[variant.seg_input])
    return model(batch["s2_cloudy"], batch["s1"])


def compute_loss(
    variant: Variant, out: Mapping[str, Any], batch: Mapping[str, Any], train: Mapping[str, Any]
) -> tuple[torch.Tensor, dict[str, float]]:
    """The variant's loss and its parts (for logging); ``train`` is the config's section."""
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
