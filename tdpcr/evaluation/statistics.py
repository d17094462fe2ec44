"""Confidence intervals by a seeded bootstrap over test patches, and paired differences.

Every table cell and every claim is a statistic of the test patches: a mean over patches of a
per-patch score (PSNR, SSIM, RMSE, MAE, SAM, a PGF weight), or a score of the summed confusion
matrices (PA, mIoU, per-class IoU). A resample draws the patches with replacement; the
statistic is recomputed on it (mIoU from the resampled patches' summed matrices, not averaged
over patches). The interval is the percentile interval of the resampled statistics.

One :class:`Bootstrap` (patch count, resample count, seed) gives the same resamples to every
method evaluated on the same patches, so the difference of two methods' statistics in each
resample is the paired bootstrap of their difference: the uncertainty of a comparison, not of
two separate numbers.

Resampling unit: the test patch. Patches of one held-out scene are correlated, so these
intervals are narrower than a scene-level (cluster) bootstrap would give; with 4-8 held-out
scenes a cluster bootstrap has too few distinct resamples to be useful. The tables state it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: A statistic of one resample: patch weights (R, N) -> values (R,).
Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate (on all patches) with its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


@dataclass
class Bootstrap:
    """Seeded resamples of ``n`` patches; :meth:`interval` of any statistic over them.

    Attributes:
        n: patches.
        resamples: number of bootstrap resamples.
        seed: seed of the resamples.
        confidence: coverage of the percentile interval (0.95).
    """

    n: int
    resamples: int = 2000
    seed: int = 0
    confidence: float = 0.95
    weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("a bootstrap needs at least one patch")
        rng = np.random.default_rng(self.seed)
        draws = rng.integers(0, self.n, size=(self.resamples, self.n))
        # Multiplicity of each patch in each resample: every statistic is then a weighted sum.
        self.weights = np.stack([np.bincount(row, minlength=self.n) for row in draws]).astype(
            np.float64
        )

    def interval(self, statistic: Statistic) -> Interval:
        """``statistic`` on all patches (weights 1) and its percentile interval."""
        value = float(statistic(np.ones((1, self.n)))[0])
        samples = statistic(self.weights)
        return self._interval(value, samples)

    def difference(self, a: Statistic, b: Statistic) -> Interval:
        """Paired interval of ``a - b`` (both on the same resamples)."""
        ones = np.ones((1, self.n))
        value = float(a(ones)[0] - b(ones)[0])
        return self._interval(value, a(self.weights) - b(self.weights))

    def _interval(self, value: float, samples: np.ndarray) -> Interval:
        finite = samples[np.isfinite(samples)]
        if finite.size == 0 or not np.isfinite(value):
            return Interval(value, float("nan"), float("nan"))
        tail = 100 * (1 - self.confidence) / 2
        low, high = np.percentile(finite, [tail, 100 - tail])
        return Interval(value, float(low), float(high))


# --------------------------------------------------------------------------- statistics
def mean_of(values: np.ndarray) -> Statistic:
    """Mean over patches of a per-patch score; patches without a value (NaN) are left out."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)

    def statistic(weights: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ filled) / (weights @ finite)

    return statistic


def confusion_statistic(confusion: np.ndarray, score: str, class_index: int | None = None):
    """PA, mIoU or one class's IoU of the patches' summed (K, K) confusion matrices.

    ``confusion``: (N, K, K) per-patch matrices (rows = target). mIoU is over the classes with
    a non-empty union in the resample, as for the full split.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    n, k, _ = confusion.shape
    flat = confusion.reshape(n, k * k)

    def statistic(weights: np.ndarray) -> np.ndarray:
        total = (weights @ flat).reshape(-1, k, k)
        tp = np.diagonal(total, axis1=1, axis2=2)
        union = total.sum(axis=1) + total.sum(axis=2) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            if score == "pa":
                return tp.sum(axis=1) / total.sum(axis=(1, 2))
            if score == "miou":
                present = ~np.isnan(iou)
                return np.where(
                    present.any(axis=1), np.nansum(iou, axis=1) / present.sum(axis=1), np.nan
                )
        if score == "iou" and class_index is not None:
            return iou[:, class_index]
        raise ValueError(f"unknown confusion statistic {score!r}")

    return statistic
