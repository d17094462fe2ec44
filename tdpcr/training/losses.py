"""Training losses: the project's L1 + lambda_ssim * (1 - SSIM) for reconstruction and CE for
segmentation, and the published losses of the reconstruction baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from tdpcr.core.specs import IGNORE_INDEX


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, lambda_ssim: float = 0.1
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + lambda_ssim * (1 - SSIM) on (B, 13, H, W) reflectance in [0, 1].

    SSIM comes from pytorch-msssim (11x11 Gaussian window, sigma 1.5, data range 1) and is
    computed in float32 even under bf16 autocast, where its variance terms would underflow.
    """
    pred32, target32 = pred.float(), target.float()
    l1 = F.l1_loss(pred32, target32)
    similarity = ssim(pred32.clamp(0, 1), target32, data_range=1.0, size_average=True)
    loss = l1 + lambda_ssim * (1.0 - similarity)
    return loss, {"l1": float(l1.detach()), "ssim": float(similarity.detach())}


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy with label smoothing; label 255 is ignored.

    The mean over labelled pixels, as ``F.cross_entropy`` computes it, except that a batch
    with no labelled pixel (patches without land cover exist in real stores) gives 0, not
    the 0 / 0 = NaN of a plain mean, so it teaches nothing instead of stopping training.
    """
    summed = F.cross_entropy(
        logits.float(),
        labels,
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    loss = summed / (labels != IGNORE_INDEX).sum().clamp(min=1)
    return loss, {"ce": float(loss.detach())}


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean absolute error on (B, 13, H, W) reflectance, in float32: GLF-CR's published loss."""
    loss = F.l1_loss(pred.float(), target.float())
    return loss, {"l1": float(loss.detach())}
