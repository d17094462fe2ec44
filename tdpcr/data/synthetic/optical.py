"""Stage 2 of a synthetic scene: Sentinel-2 L1C reflectance of each date.

Per class, a linear mix of two top-of-atmosphere endmember spectra (calibrated on the real
samples in ``../shared/realdata`` and the literature, see the data documentation) driven by
the per-parcel / per-region state of :mod:`~tdpcr.data.synthetic.layout`, with within-class
texture, illumination, terrain shading for that date's sun, sensor noise, and the 20 m / 60 m
bands smoothed to their native resolution. A dormant-season scene moves tree spectra towards
leaf-off canopy. Clouds are laid over the ground band by band here
(:func:`~tdpcr.data.synthetic.clouds.cloud_band`), inside the strips the bands are rendered in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter

from tdpcr.core.specs import S2_BANDS, S2_SCALE
from tdpcr.data.synthetic.clouds import CloudLayer, cloud_band
from tdpcr.data.synthetic.fields import fractal, triangular, uniform_noise
from tdpcr.data.synthetic.layout import TREE, slopes

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
#: Terrain shading exponent (Minnaert-like; 1 would be Lambertian, too strong for canopies).
_SHADING_EXPONENT = 0.5
#: Leaf-off deciduous canopy (bare branches over litter and soil, TOA): in a dormant-season
#: scene (:data:`DORMANT_ODDS`) tree spectra move towards it by a share of deciduous trees,
#: while C-band still sees the branches (VH drops by about 1 dB only). Winter SEN12MS-CR patches
#: owe their negative VH-NDVI correlation to this: green meadows dark in VH, bare woods bright.
_LEAF_OFF = np.array(
    [0.115, 0.090, 0.085, 0.085, 0.110, 0.140, 0.155, 0.165, 0.180, 0.052, 0.002, 0.230, 0.150],
    dtype=np.float32,
)
DORMANT_ODDS = 0.25


@dataclass(frozen=True)
class Sun:
    """Sun position at one acquisition (degrees; azimuth clockwise from north)."""

    zenith: float
    azimuth: float


def shading(elevation: np.ndarray, sun: Sun) -> np.ndarray:
    """Terrain illumination factor (cos i / cos z)^k of a date's sun, float32 around 1."""
    east, north = slopes(elevation)
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


def ground_texture(
    seed: np.random.SeedSequence, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Fine within-class texture (added to the state) and the illumination field of the ground.

    Drawn from its own seed, so both dates see the same ground texture: called once per date
    rather than keeping the fields, which saves 8 bytes per pixel on large scenes.
    """
    rng = np.random.default_rng(seed)
    texture = np.float32(0.06) * fractal(rng, shape, scale=8.0, octaves=2)
    texture += np.float32(0.03) * triangular(rng, shape)
    light = 1.0 + np.float32(0.04) * fractal(rng, shape, scale=120.0, octaves=2)
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


def reflectance(
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
    moved towards leaf-off by ``leaf_off`` (dormant season); ``gain`` and ``offset`` (per band)
    model the atmosphere and calibration of a second date; ``layer`` lays clouds and shadows
    over the ground (:func:`~tdpcr.data.synthetic.clouds.cloud_band`). Then independent sensor
    noise (~0.3 % + 1 % of the signal), and the 20 m and 60 m bands are smoothed over their
    native footprint. Strips of :data:`_STRIP_ROWS` rows, each computed with a margin of
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
            tmp *= uniform_noise(rng, noise)
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
