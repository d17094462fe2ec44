"""Stage 3 of a synthetic scene: Sentinel-1 backscatter (sigma0, dB) of date t1.

From its own physical drivers, not from the optical state: a water-cloud model (Attema & Ulaby
1978) of vegetation volume over a soil surface whose backscatter follows soil moisture and
roughness fields; vegetation volume only partly tied to the optical greenness (crop structure
and biomass per parcel); double bounce for built-up; specular water roughened by a wind field;
the incidence-angle trend across the swath and local incidence from terrain slopes. 4-look
gamma speckle, spatially correlated as in GRD products; clipped to [-35, 0] dB like
SEN12MS-CR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tdpcr.core.specs import S1_BANDS
from tdpcr.data.synthetic.fields import fractal
from tdpcr.data.synthetic.layout import BUILT, TREE, WATER, Layout, slopes

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
    slope_east, slope_north = slopes(elevation)
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


def backscatter(
    rng: np.random.Generator,
    layout: Layout,
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
    moisture = np.float32(rng.uniform(8.0, 35.0)) + np.float32(6.0) * fractal(
        rng, shape, scale=float(rng.uniform(250.0, 600.0)), octaves=2
    )
    moisture += np.float32(2.0) * fractal(rng, shape, scale=30.0, octaves=2)
    relief = max(float(elevation.std()), 1e-3)
    moisture -= elevation * np.float32(2.5 / relief)
    np.clip(moisture, 3.0, 45.0, out=moisture)
    # Soil surface VV (dB): moisture and roughness (per parcel + fine).
    soil = np.float32(_SOIL_MOISTURE_DB) * (moisture - np.float32(20.0))
    soil += np.float32(_SOIL_VV)
    soil += layout.sar_offset
    soil += np.float32(0.8) * fractal(rng, shape, scale=15.0, octaves=2)
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
    structure *= fractal(rng, shape, scale=30.0, octaves=2)
    volume += structure
    del structure
    np.clip(volume, 0.0, 1.0, out=volume)
    # Canopy-structure variation of the volume term (dB): per parcel and a natural field.
    level = np.float32(0.5) * layout.structure
    level += fractal(rng, shape, scale=float(rng.uniform(20.0, 60.0)), octaves=2)
    level *= np.take(_VOLUME_LEVEL_SD, lc)
    level += wet
    del wet

    # Per-scene water roughness: base wind (m/s) plus gusts; and built-up orientation.
    wind = np.float32(rng.uniform(0.0, 7.0)) + np.float32(1.5) * fractal(
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
