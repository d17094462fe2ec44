"""The embedded default dataset: synthetic Sentinel-1/2 scenes with land cover and clouds.

A stand-in for SEN12MS-CR / LuojiaSET-OSFCR scenes that is learnable and physically plausible
rather than noise, so the whole workflow (tiling, cloud removal, segmentation, metrics) can run
and be tested without downloading anything. ``docs/synthetic-data.md`` gives every calibration
choice, its source, and the measured synthetic-vs-real statistics (:mod:`tdpcr.data.realism`).

* **Land cover** (7 classes, :data:`~tdpcr.core.specs.CLASS_NAMES`): landscape zones from the
  argmax of smooth multi-octave noise fields (sharp, organic boundaries), subdivided into
  agricultural parcels on a rotated grid with hedgerows, urban street grids, forest clearings,
  lakes, plus thin structures: roads (1-3 px lines of built-up), a meandering river with
  riparian trees, streams, and small building blocks.
* **Two acquisitions.** ``s2_clear`` is the clear-sky image of date t0 (the reconstruction
  target); ``s2_cloudy`` and ``s1`` are of date t1, 5-30 days later, as in SEN12MS-CR where
  S1 is paired with the cloudy image. Between the dates: phenology (a scene-wide green-up or
  senescence, strongest in crops and grass, plus per-parcel sowing-date scatter), field events
  on 3-10 % of parcels (harvest, sowing, mowing, ploughing), a small water-level change that
  moves lake shores by a pixel or two, a different sun position over the terrain, and a small
  per-band gain and offset (illumination and atmosphere). ``landcover`` describes t0; every
  change but the lake-shore fringe keeps the class, so it also holds at t1 there.
* **S2 L1C reflectance** per date: per class, a linear mix of two top-of-atmosphere endmember
  spectra (calibrated on the real samples in ``../shared/realdata`` and the literature, see the
  docs) driven by the per-parcel / per-region state, with within-class texture, illumination,
  terrain shading for that date's sun, sensor noise, and the 20 m / 60 m bands smoothed to their
  native resolution.
* **S1 backscatter** (dB) of date t1 from its own physical drivers, not from the optical state:
  a water-cloud model (Attema & Ulaby 1978) of vegetation volume over a soil surface whose
  backscatter follows soil moisture and roughness fields; vegetation volume only partly tied to
  the optical greenness (crop structure and biomass per parcel); double bounce for built-up;
  specular water roughened by a wind field; the incidence-angle trend across the swath and
  local incidence from terrain slopes. 4-look gamma speckle; clipped to [-35, 0] dB like
  SEN12MS-CR.
* **Clouds and shadows** from :mod:`tdpcr.data.clouds` (satellite-cloud-generator shapes, cover
  controlled to a target); the mask flags what a cloud detector would (thin haze included above
  :data:`~tdpcr.data.clouds.CLOUD_THRESHOLD`) with shadows apart, and the true opacity is kept.

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
import rasterio
import rasterio.errors
import torch
from rasterio.transform import Affine
from scipy.ndimage import uniform_filter
from tqdm import tqdm

from tdpcr.core.errors import InputDataError
from tdpcr.core.io import atomic_folder, check_writable, write_json_atomic
from tdpcr.core.specs import (
    CLASS_NAMES,
    CLOUD_BINS,
    LANDCOVER_COLORS,
    S1_BANDS,
    S2_BANDS,
    S2_SCALE,
    cloud_bin_index,
)
from tdpcr.data.clouds import (
    CLOUD_THRESHOLD,
    CloudLayer,
    cloud_band,
    make_cloud_layer,
    single_torch_thread,
)
from tdpcr.data.rasters import write_geotiff
from tdpcr.data.sources.scenes import MANIFEST as SCENES_MANIFEST

TREE, SHRUB, GRASS, CROP, BUILT, WATER, BARE = (
    CLASS_NAMES.index(name)
    for name in ("tree", "shrub", "grass", "crop", "built-up", "water", "bare")
)

#: Pixel size of the synthetic scenes (m), as Sentinel-2's 10 m bands.
PIXEL_SIZE = 10.0
#: Smallest supported scene side; below this the landscape has no room for its structures.
MIN_SIZE = 32
#: File names of a scene folder, in the order they are written (``s2_cloudy.tif`` last: scene
#: readers recognise a finished scene folder by it).
SCENE_FILES: tuple[str, ...] = (
    "s2_clear",
    "s1",
    "landcover",
    "cloudmask",
    "cloud_opacity",
    "s2_cloudy",
)

# Top-of-atmosphere (L1C) reflectance endmembers, one row per class in CLASS_NAMES order (tree,
# shrub, grass, crop, built-up, water, bare), columns in S2_BANDS order. "Low" and "high" are
# the two ends of each class's state: dense dark evergreen -> bright broadleaf canopy, sparse
# -> dense scrub, dry -> lush grass, tilled soil -> full crop canopy, dark asphalt/roof ->
# bright concrete, clear -> turbid water, moist dark soil -> dry bright sand.
# Calibrated on the real L1C samples (docs/synthetic-data.md): vegetation NIR (B8) 0.17-0.39 at
# the class ends, with means of 0.19-0.29 per class, as LuojiaSET forest (0.19-0.20) and the
# dense-vegetation stratum of the SEN12MS-CR patches (0.26-0.34); B7 ~ B8 and B8A ~ 1.1 x B8
# (both seen in every real sample); B6 ~ 0.8 x B8; B9 (water-vapour absorption) ~ 0.3 x B8A;
# B1/B2 carry the aerosol/Rayleigh path radiance (~0.1); B10 (cirrus) ~ 0.001-0.002 under a
# clear sky; dense vegetation dark in SWIR (B11 0.09-0.2, B12 0.04-0.1); water NIR 0.01-0.04.
_SPECTRA_LOW = np.array(
    [
        # B1    B2     B3     B4     B5     B6     B7     B8     B8A    B9     B10    B11   B12
        [0.105, 0.075, 0.062, 0.038, 0.068, 0.145, 0.175, 0.172, 0.192, 0.055, 0.001, 0.095, 0.040],
        [0.120, 0.095, 0.095, 0.095, 0.120, 0.160, 0.180, 0.180, 0.198, 0.058, 0.002, 0.250, 0.170],
        [0.125, 0.100, 0.110, 0.115, 0.145, 0.180, 0.200, 0.200, 0.220, 0.064, 0.002, 0.290, 0.200],
        [0.125, 0.100, 0.115, 0.135, 0.160, 0.178, 0.192, 0.195, 0.212, 0.062, 0.002, 0.290, 0.230],
        [0.130, 0.105, 0.100, 0.100, 0.110, 0.120, 0.130, 0.135, 0.145, 0.045, 0.002, 0.150, 0.130],
        [0.095, 0.070, 0.050, 0.030, 0.022, 0.017, 0.015, 0.014, 0.012, 0.004, 0.001, 0.006, 0.004],
        [0.120, 0.095, 0.105, 0.130, 0.150, 0.165, 0.180, 0.195, 0.210, 0.062, 0.002, 0.270, 0.220],
    ],
    dtype=np.float32,
)
_SPECTRA_HIGH = np.array(
    [
        [0.100, 0.072, 0.068, 0.035, 0.085, 0.232, 0.285, 0.285, 0.318, 0.085, 0.001, 0.150, 0.065],
        [0.110, 0.080, 0.078, 0.060, 0.095, 0.182, 0.218, 0.222, 0.248, 0.068, 0.001, 0.190, 0.110],
        [0.110, 0.078, 0.085, 0.045, 0.100, 0.240, 0.295, 0.300, 0.335, 0.090, 0.001, 0.200, 0.095],
        [0.105, 0.072, 0.082, 0.035, 0.100, 0.300, 0.370, 0.375, 0.420, 0.112, 0.001, 0.195, 0.085],
        [0.170, 0.155, 0.160, 0.170, 0.180, 0.190, 0.200, 0.210, 0.225, 0.065, 0.003, 0.250, 0.220],
        [0.105, 0.085, 0.080, 0.065, 0.055, 0.040, 0.037, 0.032, 0.027, 0.008, 0.001, 0.010, 0.006],
        [0.150, 0.130, 0.160, 0.210, 0.240, 0.260, 0.280, 0.300, 0.315, 0.090, 0.003, 0.400, 0.340],
    ],
    dtype=np.float32,
)
#: Bands at 20 m and 60 m native resolution and the box size (10 m pixels) that smooths them.
_BAND_SMOOTHING = {
    S2_BANDS.index(b): (2 if b in ("B5", "B6", "B7", "B8A", "B11", "B12") else 6)
    for b in ("B1", "B5", "B6", "B7", "B8A", "B9", "B10", "B11", "B12")
}
#: Vigour (here: brightness) of road pixels: dark asphalt.
_ROAD_STATE = 0.2
#: Terrain shading exponent (Minnaert-like; 1 would be Lambertian, too strong for canopies).
_SHADING_EXPONENT = 0.5
#: Between-date atmosphere: s.d. of the per-band TOA offset (path radiance, largest in the
#: blue where aerosol scatters most) and of the per-band gain; B9 varies with water vapour.
_GAP_OFFSET_SD = np.array(
    [0.008, 0.006, 0.004, 0.003, 0.002, 0.001, 0.001, 0.001, 0.001, 0.002, 0.0003, 0.001, 0.001],
    dtype=np.float32,
)
_GAP_GAIN_SD = np.array(
    [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.06, 0.01, 0.01, 0.01],
    dtype=np.float32,
)
#: Scene-wide phenology between the dates, relative weight per class (crops fastest).
_PHENOLOGY = np.array([0.35, 0.25, 0.8, 1.0, 0.0, 0.0, 0.0], dtype=np.float32)
#: Leaf-off deciduous canopy (bare branches over litter and soil, TOA): in a dormant-season
#: scene (:data:`_DORMANT_ODDS`) tree spectra move towards it by a share of deciduous trees,
#: while C-band still sees the branches (VH drops by about 1 dB only). Winter SEN12MS-CR patches
#: owe their negative VH-NDVI correlation to this: green meadows dark in VH, bare woods bright.
_LEAF_OFF = np.array(
    [0.115, 0.090, 0.085, 0.085, 0.110, 0.140, 0.155, 0.165, 0.180, 0.052, 0.002, 0.230, 0.150],
    dtype=np.float32,
)
_DORMANT_ODDS = 0.25
_LEAF_OFF_VH_DB = -1.2

# ---------------------------------------------------------------------------------------------
# Sentinel-1 model (C band, IW GRD, sigma0 in dB). Sources and the calibration against the real
# samples are in docs/synthetic-data.md; the levels below land at the SEN12MS / literature class
# means (forest VV -7..-9 / VH -12..-15, grass and crops VV -10..-13 / VH -16..-20, bare soil
# VV -12..-16 / VH -19..-24, urban VV -6..0, water VV < -18 / VH < -25), and the spreads come
# from the drivers rather than from a per-class table.

#: Reference incidence angle (deg) of the class levels; S1 IW spans 29-46 deg across 250 km.
_THETA_REF = 37.0
#: Incidence-angle change across the swath, deg per 10 m pixel (17 deg over 250 km).
_THETA_PER_PX = 17.0 / 25_000.0
#: Volume term of the water-cloud model at saturation (dB), VV and VH, per class (bare has
#: none). Forest saturates at C band; crops and grass stay below (Imhoff 1995, Veloso 2017).
_SAR_VOLUME = np.array(
    [
        [-9.0, -14.5],
        [-9.0, -14.0],
        [-8.6, -13.4],
        [-8.6, -13.2],
        [-10.0, -16.0],
        [-30.0, -35.0],
        [-30.0, -35.0],
    ],
    dtype=np.float32,
)
#: Canopy attenuation of the water-cloud model: two-way transmissivity exp(-k V / cos theta).
_SAR_ATTENUATION = np.array([2.0, 1.6], dtype=np.float32)
#: Vegetation volume index per class: base and weight of the optical state at t1 (crops and
#: grass grow with greenness, forest is saturated; the weight's sign and size vary by scene,
#: as biomass and greenness part ways at senescence); the rest comes from SAR-only fields:
#: per-parcel structure (crop type, biomass at equal greenness) and a canopy-structure field.
_VOLUME_BASE = np.array([0.78, 0.40, 0.22, 0.18, 0.0, 0.0, 0.0], dtype=np.float32)
_VOLUME_STATE = np.array([0.10, 0.15, 0.20, 0.25, 0.0, 0.0, 0.0], dtype=np.float32)
_VOLUME_STRUCTURE = np.array([0.08, 0.10, 0.08, 0.14, 0.0, 0.0, 0.0], dtype=np.float32)
#: s.d. (dB) of the canopy-structure variation of the volume term (gaps, species, row
#: direction), shared by VV and VH.
_VOLUME_LEVEL_SD = np.array([1.1, 1.1, 0.9, 1.2, 0.0, 0.0, 0.0], dtype=np.float32)
#: Soil surface: VV (dB) at 20 vol.% moisture and flat incidence, its moisture sensitivity
#: (dB per vol.%, 0.2-0.3 at C band) and the VH/VV ratio of bare soil (dB).
_SOIL_VV = -13.0
_SOIL_MOISTURE_DB = 0.25
_SOIL_CROSS_DB = -7.5
#: Incidence-angle slope of sigma0 (dB/deg) per class: steep for surfaces, flat for volumes.
_ANGLE_SLOPE = np.array([-0.06, -0.10, -0.14, -0.13, -0.10, -0.45, -0.22], dtype=np.float32)
#: Built-up: double bounce; VV level (dB), VH/VV ratio, and the s.d. of the per-block
#: orientation (cardinal) effect and fine texture (dB).
_BUILT_VV = -5.0
_BUILT_CROSS_DB = -7.0
_BUILT_BLOCK_SD = 2.5
#: Roads are smooth asphalt: darker than buildings in SAR (the pixel holds verges too).
_ROAD_SAR = np.array([-12.0, -19.5], dtype=np.float32)
#: Water: VV (dB) of calm water and the wind roughening towards a rough-water level (CMOD-like
#: saturation with wind speed in m/s), VH/VV ratio.
_WATER_CALM_VV = -26.0
_WATER_ROUGH_VV = -13.0
_WATER_CROSS_DB = -6.5
#: Residual noise floor after thermal-noise removal (noise-equivalent sigma zero, dB), drawn
#: per scene; it lifts the darkest targets (calm water in VH) as in real GRD.
_NESZ_DB = (-31.0, -27.0)
#: SEN12MS-CR's S1 range: capped at 0 dB, minimum about -35 dB.
_S1_RANGE_DB = (-35.0, 0.0)
#: Equivalent number of looks of the speckle (S1 GRD IW is ~4.4). Speckle of GRD products is
#: spatially correlated (20x22 m resolution on a 10 m grid; the real SEN12MS-CR patches show
#: a lag-1 correlation of ~0.7): gamma noise of _LOOKS / _SPECKLE_KERNEL_ENL looks smoothed by
#: a [1, 2, 1] x [1, 2, 1] / 16 kernel has _LOOKS looks per pixel and a lag-1 correlation of 2/3.
_SPECKLE_KERNEL = np.array([0.25, 0.5, 0.25], dtype=np.float32)
_SPECKLE_KERNEL_ENL = float(1.0 / (_SPECKLE_KERNEL**2).sum() ** 2)
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
    """Land cover and the per-pixel state the sensors see, at both dates.

    Attributes:
        landcover: (H, W) uint8 class at t0 (the label).
        state: (H, W) float32 in [0, 1], the per-region / per-parcel state of the class at t0
            (greenness, density, brightness, turbidity), seen by the optical sensor.
        sar_offset: (H, W) float32 dB, per-parcel / per-block surface roughness (SAR only).
        road: (H, W) bool, built-up pixels that are roads (dark in SAR).
        delta: (H, W) float32, per-parcel state change from t0 to t1 (field events and
            sowing-date scatter); the scene-wide phenology is added later.
        structure: (H, W) float32, about unit variance, per-parcel / per-block SAR structure:
            crop type and biomass at equal greenness for vegetation, building orientation
            (cardinal effect) for built-up; seen only by SAR.
        landcover1: (H, W) uint8 class at t1: ``landcover`` except along lake shores moved by
            the water-level change (flooded land -> water, exposed shore -> bare).
    """

    landcover: np.ndarray
    state: np.ndarray
    sar_offset: np.ndarray
    road: np.ndarray
    delta: np.ndarray
    structure: np.ndarray
    landcover1: np.ndarray | None = None


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
    rng: np.random.Generator,
    shape: tuple[int, int],
    where: np.ndarray,
    layout: _Layout,
    change_rng: np.random.Generator,
) -> None:
    """Agricultural parcels on a rotated grid inside ``where``: crop, meadow or fallow.

    Columns of random width (150-600 m) are cut into parcels of random length with a per-column
    stagger, so parcels look like real field blocks; each gets a class, a state (crop
    greenness, grass lushness, soil brightness) and a SAR roughness. Some parcel edges carry
    1 px hedgerows of trees. From ``change_rng`` (so the land cover does not depend on them):
    each parcel's change to t1 (an event on 3-10 % of them: harvest or sowing of crops, mowing
    of meadows, ploughing of fallow; otherwise sowing-date scatter) and its SAR structure.
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

    event = change_rng.random(n_parcels) < change_rng.uniform(0.03, 0.10)
    harvest = state > 0.55
    delta = np.where(
        kind == CROP,
        np.where(
            event,
            np.where(
                harvest,
                change_rng.uniform(0.05, 0.2, n_parcels) - state,
                change_rng.uniform(0.1, 0.3, n_parcels),
            ),
            change_rng.normal(0.0, 0.05, n_parcels),
        ),
        np.where(
            event,
            np.where(
                kind == GRASS,
                -change_rng.uniform(0.15, 0.35, n_parcels),
                change_rng.uniform(-0.3, 0.3, n_parcels),
            ),
            change_rng.normal(0.0, 0.02, n_parcels),
        ),
    ).astype(np.float32)
    structure = change_rng.standard_normal(n_parcels, dtype=np.float32)

    # Hedgerows along the first pixel of some columns and some parcel ends.
    lower = np.concatenate(([np.float32(-1e9)], bounds.astype(np.float32)))[col]
    hedge_col = rng.random(n_cols) < 0.3
    hedge_row = rng.random(n_cols) < 0.15
    hedge = (hedge_col[col] & (u - lower < 1.2)) | (
        hedge_row[col] & (along - row * lengths[col] < 1.0)
    )
    cls[hedge] = TREE
    st[hedge] = 0.8
    dl = delta[pid]
    dl[hedge] = 0.0
    sv = structure[pid]
    sv[hedge] = 0.0
    layout.landcover[rows, cols] = cls
    layout.state[rows, cols] = st
    layout.sar_offset[rows, cols] += rough
    layout.delta[rows, cols] = dl
    layout.structure[rows, cols] = sv


def _urban(
    rng: np.random.Generator,
    shape: tuple[int, int],
    where: np.ndarray,
    layout: _Layout,
    change_rng: np.random.Generator,
) -> None:
    """Street grid with building blocks, parks and tree-lined blocks inside ``where``.

    Each block gets a SAR structure (orientation towards the radar) from ``change_rng``.
    """
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
    sv = change_rng.standard_normal(n_blocks, dtype=np.float32)[bid]
    sv[is_street] = 0.0
    layout.structure[rows, cols] = sv


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
        # Painted pixels forget the parcel or block they cover: its state, roughness, change
        # and structure too.
        if bank > 0.0:
            on_bank = (dist <= half_width + bank) & (lc != WATER) & (lc != BUILT)
            lc[on_bank] = TREE
            layout.state[box][on_bank] = tree_state
            layout.sar_offset[box][on_bank] = 0.0
            layout.delta[box][on_bank] = 0.0
            layout.structure[box][on_bank] = 0.0
        on_line = dist <= half_width
        if protect is not None:
            on_line &= ~protect[box]
        lc[on_line] = cls
        layout.road[box][on_line] = road
        layout.sar_offset[box][on_line] = 0.0
        layout.delta[box][on_line] = 0.0
        layout.structure[box][on_line] = 0.0
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


def _buildings(rng: np.random.Generator, layout: _Layout, change_rng: np.random.Generator) -> None:
    """Small building blocks (20-50 m): village clusters and isolated farms, not on water.

    Each building gets a SAR structure (orientation) from ``change_rng``.
    """
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
            layout.structure[box][dry] = change_rng.standard_normal()
            layout.delta[box][dry] = 0.0


def _layout(rng: np.random.Generator, size: int, change_rng: np.random.Generator) -> _Layout:
    """Draw the land cover of one scene, the per-pixel class state and its change to t1.

    Everything about the second date (parcel changes, SAR structure, the water-level change)
    comes from ``change_rng``, so the t0 land cover and state depend on ``rng`` only.
    """
    shape = (size, size)
    area = size * size
    layout = _Layout(
        landcover=np.empty(shape, dtype=np.uint8),
        state=np.clip(0.5 + 0.22 * _fractal(rng, shape, 60.0), 0.0, 1.0),
        sar_offset=np.zeros(shape, dtype=np.float32),
        road=np.zeros(shape, dtype=bool),
        delta=np.zeros(shape, dtype=np.float32),
        structure=np.zeros(shape, dtype=np.float32),
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
    _parcels(rng, shape, zone == _CROPLAND, layout, change_rng)
    urban = zone == _URBAN
    _urban(rng, shape, urban, layout, change_rng)

    # Quarries / sand and lakes in the low spots of an elevation-like field.
    quarry = (_fractal(rng, shape, scale=50.0, octaves=2) > rng.uniform(1.9, 2.4)) & ~urban
    lc[quarry] = BARE
    lake_field = _fractal(rng, shape, scale=300.0, octaves=3)
    lake_level = rng.uniform(-2.4, -1.5)
    lake = lake_field < lake_level
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
    _buildings(rng, layout, change_rng)
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
    # Water level at t1: the lake threshold moves by a little (shores shift by ~0-3 px).
    lake1 = lake_field < lake_level + change_rng.normal(0.0, 0.03)
    del lake_field
    layout.landcover1 = lc.copy()
    layout.landcover1[lake1 & ~lake & (lc != BUILT) & (lc != WATER)] = WATER
    layout.landcover1[lake & ~lake1 & (lc == WATER)] = BARE
    return layout


# ---------------------------------------------------------------------------------------------
# Terrain and the second date


@dataclass(frozen=True)
class _Sun:
    """Sun position at one acquisition (degrees; azimuth clockwise from north)."""

    zenith: float
    azimuth: float


def _terrain(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Elevation (m), float32: smooth relief, from gentle (s.d. 4 m) to hilly (80 m).

    Only the sensors see it (local incidence angle in SAR, sun shading in the optical images,
    wetter soil in the low spots); the land cover is drawn without it.
    """
    relief = math.exp(rng.uniform(math.log(4.0), math.log(80.0)))
    field = _fractal(rng, shape, scale=float(rng.uniform(150.0, 500.0)), octaves=4)
    field *= np.float32(relief)
    return field


def _slopes(elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terrain slopes dz/d(east) and dz/d(north), dimensionless float32."""
    d_south, d_east = np.gradient(elevation, PIXEL_SIZE)
    d_south *= -1.0
    return d_east.astype(np.float32, copy=False), d_south.astype(np.float32, copy=False)


def _shading(elevation: np.ndarray, sun: _Sun) -> np.ndarray:
    """Terrain illumination factor (cos i / cos z)^k of a date's sun, float32 around 1."""
    east, north = _slopes(elevation)
    z, a = math.radians(sun.zenith), math.radians(sun.azimuth)
    # Unit normal (-east, -north, 1) / n against the sun vector (sin z sin a, sin z cos a, cos z).
    cos_i = east * np.float32(-math.sin(z) * math.sin(a))
    cos_i -= north * np.float32(math.sin(z) * math.cos(a))
    cos_i += np.float32(math.cos(z))
    east *= east
    north *= north
    east += north
    east += 1.0
    np.sqrt(east, out=east)
    cos_i /= east
    del east, north
    np.maximum(cos_i, np.float32(0.05), out=cos_i)
    cos_i /= np.float32(math.cos(z))
    np.power(cos_i, np.float32(_SHADING_EXPONENT), out=cos_i)
    return np.clip(cos_i, 0.4, 1.6, out=cos_i)


def _state_t1(rng: np.random.Generator, layout: _Layout, gap_days: float) -> np.ndarray:
    """Class state at t1: t0 state + parcel changes + scene-wide phenology + water changes.

    The phenology is a green-up or a senescence of up to 0.12 state units per 30 days, weighted
    by class (:data:`_PHENOLOGY`: crops fastest, forest slowest) and modulated by a smooth
    regional field; lakes change turbidity; flooded shores become water, exposed shores wet
    soil. Frees ``layout.delta``.
    """
    lc = layout.landcover
    shape = lc.shape
    trend = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * 0.12 * gap_days / 30.0)
    field = _fractal(rng, shape, scale=150.0, octaves=2)
    field *= np.float32(0.03)
    state1 = layout.state + layout.delta
    layout.delta = None  # type: ignore[assignment]  # not needed any more: free 4 bytes/pixel
    phen = np.take(_PHENOLOGY, lc)
    phen *= field + np.float32(trend)
    state1 += phen
    del phen
    water = lc == WATER
    state1[water] += np.float32(1.5) * field[water]
    del field
    lc1 = layout.landcover1
    state1[(lc1 == WATER) & ~water] = 0.15
    state1[(lc1 == BARE) & water] = 0.1
    return np.clip(state1, 0.0, 1.0, out=state1)


# ---------------------------------------------------------------------------------------------
# Sensors


def _texture(seed: np.random.SeedSequence, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fine within-class texture (added to the state) and the illumination field of the ground.

    Drawn from its own seed, so both dates see the same ground texture: called once per date
    rather than keeping the fields, which saves 8 bytes per pixel on large scenes.
    """
    rng = np.random.default_rng(seed)
    texture = np.float32(0.06) * _fractal(rng, shape, scale=8.0, octaves=2)
    texture += np.float32(0.03) * _triangular(rng, shape)
    light = 1.0 + np.float32(0.04) * _fractal(rng, shape, scale=120.0, octaves=2)
    return texture, light


#: Rows per strip of the optical rendering, and the margin each strip reads beyond its edges
#: (the 5x5 cloud blur then the 6 px smoothing of the 60 m bands: 2 + 3 rows, plus one).
_STRIP_ROWS = 512
_STRIP_MARGIN = 6


def _season_spectra(leaf_off: float) -> tuple[np.ndarray, np.ndarray]:
    """Endmember tables of a scene: tree rows moved towards :data:`_LEAF_OFF` by ``leaf_off``."""
    low, high = _SPECTRA_LOW.copy(), _SPECTRA_HIGH.copy()
    for table in (low, high):
        table[TREE] += np.float32(leaf_off) * (_LEAF_OFF - table[TREE])
    return low, high


def _reflectance(
    rng: np.random.Generator,
    lc: np.ndarray,
    mix: np.ndarray,
    light: np.ndarray,
    gain: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    layer: CloudLayer | None = None,
    leaf_off: float = 0.0,
) -> np.ndarray:
    """S2 L1C (13, H, W) uint16, reflectance x 1e4, band by band in strips of rows.

    Each pixel mixes its class's two endmembers by ``mix`` (state plus texture, in [0, 1]),
    scaled by ``light`` (ground illumination and terrain shading of the date), tree spectra
    moved towards leaf-off by ``leaf_off`` (dormant season); ``gain`` and
    ``offset`` (per band) model the atmosphere and calibration of a second date; ``layer`` lays
    clouds and shadows over the ground (:func:`tdpcr.data.clouds.cloud_band`). Then independent
    sensor noise (~0.3 % + 1 % of the signal), and the 20 m and 60 m bands are smoothed over
    their native footprint. Strips of :data:`_STRIP_ROWS` rows, each computed with a margin of
    :data:`_STRIP_MARGIN` rows, keep the work buffers small on 5490x5490 scenes (scenes up to
    512 rows are one strip); only the sensor noise of the margins differs from a whole-band
    rendering.
    """
    height, width = lc.shape
    out = np.empty((len(S2_BANDS), height, width), dtype=np.uint16)
    rows = min(height, _STRIP_ROWS) + 2 * _STRIP_MARGIN
    # Reused buffers: fresh temporaries cost more in page faults than in arithmetic.
    buffers = [np.empty((rows, width), dtype=np.float32) for _ in range(3)]
    spectra_low, spectra_high = _season_spectra(leaf_off)
    for b in range(len(S2_BANDS)):
        low, high = spectra_low[:, b], spectra_high[:, b]
        span = high - low
        for r0 in range(0, height, _STRIP_ROWS):
            r1 = min(height, r0 + _STRIP_ROWS)
            a0, a1 = max(0, r0 - _STRIP_MARGIN), min(height, r1 + _STRIP_MARGIN)
            refl, tmp, noise = (buf[: a1 - a0] for buf in buffers)
            strip = slice(a0, a1)
            np.take(span, lc[strip], out=tmp)
            np.multiply(tmp, mix[strip], out=refl)
            refl += np.take(low, lc[strip], out=tmp)
            refl *= light[strip]
            if gain is not None and offset is not None:
                refl *= np.float32(gain[b])
                refl += np.float32(offset[b])
                np.maximum(refl, np.float32(1e-4), out=refl)
            if layer is not None:
                cloud_band(refl, layer, b, noise, tmp, row0=a0)
            # Sensor noise, uniform with sigma = 0.3 % + 1 % of the signal (cheaper than normal).
            np.multiply(refl, np.float32(0.01), out=tmp)
            tmp += np.float32(0.003)
            tmp *= _uniform_noise(rng, noise)
            refl += tmp
            if b in _BAND_SMOOTHING:
                uniform_filter(refl, size=_BAND_SMOOTHING[b], mode="nearest", output=tmp)
                refl, tmp = tmp, refl
            kept = refl[r0 - a0 : r0 - a0 + (r1 - r0)]
            kept *= np.float32(S2_SCALE)
            np.rint(kept, out=kept)
            np.clip(kept, 1, 65535, out=kept)
            out[b, r0:r1] = kept
    return out


@dataclass(frozen=True)
class _Geometry:
    """S1 acquisition geometry of a scene."""

    ascending: bool
    look_azimuth: float  # deg clockwise from north, direction the radar looks
    incidence: float  # deg at the scene centre


def _incidence(geometry: _Geometry, elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local incidence angle (deg) and the terrain area factor (dB), float32.

    The incidence grows along the look direction (:data:`_THETA_PER_PX`); a slope rising away
    from the radar faces it and lowers the local incidence. The area factor
    ``10 log10(sin theta / sin theta_local)`` brightens slopes facing the radar (foreshortening)
    and darkens those facing away, as uncorrected sigma0 over terrain does (Small 2011).
    """
    h, w = elevation.shape
    look = math.radians(geometry.look_azimuth)
    # Range coordinate (pixels) from the scene centre along the look direction (east, north).
    east = (np.arange(w, dtype=np.float32) - np.float32(w / 2)) * np.float32(math.sin(look))
    north = (np.float32(h / 2) - np.arange(h, dtype=np.float32)) * np.float32(math.cos(look))
    theta = np.add.outer(north, east)
    theta *= np.float32(_THETA_PER_PX)
    theta += np.float32(geometry.incidence)
    slope_east, slope_north = _slopes(elevation)
    slope_east *= np.float32(math.sin(look))
    slope_north *= np.float32(math.cos(look))
    slope_east += slope_north
    del slope_north
    local = np.degrees(np.arctan(slope_east, out=slope_east), out=slope_east)
    np.subtract(theta, local, out=local)
    np.clip(local, 10.0, 80.0, out=local)
    area = np.sin(np.radians(theta, out=theta), out=theta)
    area /= np.sin(np.radians(local))
    np.log10(area, out=area)
    area *= np.float32(10.0)
    return local, area


def _speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Unit-mean multiplicative speckle of :data:`_LOOKS` looks, spatially correlated as GRD."""
    from scipy.ndimage import correlate1d

    looks = np.float32(_LOOKS / _SPECKLE_KERNEL_ENL)
    noise = rng.standard_gamma(looks, size=shape, dtype=np.float32)
    noise /= looks
    tmp = correlate1d(noise, _SPECKLE_KERNEL, axis=0, mode="reflect")
    correlate1d(tmp, _SPECKLE_KERNEL, axis=1, mode="reflect", output=noise)
    return noise


def _backscatter(
    rng: np.random.Generator,
    layout: _Layout,
    state1: np.ndarray,
    elevation: np.ndarray,
    leaf_off: float = 0.0,
) -> tuple[np.ndarray, dict[str, str]]:
    """S1 sigma0 (2, H, W) float32 dB (VV, VH) of date t1, with 4-look speckle; and tags.

    Vegetated and bare land: a water-cloud model, ``sigma = V_p (1 - tau2) + tau2 soil_p``
    with two-way transmissivity ``tau2 = exp(-k_p V / cos theta)``, vegetation volume index
    ``V`` (class base + a class-weighted share of the optical state + per-parcel structure + a
    SAR-only field) and a soil term driven by soil moisture (regional rain field, wetter low
    ground, fine variation) and roughness (per parcel + fine). Built-up: double bounce with a
    per-block orientation effect. Water: calm-water level roughened by a wind field. Roads:
    smooth asphalt. Every class then gets its incidence-angle slope at the local incidence and
    the terrain area factor, plus the residual noise floor; speckle is multiplicative on
    intensity, spatially correlated as in GRD products, per polarisation.
    """
    lc = layout.landcover1
    shape = lc.shape
    geometry = _Geometry(
        ascending=bool(rng.random() < 0.5),
        look_azimuth=0.0,
        incidence=float(rng.uniform(31.0, 44.0)),
    )
    # Sentinel-1 is right-looking on a near-polar orbit: east when ascending, west descending.
    look = rng.uniform(74.0, 82.0) if geometry.ascending else rng.uniform(278.0, 286.0)
    geometry = _Geometry(geometry.ascending, float(look), geometry.incidence)
    local, area = _incidence(geometry, elevation)
    # Angle term of every class at the local incidence; the area factor joins it (not water:
    # lakes are flat whatever the fractal says under them).
    angle = np.take(_ANGLE_SLOPE, lc)
    angle *= local - np.float32(_THETA_REF)
    water = lc == WATER
    area[water] = 0.0
    angle += area
    del area
    cos_local = np.cos(np.radians(local, out=local), out=local)

    # Soil moisture (vol. %): scene mean, rain cells, wetter low ground, fine variation.
    moisture = np.float32(rng.uniform(8.0, 35.0)) + np.float32(6.0) * _fractal(
        rng, shape, scale=float(rng.uniform(250.0, 600.0)), octaves=2
    )
    moisture += np.float32(2.0) * _fractal(rng, shape, scale=30.0, octaves=2)
    relief = max(float(elevation.std()), 1e-3)
    moisture -= elevation * np.float32(2.5 / relief)
    np.clip(moisture, 3.0, 45.0, out=moisture)
    # Soil surface VV (dB): moisture and roughness (per parcel + fine).
    soil = np.float32(_SOIL_MOISTURE_DB) * (moisture - np.float32(20.0))
    soil += np.float32(_SOIL_VV)
    soil += layout.sar_offset
    soil += np.float32(0.8) * _fractal(rng, shape, scale=15.0, octaves=2)
    # Canopy water: a wet canopy scatters a little more (dB).
    wet = np.float32(0.04) * (moisture - np.float32(20.0))
    del moisture
    # Vegetation volume index; the coupling to greenness varies by scene (-0.6..0.8 x class).
    volume = np.take(_VOLUME_STATE, lc)
    volume *= np.float32(rng.uniform(-0.6, 0.8))
    volume *= state1
    volume += np.take(_VOLUME_BASE, lc)
    structure = np.take(_VOLUME_STRUCTURE, lc)
    structure *= layout.structure
    volume += structure
    structure = np.take(_VOLUME_STRUCTURE, lc)
    structure *= _fractal(rng, shape, scale=30.0, octaves=2)
    volume += structure
    del structure
    np.clip(volume, 0.0, 1.0, out=volume)
    # Canopy-structure variation of the volume term (dB): per parcel and a natural field.
    level = np.float32(0.5) * layout.structure
    level += _fractal(rng, shape, scale=float(rng.uniform(20.0, 60.0)), octaves=2)
    level *= np.take(_VOLUME_LEVEL_SD, lc)
    level += wet
    del wet

    # Per-scene water roughness: base wind (m/s) plus gusts; and built-up orientation.
    wind = np.float32(rng.uniform(0.0, 7.0)) + np.float32(1.5) * _fractal(
        rng, shape, scale=150.0, octaves=2
    )
    wind_vv = np.float32(_WATER_CALM_VV) + np.float32(_WATER_ROUGH_VV - _WATER_CALM_VV) * (
        1.0 - np.exp(-np.maximum(wind[water] - 2.0, 0.0) / 4.0)
    )
    del wind
    built = (lc == BUILT) & ~layout.road
    built_vv = np.float32(_BUILT_VV) + np.float32(0.8) * layout.sar_offset[built]
    built_vv += np.float32(_BUILT_BLOCK_SD * 0.6) * layout.structure[built]
    road = layout.road & (lc == BUILT)

    nesz = float(rng.uniform(*_NESZ_DB))
    out = np.empty((len(S1_BANDS), *shape), dtype=np.float32)
    tau2 = np.empty(shape, dtype=np.float32)
    lin = np.empty(shape, dtype=np.float32)
    for p in range(len(S1_BANDS)):
        # Two-way transmissivity of the canopy.
        np.multiply(volume, np.float32(-_SAR_ATTENUATION[p]), out=tau2)
        tau2 /= cos_local
        np.exp(tau2, out=tau2)
        # Soil term (linear), attenuated.
        np.add(soil, np.float32(_SOIL_CROSS_DB if p else 0.0), out=lin)
        lin *= np.float32(0.1)
        np.power(np.float32(10.0), lin, out=lin)
        lin *= tau2
        # Volume term (linear), (1 - tau2) of the saturated level.
        np.subtract(np.float32(1.0), tau2, out=tau2)
        levels = _SAR_VOLUME[:, p].copy()
        if p:
            levels[TREE] += np.float32(leaf_off * _LEAF_OFF_VH_DB)
        vol = np.take(levels, lc)
        vol += level
        vol *= np.float32(0.1)
        np.power(np.float32(10.0), vol, out=vol)
        vol *= tau2
        lin += vol
        del vol
        db = np.log10(np.maximum(lin, np.float32(1e-6)), out=lin)
        db *= np.float32(10.0)
        cross = (_WATER_CROSS_DB, _BUILT_CROSS_DB) if p else (0.0, 0.0)
        db[water] = wind_vv + np.float32(cross[0])
        db[built] = built_vv + np.float32(cross[1])
        db[road] = _ROAD_SAR[p]
        db += angle
        np.power(np.float32(10.0), db / np.float32(10.0), out=tau2)
        tau2 += np.float32(10.0 ** (nesz / 10.0))
        tau2 *= _speckle(rng, shape)
        np.log10(np.maximum(tau2, np.float32(1e-6), out=tau2), out=tau2)
        tau2 *= np.float32(10.0)
        np.clip(tau2, *_S1_RANGE_DB, out=out[p])
    tags = {
        "s1_orbit": "ascending" if geometry.ascending else "descending",
        "s1_look_azimuth_deg": f"{geometry.look_azimuth:.1f}",
        "s1_incidence_centre_deg": f"{geometry.incidence:.2f}",
        "terrain_relief_m": f"{float(elevation.std()):.1f}",
    }
    return out, tags


# ---------------------------------------------------------------------------------------------
# Public API


def _generate(
    size: int, seed: int, target_cloud_cover: float | None
) -> tuple[dict[str, np.ndarray], CloudLayer, dict[str, str]]:
    """Scene arrays, the cloud layer and the scene's tags (dates, geometry, clouds)."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    # Independent streams per component: the same seed gives the same ground whatever the
    # requested cloud cover, and optical, SAR, change and cloud noise do not shift each other.
    # The first five are the streams of the single-date generator, in its order.
    children = np.random.SeedSequence(seed).spawn(9)
    streams = [np.random.default_rng(s) for s in children[:8]]
    layout_rng, optical_rng, sar_rng, cloud_rng, cover_rng = streams[:5]
    change_rng, terrain_rng, optical1_rng = streams[5:]
    if target_cloud_cover is None:
        target_cloud_cover = float(cover_rng.uniform(0.0, 1.0))
    shape = (size, size)
    layout = _layout(layout_rng, size, change_rng)
    gap_days = float(change_rng.uniform(5.0, 30.0))
    dormant = bool(change_rng.random() < _DORMANT_ODDS)
    # Share of deciduous trees that have shed their leaves (mixed forests keep evergreens).
    leaf_off = float(change_rng.uniform(0.4, 0.8)) if dormant else 0.0
    elevation = _terrain(terrain_rng, shape)
    state1 = _state_t1(change_rng, layout, gap_days)

    s1, tags = _backscatter(sar_rng, layout, state1, elevation, leaf_off)
    layout.sar_offset = layout.road = layout.structure = None  # type: ignore[assignment]
    layer = make_cloud_layer(size, size, float(target_cloud_cover), cloud_rng)

    # t0: the clear image.
    sun0 = _Sun(float(terrain_rng.uniform(25.0, 55.0)), float(terrain_rng.uniform(130.0, 170.0)))
    sun1 = _Sun(
        sun0.zenith + float(terrain_rng.normal(0.0, 3.0)),
        sun0.azimuth + float(terrain_rng.normal(0.0, 4.0)),
    )
    texture, light = _texture(children[8], shape)
    mix = layout.state + texture
    layout.state = None  # type: ignore[assignment]
    np.clip(mix, 0.0, 1.0, out=mix)
    light0 = light * _shading(elevation, sun0)
    clear = _reflectance(optical_rng, layout.landcover, mix, light0, leaf_off=leaf_off)
    del mix, light0

    # t1: the cloudy image (same ground texture, changed state, other sun and atmosphere).
    light *= _shading(elevation, sun1)
    del elevation
    state1 += texture
    del texture
    np.clip(state1, 0.0, 1.0, out=state1)
    gain = 1.0 + change_rng.normal(0.0, 0.015) + change_rng.normal(0.0, _GAP_GAIN_SD)
    offset = change_rng.normal(0.0, _GAP_OFFSET_SD)
    cloudy = _reflectance(
        optical1_rng, layout.landcover1, state1, light, gain, offset, layer, leaf_off
    )
    del state1, light
    scene = {
        "s2_clear": clear,
        "s2_cloudy": cloudy,
        "s1": s1,
        "landcover": layout.landcover,
        "cloudmask": layer.mask,
        "cloud_opacity": layer.scene_opacity,
    }
    tags.update(
        {
            "acquisitions": "s2_clear: t0; s2_cloudy and s1: t1; landcover: t0",
            "time_gap_days": f"{gap_days:.1f}",
            "season": f"dormant (leaf-off share {leaf_off:.2f})" if dormant else "growing",
            "sun_zenith_deg": f"{sun0.zenith:.1f},{sun1.zenith:.1f}",
            "cloud_threshold": f"{CLOUD_THRESHOLD}",
        }
    )
    return scene, layer, tags


def generate_scene(
    size: int, seed: int, target_cloud_cover: float | None = None
) -> dict[str, np.ndarray]:
    """One synthetic square scene of ``size`` x ``size`` 10 m pixels, two acquisitions.

    Args:
        size: side in pixels (>= 32).
        seed: any non-negative integer; the same seed gives byte-identical arrays.
        target_cloud_cover: wanted fraction of cloud or cloud-shadow pixels in [0, 1]; drawn
            uniformly from the seed when ``None``. The realised cover (``(cloudmask > 0).mean()``)
            lands within ~0.01 of it (a little lower near 1).

    Returns:
        ``s2_clear`` (date t0, the reconstruction target) and ``s2_cloudy`` (date t1, 5-30 days
        later) (13, H, W) uint16 reflectance x 1e4 in :data:`~tdpcr.core.specs.S2_BANDS` order;
        ``s1`` (2, H, W) float32 dB (VV, VH) of date t1; ``landcover`` (H, W) uint8 classes 0..6
        (:data:`~tdpcr.core.specs.CLASS_NAMES`) of date t0; ``cloudmask`` (H, W) uint8, 0 =
        clear, 1 = cloud (opacity >= :data:`~tdpcr.data.clouds.CLOUD_THRESHOLD`, thin haze
        included), 2 = cloud shadow; ``cloud_opacity`` (H, W) float32 true reference-band cloud
        opacity in [0, 1].
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


def _check_replaceable(folder: Path) -> None:
    """Refuse, before any work, a scene folder to be replaced that ``synth`` did not write.

    Ours: absent, empty, or its ``s2_cloudy.tif`` carries this generator's tag (every scene
    this module writes does; older runs wrote no manifest, so the tag is the mark).
    """
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise InputDataError(f"--out: {folder} exists and is not a scene folder; not replaced")
    if not any(folder.iterdir()):
        return
    try:
        with rasterio.open(folder / "s2_cloudy.tif") as src:
            generator = src.tags().get("generator")
    except (OSError, rasterio.errors.RasterioError):
        generator = None
    if generator != "tdpcr.data.synthetic":
        raise InputDataError(
            f"--out: {folder} exists and was not written by tdpcr synth; not replaced, choose "
            "a new or empty folder"
        )


def write_synthetic_scenes(out_dir: Path, n_scenes: int, size: int, seed: int) -> list[Path]:
    """Write ``n_scenes`` synthetic scenes as GeoTIFF folders ``out_dir/scene00`` ...

    Each folder holds ``s2_clear.tif`` (date t0), ``s2_cloudy.tif`` and ``s1.tif`` (date t1),
    ``landcover.tif`` (t0, with a colour table), ``cloudmask.tif`` (0 clear, 1 cloud, 2 shadow)
    and ``cloud_opacity.tif`` (float32 true opacity) on one UTM grid with 10 m pixels (see
    :func:`scene_plan`); the tags say the dates, the S1 geometry and the cloud cover. A scene
    is written into a hidden temporary folder and renamed into place when complete, so an
    interrupted run leaves no partial scene folder; ``s2_cloudy.tif`` is written last because
    scene readers recognise a scene folder by it, and temporary folders left by a killed run
    are removed first. A re-run replaces existing scene folders.

    Returns:
        The scene folders, in order.
    """
    out_dir = Path(out_dir)
    plans = scene_plan(n_scenes, size, seed)
    check_writable(out_dir / "scene", "--out")
    for plan in plans:
        _check_replaceable(out_dir / plan.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".scene*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    written = []
    for plan in tqdm(plans, desc="synthetic scenes", unit="scene"):
        scene, layer, scene_tags = _generate(size, plan.seed, plan.target_cloud_cover)
        tags = {
            "generator": "tdpcr.data.synthetic",
            "seed": str(plan.seed),
            "target_cloud_cover": f"{plan.target_cloud_cover:.4f}",
            "cloud_cover": f"{layer.cover:.4f}",
            "shadow_cover": f"{layer.shadow_cover:.4f}",
            "cloud_bin": CLOUD_BINS[cloud_bin_index(layer.cover)],
            "cloud_type": layer.cloud_type,
            **scene_tags,
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
                tmp / "cloud_opacity.tif",
                np.ascontiguousarray(scene["cloud_opacity"]),
                band_descriptions=("cloud_opacity",),
                **geo,
            )
            write_geotiff(
                tmp / "s2_cloudy.tif", scene["s2_cloudy"], band_descriptions=S2_BANDS, **geo
            )
        written.append(final)
    # What this run wrote: `tile` reads these scenes only, never leftovers of an earlier run
    # with more scenes or another seed.
    write_json_atomic(
        out_dir / SCENES_MANIFEST,
        {"generator": "tdpcr.data.synthetic", "scenes": [p.name for p in written],
         "size": size, "seed": seed},
    )  # fmt: skip
    return written
