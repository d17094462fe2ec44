"""The patches the realism report measures: synthetic scenes and real Sentinel-1/2 samples.

Real data are read through the project's own source readers
(:func:`tdpcr.data.sources.make_source`) where the layout is one of them; the SEN12MS land
cover + S1 pair and loose SEN12MS-CR cloudy / clear pairs are read with
:func:`tdpcr.data.rasters.read_raster`. Every reader yields :class:`Sample` patches in store
conventions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Patch side for the statistics (real samples are 256 x 256).
PATCH_SIZE = 256


@dataclass
class Sample:
    """One patch of one dataset, in store conventions (reflectance x 1e4, dB, uint8 labels).

    Attributes:
        dataset: the report's dataset name (``synthetic``, ``luojiaset`` ...).
        patch_id: the source's patch id.
        s2_clear, s2_cloudy: (13, H, W) uint16 or None.
        s1: (2, H, W) float32 dB or None.
        landcover: (H, W) uint8 or None; project classes unless ``legend`` says otherwise.
        cloudmask: (H, W) uint8 (0 clear, 1 cloud, 2 shadow, 255 unknown) or None.
        cloud_opacity: (H, W) float32 true opacity (synthetic scenes) or None.
        legend: ``"project"`` (classes 0..6) or ``"source"`` (values kept, legend unknown).
    """

    dataset: str
    patch_id: str
    s2_clear: np.ndarray | None = None
    s2_cloudy: np.ndarray | None = None
    s1: np.ndarray | None = None
    landcover: np.ndarray | None = None
    cloudmask: np.ndarray | None = None
    cloud_opacity: np.ndarray | None = None
    legend: str = "project"
    notes: list[str] = field(default_factory=list)


def scene_samples(root: Path, dataset: str = "synthetic") -> Iterator[Sample]:
    """256 x 256 patches of a folder of scene folders (the synthetic default or a user's);
    scenes smaller than that (the tiny test config) are measured whole."""
    from tdpcr.data.rasters import read_grid
    from tdpcr.data.sources import make_source

    kind = "synthetic" if dataset == "synthetic" else "scenes"
    first = next(iter(sorted(Path(root).glob("*/s2_cloudy.tif"))), None)
    side = PATCH_SIZE
    if first is not None:
        grid = read_grid(first)
        side = min(PATCH_SIZE, grid.height, grid.width)
    source = make_source(kind, Path(root), patch_size=side)
    for ref in source.patches():
        data = source.read(ref)
        yield Sample(
            dataset,
            ref.patch_id,
            s2_clear=data.arrays.get("s2_clear"),
            s2_cloudy=data.arrays.get("s2_cloudy"),
            s1=data.arrays.get("s1"),
            landcover=data.arrays.get("landcover"),
            cloudmask=data.arrays.get("cloudmask"),
            cloud_opacity=data.arrays.get("cloud_opacity"),
        )


def source_samples(kind: str, root: Path, dataset: str) -> Iterator[Sample]:
    """Patches of a LuojiaSET-OSFCR or SEN12MS-CR folder, through the project's readers.

    Patches a reader refuses (the LuojiaSET sample has defective files upstream) are skipped
    with a warning. LuojiaSET land-cover values are kept (legend undocumented); a cloudy S2
    byte-identical to the clear one (a defect of the LuojiaSET sample) is dropped.
    """
    from tdpcr.core.errors import InputDataError
    from tdpcr.data.sources import make_source

    source = make_source(kind, Path(root), skip_incomplete=True)
    for ref in source.patches():
        try:
            data = source.read(ref)
        except InputDataError as err:
            log.warning("%s: skipping %s (%s)", dataset, ref.patch_id, err)
            continue
        arrays = data.arrays
        sample = Sample(
            dataset,
            ref.patch_id,
            s2_clear=arrays.get("s2_clear"),
            s2_cloudy=arrays.get("s2_cloudy"),
            s1=arrays.get("s1"),
            landcover=arrays.get("landcover"),
            legend="source" if kind == "luojiaset" else "project",
        )
        if (
            sample.s2_cloudy is not None
            and sample.s2_clear is not None
            and np.array_equal(sample.s2_cloudy, sample.s2_clear)
        ):
            sample.s2_cloudy = None
            sample.notes.append("s2_cloudy identical to s2_clear upstream: not used")
        yield sample


def sen12ms_lc_samples(root: Path, dataset: str = "sen12ms_lc") -> Iterator[Sample]:
    """SEN12MS land cover + S1 pairs (``*_lc_*.tif`` beside ``*_s1_*.tif``), IGBP mapped.

    The IGBP band is mapped to project classes as :class:`~tdpcr.data.sources.sen12mscr.
    Sen12MSCRSource` does for SEN12MS-CR land cover.
    """
    from tdpcr.data.rasters import read_raster
    from tdpcr.data.sources.sen12mscr import IGBP_BAND, IGBP_TO_CLASS

    lut = np.full(256, 255, dtype=np.uint8)
    for igbp, cls in IGBP_TO_CLASS.items():
        lut[igbp] = cls
    for lc_path in sorted(Path(root).rglob("*_lc_*.tif")):
        s1_path = lc_path.with_name(lc_path.name.replace("_lc_", "_s1_"))
        if not s1_path.exists():
            continue
        lc = read_raster(lc_path, what="SEN12MS land cover")[0][IGBP_BAND - 1]
        s1 = read_raster(s1_path, bands=2, what="Sentinel-1 VV/VH dB")[0].astype(np.float32)
        yield Sample(dataset, lc_path.stem.replace("_lc_", "_"), s1=s1, landcover=lut[lc])


def s2_pair_samples(root: Path, dataset: str = "s2pairs") -> Iterator[Sample]:
    """Loose SEN12MS-CR cloudy / clear S2 pairs anywhere under ``root`` (official file names).

    ``<season>_s2_cloudy_<scene>_p<patch>.tif`` is paired with ``<season>_s2_<scene>_p<patch>.tif``
    found anywhere under ``root``; used for the cloud-opacity and time-gap statistics.
    """
    from tdpcr.data.rasters import read_raster

    files = {p.name: p for p in sorted(Path(root).rglob("*.tif"))}
    for name, cloudy_path in files.items():
        if "_s2_cloudy_" not in name:
            continue
        clear_path = files.get(name.replace("_s2_cloudy_", "_s2_"))
        if clear_path is None:
            continue
        cloudy = read_raster(cloudy_path, bands=13, what="cloudy S2")[0]
        clear = read_raster(clear_path, bands=13, what="clear S2")[0]
        yield Sample(
            dataset,
            Path(name).stem.replace("_s2_cloudy_", "_"),
            s2_clear=np.clip(clear, 0, 65535).astype(np.uint16),
            s2_cloudy=np.clip(cloudy, 0, 65535).astype(np.uint16),
        )


#: Kinds of real folders the report reads -> (reader, default dataset name).
REAL_KINDS: dict[str, Callable[[Path, str], Iterator[Sample]]] = {
    "luojiaset": lambda root, name: source_samples("luojiaset", root, name),
    "sen12mscr": lambda root, name: source_samples("sen12mscr", root, name),
    "sen12ms-lc": sen12ms_lc_samples,
    "s2pairs": s2_pair_samples,
    "scenes": lambda root, name: scene_samples(root, name),
}


def default_real_roots(realdata: Path) -> list[tuple[str, Path]]:
    """The real samples of ``../shared/realdata`` (its README) that the report can use."""
    candidates = [
        ("luojiaset", "luojiaset-osfcr-sample"),
        ("sen12mscr", "sen12ms-cr-flat"),
        ("sen12ms-lc", "sen12ms-lc"),
        ("s2pairs", "sen12ms-cr-pairs"),
    ]
    return [(kind, Path(realdata) / sub) for kind, sub in candidates if (realdata / sub).is_dir()]
