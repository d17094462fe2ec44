"""Stage 5: writing a set of synthetic scenes as GeoTIFF folders on UTM grids.

Each scene folder holds ``s2_clear.tif`` (date t0), ``s2_cloudy.tif`` and ``s1.tif`` (date t1),
``landcover.tif``, ``cloudmask.tif`` and ``cloud_opacity.tif``, with tags saying the dates,
the S1 geometry and the cloud cover; ``manifest.json`` lists the scenes of the run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.transform import Affine
from tqdm import tqdm

from tdpcr.core.errors import InputDataError
from tdpcr.core.io import atomic_folder, check_writable, write_json_atomic
from tdpcr.core.specs import CLOUD_BINS, LANDCOVER_COLORS, S1_BANDS, S2_BANDS, cloud_bin_index
from tdpcr.data.rasters import write_geotiff
from tdpcr.data.sources.scenes import MANIFEST as SCENES_MANIFEST
from tdpcr.data.synthetic.fields import PIXEL_SIZE
from tdpcr.data.synthetic.scene import render_scene

#: The ``generator`` tag of every file and of the manifest: how ``synth`` recognises a scene
#: folder it may replace. Kept as the module path it had before the generator became a package,
#: so folders written then are still recognised (and the files stay byte-identical).
GENERATOR = "tdpcr.data.synthetic"
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


@dataclass(frozen=True)
class ScenePlan:
    """What :func:`write_synthetic_scenes` writes for one scene.

    Attributes:
        name: folder name, ``scene00`` ... (zero-padded to fit the scene count).
        seed: the scene's seed for :func:`~tdpcr.data.synthetic.scene.generate_scene`.
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
    if generator != GENERATOR:
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
        scene, layer, scene_tags = render_scene(size, plan.seed, plan.target_cloud_cover)
        tags = {
            "generator": GENERATOR,
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
        {"generator": GENERATOR, "scenes": [p.name for p in written],
         "size": size, "seed": seed},
    )  # fmt: skip
    return written
