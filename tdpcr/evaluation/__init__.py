"""Evaluation: metrics, protocols, tables and figures.

The metric names are re-exported lazily: the command line imports this package's command
module for every ``tdpcr`` call, and importing torch there would slow ``tdpcr --help`` by
seconds.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("tdpcr.evaluation.metrics"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
