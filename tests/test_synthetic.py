"""Tests of the synthetic Sentinel-1/2 scene generator and its cloud simulator (small, fast)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy.ndimage import binary_opening

from tdpcr.core.specs import (
    CLASS_NAMES,
    CLOUD_BINS,
    LANDCOVER_COLORS,
    S1_BANDS,
    S2_BANDS,
    cloud_bin_index,
)
from tdpcr.data import synthetic
from tdpcr.data.synthetic import generate_scene, scene_plan, write_synthetic_scenes, writing
from tdpcr.data.synthetic.clouds import (
    CLOUD_THRESHOLD,
    SHADOW_THRESHOLD,
    apply_cloud_layer,
    make_cloud_layer,
)

B2, B3, B4, B8, B10 = (S2_BANDS.index(b) for b in ("B2", "B3", "B4", "B8", "B10"))
TREE, WATER, BUILT = (CLASS_NAMES.index(c) for c in ("tree", "water", "built-up"))
DIGESTS = Path(__file__).parent / "data" / "synthetic_digests.json"
PIECES = ("s2_clear", "s2_cloudy", "s1", "landcover", "cloudmask", "cloud_opacity")


@pytest.fixture(scope="module")
def scenes() -> list[dict[str, np.ndarray]]:
    """A few 128 px scenes with mid-range cloud cover, shared by the content tests."""
    return [generate_scene(128, seed, target_cloud_cover=0.4) for seed in (0, 1, 2)]


def _pooled(scenes: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.concatenate([s[key].reshape(*s[key].shape[:-2], -1) for s in scenes], axis=-1)


def test_pieces_shapes_and_dtypes() -> None:
    scene = generate_scene(96, seed=7, target_cloud_cover=0.3)
    assert set(scene) == set(PIECES)
    assert scene["s2_clear"].shape == scene["s2_cloudy"].shape == (len(S2_BANDS), 96, 96)
    assert scene["s2_clear"].dtype == scene["s2_cloudy"].dtype == np.uint16
    assert scene["s1"].shape == (len(S1_BANDS), 96, 96) and scene["s1"].dtype == np.float32
    assert scene["landcover"].shape == scene["cloudmask"].shape == (96, 96)
    assert scene["landcover"].dtype == scene["cloudmask"].dtype == np.uint8
    assert set(np.unique(scene["landcover"])) <= set(range(len(CLASS_NAMES))) | {255}
    assert set(np.unique(scene["cloudmask"])) == {0, 1, 2}
    opacity = scene["cloud_opacity"]
    assert opacity.shape == (96, 96) and opacity.dtype == np.float32
    assert opacity.min() >= 0.0 and opacity.max() <= 1.0
    s1 = scene["s1"]
    assert np.isfinite(s1).all() and s1.max() <= 0.0 and s1.min() >= -35.0
    # Reflectance in plausible L1C range (x 1e4): nothing black, nothing saturated.
    assert scene["s2_clear"].min() > 0 and scene["s2_clear"].max() < 10_000


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    first = generate_scene(64, seed=11)
    again = generate_scene(64, seed=11)
    other = generate_scene(64, seed=12)
    for key in PIECES:
        assert first[key].tobytes() == again[key].tobytes(), key
    assert not np.array_equal(first["s2_clear"], other["s2_clear"])
    assert not np.array_equal(first["s1"], other["s1"])
    assert not np.array_equal(first["landcover"], other["landcover"])


def test_ground_does_not_depend_on_the_requested_cloud_cover() -> None:
    thin = generate_scene(64, seed=3, target_cloud_cover=0.1)
    thick = generate_scene(64, seed=3, target_cloud_cover=0.9)
    for key in ("s2_clear", "s1", "landcover"):
        assert np.array_equal(thin[key], thick[key]), key
    assert thick["cloudmask"].mean() > thin["cloudmask"].mean()


@pytest.mark.parametrize("target", [0.0, 0.1, 0.35, 0.65, 0.9])
def test_realised_cloud_cover_follows_the_target(target: float) -> None:
    cover = (generate_scene(96, seed=5, target_cloud_cover=target)["cloudmask"] > 0).mean()
    assert abs(cover - target) < 0.03


def test_class_spectral_and_backscatter_sanity(scenes: list[dict[str, np.ndarray]]) -> None:
    lc = _pooled(scenes, "landcover")
    s2 = _pooled(scenes, "s2_clear").astype(np.float64) / 1e4
    s1 = _pooled(scenes, "s1")
    ndvi = (s2[B8] - s2[B4]) / (s2[B8] + s2[B4])
    tree, water, built = lc == TREE, lc == WATER, lc == BUILT
    assert tree.sum() > 100 and water.sum() > 100 and built.sum() > 50
    assert ndvi[tree].mean() > 0.5 > ndvi[water].mean()
    assert ndvi[water].mean() < 0.0
    assert s2[B8][water].mean() < 0.05
    # Forest NIR at L1C: 0.17-0.30 (real LuojiaSET forest ~0.2, docs/synthetic-data.md).
    assert 0.17 < s2[B8][tree].mean() < 0.30
    assert s2[B10].mean() < 0.01  # cirrus band nearly black under a clear sky
    vv, vh = s1
    assert vv[built].mean() > vv[water].mean() + 10.0
    assert vv[tree].mean() > vv[water].mean() + 8.0
    assert -26.0 < vv[water].mean() < -17.0 and -31.0 < vh[water].mean() < -22.0
    assert (vh < vv).mean() > 0.8  # cross-pol is weaker than co-pol
    assert vv[water].std() > 1.5  # speckle, not a flat class map


def test_clouds_brighten_visible_bands_and_b10(scenes: list[dict[str, np.ndarray]]) -> None:
    for scene in scenes:
        assert 0.3 < (scene["cloudmask"] > 0).mean() < 0.5
        mask = scene["cloudmask"] == 1
        clear = scene["s2_clear"].astype(np.float64)
        cloudy = scene["s2_cloudy"].astype(np.float64)
        for band in (B2, B3, B4):
            assert cloudy[band][mask].mean() > clear[band][mask].mean() + 300
        # Cirrus band: black under clear sky, lit by (high) clouds.
        assert cloudy[B10][mask].mean() > 2 * clear[B10][mask].mean()
        # Outside the mask only sub-threshold haze and the change between the dates remain.
        outside = np.abs(cloudy[B3][~mask] - clear[B3][~mask]).mean()
        inside = np.abs(cloudy[B3][mask] - clear[B3][mask]).mean()
        assert outside < 0.5 * inside


def test_shadows_are_displaced_clouds_that_darken_the_ground() -> None:
    rng = np.random.default_rng(0)
    layer = make_cloud_layer(128, 128, 0.4, rng)
    ground = np.full((len(S2_BANDS), 128, 128), 3000, dtype=np.uint16)
    cloudy = apply_cloud_layer(ground, layer)
    cloud = layer.scene_opacity >= CLOUD_THRESHOLD
    shadow = layer.shadow >= SHADOW_THRESHOLD
    shadow_only = shadow & (layer.scene_opacity < 0.01)
    assert shadow_only.any() and cloud.any()
    assert not np.array_equal(shadow_only, cloud)
    assert cloudy[B8][shadow_only].mean() < 0.9 * 3000
    assert cloudy[B8][cloud].mean() > 3000
    # 1 = cloud (thin haze included), 2 = shadow where not cloud: cloud wins where both.
    assert np.array_equal(layer.mask == 1, cloud)
    assert np.array_equal(layer.mask == 2, shadow & ~cloud)
    assert (shadow & cloud).any()
    assert layer.cover == pytest.approx((layer.mask > 0).mean())
    assert layer.shadow_cover == pytest.approx((layer.mask == 2).mean())


def test_cloud_mask_flags_thin_haze() -> None:
    """Haze between the threshold and the old 0.1 is flagged; thinner veil is not."""
    layer = make_cloud_layer(128, 128, 0.5, np.random.default_rng(3))
    opacity = layer.scene_opacity
    haze = (opacity >= CLOUD_THRESHOLD) & (opacity < 0.1)
    assert haze.mean() > 0.01
    assert (layer.mask[haze] == 1).all()
    veil = opacity < CLOUD_THRESHOLD
    assert (layer.mask[veil] != 1).all()


def test_landcover_has_regions_edges_and_thin_structures(
    scenes: list[dict[str, np.ndarray]],
) -> None:
    for scene in scenes:
        lc = scene["landcover"]
        assert len(np.unique(lc)) >= 4
        # Spatially coherent: most pixels share the class of their right and lower neighbours.
        same = ((lc[:, 1:] == lc[:, :-1]).mean() + (lc[1:] == lc[:-1]).mean()) / 2
        assert same > 0.85
        # Thin built-up structures: built-up pixels whose 4-neighbourhood holds another class,
        # and pixels of structures narrower than 3 px (roads, small buildings).
        built = lc == BUILT
        inner = built[1:-1, 1:-1]
        up, down, left, right = lc[:-2, 1:-1], lc[2:, 1:-1], lc[1:-1, :-2], lc[1:-1, 2:]
        edge = inner & ((up != BUILT) | (down != BUILT) | (left != BUILT) | (right != BUILT))
        assert edge.sum() > 20
        thin = built & ~binary_opening(built, structure=np.ones((3, 3), dtype=bool))
        assert thin.sum() > 20
    present = {int(c) for s in scenes for c in np.unique(s["landcover"])}
    assert present >= set(range(len(CLASS_NAMES)))


def test_most_scenes_have_all_classes() -> None:
    counts = [len(np.unique(generate_scene(256, seed)["landcover"])) for seed in range(4)]
    assert sum(c == len(CLASS_NAMES) for c in counts) >= 3


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        generate_scene(8, seed=0)
    with pytest.raises(ValueError, match="target_cover"):
        generate_scene(64, seed=0, target_cloud_cover=1.5)


def test_write_synthetic_scenes(tmp_path) -> None:
    paths = write_synthetic_scenes(tmp_path / "synth", n_scenes=5, size=64, seed=4)
    assert [p.name for p in paths] == [f"scene{i:02d}" for i in range(5)]
    listed = sorted(p.name for p in (tmp_path / "synth").iterdir())
    assert listed == ["manifest.json", *(p.name for p in paths)]
    covers = []
    for path in paths:
        assert sorted(f.name for f in path.iterdir()) == sorted(f"{p}.tif" for p in PIECES)
        # Scene readers recognise a finished folder by s2_cloudy.tif: it is written last.
        assert synthetic.SCENE_FILES[-1] == "s2_cloudy"
        assert set(synthetic.SCENE_FILES) == set(PIECES)
        for piece in PIECES:
            with rasterio.open(path / f"{piece}.tif") as src:
                epsg = src.crs.to_epsg()
                assert epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760)
                assert src.transform.a == 10.0 and src.transform.e == -10.0
                assert src.transform.b == 0.0 and src.transform.d == 0.0
                assert 300_000 <= src.transform.c <= 700_000
                assert 4_000_000 <= src.transform.f <= 6_000_000
                assert (src.width, src.height) == (64, 64)
                if piece.startswith("s2"):
                    assert src.descriptions == S2_BANDS and src.dtypes[0] == "uint16"
                elif piece == "s1":
                    assert src.descriptions == S1_BANDS and src.dtypes[0] == "float32"
                elif piece == "cloud_opacity":
                    assert src.descriptions == (piece,) and src.dtypes[0] == "float32"
                else:
                    assert src.descriptions == (piece,) and src.dtypes[0] == "uint8"
                if piece == "landcover":
                    assert src.colormap(1)[0][:3] == LANDCOVER_COLORS[0][:3]
                if piece == "cloudmask":
                    mask = src.read(1)
                    covers.append(float((mask > 0).mean()))
                    assert set(np.unique(mask)) <= {0, 1, 2}
                    cover = float(src.tags()["cloud_cover"])
                    assert cover == pytest.approx((mask > 0).mean(), abs=1e-4)
                    shadow = float(src.tags()["shadow_cover"])
                    assert shadow == pytest.approx((mask == 2).mean(), abs=1e-4)
    assert len({cloud_bin_index(c) for c in covers}) >= 4, covers
    # Scene i aims at bin i % 5, and the files hold exactly what generate_scene returns.
    plans = scene_plan(5, size=64, seed=4)
    bins = [cloud_bin_index(p.target_cloud_cover) for p in plans]
    assert bins == list(range(len(CLOUD_BINS)))
    plan = plans[2]
    expected = generate_scene(64, plan.seed, plan.target_cloud_cover)
    with rasterio.open(tmp_path / "synth" / plan.name / "s2_cloudy.tif") as src:
        assert np.array_equal(src.read(), expected["s2_cloudy"])
        assert src.tags()["cloud_bin"] == CLOUD_BINS[2]
        assert src.crs.to_string() == plan.crs and src.transform == plan.transform
    with rasterio.open(tmp_path / "synth" / plan.name / "s1.tif") as src:
        assert np.array_equal(src.read(), expected["s1"])
        assert src.tags()["acquisitions"].startswith("s2_clear: t0")
    with rasterio.open(tmp_path / "synth" / plan.name / "cloud_opacity.tif") as src:
        assert np.array_equal(src.read(1), expected["cloud_opacity"])


def test_write_is_deterministic_and_differs_by_georeference(tmp_path) -> None:
    a = write_synthetic_scenes(tmp_path / "a", n_scenes=2, size=48, seed=9)
    b = write_synthetic_scenes(tmp_path / "b", n_scenes=2, size=48, seed=9)
    crs = []
    for pa, pb in zip(a, b, strict=True):
        # Same seed, same bytes: every file of the folder, not only the arrays.
        for piece in PIECES:
            assert (pa / f"{piece}.tif").read_bytes() == (pb / f"{piece}.tif").read_bytes(), piece
        with rasterio.open(pa / "s2_clear.tif") as sa, rasterio.open(pb / "s2_clear.tif") as sb:
            assert np.array_equal(sa.read(), sb.read())
            assert sa.crs == sb.crs and sa.transform == sb.transform
            crs.append((sa.crs, sa.transform))
    assert crs[0] != crs[1]


def test_failed_write_leaves_no_partial_scene(tmp_path, monkeypatch) -> None:
    calls = {"n": 0}
    real = writing.write_geotiff

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # inside the second scene
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(writing, "write_geotiff", failing)
    with pytest.raises(OSError, match="disk full"):
        write_synthetic_scenes(tmp_path / "out", n_scenes=3, size=48, seed=1)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["scene00"]
    # A temporary folder left by a killed run is cleared by the next run.
    (tmp_path / "out" / ".scene01.x.tmp").mkdir()
    monkeypatch.setattr(writing, "write_geotiff", real)
    write_synthetic_scenes(tmp_path / "out", n_scenes=2, size=48, seed=1)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["manifest.json", "scene00", "scene01"]


def test_two_acquisitions_differ_by_a_short_time_gap() -> None:
    """s2_cloudy (t1) is another date than s2_clear (t0): changed, but only a little."""
    scene = generate_scene(128, seed=21, target_cloud_cover=0.0)
    clear = scene["s2_clear"].astype(np.float64)
    cloudy = scene["s2_cloudy"].astype(np.float64)
    sky = scene["cloudmask"] == 0
    assert sky.mean() > 0.95
    assert not np.array_equal(clear, cloudy)
    rel = np.abs(cloudy[B8] - clear[B8])[sky] / clear[B8][sky]
    assert 0.005 < np.median(rel) < 0.15
    # Per-band gain and offset of the atmosphere stay small (B10, ~0.002, is all offset) ...
    ratio = cloudy[:, sky].mean(axis=1) / clear[:, sky].mean(axis=1)
    ratio = np.delete(ratio, B10)
    assert np.all(np.abs(ratio - 1.0) < 0.15), ratio
    # ... and the scene is still recognisably the same place.
    assert np.corrcoef(clear[B8][sky], cloudy[B8][sky])[0, 1] > 0.7


def test_sar_is_not_a_function_of_the_optical_state(scenes: list[dict[str, np.ndarray]]) -> None:
    """Within a class, VH barely follows NIR (real samples: |r| 0.02-0.35)."""
    lc = _pooled(scenes, "landcover")
    b8 = _pooled(scenes, "s2_clear")[B8].astype(np.float64)
    vh = _pooled(scenes, "s1")[1].astype(np.float64)
    for cls in (TREE, WATER, CLASS_NAMES.index("crop")):
        sel = lc == cls
        assert sel.sum() > 100
        assert abs(np.corrcoef(vh[sel], b8[sel])[0, 1]) < 0.4, CLASS_NAMES[cls]


@pytest.mark.parametrize(
    "run", json.loads(DIGESTS.read_text())["runs"], ids=lambda r: f"seed{r['seed']}-{r['size']}px"
)
def test_synth_writes_the_recorded_bytes(tmp_path: Path, run: dict) -> None:
    """`tdpcr synth` writes, byte for byte, what the generator wrote when the digests were
    recorded (see the JSON): moving code between modules must not change a scene. The 576 px
    run crosses the optical stage's 512-row strips. A deliberate change of the scenes updates
    tests/data/synthetic_digests.json in the same commit, saying why."""
    from tdpcr.cli import main

    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--scenes", str(run["scenes"]), "--size", str(run["size"])]
    assert main([*args, "--seed", str(run["seed"])]) == 0
    written = {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }
    assert written == run["sha256"]
