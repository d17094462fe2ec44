"""Value conventions between the store (DN, dB) and the network ([0, 1] floats).

Following GLF-CR / CloudSeg / UnCRtainTS 'default' (see data-formats.md): S2 reflectance
DN / 1e4 clipped to [0, 1]; S1 VV clipped to [-25, 0] dB and VH to [-32.5, 0] dB, each scaled
to [0, 1]; NaN (SEN12MS has a few broken S1 patches) becomes 0 after scaling, i.e. the floor.
"""

from __future__ import annotations

import numpy as np

from tdpcr.core.specs import S1_BANDS, S1_CLIP_DB, S2_SCALE

_S1_LOW = np.array([S1_CLIP_DB[b][0] for b in S1_BANDS], dtype=np.float32)
_S1_HIGH = np.array([S1_CLIP_DB[b][1] for b in S1_BANDS], dtype=np.float32)


def normalise_s2(dn: np.ndarray) -> np.ndarray:
    """uint16 DN (..., 13, y, x) -> float32 reflectance in [0, 1]."""
    return np.clip(dn.astype(np.float32) / np.float32(S2_SCALE), 0.0, 1.0)


def denormalise_s2(reflectance: np.ndarray) -> np.ndarray:
    """float reflectance -> uint16 DN (reflectance x 1e4), clipped to [0, 1] first."""
    return np.rint(np.clip(reflectance, 0.0, 1.0) * S2_SCALE).astype(np.uint16)


def normalise_s1(db: np.ndarray) -> np.ndarray:
    """float32 dB (..., 2, y, x) with bands VV, VH -> float32 in [0, 1]; NaN -> 0."""
    shape = (-1,) + (1,) * 2
    low, high = _S1_LOW.reshape(shape), _S1_HIGH.reshape(shape)
    scaled = (np.clip(db.astype(np.float32), low, high) - low) / (high - low)
    return np.nan_to_num(scaled, nan=0.0)
