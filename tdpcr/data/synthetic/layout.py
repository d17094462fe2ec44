"""Stage 1 of a synthetic scene: the land cover, the terrain and the ground's change to date t1.

* **Land cover** (7 classes, :data:`~tdpcr.core.specs.CLASS_NAMES`): landscape zones from the
  argmax of smooth multi-octave noise fields (sharp, organic boundaries), subdivided into
  agricultural parcels on a rotated grid with hedgerows, urban street grids, forest clearings,
  lakes, plus thin structures: roads (1-3 px lines of built-up), a meandering river with
  riparian trees, streams, and small building blocks. Each region and parcel has a *state*
  (greenness, density, brightness, turbidity) that the optical stage turns into reflectance,
  and SAR-only properties (roughness, structure) that the SAR stage reads.
* **Terrain**: a smooth elevation field that only the sensors see (sun shading, local
  incidence, wetter low ground).
* **Change to t1**: phenology, field events on some parcels and a small water-level change
  (:func:`state_t1`); everything about the second date comes from its own random stream, so
  the t0 land cover does not depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tdpcr.core.specs import CLASS_NAMES
from tdpcr.data.synthetic.fields import (
    PIXEL_SIZE,
    Meander,
    fractal,
    line_pieces,
    rotated_coords,
)

TREE, SHRUB, GRASS, CROP, BUILT, WATER, BARE = (
    CLASS_NAMES.index(name)
    for name in ("tree", "shrub", "grass", "crop", "built-up", "water", "bare")
)

#: Vigour (here: brightness) of road pixels: dark asphalt.
_ROAD_STATE = 0.2
#: Scene-wide phenology between the dates, relative weight per class (crops fastest).
_PHENOLOGY = np.array([0.35, 0.25, 0.8, 1.0, 0.0, 0.0, 0.0], dtype=np.float32)

#: Landscape zones, their class and their share bias in the zone argmax.
_ZONES: tuple[tuple[str, float], ...] = (
    ("forest", 0.0),
    ("shrubland", -0.35),
    ("grassland", -0.2),
    ("cropland", 0.35),
    ("urban", -0.9),
)
_FOREST, _SHRUBLAND, _GRASSLAND, _CROPLAND, _URBAN = range(len(_ZONES))


@dataclass
class Layout:
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
        field = fractal(rng, shape, scale=float(rng.uniform(150.0, 260.0)), octaves=4)
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
    layout: Layout,
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
    u, v = rotated_coords(shape, angle, (0.0, 0.0))
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
    layout: Layout,
    change_rng: np.random.Generator,
) -> None:
    """Street grid with building blocks, parks and tree-lined blocks inside ``where``.

    Each block gets a SAR structure (orientation towards the radar) from ``change_rng``.
    """
    if not where.any():
        return
    angle = float(rng.uniform(-math.pi / 4, math.pi / 4))
    rows, cols = np.nonzero(where)
    u, v = rotated_coords(shape, angle, (0.0, 0.0))
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
    layout: Layout,
    centre: tuple[float, float],
    angle: float,
    half_length: float,
    half_width: float,
    meander: Meander,
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
    for box, dist in line_pieces(shape, centre, angle, half_length, meander, half_width + bank):
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


def _random_meander(rng: np.random.Generator, width: float, wander: float) -> Meander:
    """Irregular meanders: wavelengths scale with channel width (~12-25x, as real rivers),
    with a second incommensurate bend and a long-range wander so the line does not look like
    a sine wave."""
    short = width * rng.uniform(12.0, 25.0)
    medium = short * rng.uniform(2.3, 3.1)
    return Meander(
        amplitudes=(
            short * rng.uniform(0.05, 0.15),
            medium * rng.uniform(0.05, 0.12),
            wander * rng.uniform(0.3, 1.0),
        ),
        wavelengths=(short, medium, rng.uniform(800.0, 2000.0)),
        phases=tuple(rng.uniform(0.0, 2 * math.pi, size=3)),
    )


def _buildings(rng: np.random.Generator, layout: Layout, change_rng: np.random.Generator) -> None:
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


def draw_layout(rng: np.random.Generator, size: int, change_rng: np.random.Generator) -> Layout:
    """Draw the land cover of one scene, the per-pixel class state and its change to t1.

    Everything about the second date (parcel changes, SAR structure, the water-level change)
    comes from ``change_rng``, so the t0 land cover and state depend on ``rng`` only.
    """
    shape = (size, size)
    area = size * size
    layout = Layout(
        landcover=np.empty(shape, dtype=np.uint8),
        state=np.clip(0.5 + 0.22 * fractal(rng, shape, 60.0), 0.0, 1.0),
        sar_offset=np.zeros(shape, dtype=np.float32),
        road=np.zeros(shape, dtype=bool),
        delta=np.zeros(shape, dtype=np.float32),
        structure=np.zeros(shape, dtype=np.float32),
    )
    zone = _zones(rng, shape)
    lc = layout.landcover
    detail = fractal(rng, shape, scale=40.0, octaves=3)
    flip = fractal(rng, shape, scale=25.0, octaves=2) > 0

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
    quarry = (fractal(rng, shape, scale=50.0, octaves=2) > rng.uniform(1.9, 2.4)) & ~urban
    lc[quarry] = BARE
    lake_field = fractal(rng, shape, scale=300.0, octaves=3)
    lake_level = rng.uniform(-2.4, -1.5)
    lake = lake_field < lake_level
    lc[lake] = WATER
    # Lakes are mostly clear water; a smooth turbidity field of their own (not the parcels).
    turbidity = np.clip(0.15 + 0.1 * fractal(rng, shape, scale=100.0, octaves=2), 0.0, 1.0)
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
            meander=Meander(
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


def terrain(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Elevation (m), float32: smooth relief, from gentle (s.d. 4 m) to hilly (80 m).

    Only the sensors see it (local incidence angle in SAR, sun shading in the optical images,
    wetter soil in the low spots); the land cover is drawn without it.
    """
    relief = math.exp(rng.uniform(math.log(4.0), math.log(80.0)))
    field = fractal(rng, shape, scale=float(rng.uniform(150.0, 500.0)), octaves=4)
    field *= np.float32(relief)
    return field


def slopes(elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terrain slopes dz/d(east) and dz/d(north), dimensionless float32."""
    d_south, d_east = np.gradient(elevation, PIXEL_SIZE)
    d_south *= -1.0
    return d_east.astype(np.float32, copy=False), d_south.astype(np.float32, copy=False)


def state_t1(rng: np.random.Generator, layout: Layout, gap_days: float) -> np.ndarray:
    """Class state at t1: t0 state + parcel changes + scene-wide phenology + water changes.

    The phenology is a green-up or a senescence of up to 0.12 state units per 30 days, weighted
    by class (:data:`_PHENOLOGY`: crops fastest, forest slowest) and modulated by a smooth
    regional field; lakes change turbidity; flooded shores become water, exposed shores wet
    soil. Frees ``layout.delta``.
    """
    lc = layout.landcover
    shape = lc.shape
    trend = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * 0.12 * gap_days / 30.0)
    field = fractal(rng, shape, scale=150.0, octaves=2)
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
