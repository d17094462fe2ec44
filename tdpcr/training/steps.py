"""One training step's pieces, shared by the trainer and the training benchmark.

:func:`forward` runs a variant's model on a batch, :func:`compute_loss` turns its outputs into
the variant's loss: the project's L1 + lambda_ssim (1 - SSIM) for reconstruction and
cross-entropy for segmentation (weighted by lambda_rec / lambda_seg when a variant has both),
or a baseline's published loss (``Variant.loss``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tdpcr.core.specs import CLOUDMASK_UNKNOWN
from tdpcr.training.losses import l1_loss, reconstruction_loss, segmentation_loss
from tdpcr.training.variants import Variant


def forward(
    model: nn.Module, variant: Variant, batch: Mapping[str, Any], teacher: nn.Module | None = None
) -> dict[str, Any]:
    """The model's outputs on ``batch``.

    A segmenter reads its own input; every other model reads an optical image (the cloudy one,
    or the clear one for the CloudSeg teacher) and SAR. EMRDM in training mode returns its
    diffusion loss (its forward pass draws the noise level and noise); in eval mode it
    samples. A distillation ``teacher`` adds its features as ``teacher_features``.
    """
    if variant.model == "segformer":
        return model(batch[variant.seg_input])
    optical, sar = batch[variant.optical_input], batch["s1"]
    if variant.loss == "edm" and model.training:
        return model(optical, sar, target=batch["s2_clear"])
    out = dict(model(optical, sar))
    if teacher is not None and model.training:
        with torch.no_grad():  # frozen: no graph, no gradient into the teacher
            out["teacher_features"] = teacher(batch["s2_clear"], sar)["features"]
    return out


def batch_cloudmask(batch: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor:
    """The batch's cloud mask, or an all-unknown one when the store has none (real stores
    without masks): (B, H, W) uint8 like ``like``'s batch and grid."""
    mask = batch.get("cloudmask")
    if mask is not None:
        return mask
    b, _, h, w = like.shape
    return torch.full((b, h, w), CLOUDMASK_UNKNOWN, dtype=torch.uint8, device=like.device)


def compute_loss(
    variant: Variant, out: Mapping[str, Any], batch: Mapping[str, Any], train: Mapping[str, Any]
) -> tuple[torch.Tensor, dict[str, float]]:
    """The variant's loss and its parts (for logging); ``train`` is the config's section."""
    if variant.loss == "edm":  # EMRDM's forward computed it (it draws sigma and the noise)
        return out["loss"], {"edm": float(out["loss"].detach()), "l2": float(out["l2"])}
    if variant.loss == "l1":
        return l1_loss(out["image"], batch["s2_clear"])
    if variant.loss == "hpncr":
        from tdpcr.training.losses import hpncr_loss

        return hpncr_loss(out["image"], batch["s2_clear"])
    if variant.loss == "cloudseg":
        from tdpcr.training.cloudseg_losses import cloudseg_student_loss

        mask = batch_cloudmask(batch, out["image"])
        return cloudseg_student_loss(out, out["teacher_features"], {**batch, "cloudmask": mask})
    if variant.loss == "cloudseg-teacher":  # its published cross-entropy: no label smoothing
        return segmentation_loss(out["logits"], batch["landcover"], label_smoothing=0.0)
    return _project_loss(variant, out, batch, train)


def _project_loss(
    variant: Variant, out: Mapping[str, Any], batch: Mapping[str, Any], train: Mapping[str, Any]
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + SSIM reconstruction and / or label-smoothed cross-entropy (TDP-CR, DSen2-CR,
    SegFormers)."""
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
