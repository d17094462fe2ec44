"""Stage 4 of a synthetic scene: clouds, cloud shadows and the atmosphere between the dates.

Clouds and cloud shadows over a clear Sentinel-2 scene, with a controlled cloud cover; and the
small per-band gain and offset by which date t1's atmosphere and calibration differ from t0's
(:func:`atmosphere_change`).

The cloud *shapes* come from ``satellite-cloud-generator`` 0.4 (Czerkawski et al. 2023,
import name ``satellite_cloud_generator``): its multi-octave Perlin noise, the product of
several noise fields for local clouds (``locality_degree``), its spectral decay
(``decay_factor``) and the parameter ranges of its presets (``BIG_CONFIG``, ``LOCAL_CONFIG``,
``WIDE_CONFIG``, ``THIN_CONFIG``). The package declares a torchvision requirement that its code
never imports, so it must be installed with::

    pip install --no-deps satellite-cloud-generator==0.4

(kornia, numpy, torch and matplotlib, which it does import, are ordinary project dependencies).

What this module does differently from ``add_cloud_and_shadow`` and why:

* **Cover control.** The package draws its ``clear_threshold`` at random, so the cloud cover is
  whatever comes out. Here the threshold is found by bisection on the package's normalised
  noise field so that the realised mask (cloud or shadow) covers the requested fraction.
* **Shadows tied to clouds.** The package's shadow is an independent noise field. Here the
  shadow is the same cloud field displaced by a sun-geometry offset (cloud height x
  tan(sun zenith), towards the side opposite the sun), so every shadow belongs to a cloud,
  possibly one just outside the scene: the field is generated on a canvas larger than the scene.
* **Band-dependent mixing without the package's tensors.** The mixing formula is the package's
  ``mix`` (``x * (1 - a) + a * magnitude``, shadows as ``x * (1 - s)``), but applied band by
  band in numpy with explicit cloud reflectance spectra, because the package's ``mix`` keeps
  several (1, C, H, W) float tensors alive and its ``local_gaussian_blur`` unfolds an 11x11
  neighbourhood per pixel (121 copies of the image: ~1.6 GB for 13x512x512), which a 5490x5490
  scene cannot afford. The thickness-dependent blur is replaced by a box blur mixed in by opacity.
* **Large scenes.** ``generate_perlin`` pads to the next power of two and builds several
  full-size tensors per octave; beyond :data:`FIELD_MAX` pixels the noise is generated on a
  coarser canvas and upsampled (bicubic) before thresholding, so edges stay smooth. With the
  package's ``const_scale=True`` the cloud shapes scale with the canvas anyway, so nothing
  visible is lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import uniform_filter

from tdpcr.core.specs import S2_BANDS, S2_SCALE

#: Largest side (pixels) of the canvas on which the package's noise is generated; larger
#: scenes get a coarser field, upsampled before thresholding.
FIELD_MAX = 1024
#: Reference-band cloud opacity from which a pixel counts as cloud (mask value 1), thin haze
#: included. At 0.03 a cloud adds about 0.015-0.018 to the blue (B2) TOA reflectance of
#: vegetation, soil or water (cloud B2 ~0.6): the brightening at which thin-cloud detectors
#: (s2cloudless at its usual 0.4 probability with dilation, Sen2Cor's 0.012 cirrus test in B10)
#: start to flag, and above the clear-sky aerosol variability between two dates (~0.01 in B2),
#: below which no detector can tell haze from clear sky. The package's ``segmentation_mask``
#: uses 0.1, which leaves visible haze unmasked; docs/synthetic-data.md has the reasoning and
#: cloud_opacity.tif lets a user apply any other threshold.
CLOUD_THRESHOLD = 0.03
#: Shadow darkening (fraction of light removed) from which a pixel counts as cloud shadow
#: (mask value 2) when it is not cloud (``segmentation_mask``'s ``shadow_threshold``).
SHADOW_THRESHOLD = 0.1
#: Mask values: clear, cloud (thin haze included), cloud shadow; 255 = unknown (not written).
MASK_CLEAR, MASK_CLOUD, MASK_SHADOW = 0, 1, 2
#: Largest per-band misregistration of the cloud (pixels); Sentinel-2's detectors view each
#: band at a slightly different angle, so high clouds are displaced between bands (the
#: package's ``channel_offset``).
BAND_OFFSET_MAX = 2

#: Thick-cloud top-of-atmosphere reflectance per band: flat and bright in the visible and NIR,
#: lower in the water-vapour band B9 and in SWIR (ice/water absorption), while the cirrus band
#: B10 is set per scene because it sees only high clouds above the water vapour.
_CLOUD_SPECTRUM = np.array(
    [0.62, 0.60, 0.58, 0.57, 0.58, 0.58, 0.58, 0.57, 0.57, 0.40, 0.20, 0.42, 0.30],
    dtype=np.float32,
)
_B10 = S2_BANDS.index("B10")
#: Relative cloud opacity per band: haze is more transparent at longer wavelengths.
_BAND_OPACITY = np.array(
    [1.0, 1.0, 1.0, 1.0, 0.98, 0.97, 0.96, 0.95, 0.95, 0.95, 1.0, 0.85, 0.75], dtype=np.float32
)
#: Fraction of the shadow darkening felt per band: diffuse skylight fills shadows in the blue,
#: and B10 (cirrus) sees the atmosphere above the cloud rather than the shadowed ground.
_SHADOW_BAND = np.array(
    [0.6, 0.65, 0.75, 0.85, 0.9, 0.95, 1.0, 1.0, 1.0, 0.9, 0.2, 1.0, 1.0], dtype=np.float32
)

#: Cloud types, with the package preset whose parameter ranges they take and their odds.
_CLOUD_TYPES: tuple[tuple[str, float], ...] = (
    ("BIG_CONFIG", 0.35),
    ("LOCAL_CONFIG", 0.30),
    ("WIDE_CONFIG", 0.25),
    ("THIN_CONFIG", 0.10),
)


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, restoring the previous setting after.

    The fields here are small; with two intra-op threads on a machine that is already busy
    (parallel workflow jobs), torch's thread pool waits on itself and was measured 5-10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class CloudLayer:
    """A cloud and shadow layer for one scene, independent of the surface under it.

    Attributes:
        opacity: (H+m, W+m) float32 cloud opacity on the canvas (scene at ``offset``, plus margins
            for band misregistration and shadows cast by clouds outside the scene).
        offset: (row, col) of the scene's top-left pixel in ``opacity``.
        shadow_shift: (row, col) from a ground pixel to the cloud that shades it, pixels.
        shadow_strength: fraction of the light a fully opaque cloud removes from its shadow.
        mask: (H, W) uint8, 0 = clear, 1 = cloud (opacity >= :data:`CLOUD_THRESHOLD`, thin
            haze included), 2 = cloud shadow (darkening >= :data:`SHADOW_THRESHOLD`, not cloud).
        band_magnitude: (13,) cloud reflectance per band.
        band_opacity: (13,) opacity factor per band.
        band_shift: (13, 2) per-band (row, col) misregistration of the cloud, pixels.
        target_cover: the requested cover.
        cover: the realised cover, ``(mask > 0).mean()`` (cloud or shadow).
        shadow_cover: the fraction of shadow pixels, ``(mask == 2).mean()``.
        cloud_type: name of the package preset used.
    """

    opacity: np.ndarray
    offset: tuple[int, int]
    shadow_shift: tuple[int, int]
    shadow_strength: float
    mask: np.ndarray
    band_magnitude: np.ndarray
    band_opacity: np.ndarray
    band_shift: np.ndarray
    target_cover: float
    cover: float
    cloud_type: str
    shadow_cover: float = 0.0

    @property
    def scene_opacity(self) -> np.ndarray:
        """(H, W) opacity of the reference (unshifted) cloud over the scene."""
        r, c = self.offset
        h, w = self.mask.shape
        return self.opacity[r : r + h, c : c + w]

    def shadow_rows(self, row0: int, rows: int) -> np.ndarray:
        """View of the canvas opacity that shades scene rows ``row0 .. row0 + rows``."""
        (r, c), (dr, dc) = self.offset, self.shadow_shift
        w = self.mask.shape[1]
        return self.opacity[r + dr + row0 : r + dr + row0 + rows, c + dc : c + dc + w]

    @property
    def shadow(self) -> np.ndarray:
        """(H, W) float32 shadow darkening in [0, 1] (fraction of light removed).

        Computed from the canvas on each access (it is the displaced opacity x strength), so a
        5490x5490 layer does not keep another full-size array.
        """
        return np.float32(self.shadow_strength) * self.shadow_rows(0, self.mask.shape[0])


def _uniform(rng: np.random.Generator, value: float | list[float] | tuple[float, float]) -> float:
    """A preset value, or a draw inside a preset's [low, high] range."""
    if isinstance(value, list | tuple):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def _noise_field(shape: tuple[int, int], seed: int, decay: float, locality: int) -> np.ndarray:
    """The package's normalised cloud-shape field in [0, 1] on a canvas of ``shape``.

    ``add_cloud`` on a one-channel black image with ``min_lvl=0, max_lvl=1`` and no threshold
    returns exactly its normalised product of ``locality`` Perlin fields as the cloud map;
    every cloud special effect is switched off because they are applied here per band.
    """
    import satellite_cloud_generator as scg  # deferred: only cloud generation needs it

    with torch.random.fork_rng(devices=[]), single_torch_thread():
        # The package draws from torch's global generator; forking keeps the caller's stream
        # untouched and the seed makes the field reproducible.
        torch.manual_seed(seed)
        _, cloud = scg.add_cloud(
            torch.zeros(1, 1, *shape),
            min_lvl=0.0,
            max_lvl=1.0,
            clear_threshold=0.0,
            noise_type="perlin",
            const_scale=True,
            decay_factor=decay,
            locality_degree=locality,
            channel_offset=0,
            channel_magnitude_shift=0.0,
            blur_scaling=0.0,
            cloud_color=False,
            return_cloud=True,
        )
    return cloud[0, 0].numpy().astype(np.float32, copy=False)


def _resize(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a 2-D field, clipped back to [0, 1] against overshoot."""
    tensor = torch.from_numpy(np.ascontiguousarray(field))[None, None]
    with single_torch_thread():
        out = torch.nn.functional.interpolate(
            tensor, size=shape, mode="bicubic", align_corners=False
        )
    return out[0, 0].clamp_(0.0, 1.0).numpy()


@dataclass(frozen=True)
class _Thickness:
    """Maps the noise field to opacity: threshold, rescale, then the preset's level range."""

    field_max: float
    min_lvl: float
    max_lvl: float

    def opacity(self, field: np.ndarray, threshold: float) -> np.ndarray:
        # As the package's add_cloud: cut below the threshold, renormalise to [0, 1], map to
        # [min_lvl, max_lvl]. A max_lvl above 1 saturates, giving opaque cloud cores.
        span = max(self.field_max - threshold, 1e-6)
        norm = np.clip((field - threshold) / span, 0.0, 1.0)
        return np.clip(self.min_lvl + norm * (self.max_lvl - self.min_lvl), 0.0, 1.0).astype(
            np.float32, copy=False
        )


@dataclass(frozen=True)
class _CoverProbe:
    """Mask fraction of a (strided) field for a given threshold, for the bisection."""

    thickness: _Thickness
    field: np.ndarray
    shift: tuple[int, int]
    offset: tuple[int, int]
    size: tuple[int, int]
    strength: float

    def __call__(self, threshold: float) -> float:
        opacity = self.thickness.opacity(self.field, threshold)
        return float(_cover(opacity, self.shift, self.offset, self.size, self.strength)[2].mean())


def _cover(
    opacity: np.ndarray,
    shift: tuple[int, int],
    offset: tuple[int, int],
    size: tuple[int, int],
    strength: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scene cloud opacity, shadow darkening and mask from a canvas opacity.

    The shadow at a ground pixel is cast by the cloud ``shift`` pixels towards the sun.
    """
    (r, c), (dr, dc), (h, w) = offset, shift, size
    cloud = opacity[r : r + h, c : c + w]
    shadow = strength * opacity[r + dr : r + dr + h, c + dc : c + dc + w]
    mask = (cloud >= CLOUD_THRESHOLD) | (shadow >= SHADOW_THRESHOLD)
    return cloud, shadow, mask


def _mask_values(cloud: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """uint8 mask: 1 where cloud, else 2 where shadow, else 0 (cloud wins where both)."""
    mask = np.where(shadow >= SHADOW_THRESHOLD, MASK_SHADOW, MASK_CLEAR).astype(np.uint8)
    mask[cloud >= CLOUD_THRESHOLD] = MASK_CLOUD
    return mask


def make_cloud_layer(
    height: int, width: int, target_cover: float, rng: np.random.Generator
) -> CloudLayer:
    """Draw a cloud and shadow layer whose mask covers about ``target_cover`` of the scene.

    Cover control: the package's normalised noise field ``F`` is generated for the drawn preset;
    opacity is ``clip(min + (max - min) * (F - t) / (max F - t))`` as in the package, but with
    the threshold ``t`` free; cloud is opacity >= :data:`CLOUD_THRESHOLD` and shadow is
    displaced opacity x strength >= :data:`SHADOW_THRESHOLD`. The mask fraction falls
    monotonically with ``t``, so ``t`` is found by bisection (30 steps) on the field, or on a
    strided sample of it for large scenes; if even the lowest threshold cannot reach the target
    (a product of several fields is mostly near zero), the field is redrawn with one factor
    fewer. The realised cover is measured on the
    full-resolution mask: it lands within about 0.005 of the target, a little lower near 1
    where the faintest parts of the field stay below the cloud threshold.

    Args:
        height, width: scene size in pixels.
        target_cover: wanted mask fraction in [0, 1].
        rng: the stream all random choices come from (the package's torch noise is seeded
            from it), so a seeded generator gives an identical layer.
    """
    if not 0.0 <= target_cover <= 1.0:
        raise ValueError(f"target_cover must lie in [0, 1], got {target_cover}")
    import satellite_cloud_generator as scg

    names = [name for name, _ in _CLOUD_TYPES]
    odds = np.array([p for _, p in _CLOUD_TYPES])
    cloud_type = str(rng.choice(names, p=odds / odds.sum()))
    preset = getattr(scg, cloud_type)
    decay = _uniform(rng, preset["decay_factor"])
    locality = round(_uniform(rng, preset["locality_degree"]))
    # The level everywhere outside the clouds: a faint veil kept below the mask threshold
    # (a scene-wide haze would be flagged as cloud everywhere, which detectors do not do).
    min_lvl = min(_uniform(rng, preset["min_lvl"]), 0.6 * CLOUD_THRESHOLD)
    # WIDE_CONFIG's max_lvl range starts at 0 (invisible clouds); a cloud should show.
    max_lvl = max(_uniform(rng, preset["max_lvl"]), 0.35)
    if cloud_type != "THIN_CONFIG":
        # Levels above 1 saturate after clipping: real thick clouds have opaque cores.
        max_lvl *= float(rng.uniform(1.0, 1.8))

    # Shadow offset from sun geometry: cloud base 0.4-1.5 km, sun zenith 25-50 deg, sun in the
    # south-east (northern-hemisphere morning overpass), so shadows fall to the north-west,
    # i.e. the shadow at a pixel comes from the cloud down-right of it.
    reach_px = rng.uniform(400.0, 1500.0) * math.tan(math.radians(rng.uniform(25.0, 50.0))) / 10.0
    azimuth = math.radians(rng.uniform(120.0, 160.0))
    shift = (round(-reach_px * math.cos(azimuth)), round(reach_px * math.sin(azimuth)))
    strength = float(rng.uniform(0.5, 0.8))
    margin = BAND_OFFSET_MAX
    offset = (margin, margin)
    canvas = (height + shift[0] + 2 * margin, width + shift[1] + 2 * margin)

    magnitude = _CLOUD_SPECTRUM * np.float32(rng.uniform(0.85, 1.15))
    magnitude[_B10] = rng.uniform(0.05, 0.35)
    # The package's channel_magnitude_shift: each band's thickness varies by +-5 %.
    band_opacity = _BAND_OPACITY * rng.uniform(0.95, 1.05, size=len(S2_BANDS)).astype(np.float32)
    band_shift = rng.integers(-BAND_OFFSET_MAX, BAND_OFFSET_MAX + 1, size=(len(S2_BANDS), 2))
    torch_seed = int(rng.integers(0, 2**31 - 1))

    factor = max(1, math.ceil(max(canvas) / FIELD_MAX))
    coarse = (math.ceil(canvas[0] / factor), math.ceil(canvas[1] / factor))
    # Bisection on a strided view (~512 px a side) keeps each step cheap on large scenes.
    stride = max(1, max(height, width) // 512)
    s_offset = (offset[0] // stride, offset[1] // stride)
    s_shift = (round(shift[0] / stride), round(shift[1] / stride))
    while True:
        field = _noise_field(coarse, torch_seed, decay, locality)
        if factor > 1:
            field = _resize(field, canvas)
        thickness = _Thickness(float(field.max()), min_lvl, max_lvl)
        sample = field[::stride, ::stride]
        s_size = (
            min(math.ceil(height / stride), sample.shape[0] - s_offset[0] - s_shift[0]),
            min(math.ceil(width / stride), sample.shape[1] - s_offset[1] - s_shift[1]),
        )
        sample_cover = _CoverProbe(thickness, sample, s_shift, s_offset, s_size, strength)

        low, high = float(field.min()) - 1e-6, thickness.field_max
        # A product of several fields leaves much of the canvas near zero and may not reach an
        # overcast target: fall back to fewer factors (single fields, as BIG/WIDE presets use).
        if locality == 1 or sample_cover(low) >= target_cover - 0.005:
            break
        locality -= 1
    for _ in range(30):
        mid = 0.5 * (low + high)
        if sample_cover(mid) > target_cover:
            low = mid
        else:
            high = mid
    threshold = high if target_cover <= 0.0 else 0.5 * (low + high)
    opacity = thickness.opacity(field, threshold)
    del field
    cloud, shadow, _ = _cover(opacity, shift, offset, (height, width), strength)
    mask_u8 = _mask_values(cloud, shadow)
    del cloud, shadow
    return CloudLayer(
        opacity=opacity,
        offset=offset,
        shadow_shift=(int(shift[0]), int(shift[1])),
        shadow_strength=float(strength),
        mask=mask_u8,
        band_magnitude=magnitude.astype(np.float32),
        band_opacity=band_opacity,
        band_shift=band_shift,
        target_cover=float(target_cover),
        cover=float((mask_u8 > 0).mean()),
        cloud_type=cloud_type,
        shadow_cover=float((mask_u8 == MASK_SHADOW).mean()),
    )


def cloud_band(
    x: np.ndarray,
    layer: CloudLayer,
    band: int,
    a: np.ndarray,
    tmp: np.ndarray,
    row0: int = 0,
) -> None:
    """Lay the cloud layer over one band of reflectance ``x``, in place.

    ``x`` (h, W) float32 holds scene rows ``row0 .. row0 + h`` (the whole band by default; the
    generator passes strips). Darken by the shadow (as the package's inverted ``mix``), blur the
    ground under thin cloud a little (scattering), then mix in the cloud reflectance by opacity
    (the package's ``mix`` with an explicit band magnitude). ``a`` and ``tmp`` are work buffers
    of ``x``'s shape. The 5x5 blur reads 2 rows beyond a strip's edge: callers pass strips with
    a margin.
    """
    height, width = x.shape
    r0, c0 = layer.offset
    np.multiply(
        layer.shadow_rows(row0, height),
        np.float32(-_SHADOW_BAND[band] * layer.shadow_strength),
        out=tmp,
    )
    tmp += 1.0
    x *= tmp
    dr, dc = (int(v) for v in layer.band_shift[band])
    top = r0 + dr + row0
    np.multiply(
        layer.opacity[top : top + height, c0 + dc : c0 + dc + width],
        layer.band_opacity[band],
        out=a,
    )
    np.minimum(a, 1.0, out=a)
    # Ground seen through cloud loses contrast: blend towards a 5x5 mean by opacity.
    uniform_filter(x, size=5, mode="nearest", output=tmp)
    tmp -= x
    tmp *= a
    tmp *= 0.5
    x += tmp
    # x * (1 - a) + a * magnitude
    np.subtract(layer.band_magnitude[band], x, out=tmp)
    tmp *= a
    x += tmp


def apply_cloud_layer(clear: np.ndarray, layer: CloudLayer) -> np.ndarray:
    """Cloudy version of a clear (13, H, W) uint16 scene (reflectance x 1e4), band by band.

    Each band goes through :func:`cloud_band`. Working one band at a time keeps the memory of a
    5490x5490 scene to a few single-band float arrays.
    """
    bands, height, width = clear.shape
    out = np.empty_like(clear)
    # Three reused float buffers: fresh temporaries of a 5490x5490 band cost more in page
    # faults than in arithmetic.
    x = np.empty((height, width), dtype=np.float32)
    a = np.empty_like(x)
    tmp = np.empty_like(x)
    for b in range(bands):
        np.multiply(clear[b], np.float32(1.0 / S2_SCALE), out=x)
        cloud_band(x, layer, b, a, tmp)
        x *= np.float32(S2_SCALE)
        np.rint(x, out=x)
        np.clip(x, 0, np.iinfo(clear.dtype).max, out=x)
        out[b] = x
    return out


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


def atmosphere_change(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-band gain and offset of date t1's TOA reflectance against t0's (float64, 13 bands).

    The gain is 1 + a scene-wide term (s.d. 1.5 %) + a per-band term (B9's largest: water
    vapour); the offset is largest in the blue (aerosol path radiance).
    """
    gain = 1.0 + rng.normal(0.0, 0.015) + rng.normal(0.0, _GAP_GAIN_SD)
    offset = rng.normal(0.0, _GAP_OFFSET_SD)
    return gain, offset
