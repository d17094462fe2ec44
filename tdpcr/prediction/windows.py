"""Windows over a scene, their blending weights and the row-band accumulator.

* **Windows.** The scene is covered by ``window`` x ``window`` windows every
  ``window - overlap`` pixels; the last window of a row or column is moved back to end on the
  scene edge, so any scene size is covered without padding. A scene side shorter than the
  window gets one window rounded up to the model's size divisor (16 for TDP-CR), filled by
  mirroring the scene (``symmetric`` padding) - the padded pixels are predicted and dropped.
* **Blending.** Each window's outputs are weighted by a separable raised-cosine (Tukey) taper:
  1 in the window's core, a half-cosine over the ``overlap`` pixels towards each window border
  that lies inside the scene, and no taper on borders that are scene edges. The taper is
  evaluated at pixel centres, so it never reaches 0 and every pixel has a positive total
  weight; where two windows overlap by exactly ``overlap`` their tapers sum to 1. The output is
  ``sum(w * y) / sum(w)``: the window border, where a convolutional model is worst (zero
  padding, a global pooling over a different area), gets almost no weight and the hand-over
  from one window to the next is smooth, so there is no seam. Land cover is the argmax of the
  blended *logits*, never a vote over labels.
* **Bounded memory.** Windows are processed one row of windows at a time. Only the float
  accumulators of the rows in flight exist (``window`` rows x scene width); when the next row
  of windows starts at row ``r``, every row above ``r`` is final and is taken out of the
  accumulator, which shifts up. Peak memory therefore grows with the scene *width* (~ 4 bytes x
  (13 + classes [+ 8 prompt channels] + 1) x window x width: 113 MB for a 5490-pixel-wide
  scene, window 256, 7 classes), never with its area.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tdpcr.core.errors import TdpcrError


def window_offsets(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering ``length``; the last one ends on the edge.

    ``length <= window`` gives the single offset 0 (the window is then padded).
    """
    if length <= window:
        return [0]
    offsets = list(range(0, length - window + 1, stride))
    if offsets[-1] + window < length:
        offsets.append(length - window)
    return offsets


def taper(length: int, overlap: int, start_inside: bool, end_inside: bool) -> np.ndarray:
    """1-D blending weights of one window: 1 in the core, half-cosine ramps of ``overlap``.

    A ramp is applied only on a side that lies inside the scene (``start_inside``,
    ``end_inside``): on a scene edge no neighbour shares the pixels, so they keep full weight.
    Sampled at pixel centres, the ramp is > 0 everywhere and two ramps offset by ``overlap``
    sum to 1 (sin^2 + cos^2).
    """
    weights = np.ones(length, dtype=np.float32)
    ramp_length = min(overlap, length // 2)
    if ramp_length > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / ramp_length)
        ramp = ramp.astype(np.float32)
        if start_inside:
            weights[:ramp_length] = ramp
        if end_inside:
            weights[length - ramp_length :] = ramp[::-1]
    return weights


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class WindowPlan:
    """Window grid over a scene: sizes, offsets and the per-axis weights of every window."""

    height: int
    width: int
    win_y: int
    win_x: int
    rows: list[int]
    cols: list[int]
    overlap: int

    @classmethod
    def make(cls, height: int, width: int, window: int, overlap: int, divisor: int) -> WindowPlan:
        """Plan for a ``height`` x ``width`` scene (see :func:`check_window_options`)."""
        win_y = min(window, _round_up(height, divisor))
        win_x = min(window, _round_up(width, divisor))
        stride = window - overlap
        return cls(
            height,
            width,
            win_y,
            win_x,
            window_offsets(height, win_y, stride),
            window_offsets(width, win_x, stride),
            overlap,
        )

    @property
    def count(self) -> int:
        """Number of windows."""
        return len(self.rows) * len(self.cols)

    def row_weights(self, row: int) -> np.ndarray:
        return taper(self.win_y, self.overlap, row > 0, row + self.win_y < self.height)

    def col_weights(self, col: int) -> np.ndarray:
        return taper(self.win_x, self.overlap, col > 0, col + self.win_x < self.width)


def check_window_options(window: int, overlap: int, batch_size: int, divisor: int) -> None:
    """Refuse window settings the model or the blending cannot use (one line, TdpcrError)."""
    if window < divisor or window % divisor:
        raise TdpcrError(
            f"--window {window}: must be a positive multiple of {divisor} (the model's size "
            "divisor)"
        )
    if not 0 <= overlap <= window // 2:
        raise TdpcrError(f"--overlap {overlap}: must be between 0 and window/2 = {window // 2}")
    if batch_size < 1:
        raise TdpcrError(f"--batch-size {batch_size}: must be at least 1")


# ---------------------------------------------------------------------------------------------
# Inputs


class RowBandBlender:
    """Weighted sums of the rows in flight: ``channels`` x ``rows`` x scene width, float32.

    ``top`` is the scene row of buffer row 0. :meth:`shift_to` drops finished rows off the top;
    nothing here ever spans the scene height, which is what bounds the memory.
    """

    def __init__(self, channels: int, rows: int, width: int) -> None:
        self.acc = np.zeros((channels, rows, width), dtype=np.float32)
        self.weight = np.zeros((rows, width), dtype=np.float32)
        self.invalid = np.zeros((rows, width), dtype=bool)
        self.top = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.acc.shape

    def shift_to(self, top: int) -> None:
        """Make scene row ``top`` buffer row 0; rows above must have been taken already."""
        delta = top - self.top
        if delta <= 0:
            return
        keep = max(self.acc.shape[1] - delta, 0)
        if keep:
            # Overlapping source and target: numpy buffers the copy.
            self.acc[:, :keep] = self.acc[:, delta : delta + keep]
            self.weight[:keep] = self.weight[delta : delta + keep]
            self.invalid[:keep] = self.invalid[delta : delta + keep]
        self.acc[:, keep:] = 0.0
        self.weight[keep:] = 0.0
        self.invalid[keep:] = False
        self.top = top

    def add(
        self, values: np.ndarray | Sequence[np.ndarray], row: int, col: int, weights: np.ndarray
    ) -> None:
        """Add ``weights * values`` ((C, h, w) at scene ``row``, ``col``).

        ``values`` may also be a list of (C_i, h, w) parts whose channels follow each other
        (image, class scores, prompt): adding them one by one saves stacking a copy.
        """
        r = row - self.top
        h, w = weights.shape
        parts = [values] if isinstance(values, np.ndarray) else values
        first = 0
        for part in parts:
            last = first + part.shape[0]
            self.acc[first:last, r : r + h, col : col + w] += part * weights
            first = last
        self.weight[r : r + h, col : col + w] += weights

    def take(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Blended values and nodata mask of scene rows ``start .. stop``."""
        a, b = start - self.top, stop - self.top
        return self.acc[:, a:b] / self.weight[a:b], self.invalid[a:b]
