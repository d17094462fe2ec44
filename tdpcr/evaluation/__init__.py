"""Evaluation: cloud-removal and segmentation metrics (see :mod:`tdpcr.evaluation.metrics`)."""

from tdpcr.evaluation.metrics import (
    PSNR_CAP_DB,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WIN_SIZE,
    ReconstructionMeter,
    SegmentationMeter,
    confusion_matrix,
    pa_miou,
    psnr_per_image,
    ssim_map,
    ssim_per_image,
)

__all__ = [
    "PSNR_CAP_DB",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WIN_SIZE",
    "ReconstructionMeter",
    "SegmentationMeter",
    "confusion_matrix",
    "pa_miou",
    "psnr_per_image",
    "ssim_map",
    "ssim_per_image",
]
