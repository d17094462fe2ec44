"""The pixel grid and the noise fields and line geometry every stage of the generator draws on.

Shared by the land-cover layout, the terrain, the optical texture and the SAR drivers
(:mod:`~tdpcr.data.synthetic.layout`, :mod:`~tdpcr.data.synthetic.optical`,
:mod:`~tdpcr.data.synthetic.sar`). All distances are in 10 m pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tdpcr.data.synthetic.clouds import single_torch_thread

#: Pixel size of the synthetic scenes (m), as Sentinel-2's 10 m bands.
PIXEL_SIZE = 10.0


def _upsample(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic interpolation of a coarse grid onto ``shape`` (corners aligned), float32."""
    tensor = torch.from_numpy(coarse)[None, None]
    with single_torch_thread():
        out = torch.nn.functional.interpolate(
            tensor, size=shape, mode="bicubic", align_corners=True
        )
    return out[0, 0].numpy()


def fractal(
    rng: np.random.Generator,
    shape: tuple[int, int],
    scale: float,
    octaves: int = 3,
    persistence: float = 0.5,
) -> np.ndarray:
    """Smooth multi-octave value noise, about zero mean and unit variance, float32.

    ``scale`` is the cell size of the coarsest octave in pixels; each further octave halves it
    and its weight is multiplied by ``persistence``. The octaves are summed on a working grid a
    few times coarser than the finest octave and upsampled once, which keeps 5490x5490 fields
    cheap.
    """
    h, w = shape
    finest = scale / 2 ** (octaves - 1)
    step = max(1, int(finest // 4))
    work = (math.ceil(h / step), math.ceil(w / step))
    acc = np.zeros(work, dtype=np.float32)
    weight = 1.0
    for octave in range(octaves):
        # Cells of about scale / 2^octave pixels (exact sizes do not matter for noise).
        cell = scale / 2**octave / step
        grid = rng.standard_normal(
            (math.ceil(work[0] / cell) + 1, math.ceil(work[1] / cell) + 1), dtype=np.float32
        )
        acc += np.float32(weight) * _upsample(grid, work)
        weight *= persistence
    acc -= acc.mean()
    acc /= max(float(acc.std()), 1e-6)
    return acc if step == 1 else _upsample(acc, shape)


def triangular(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean unit-variance noise, float32: the sum of two uniforms.

    Pixel noise only needs a bell shape; this is ~4x faster than normal draws, which matters
    for 13 bands of a 5490x5490 scene.
    """
    out = rng.random(shape, dtype=np.float32)
    out += rng.random(shape, dtype=np.float32)
    out -= 1.0
    out *= np.float32(math.sqrt(6.0))
    return out


def uniform_noise(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill float32 ``out`` with zero-mean unit-variance uniform noise (one draw per pixel)."""
    rng.random(dtype=np.float32, out=out)
    out -= 0.5
    out *= np.float32(math.sqrt(12.0))
    return out


def rotated_coords(
    shape: tuple[int, int], angle: float, origin: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u along ``angle``, v across) relative to ``origin`` (row, col)."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None] - np.float32(origin[0])
    cols = np.arange(shape[1], dtype=np.float32)[None, :] - np.float32(origin[1])
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    return cols * cos + rows * sin, rows * cos - cols * sin


@dataclass(frozen=True)
class Meander:
    """A sum of sines describing a wandering centre line v(u)."""

    amplitudes: tuple[float, ...]
    wavelengths: tuple[float, ...]
    phases: tuple[float, ...]

    def offset(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre-line offset and its slope at ``u``; the offset is 0 at ``u = 0``.

        Anchoring the line at its centre point keeps it inside the scene whatever the wander
        (the centre is drawn inside the scene).
        """
        off = np.zeros_like(u)
        slope = np.zeros_like(u)
        for amp, lam, phase in zip(self.amplitudes, self.wavelengths, self.phases, strict=True):
            arg = np.float32(2 * math.pi / lam) * u + np.float32(phase)
            off += np.float32(amp) * (np.sin(arg) - np.float32(math.sin(phase)))
            slope += np.float32(amp * 2 * math.pi / lam) * np.cos(arg)
        return off, slope


def line_pieces(
    shape: tuple[int, int],
    centre: tuple[float, float],
    angle: float,
    half_length: float,
    meander: Meander,
    reach: float,
    chunk: float = 256.0,
) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """Distance (pixels) to a wandering line segment, piece by piece along the line.

    Yields each piece's bounding box (slices) inside the scene and the distance there, inf
    outside the piece's stretch of the line, so every pixel is claimed by one piece at most.
    Pieces keep the boxes of long diagonal lines small (a 2.5 km road's single box would be
    ~6 M pixels). The perpendicular distance is approximated by the offset across the line
    divided by sqrt(1 + slope^2), so steep meanders keep their width.
    """
    pad = 2.0 * sum(abs(a) for a in meander.amplitudes) + reach + 2.0
    cos, sin = math.cos(angle), math.sin(angle)
    n_pieces = max(1, math.ceil(2 * half_length / chunk))
    step = 2 * half_length / n_pieces
    for k in range(n_pieces):
        u_lo = -half_length + k * step
        mid = u_lo + step / 2
        pr, pc = centre[0] + mid * sin, centre[1] + mid * cos
        ext_r = step / 2 * abs(sin) + pad
        ext_c = step / 2 * abs(cos) + pad
        r0, r1 = max(0, math.floor(pr - ext_r)), min(shape[0], math.ceil(pr + ext_r))
        c0, c1 = max(0, math.floor(pc - ext_c)), min(shape[1], math.ceil(pc + ext_c))
        if r0 >= r1 or c0 >= c1:
            continue
        u, v = rotated_coords((r1 - r0, c1 - c0), angle, (centre[0] - r0, centre[1] - c0))
        off, slope = meander.offset(u)
        dist = np.abs(v - off) / np.sqrt(1.0 + slope * slope)
        dist[(u < u_lo) | (u >= u_lo + step)] = np.inf
        yield (slice(r0, r1), slice(c0, c1)), dist
