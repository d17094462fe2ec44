"""Whole-scene prediction: a trained checkpoint, a cloudy S2 scene and its S1 scene in,
Cloud-Optimized GeoTIFFs (cloud-free image, land-cover map, optionally the prompt map) out.

See :mod:`tdpcr.prediction.engine` for the engine and ``tdpcr predict --help`` for the CLI.
Names are re-exported lazily so that the command line (which imports this package's command
module for every call) does not import torch before it needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PredictOptions",
    "PredictionResult",
    "Predictor",
    "load_predictor",
    "predict_scene",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("tdpcr.prediction.engine"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
