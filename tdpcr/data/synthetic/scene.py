"""A whole synthetic scene from the stages: layout and terrain, optical, SAR, clouds.

:func:`generate_scene` is the public entry; :func:`render_scene` also returns the cloud layer
and the tags that :mod:`~tdpcr.data.synthetic.writing` writes into every GeoTIFF.
"""

from __future__ import annotations

import numpy as np

from tdpcr.data.synthetic.clouds import (
    CLOUD_THRESHOLD,
    CloudLayer,
    atmosphere_change,
    make_cloud_layer,
)
from tdpcr.data.synthetic.layout import draw_layout, state_t1, terrain
from tdpcr.data.synthetic.optical import DORMANT_ODDS, Sun, ground_texture, reflectance, shading
from tdpcr.data.synthetic.sar import backscatter

#: Smallest supported scene side; below this the landscape has no room for its structures.
MIN_SIZE = 32


def render_scene(
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
    layout = draw_layout(layout_rng, size, change_rng)
    gap_days = float(change_rng.uniform(5.0, 30.0))
    dormant = bool(change_rng.random() < DORMANT_ODDS)
    # Share of deciduous trees that have shed their leaves (mixed forests keep evergreens).
    leaf_off = float(change_rng.uniform(0.4, 0.8)) if dormant else 0.0
    elevation = terrain(terrain_rng, shape)
    state1 = state_t1(change_rng, layout, gap_days)

    s1, tags = backscatter(sar_rng, layout, state1, elevation, leaf_off)
    layout.sar_offset = layout.road = layout.structure = None  # type: ignore[assignment]
    layer = make_cloud_layer(size, size, float(target_cloud_cover), cloud_rng)

    # t0: the clear image.
    sun0 = Sun(float(terrain_rng.uniform(25.0, 55.0)), float(terrain_rng.uniform(130.0, 170.0)))
    sun1 = Sun(
        sun0.zenith + float(terrain_rng.normal(0.0, 3.0)),
        sun0.azimuth + float(terrain_rng.normal(0.0, 4.0)),
    )
    texture, light = ground_texture(children[8], shape)
    mix = layout.state + texture
    layout.state = None  # type: ignore[assignment]
    np.clip(mix, 0.0, 1.0, out=mix)
    light0 = light * shading(elevation, sun0)
    clear = reflectance(optical_rng, layout.landcover, mix, light0, leaf_off=leaf_off)
    del mix, light0

    # t1: the cloudy image (same ground texture, changed state, other sun and atmosphere).
    light *= shading(elevation, sun1)
    del elevation
    state1 += texture
    del texture
    np.clip(state1, 0.0, 1.0, out=state1)
    gain, offset = atmosphere_change(change_rng)
    cloudy = reflectance(
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
        clear, 1 = cloud (opacity >= :data:`~tdpcr.data.synthetic.clouds.CLOUD_THRESHOLD`, thin haze
        included), 2 = cloud shadow; ``cloud_opacity`` (H, W) float32 true reference-band cloud
        opacity in [0, 1].
    """
    return render_scene(size, seed, target_cloud_cover)[0]
