"""The CloudSeg student's losses: CE + Charbonnier reconstruction + masked feature distillation.

As published (``shared/docs/baselines.md``, "4. CloudSeg"): the student minimises
CE(logits, labels; 255 ignored) + 1 * L_CR + 1 * L_KD, where

* L_CR is a Charbonnier loss, mean over pixels and bands of
  (1 + 5 * cloudmask) * ((pred - target)^2 + 1e-6)^0.45, so corrupted pixels weigh 6 times as
  much as clear ones;
* L_KD is a FitNets hint: the squared difference between the student's and the frozen
  teacher's cross-modal decoder features, weighted by (1 - cloudmask), i.e. clear pixels
  only (under a cloud the teacher's features come from optical information the student
  cannot see), averaged over all pixels and channels.

The published mask is binary; the project's store codes it as ``tdpcr.core.specs``:
0 = clear, 1 = cloud (thin haze included), 2 = cloud shadow, 255 = unknown. Our reading:

* cloud and shadow (``CORRUPTED_VALUES``, the "cloudy" region of every metric of the
  project) count as the published cloudmask = 1: weight 6 in L_CR, excluded from L_KD.
  Shadowed pixels are corrupted optical input too, so the teacher's clear-view features are
  no more inferable there than under the cloud itself;
* unknown pixels get the neutral reconstruction weight 1 (no evidence of a cloud: a plain
  Charbonnier loss) and no distillation (no evidence the pixel is clear).

A patch without a cloud mask (all 255, or a batch without a ``cloudmask`` entry) thus still
trains the segmentation and the reconstruction at full weight; it only adds nothing to L_KD.
Each term is a mean over the whole batch, so such a patch does not change the other patches'
weights either (L_KD is divided by the number of all pixels, as published, not by the
number of clear ones, which is never 0 / 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from tdpcr.core.specs import CLOUDMASK_CLEAR, CORRUPTED_VALUES
from tdpcr.training.losses import segmentation_loss

#: Published Charbonnier settings: exponent, epsilon, extra weight of cloudy pixels.
CHARBONNIER_EXPONENT = 0.45
CHARBONNIER_EPS = 1e-6
CLOUD_WEIGHT = 5.0


def corrupted_pixels(cloudmask: torch.Tensor) -> torch.Tensor:
    """True where the mask says cloud or shadow. Shapes: (B, H, W) uint8 -> (B, H, W) bool."""
    corrupted = torch.zeros_like(cloudmask, dtype=torch.bool)
    for value in CORRUPTED_VALUES:
        corrupted |= cloudmask == value
    return corrupted


def charbonnier_cloud_weighted(
    pred: torch.Tensor,
    target: torch.Tensor,
    cloudmask: torch.Tensor | None,
    cloud_weight: float = CLOUD_WEIGHT,
    exponent: float = CHARBONNIER_EXPONENT,
    eps: float = CHARBONNIER_EPS,
) -> torch.Tensor:
    """Cloud-weighted Charbonnier loss: mean of w * ((pred - target)^2 + eps)^exponent.

    w = 1 + cloud_weight on cloud and shadow pixels and 1 elsewhere (clear or unknown); the
    mean runs over batch, bands and pixels. ``cloudmask`` None (no mask) weighs every pixel 1.
    Computed in float32 (the power of small differences underflows in bf16).

    Shapes: pred, target (B, C, H, W); cloudmask (B, H, W) uint8 or None -> scalar.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    per_pixel = ((pred.float() - target.float()) ** 2 + eps) ** exponent
    if cloudmask is None:
        return per_pixel.mean()
    if cloudmask.shape != (pred.shape[0], *pred.shape[-2:]):
        raise ValueError(
            f"cloud mask {tuple(cloudmask.shape)} does not match the image {tuple(pred.shape)}"
        )
    weight = 1.0 + cloud_weight * corrupted_pixels(cloudmask).float()
    return (per_pixel * weight[:, None]).mean()


def clear_weight(cloudmask: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
    """1 where the mask says clear, 0 elsewhere (cloud, shadow, unknown), on a ``size`` grid.

    Resized conservatively: a cell of the new grid is clear only if every mask pixel it
    covers is (adaptive max pooling of the not-clear indicator; the identity when the sizes
    match, nearest-like when upsampling). None (no mask) gives None.

    Shapes: (B, H, W) uint8 -> (B, 1, h, w) float.
    """
    if cloudmask is None:
        return None
    not_clear = (cloudmask != CLOUDMASK_CLEAR).float()[:, None]
    if not_clear.shape[-2:] != size:
        not_clear = F.adaptive_max_pool2d(not_clear, size)
    return 1.0 - not_clear


def masked_distillation(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    cloudmask: torch.Tensor | None,
) -> torch.Tensor:
    """Feature distillation on clear pixels: mean of clear * (student - teacher)^2.

    The mean runs over all batch elements, channels and pixels (as published), so it is exactly
    0 on cloudy, shadowed and unknown pixels, 0 for a batch without any clear pixel or without a
    mask (``cloudmask`` None), and never 0 / 0. The teacher's features are detached: only the
    student learns from this term.

    Shapes: features (B, C, h, w), cloudmask (B, H, W) uint8 or None -> scalar.
    """
    if student_features.shape != teacher_features.shape:
        raise ValueError(
            f"student features {tuple(student_features.shape)} and teacher features "
            f"{tuple(teacher_features.shape)} differ"
        )
    size = (student_features.shape[-2], student_features.shape[-1])
    weight = clear_weight(cloudmask, size)
    if weight is None:
        return torch.zeros((), device=student_features.device)
    diff = student_features.float() - teacher_features.detach().float()
    return (weight * diff**2).mean()


def cloudseg_student_loss(
    out: Mapping[str, torch.Tensor],
    teacher_features: torch.Tensor,
    batch: Mapping[str, Any],
    lambda_rec: float = 1.0,
    lambda_kd: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's loss CE + lambda_rec * L_CR + lambda_kd * L_KD and its parts (floats).

    ``out`` is the student's :class:`~tdpcr.models.cloudseg.CloudSeg` output (``image``,
    ``logits``, ``features``), ``teacher_features`` the frozen teacher's ``features`` on the
    cloud-free optical image and the same SAR. ``batch`` holds ``s2_clear`` (B, 13, H, W),
    ``landcover`` (B, H, W) int64 with 255 = ignore, and optionally ``cloudmask`` (B, H, W)
    uint8. The published weights are 1 and 1 and the CE has no label smoothing; the CE is
    :func:`tdpcr.training.losses.segmentation_loss` (0, not NaN, when no pixel is labelled).
    Without a ``cloudmask`` entry, L_CR weighs every pixel 1 and L_KD is 0 (module docstring).
    """
    cloudmask = batch.get("cloudmask")
    ce, _ = segmentation_loss(out["logits"], batch["landcover"], label_smoothing)
    rec = charbonnier_cloud_weighted(out["image"], batch["s2_clear"], cloudmask)
    kd = masked_distillation(out["features"], teacher_features, cloudmask)
    total = ce + lambda_rec * rec + lambda_kd * kd
    parts = {"ce": float(ce.detach()), "charbonnier": float(rec.detach())}
    parts["kd"] = float(kd.detach())
    return total, parts
