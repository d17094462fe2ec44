"""The embedded default dataset: synthetic Sentinel-1/2 scenes with land cover and clouds.

A stand-in for SEN12MS-CR / LuojiaSET-OSFCR scenes that is learnable and physically plausible
rather than noise, so the whole workflow (tiling, cloud removal, segmentation, metrics) can run
and be tested without downloading anything:

* **Land cover** (7 classes, :data:`~tdpcr.core.specs.CLASS_NAMES`): landscape zones from the
  argmax of smooth multi-octave noise fields (sharp, organic boundaries), subdivided into
  agricultural parcels on a rotated grid with hedgerows, urban street grids, forest clearings,
  lakes, plus thin structures: roads (1-3 px lines of built-up), a meandering river with
  riparian trees, streams, and small building blocks.
* **Clear S2 L1C reflectance**: per class, a linear mix of two top-of-atmosphere endmember
  spectra (e.g. sparse vs. dense forest, tilled soil vs. full crop canopy, clear vs. turbid
  water) driven by a per-parcel / per-region state, with within-class texture, illumination
  variation, sensor noise, and the 20 m / 60 m bands smoothed to their native resolution.
* **S1 backscatter** (dB): per-class VV/VH levels driven by the same parcel states (fields have
  edges in SAR too) plus SAR-only roughness and soil-moisture fields, but not the optical
  texture; 4-look gamma speckle; clipped to [-35, 0] dB like SEN12MS-CR.
* **Clouds and shadows** from :mod:`tdpcr.data.clouds` (satellite-cloud-generator shapes, cover
  controlled to a target).

All distances are in 10 m pixels and do not depend on the scene size, so a 5490x5490 benchmark
scene looks like a larger piece of the same kind of landscape as a 512x512 one.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rasterio.transform import Affine
from scipy.ndimage import uniform_filter
from tqdm import tqdm

from tdpcr.core.io import atomic_folder
from tdpcr.core.specs import (
    CLASS_NAMES,
    CLOUD_BINS,
    LANDCOVER_COLORS,
    S1_BANDS,
    S2_BANDS,
    S2_SCALE,
    cloud_bin_index,
)
from tdpcr.data.clouds import CloudLayer, apply_cloud_layer, make_cloud_layer, single_torch_thread
from tdpcr.data.rasters import write_geotiff

TREE, SHRUB, GRASS, CROP, BUILT, WATER, BARE = (
    CLASS_NAMES.index(name)
    for name in ("tree", "shrub", "grass", "crop", "built-up", "water", "bare")
)

#: Pixel size of the synthetic scenes (m), as Sentinel-2's 10 m bands.
PIXEL_SIZE = 10.0
#: Smallest supported scene side; below this the landscape has no room for its structures.
MIN_SIZE = 32

# Top-of-atmosphere reflectance endmembers, one row per class in CLASS_NAMES order (tree, shrub,
# grass, crop, built-up, water, bare), columns in S2_BANDS order.
# "Low" and "high" are the two ends of each class's state (vigour): sparse/open -> dense
# canopy, dry -> lush, tilled soil -> full crop canopy, dark asphalt/roof -> bright concrete,
# clear -> turbid water, moist dark soil -> dry bright sand. Typical L1C values: vegetation has
# low visible reflectance, a red-edge rise (B5-B7) and NIR 0.25-0.45; water is dark with NIR
# 0.01-0.03; soils brighten towards SWIR (B11); built-up is flat and moderately bright. B1
# carries aerosol/Rayleigh path radiance (~0.1 everywhere), B9 is NIR seen through water-vapour
# absorption (~30-40 % of B8A), B10 (cirrus, 1375 nm) is nearly black under a clear sky.
_SPECTRA_LOW = np.array(
    [
        # B1    B2     B3     B4     B5     B6     B7     B8     B8A    B9     B10    B11   B12
        [0.105, 0.075, 0.065, 0.045, 0.085, 0.190, 0.235, 0.255, 0.270, 0.085, 0.003, 0.15, 0.075],
        [0.120, 0.095, 0.095, 0.095, 0.125, 0.170, 0.195, 0.210, 0.220, 0.075, 0.004, 0.26, 0.180],
        [0.125, 0.100, 0.110, 0.115, 0.150, 0.190, 0.210, 0.230, 0.240, 0.080, 0.004, 0.30, 0.210],
        [0.125, 0.100, 0.115, 0.135, 0.160, 0.190, 0.210, 0.225, 0.235, 0.080, 0.005, 0.30, 0.240],
        [0.130, 0.105, 0.100, 0.100, 0.110, 0.120, 0.130, 0.135, 0.140, 0.050, 0.004, 0.15, 0.130],
        [0.095, 0.070, 0.050, 0.030, 0.022, 0.016, 0.014, 0.012, 0.010, 0.004, 0.002, 0.006, 0.004],
        [0.120, 0.095, 0.105, 0.130, 0.150, 0.165, 0.180, 0.195, 0.205, 0.070, 0.004, 0.27, 0.220],
    ],
    dtype=np.float32,
)
_SPECTRA_HIGH = np.array(
    [
        [0.100, 0.070, 0.068, 0.035, 0.095, 0.270, 0.340, 0.370, 0.390, 0.125, 0.003, 0.17, 0.075],
        [0.110, 0.082, 0.082, 0.065, 0.105, 0.210, 0.255, 0.275, 0.290, 0.095, 0.004, 0.22, 0.130],
        [0.110, 0.080, 0.085, 0.050, 0.110, 0.280, 0.340, 0.360, 0.380, 0.125, 0.004, 0.22, 0.110],
        [0.105, 0.072, 0.080, 0.035, 0.100, 0.320, 0.410, 0.440, 0.460, 0.150, 0.004, 0.21, 0.100],
        [0.170, 0.155, 0.160, 0.170, 0.180, 0.190, 0.200, 0.210, 0.215, 0.070, 0.006, 0.25, 0.220],
        [0.100, 0.080, 0.075, 0.055, 0.045, 0.028, 0.025, 0.022, 0.018, 0.006, 0.002, 0.008, 0.005],
        [0.150, 0.130, 0.160, 0.210, 0.240, 0.260, 0.280, 0.300, 0.310, 0.100, 0.007, 0.40, 0.340],
    ],
    dtype=np.float32,
)
#: Bands at 20 m and 60 m native resolution and the box size (10 m pixels) that smooths them.
_BAND_SMOOTHING = {
    S2_BANDS.index(b): (2 if b in ("B5", "B6", "B7", "B8A", "B11", "B12") else 6)
    for b in ("B1", "B5", "B6", "B7", "B8A", "B9", "B10", "B11", "B12")
}

# Sentinel-1 sigma0 (dB) per class (rows as above) at low and high state, columns VV, VH.
# Forest: volume scattering, VV -7..-9 / VH -12..-14; built-up: double bounce, VV -3..0; water:
# specular, VV -20..-25 / VH -28..-32 (wind roughens it: the "high" end); bare soil ~ -12/-20;
# grass and crops in between, VH rising with biomass.
_SAR_LOW = np.array(
    [
        [-8.8, -14.0],
        [-10.5, -17.0],
        [-12.5, -19.5],
        [-13.5, -21.0],
        [-4.5, -11.0],
        [-24.0, -30.5],
        [-14.0, -21.5],
    ],
    dtype=np.float32,
)
_SAR_HIGH = np.array(
    [
        [-7.0, -12.3],
        [-8.5, -15.0],
        [-10.5, -17.0],
        [-9.0, -15.0],
        [-0.5, -6.5],
        [-20.0, -28.0],
        [-11.0, -18.5],
    ],
    dtype=np.float32,
)
#: Roads are smooth asphalt: darker than buildings in SAR (the pixel holds verges too).
_ROAD_SAR = np.array([-11.0, -19.0], dtype=np.float32)
#: Vigour (here: brightness) of road pixels: dark asphalt.
_ROAD_STATE = 0.2
#: SEN12MS-CR's S1 range: capped at 0 dB, minimum about -35 dB.
_S1_RANGE_DB = (-35.0, 0.0)
#: Equivalent number of looks of the speckle (S1 GRD IW is ~4.4).
_LOOKS = 4.0

#: Landscape zones, their class and their share bias in the zone argmax.
_ZONES: tuple[tuple[str, float], ...] = (
    ("forest", 0.0),
    ("shrubland", -0.35),
    ("grassland", -0.2),
    ("cropland", 0.35),
    ("urban", -0.9),
)
_FOREST, _SHRUBLAND, _GRASSLAND, _CROPLAND, _URBAN = range(len(_ZONES))


# ---------------------------------------------------------------------------------------------
# Noise and geometry helpers


def _upsample(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic interpolation of a coarse grid onto ``shape`` (corners aligned), float32."""
    tensor = torch.from_numpy(coarse)[None, None]
    with single_torch_thread():
        out = torch.nn.functional.interpolate(
            tensor, size=shape, mode="bicubic", align_corners=True
        )
    return out[0, 0].numpy()


def _fractal(
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


def _triangular(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean unit-variance noise, float32: the sum of two uniforms.

    Pixel noise only needs a bell shape; this is ~4x faster than normal draws, which matters
    for 13 bands of a 5490x5490 scene.
    """
    out = rng.random(shape, dtype=np.float32)
    out += rng.random(shape, dtype=np.float32)
    out -= 1.0
    out *= np.float32(math.sqrt(6.0))
    return out


def _uniform_noise(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill float32 ``out`` with zero-mean unit-variance uniform noise (one draw per pixel)."""
    rng.random(dtype=np.float32, out=out)
    out -= 0.5
    out *= np.float32(math.sqrt(12.0))
    return out


def _rotated_coords(
    shape: tuple[int, int], angle: float, origin: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u along ``angle``, v across) relative to ``origin`` (row, col)."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None] - np.float32(origin[0])
    cols = np.arange(shape[1], dtype=np.float32)[None, :] - np.float32(origin[1])
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    return cols * cos + rows * sin, rows * cos - cols * sin


@dataclass(frozen=True)
class _Meander:
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


def _line_pieces(
    shape: tuple[int, int],
    centre: tuple[float, float],
    angle: float,
    half_length: float,
    meander: _Meander,
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
        u, v = _rotated_coords((r1 - r0, c1 - c0), angle, (centre[0] - r0, centre[1] - c0))
        off, slope = meander.offset(u)
        dist = np.abs(v - off) / np.sqrt(1.0 + slope * slope)
        dist[(u < u_lo) | (u >= u_lo + step)] = np.inf
        yield (slice(r0, r1), slice(c0, c1)), dist


# ---------------------------------------------------------------------------------------------
# Land cover


@dataclass
class _Layout:
    """Land cover and the per-pixel state the sensors see.

    Attributes:
        landcover: (H, W) uint8 class.
        state: (H, W) float32 in [0, 1], the per-region / per-parcel state of the class
            (greenness, density, brightness, turbidity); shared by optics and SAR.
        sar_offset: (H, W) float32 dB, per-parcel / per-block roughness seen only by SAR.
        road: (H, W) bool, built-up pixels that are roads (dark in SAR).
    """

    landcover: np.ndarray
    state: np.ndarray
    sar_offset: np.ndarray
    road: np.ndarray


def _zones(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Landscape zone per pixel: argmax of biased smooth noise fields (organic, sharp edges)."""
    zone = np.zeros(shape, dtype=np.uint8)
    best = None
    for index, (_, bias) in enumerate(_ZONES):
        field = _fractal(rng, shape, scale=float(rng.uniform(150.0, 260.0)), octaves=4)
        field += np.float32(bias + rng.normal(0.0, 0.35))
        if best is None:
            best = field
            continue
        better = field > best
        zone[better] = index
        np.maximum(best, field, out=best)
    return zone


def _parcels(
    rng: np.random.Generator, shape: tuple[int, int], where: np.ndarray, layout: _Layout
) -> None:
    """Agricultural parcels on a rotated grid inside ``where``: crop, meadow or fallow.

    Columns of random width (150-600 m) are cut into parcels of random length with a per-column
    stagger, so parcels look like real field blocks; each gets a class, a state (crop
    greenness, grass lushness, soil brightness) and a SAR roughness. Some parcel edges carry
    1 px hedgerows of trees.
    """
    if not where.any():
        return
    angle = float(rng.uniform(-math.pi / 4, math.pi / 4))
    rows, cols = np.nonzero(where)
    u, v = _rotated_coords(shape, angle, (0.0, 0.0))
    u, v = u[rows, cols], v[rows, cols]
    u_min, u_max = float(u.min()), float(u.max())
    widths = rng.uniform(15.0, 60.0, size=int((u_max - u_min) / 15.0) + 2)
    bounds = u_min - rng.uniform(0.0, 15.0) + np.cumsum(widths)
    col = np.searchsorted(bounds, u).astype(np.int32)
    n_cols = len(bounds) + 1
    lengths = rng.uniform(20.0, 80.0, size=n_cols).astype(np.float32)
    stagger = rng.uniform(0.0, 80.0, size=n_cols).astype(np.float32)
    along = (v - np.float32(v.min())) + stagger[col]
    row = (along / lengths[col]).astype(np.int32)
    n_rows = int(row.max()) + 1
    pid = col.astype(np.int64) * n_rows + row
    n_parcels = n_cols * n_rows

    kind = rng.choice(
        np.array([CROP, GRASS, BARE], dtype=np.uint8), size=n_parcels, p=[0.72, 0.15, 0.13]
    )
    state = np.where(
        kind == CROP,
        rng.uniform(0.0, 1.0, n_parcels),
        np.where(kind == GRASS, rng.uniform(0.4, 1.0, n_parcels), rng.uniform(0.1, 0.6, n_parcels)),
    ).astype(np.float32)
    cls = kind[pid]
    st = state[pid]
    rough = rng.normal(0.0, 1.2, n_parcels).astype(np.float32)[pid]

    # Hedgerows along the first pixel of some columns and some parcel ends.
    lower = np.concatenate(([np.float32(-1e9)], bounds.astype(np.float32)))[col]
    hedge_col = rng.random(n_cols) < 0.3
    hedge_row = rng.random(n_cols) < 0.15
    hedge = (hedge_col[col] & (u - lower < 1.2)) | (
        hedge_row[col] & (along - row * lengths[col] < 1.0)
    )
    cls[hedge] = TREE
    st[hedge] = 0.8
    layout.landcover[rows, cols] = cls
    layout.state[rows, cols] = st
    layout.sar_offset[rows, cols] += rough


def _urban(
    rng: np.random.Generator, shape: tuple[int, int], where: np.ndarray, layout: _Layout
) -> None:
    """Street grid with building blocks, parks and tree-lined blocks inside ``where``."""
    if not where.any():
        return
    angle = float(rng.uniform(-math.pi / 4, math.pi / 4))
    rows, cols = np.nonzero(where)
    u, v = _rotated_coords(shape, angle, (0.0, 0.0))
    u, v = u[rows, cols], v[rows, cols]
    u -= u.min()
    v -= v.min()
    period_u, period_v = rng.uniform(10.0, 24.0, size=2).astype(np.float32)
    street = float(rng.choice([1.0, 2.0]))
    bi = (u / period_u).astype(np.int64)
    bj = (v / period_v).astype(np.int64)
    n_j = int(bj.max()) + 1
    bid = bi * n_j + bj
    n_blocks = (int(bi.max()) + 1) * n_j
    kind = rng.choice(
        np.array([BUILT, GRASS, TREE], dtype=np.uint8), size=n_blocks, p=[0.75, 0.15, 0.10]
    )
    cls = kind[bid]
    st = rng.uniform(0.0, 1.0, n_blocks).astype(np.float32)[bid]
    is_street = ((u - bi * period_u) < street) | ((v - bj * period_v) < street)
    cls[is_street] = BUILT
    st[is_street] = _ROAD_STATE
    layout.landcover[rows, cols] = cls
    layout.state[rows, cols] = st
    layout.sar_offset[rows, cols] += rng.normal(0.0, 2.0, n_blocks).astype(np.float32)[bid]


def _draw_line(
    rng: np.random.Generator,
    layout: _Layout,
    centre: tuple[float, float],
    angle: float,
    half_length: float,
    half_width: float,
    meander: _Meander,
    cls: int,
    bank: float = 0.0,
    road: bool = False,
    protect: np.ndarray | None = None,
) -> None:
    """Burn a wandering line of ``cls`` (with an optional riparian tree bank) into the layout.

    Pixels where ``protect`` is true are left alone (roads stop at lake shores).
    """
    shape = layout.landcover.shape
    tree_state = rng.uniform(0.6, 1.0)
    water_state = rng.uniform(0.1, 0.5)  # turbidity: rivers carry silt
    for box, dist in _line_pieces(shape, centre, angle, half_length, meander, half_width + bank):
        lc = layout.landcover[box]
        # Painted pixels forget the parcel or block they cover: its state and roughness too.
        if bank > 0.0:
            on_bank = (dist <= half_width + bank) & (lc != WATER) & (lc != BUILT)
            lc[on_bank] = TREE
            layout.state[box][on_bank] = tree_state
            layout.sar_offset[box][on_bank] = 0.0
        on_line = dist <= half_width
        if protect is not None:
            on_line &= ~protect[box]
        lc[on_line] = cls
        layout.road[box][on_line] = road
        layout.sar_offset[box][on_line] = 0.0
        if cls == WATER:
            layout.state[box][on_line] = water_state
        elif road:
            layout.state[box][on_line] = _ROAD_STATE


def _random_meander(rng: np.random.Generator, width: float, wander: float) -> _Meander:
    """Irregular meanders: wavelengths scale with channel width (~12-25x, as real rivers),
    with a second incommensurate bend and a long-range wander so the line does not look like
    a sine wave."""
    short = width * rng.uniform(12.0, 25.0)
    medium = short * rng.uniform(2.3, 3.1)
    return _Meander(
        amplitudes=(
            short * rng.uniform(0.05, 0.15),
            medium * rng.uniform(0.05, 0.12),
            wander * rng.uniform(0.3, 1.0),
        ),
        wavelengths=(short, medium, rng.uniform(800.0, 2000.0)),
        phases=tuple(rng.uniform(0.0, 2 * math.pi, size=3)),
    )


def _buildings(rng: np.random.Generator, layout: _Layout) -> None:
    """Small building blocks (20-50 m): village clusters and isolated farms, not on water."""
    h, w = layout.landcover.shape
    area = h * w
    centres = [
        (rng.uniform(0, h), rng.uniform(0, w), 12.0, int(rng.integers(3, 16)))
        for _ in range(rng.poisson(area / 200.0**2) + 1)
    ]
    centres += [
        (rng.uniform(0, h), rng.uniform(0, w), 0.0, 1) for _ in range(rng.poisson(area / 120.0**2))
    ]
    for cy, cx, spread, count in centres:
        for _ in range(count):
            r = round(cy + rng.normal(0.0, spread) if spread else cy)
            c = round(cx + rng.normal(0.0, spread) if spread else cx)
            bh, bw = (int(x) for x in rng.integers(2, 5, size=2))
            box = (
                slice(max(r, 0), max(min(r + bh, h), 0)),
                slice(max(c, 0), max(min(c + bw, w), 0)),
            )
            lc = layout.landcover[box]
            dry = lc != WATER
            lc[dry] = BUILT
            layout.state[box][dry] = rng.uniform(0.2, 1.0)
            layout.sar_offset[box][dry] = rng.normal(0.0, 2.0)


def _layout(rng: np.random.Generator, size: int) -> _Layout:
    """Draw the land cover of one scene and the per-pixel class state."""
    shape = (size, size)
    area = size * size
    layout = _Layout(
        landcover=np.empty(shape, dtype=np.uint8),
        state=np.clip(0.5 + 0.22 * _fractal(rng, shape, 60.0), 0.0, 1.0),
        sar_offset=np.zeros(shape, dtype=np.float32),
        road=np.zeros(shape, dtype=bool),
    )
    zone = _zones(rng, shape)
    lc = layout.landcover
    detail = _fractal(rng, shape, scale=40.0, octaves=3)
    flip = _fractal(rng, shape, scale=25.0, octaves=2) > 0

    lc[:] = TREE
    # Forest with clearings (grass or scrub), scrubland with bare and grassy patches, grassland
    # with scrub and copses: sub-patches give edges inside zones.
    forest = zone == _FOREST
    lc[forest & (detail > 0.9)] = np.where(flip, GRASS, SHRUB)[forest & (detail > 0.9)]
    shrubland = zone == _SHRUBLAND
    lc[shrubland] = SHRUB
    lc[shrubland & (detail > 0.8)] = BARE
    lc[shrubland & (detail < -1.0)] = GRASS
    grassland = zone == _GRASSLAND
    lc[grassland] = GRASS
    lc[grassland & (detail > 0.9)] = SHRUB
    lc[grassland & (detail < -1.1)] = TREE
    del detail, flip
    _parcels(rng, shape, zone == _CROPLAND, layout)
    urban = zone == _URBAN
    _urban(rng, shape, urban, layout)

    # Quarries / sand and lakes in the low spots of an elevation-like field.
    quarry = (_fractal(rng, shape, scale=50.0, octaves=2) > rng.uniform(1.9, 2.4)) & ~urban
    lc[quarry] = BARE
    lake = _fractal(rng, shape, scale=300.0, octaves=3) < rng.uniform(-2.4, -1.5)
    lc[lake] = WATER
    # Lakes are mostly clear water; a smooth turbidity field of their own (not the parcels).
    turbidity = np.clip(0.15 + 0.1 * _fractal(rng, shape, scale=100.0, octaves=2), 0.0, 1.0)
    layout.state[lake] = turbidity[lake]
    layout.sar_offset[lake] = 0.0
    del turbidity

    # One river crossing the scene, with riparian trees; a few streams.
    width = float(rng.uniform(3.0, 9.0))
    _draw_line(
        rng,
        layout,
        centre=(size / 2 + rng.uniform(-0.3, 0.3) * size, size / 2 + rng.uniform(-0.3, 0.3) * size),
        angle=float(rng.uniform(0.0, math.pi)),
        half_length=2.0 * size,
        half_width=width / 2,
        meander=_random_meander(rng, width, 100.0),
        cls=WATER,
        bank=float(rng.uniform(1.5, 4.0)),
    )
    for _ in range(int(rng.integers(0, 3)) + rng.poisson(area / 1500.0**2)):
        width = float(rng.uniform(1.5, 2.5))
        _draw_line(
            rng,
            layout,
            centre=(rng.uniform(0, size), rng.uniform(0, size)),
            angle=float(rng.uniform(0.0, math.pi)),
            half_length=float(rng.uniform(0.2, 0.6)) * min(size, 3000),
            half_width=width / 2,
            meander=_random_meander(rng, width, 30.0),
            cls=WATER,
            bank=1.0,
        )
    _buildings(rng, layout)
    # Roads last, so they bridge rivers: 1-3 px lines of built-up, gently curving segments.
    for _ in range(max(2, round(area / 350.0**2))):
        _draw_line(
            rng,
            layout,
            centre=(rng.uniform(0, size), rng.uniform(0, size)),
            angle=float(rng.uniform(0.0, math.pi)),
            half_length=float(rng.uniform(0.25, 0.75)) * min(size, 2500),
            half_width=float(rng.choice([0.75, 1.25])),
            meander=_Meander(
                (rng.uniform(0.0, 30.0),),
                (rng.uniform(600.0, 2000.0),),
                (rng.uniform(0.0, 2 * math.pi),),
            ),
            cls=BUILT,
            road=True,
            protect=lake,
        )
    return layout


# ---------------------------------------------------------------------------------------------
# Sensors


def _reflectance(rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """Clear-sky S2 L1C (13, H, W) uint16, reflectance x 1e4, band by band.

    Each pixel mixes its class's two endmembers by its state plus fine texture and sub-pixel
    mixing noise shared by all bands (so texture is spectrally coherent), scaled by a smooth
    illumination field, plus independent sensor noise (~0.3 % + 1 % of the signal); 20 m and
    60 m bands are smoothed over their native footprint.
    """
    lc = layout.landcover
    shape = lc.shape
    mix = layout.state + np.float32(0.06) * _fractal(rng, shape, scale=8.0, octaves=2)
    mix += np.float32(0.03) * _triangular(rng, shape)
    np.clip(mix, 0.0, 1.0, out=mix)
    light = 1.0 + np.float32(0.04) * _fractal(rng, shape, scale=120.0, octaves=2)
    out = np.empty((len(S2_BANDS), *shape), dtype=np.uint16)
    # Reused buffers: fresh temporaries of a 5490x5490 band cost more in page faults than in
    # arithmetic.
    refl = np.empty(shape, dtype=np.float32)
    tmp = np.empty_like(refl)
    noise = np.empty_like(refl)
    for b in range(len(S2_BANDS)):
        low, high = _SPECTRA_LOW[:, b], _SPECTRA_HIGH[:, b]
        np.take(high - low, lc, out=tmp)
        np.multiply(tmp, mix, out=refl)
        refl += np.take(low, lc, out=tmp)
        refl *= light
        # Sensor noise, uniform with sigma = 0.3 % + 1 % of the signal (cheaper than normal).
        np.multiply(refl, np.float32(0.01), out=tmp)
        tmp += np.float32(0.003)
        tmp *= _uniform_noise(rng, noise)
        refl += tmp
        if b in _BAND_SMOOTHING:
            uniform_filter(refl, size=_BAND_SMOOTHING[b], mode="nearest", output=tmp)
            refl, tmp = tmp, refl
        refl *= np.float32(S2_SCALE)
        np.rint(refl, out=refl)
        np.clip(refl, 1, 65535, out=refl)
        out[b] = refl
    return out


def _backscatter(rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """S1 sigma0 (2, H, W) float32 dB (VV, VH) with 4-look gamma speckle, clipped to [-35, 0].

    The mean level follows class and parcel state (the structure), plus SAR-only roughness per
    parcel and a soil-moisture field; water uses its own wind field. Speckle is multiplicative
    on intensity, drawn independently per polarisation.
    """
    lc = layout.landcover
    shape = lc.shape
    water = lc == WATER
    state = layout.state.copy()
    state[water] = np.clip(0.5 + 0.3 * _fractal(rng, shape, scale=150.0, octaves=2), 0, 1)[water]
    moisture = np.float32(0.8) * _fractal(rng, shape, scale=100.0, octaves=2)
    moisture[water] = 0.0
    out = np.empty((len(S1_BANDS), *shape), dtype=np.float32)
    for p in range(len(S1_BANDS)):
        low = _SAR_LOW[:, p][lc]
        db = low + (_SAR_HIGH[:, p][lc] - low) * state
        del low
        db += layout.sar_offset
        db += moisture
        db[layout.road] = _ROAD_SAR[p]
        linear = np.power(np.float32(10.0), db / np.float32(10.0))
        linear *= rng.standard_gamma(_LOOKS, size=shape, dtype=np.float32)
        linear /= np.float32(_LOOKS)
        db = np.float32(10.0) * np.log10(np.maximum(linear, np.float32(1e-6)))
        out[p] = np.clip(db, *_S1_RANGE_DB)
    return out


# ---------------------------------------------------------------------------------------------
# Public API


def _generate(
    size: int, seed: int, target_cloud_cover: float | None
) -> tuple[dict[str, np.ndarray], CloudLayer]:
    """Scene arrays and the cloud layer (for the cover and type written as tags)."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    # Independent streams per component: the same seed gives the same ground whatever the
    # requested cloud cover, and optical, SAR and cloud noise do not shift each other.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    layout_rng, optical_rng, sar_rng, cloud_rng, cover_rng = streams
    if target_cloud_cover is None:
        target_cloud_cover = float(cover_rng.uniform(0.0, 1.0))
    layout = _layout(layout_rng, size)
    clear = _reflectance(optical_rng, layout)
    s1 = _backscatter(sar_rng, layout)
    layer = make_cloud_layer(size, size, float(target_cloud_cover), cloud_rng)
    cloudy = apply_cloud_layer(clear, layer)
    scene = {
        "s2_clear": clear,
        "s2_cloudy": cloudy,
        "s1": s1,
        "landcover": layout.landcover,
        "cloudmask": layer.mask,
    }
    return scene, layer


def generate_scene(
    size: int, seed: int, target_cloud_cover: float | None = None
) -> dict[str, np.ndarray]:
    """One synthetic square scene of ``size`` x ``size`` 10 m pixels.

    Args:
        size: side in pixels (>= 32).
        seed: any non-negative integer; the same seed gives byte-identical arrays.
        target_cloud_cover: wanted fraction of cloud or cloud-shadow pixels in [0, 1]; drawn
            uniformly from the seed when ``None``. The realised cover (``cloudmask.mean()``)
            lands within ~0.01 of it (a little lower near 1).

    Returns:
        ``s2_clear`` and ``s2_cloudy`` (13, H, W) uint16 reflectance x 1e4 in
        :data:`~tdpcr.core.specs.S2_BANDS` order; ``s1`` (2, H, W) float32 dB (VV, VH);
        ``landcover`` (H, W) uint8 classes 0..6 (:data:`~tdpcr.core.specs.CLASS_NAMES`);
        ``cloudmask`` (H, W) uint8, 1 = cloud or cloud shadow.
    """
    return _generate(size, seed, target_cloud_cover)[0]


@dataclass(frozen=True)
class ScenePlan:
    """What :func:`write_synthetic_scenes` writes for one scene.

    Attributes:
        name: folder name, ``scene00`` ... (zero-padded to fit the scene count).
        seed: the scene's seed for :func:`generate_scene`.
        target_cloud_cover: requested cover, inside LuojiaSET-OSFCR bin ``index % 5``.
        crs: UTM CRS as ``EPSG:326zz``.
        transform: 10 m north-up geotransform.
    """

    name: str
    seed: int
    target_cloud_cover: float
    crs: str
    transform: Affine


def scene_plan(n_scenes: int, size: int, seed: int) -> list[ScenePlan]:
    """Name, seed, target cloud cover and georeference of each scene of a synthetic set.

    Scene ``i``'s target cover is drawn inside LuojiaSET-OSFCR bin ``i % 5`` (kept 2 % away
    from the bin edges so the realised cover stays in the bin), so every five consecutive
    scenes span 0-100 %. Each scene gets its own stream ``SeedSequence(seed, spawn_key=(i,))``,
    so a scene does not depend on how many scenes are written. The georeference is a
    northern-hemisphere UTM zone drawn from all 60 (EPSG:32601-32660) with an origin in
    300-700 km easting and 4000-6000 km northing, snapped to whole 10 m pixels.
    """
    digits = max(2, len(str(max(n_scenes - 1, 0))))
    extent = size * PIXEL_SIZE
    plans = []
    for i in range(n_scenes):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        scene_seed = int(rng.integers(0, 2**63 - 1))
        low = 0.2 * (i % 5)
        cover = float(rng.uniform(low + 0.02, low + 0.18))
        zone = int(rng.integers(1, 61))
        x0 = rng.uniform(300_000.0, max(300_000.0, 700_000.0 - extent))
        y0 = rng.uniform(min(4_000_000.0 + extent, 6_000_000.0), 6_000_000.0)
        transform = Affine(
            PIXEL_SIZE,
            0.0,
            round(x0 / PIXEL_SIZE) * PIXEL_SIZE,
            0.0,
            -PIXEL_SIZE,
            round(y0 / PIXEL_SIZE) * PIXEL_SIZE,
        )
        plans.append(
            ScenePlan(f"scene{i:0{digits}d}", scene_seed, cover, f"EPSG:{32600 + zone}", transform)
        )
    return plans


def write_synthetic_scenes(out_dir: Path, n_scenes: int, size: int, seed: int) -> list[Path]:
    """Write ``n_scenes`` synthetic scenes as GeoTIFF folders ``out_dir/scene00`` ...

    Each folder holds ``s2_clear.tif``, ``s2_cloudy.tif``, ``s1.tif``, ``landcover.tif`` (with
    a colour table) and ``cloudmask.tif`` on one UTM grid with 10 m pixels (see
    :func:`scene_plan`). A scene is written into a hidden temporary folder and renamed into
    place when complete, so an interrupted run leaves no partial scene folder; ``s2_cloudy.tif``
    is written last because scene readers recognise a scene folder by it, and temporary folders
    left by a killed run are removed first. A re-run replaces existing scene folders.

    Returns:
        The scene folders, in order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".scene*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    written = []
    for plan in tqdm(scene_plan(n_scenes, size, seed), desc="synthetic scenes", unit="scene"):
        scene, layer = _generate(size, plan.seed, plan.target_cloud_cover)
        tags = {
            "generator": "tdpcr.data.synthetic",
            "seed": str(plan.seed),
            "target_cloud_cover": f"{plan.target_cloud_cover:.4f}",
            "cloud_cover": f"{layer.cover:.4f}",
            "cloud_bin": CLOUD_BINS[cloud_bin_index(layer.cover)],
            "cloud_type": layer.cloud_type,
        }
        geo = {"crs": plan.crs, "transform": plan.transform, "tags": tags}
        final = out_dir / plan.name
        with atomic_folder(final) as tmp:
            write_geotiff(
                tmp / "s2_clear.tif", scene["s2_clear"], band_descriptions=S2_BANDS, **geo
            )
            write_geotiff(tmp / "s1.tif", scene["s1"], band_descriptions=S1_BANDS, **geo)
            write_geotiff(
                tmp / "landcover.tif",
                scene["landcover"],
                band_descriptions=("landcover",),
                nodata=255,
                colormap=LANDCOVER_COLORS,
                **geo,
            )
            write_geotiff(
                tmp / "cloudmask.tif", scene["cloudmask"], band_descriptions=("cloudmask",), **geo
            )
            write_geotiff(
                tmp / "s2_cloudy.tif", scene["s2_cloudy"], band_descriptions=S2_BANDS, **geo
            )
        written.append(final)
    return written
