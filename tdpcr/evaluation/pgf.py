"""Where Prompt-Guided Fusion takes SAR: its SAR weight inside and outside the cloud mask.

The paper's mechanism (its Fig. 4): the degradation prompt makes PGF rely on SAR where the
optical input is corrupted and keep optical features elsewhere. For every test patch and every
PGF stage :class:`PGFMeter` takes the SAR weight a_s of the softmax (the model's own weights,
``TDPCR.forward(return_weights=True)``), averaged over channels, and averages it

* over the corrupted pixels (cloud mask 1 or 2: cloud and shadow) and
* over the clear pixels (mask 0),

both at the stage's resolution: the mask is average-pooled to each stage, so a stage pixel
counts towards "cloudy" with the share of its footprint that is corrupted (no threshold).
Unknown mask pixels (255) count towards neither. The per-patch difference ``cloudy - clear``
is what the claim tests (:mod:`tdpcr.evaluation.claims`). A patch without cloudy or without
clear pixels has no difference (NaN) and is left out of the mean.

The global-only ablation's weights are constant over a patch (one logit pair per channel),
so its difference is 0 by construction: the control of the measure.

With the store's ``cloud_opacity`` (synthetic scenes) the SAR weight is also binned by the
local opacity, average-pooled to each stage (:data:`OPACITY_EDGES`), for the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tdpcr.core.specs import (
    CLOUDMASK_CLEAR,
    CLOUDMASK_UNKNOWN,
    CORRUPTED_VALUES,
    PGF_GAP_MEAN,
    pgf_stage_key,
)

#: Bin edges of local cloud opacity; the first bin holds the (nearly) clear pixels, 0.03 is
#: where the synthetic cloud mask starts flagging haze.
OPACITY_EDGES: tuple[float, ...] = (0.0, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _pool(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) maps -> (B, h, w) means over each stage pixel's footprint."""
    if maps.shape[-2:] == size:
        return maps
    return F.adaptive_avg_pool2d(maps[:, None], size)[:, 0]


def _region_mean(values: torch.Tensor, share: torch.Tensor) -> np.ndarray:
    """Per-patch mean of ``values`` (B, h, w) weighted by ``share`` (B, h, w); NaN if empty."""
    total = share.sum(dim=(-2, -1))
    weighted = (values * share).sum(dim=(-2, -1))
    return torch.where(total > 0, weighted / total.clamp_min(1e-12), torch.nan).cpu().numpy()


class PGFMeter:
    """Accumulates PGF SAR weights per patch and stage, by cloud mask and by cloud opacity.

    ``update`` takes the model's weights (list over stages of (B, 2, C, h, w), index 1 = SAR),
    the (B, H, W) cloud mask and optionally the (B, H, W) cloud opacity (NaN = unknown).
    Everything is accumulated in float64, so the global-only control's cloudy - clear
    difference is 0 to rounding (~1e-16), not to float32's 1e-7.
    """

    def __init__(self, edges: Sequence[float] = OPACITY_EDGES) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.stages = 0
        self.cloudy: list[list[np.ndarray]] = []
        self.clear: list[list[np.ndarray]] = []
        self.bin_sum: np.ndarray | None = None
        self.bin_count: np.ndarray | None = None

    def _start(self, stages: int) -> None:
        if self.stages == 0:
            self.stages = stages
            self.cloudy = [[] for _ in range(stages)]
            self.clear = [[] for _ in range(stages)]
            bins = len(self.edges) - 1
            self.bin_sum = np.zeros((stages, bins))
            self.bin_count = np.zeros((stages, bins))
        elif stages != self.stages:
            raise ValueError(f"PGF stages changed from {self.stages} to {stages}")

    def update(
        self,
        weights: Sequence[torch.Tensor],
        cloudmask: torch.Tensor,
        opacity: torch.Tensor | None = None,
    ) -> None:
        self._start(len(weights))
        known = (cloudmask != CLOUDMASK_UNKNOWN).double()
        bad = torch.zeros_like(known)
        for value in CORRUPTED_VALUES:
            bad = bad + (cloudmask == value).double()
        good = (cloudmask == CLOUDMASK_CLEAR).double()
        for stage, alpha in enumerate(weights):
            sar = alpha[:, 1].double().mean(dim=1)  # (B, h, w): channel mean of a_s
            size = (sar.shape[-2], sar.shape[-1])
            bad_share = _pool(bad * known, size)
            good_share = _pool(good * known, size)
            self.cloudy[stage].append(_region_mean(sar, bad_share))
            self.clear[stage].append(_region_mean(sar, good_share))
            if opacity is not None:
                self._bin(stage, sar, _pool(opacity.double(), size))

    def _bin(self, stage: int, sar: torch.Tensor, opacity: torch.Tensor) -> None:
        assert self.bin_sum is not None and self.bin_count is not None
        values = sar.flatten().cpu().numpy()
        level = opacity.flatten().cpu().numpy()
        finite = np.isfinite(level)
        # Right-closed last bin: opacity exactly 1 belongs to the densest bin.
        index = np.clip(np.digitize(level[finite], self.edges[1:-1]), 0, len(self.edges) - 2)
        self.bin_sum[stage] += np.bincount(index, values[finite], minlength=len(self.edges) - 1)
        self.bin_count[stage] += np.bincount(index, minlength=len(self.edges) - 1)

    def per_patch(self) -> dict[str, list[float]]:
        """Per-patch values (evaluation JSON ``per_patch``): cloudy, clear and gap per stage,
        and the gap averaged over the stages."""
        out: dict[str, list[float]] = {}
        gaps = []
        for stage in range(self.stages):
            cloudy = np.concatenate(self.cloudy[stage])
            clear = np.concatenate(self.clear[stage])
            gaps.append(cloudy - clear)
            out[pgf_stage_key("cloudy", stage + 1)] = cloudy.tolist()
            out[pgf_stage_key("clear", stage + 1)] = clear.tolist()
            out[pgf_stage_key("gap", stage + 1)] = gaps[-1].tolist()
        if gaps:
            out[PGF_GAP_MEAN] = np.mean(np.stack(gaps), axis=0).tolist()
        return out

    def summary(self) -> dict[str, Any]:
        """The ``pgf`` section of an evaluation JSON: split means per stage and opacity bins."""
        per_patch = self.per_patch()
        means = {
            key: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            for key, values in ((k, np.asarray(v, dtype=np.float64)) for k, v in per_patch.items())
        }
        opacity_mean: list[list[float]] = []
        if self.bin_sum is not None and self.bin_count is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                opacity_mean = (self.bin_sum / self.bin_count).tolist()
        return {
            "stages": self.stages,
            "means": means,
            "opacity_edges": self.edges.tolist(),
            "opacity_sar_weight": opacity_mean,
            "opacity_pixels": [] if self.bin_count is None else self.bin_count.tolist(),
            "note": "SAR weight = PGF softmax weight of SAR, mean over channels; cloudy = cloud "
            "mask 1 or 2 pooled to each stage (share of footprint), clear = mask 0; gap = "
            "cloudy - clear per patch; opacity bins from the store's cloud_opacity pooled to "
            "each stage (empty without it)",
        }
