"""Tiny fake GeoTIFFs and dataset layouts for tests (store, dataset, sources, bad inputs).

Everything is written with rasterio directly, not with :mod:`tdpcr.data.rasters`, so that a bug
in the project's writer cannot hide a bug in its readers. Files are small (32x32 by default),
uncompressed and stripped like the upstream datasets, in a UTM CRS with 10 m pixels.

Values are deterministic functions of a ``seed`` so a test can recompute what a file holds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

#: Default CRS of the fakes (WGS 84 / UTM 33N).
UTM_CRS = "EPSG:32633"
#: Default size (pixels) of a fake patch.
SIZE = 32
#: Pixel size in metres.
PIXEL_M = 10.0
#: A custom Transverse Mercator WKT without an EPSG code, like LuojiaSET's land-cover files.
CUSTOM_TM_WKT = (
    'PROJCS["unnamed",GEOGCS["unknown",DATUM["unnamed",SPHEROID["unnamed",6378137,'
    '298.257024882273]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
    'PARAMETER["central_meridian",15],PARAMETER["scale_factor",0.9996],'
    'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1]]'
)
#: LuojiaSET's S1 grid offset from S2 observed in the real sample (x, y) in metres.
LUOJIA_S1_SHIFT_M = (3.69, -4.13)


def transform_at(
    index: int = 0, size: int = SIZE, *, shift_m: tuple[float, float] = (0.0, 0.0)
) -> Affine:
    """Transform of the ``index``-th fake patch: patches side by side, optionally shifted (m)."""
    x0 = 500_000.0 + index * size * PIXEL_M
    y0 = 5_000_000.0
    # Affine(...) directly: rasterio's from_origin warns about Affine's ``*`` (pending deprecation).
    return Affine(PIXEL_M, 0.0, x0 + shift_m[0], 0.0, -PIXEL_M, y0 + shift_m[1])


def write_tif(
    path: Path,
    array: np.ndarray,
    crs: str | None = UTM_CRS,
    transform: Affine | None = None,
    nodata: float | None = None,
) -> Path:
    """Write a (band, y, x) or (y, x) array as a plain GeoTIFF; parents are created.

    ``transform`` defaults to :func:`transform_at(0) <transform_at>`; ``crs`` may be an EPSG
    string, a WKT string (:data:`CUSTOM_TM_WKT`) or ``None``.
    """
    path = Path(path)
    data = array[None] if array.ndim == 2 else array
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform if transform is not None else transform_at(0, data.shape[1]),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def read_tif(path: Path) -> np.ndarray:
    """All bands of ``path`` as stored (for comparing a reader's output to the raw file)."""
    with rasterio.open(path) as src:
        return src.read()


def truncate_file(path: Path, fraction: float = 0.5) -> Path:
    """Cut ``path`` to ``fraction`` of its bytes, as an interrupted download leaves it."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# ------------------------------------------------------------------------------ arrays


def fake_s2(seed: int = 0, size: int = SIZE, *, bands: int = 13, offset: int = 0) -> np.ndarray:
    """uint16 S2 L1C DN (reflectance x 1e4 in 100..4000) plus ``offset`` (1000 for PB >= 04.00)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(100, 4000, size=(bands, size, size)) + offset).astype(np.uint16)


def fake_s1(seed: int = 0, size: int = SIZE, *, bands: int = 2) -> np.ndarray:
    """float32 S1 backscatter in dB (VV about -12, VH about -19), capped at 0 like SEN12MS-CR."""
    rng = np.random.default_rng(seed + 10_000)
    means = np.array([-12.0, -19.0, -15.0, -15.0])[:bands, None, None]
    return np.minimum(rng.normal(means, 3.0, size=(bands, size, size)), 0.0).astype(np.float32)


def fake_landcover(seed: int = 0, size: int = SIZE, *, values: Sequence[int] = (2, 3, 4, 5, 6)):
    """uint8 one-band labels drawn from ``values``; every value appears when size**2 allows."""
    rng = np.random.default_rng(seed + 20_000)
    flat = np.resize(np.asarray(values, dtype=np.uint8), size * size)
    return rng.permutation(flat).reshape(size, size)


def fake_cloudmask(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """float32 0/1 cloud mask (LuojiaSET stores float32), left half cloudy."""
    mask = np.zeros((size, size), dtype=np.float32)
    mask[:, : size // 2] = 1.0
    return np.roll(mask, seed, axis=1)


def fake_sen12ms_lc(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """uint8 4-band SEN12MS land cover: IGBP 0..17 in band 1, LCCS-ish values in bands 2..4."""
    igbp = fake_landcover(seed, size, values=range(0, 18))
    rng = np.random.default_rng(seed + 30_000)
    lccs = rng.choice(np.array([10, 20, 30, 40], dtype=np.uint8), size=(3, size, size))
    return np.concatenate([igbp[None], lccs]).astype(np.uint8)


# ----------------------------------------------------------------------------- LuojiaSET

LUOJIA_FOLDERS: dict[str, str] = {
    "s2_cloudy": "s2_cloudy",
    "s2_clear": "s2",
    "s1": "s1",
    "landcover": "land_cover_maps",
    "cloudmask": "cloud_detection_results",
}


def luojiaset_path(root: Path, cloud_bin: str, piece: str, number: int, roi: str = "01") -> Path:
    """Upstream path of ``piece`` of patch ``p<number>`` (cloud masks have ``_s2_cloudy_``)."""
    kind = {"s1": "s1", "cloudmask": "s2_cloudy"}.get(piece, "s2")
    return Path(root) / cloud_bin / LUOJIA_FOLDERS[piece] / f"ROIs_{roi}_{kind}_p{number}.tif"


def make_luojiaset(
    root: Path,
    bins: Mapping[str, Iterable[int]] | None = None,
    *,
    size: int = SIZE,
    s1_shift_m: tuple[float, float] = LUOJIA_S1_SHIFT_M,
    landcover: bool = True,
    cloudmask: bool = True,
    omit: Iterable[tuple[str, int, str]] = (),
    landcover_values: Sequence[int] = (2, 3, 4, 5, 6),
) -> Path:
    """Write a LuojiaSET-OSFCR tree and return ``root``.

    Args:
        root: folder to create the bins in.
        bins: bin -> patch numbers; default two bins ``{"0-20%": [4, 7], "60%-80%": [22]}``.
        size: patch size in pixels.
        s1_shift_m: S1 origin shift from S2 in metres (the real data has a sub-pixel one).
        landcover, cloudmask: whether to write the optional pieces.
        omit: (bin, number, piece) files not to write.
        landcover_values: values the land-cover maps draw from.

    S2 DN carry the +1000 offset; patch ``p<N>`` uses seed ``N`` for every array, so
    ``fake_s2(N, size, offset=1000)`` is what its S2 file holds (cloudy = clear + 500).
    """
    bins = {"0-20%": [4, 7], "60%-80%": [22]} if bins is None else bins
    skip = set(omit)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for cloud_bin, numbers in bins.items():
        for number in numbers:
            clear = fake_s2(number, size, offset=1000)
            arrays: dict[str, tuple[np.ndarray, str | None]] = {
                "s2_clear": (clear, UTM_CRS),
                "s2_cloudy": (
                    np.minimum(clear.astype(np.int32) + 500, 65535).astype(np.uint16),
                    UTM_CRS,
                ),
                "s1": (fake_s1(number, size), UTM_CRS),
            }
            if landcover:
                arrays["landcover"] = (
                    fake_landcover(number, size, values=landcover_values),
                    CUSTOM_TM_WKT,
                )
            if cloudmask:
                arrays["cloudmask"] = (fake_cloudmask(number, size), UTM_CRS)
            for piece, (array, crs) in arrays.items():
                if (cloud_bin, number, piece) in skip:
                    continue
                shift = s1_shift_m if piece == "s1" else (0.0, 0.0)
                write_tif(
                    luojiaset_path(root, cloud_bin, piece, number),
                    array,
                    crs=crs,
                    transform=transform_at(number, size, shift_m=shift),
                )
    return root


# ----------------------------------------------------------------------------- SEN12MS-CR

#: (season, scene, patch) of the default fake SEN12MS-CR patches.
SEN12MSCR_PATCHES: tuple[tuple[str, int, int], ...] = (
    ("ROIs1970_fall", 139, 839),
    ("ROIs1970_fall", 139, 840),
    ("ROIs2017_winter", 112, 797),
)


def sen12mscr_id(season: str, scene: int, patch: int) -> str:
    """Patch id (and flat file stem) of a SEN12MS-CR patch: ``ROIs1970_fall_139_p839``."""
    return f"{season}_{scene}_p{patch}"


def sen12mscr_nested_path(root: Path, piece: str, season: str, scene: int, patch: int) -> Path:
    """Official nested path of ``piece`` (s1, s2_clear, s2_cloudy, landcover) of a patch."""
    kind = {"s1": "s1", "s2_clear": "s2", "s2_cloudy": "s2_cloudy", "landcover": "lc"}[piece]
    return (
        Path(root)
        / f"{season}_{kind}"
        / f"{kind}_{scene}"
        / f"{season}_{kind}_{scene}_p{patch}.tif"
    )


def _sen12mscr_arrays(index: int, size: int) -> dict[str, np.ndarray]:
    """Arrays of the ``index``-th fake SEN12MS-CR patch (seed = index, no S2 offset)."""
    clear = fake_s2(index, size)
    return {
        "s2_clear": clear,
        "s2_cloudy": np.minimum(clear.astype(np.int32) + 2000, 10_000).astype(np.uint16),
        "s1": fake_s1(index, size),
        "landcover": fake_sen12ms_lc(index, size),
    }


def make_sen12mscr_nested(
    root: Path,
    patches: Sequence[tuple[str, int, int]] = SEN12MSCR_PATCHES,
    *,
    size: int = SIZE,
    landcover: bool = True,
    omit: Iterable[tuple[int, str]] = (),
) -> Path:
    """Write the official nested SEN12MS-CR tree (+ SEN12MS ``_lc``) and return ``root``.

    The i-th patch of ``patches`` uses seed i (see ``_sen12mscr_arrays``); ``omit`` lists
    (i, piece) files not to write.
    """
    skip = set(omit)
    for index, (season, scene, patch) in enumerate(patches):
        for piece, array in _sen12mscr_arrays(index, size).items():
            if (piece == "landcover" and not landcover) or (index, piece) in skip:
                continue
            write_tif(
                sen12mscr_nested_path(root, piece, season, scene, patch),
                array,
                transform=transform_at(index, size),
            )
    return Path(root)


def make_sen12mscr_flat(
    root: Path,
    patches: Sequence[tuple[str, int, int]] = SEN12MSCR_PATCHES,
    *,
    size: int = SIZE,
    splits: Sequence[int] | None = (1, 2, 3),
    csv_name: str = "data.csv",
    sep: str = ",",
    clear_dir: str = "s2_cloudfree",
    omit: Iterable[tuple[int, str]] = (),
) -> Path:
    """Write the flat GLF-CR (``sep=","``) or DSen2-CR (``sep="\\t"``, ``s2_cloudFree``) tree.

    ``splits[i]`` (1/2/3) is written to the csv for the i-th patch (cycled); ``splits=None``
    writes no csv. ``omit`` lists (i, piece) files not to write (still listed in the csv).
    """
    root = Path(root)
    skip = set(omit)
    folders = {"s1": "s1", "s2_clear": clear_dir, "s2_cloudy": "s2_cloudy"}
    lines = []
    for index, patch in enumerate(patches):
        name = f"{sen12mscr_id(*patch)}.tif"
        for piece, array in _sen12mscr_arrays(index, size).items():
            if piece in folders and (index, piece) not in skip:
                write_tif(root / folders[piece] / name, array, transform=transform_at(index, size))
        if splits is not None:
            split = splits[index % len(splits)]
            lines.append(sep.join([str(split), "s1", clear_dir, "s2_cloudy", name]))
    root.mkdir(parents=True, exist_ok=True)
    if splits is not None:
        (root / csv_name).write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------------------ scenes


def make_scenes(
    root: Path,
    n_scenes: int = 2,
    height: int = 80,
    width: int = 100,
    *,
    crs: str = UTM_CRS,
    pieces: Sequence[str] = ("s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask"),
    cloud_fraction: Sequence[float] | None = None,
) -> Path:
    """Folders of full-scene GeoTIFFs (``<root>/scene<i>/<piece>.tif``) like `tdpcr synth` writes.

    Scene ``i`` has its origin 10 km east of scene ``i - 1`` and, in ``cloudmask``, a cloudy top
    band covering ``cloud_fraction[i]`` of its rows (default spread over 0..1).
    """
    root = Path(root)
    fractions = cloud_fraction or [i / max(n_scenes - 1, 1) for i in range(n_scenes)]
    for i in range(n_scenes):
        transform = Affine(PIXEL_M, 0.0, 500_000.0 + 10_000.0 * i, 0.0, -PIXEL_M, 5_000_000.0)
        rng = np.random.default_rng(100 + i)
        mask = np.zeros((height, width), np.uint8)
        mask[: int(round(fractions[i] * height))] = 1
        arrays = {
            "s2_cloudy": rng.integers(100, 6000, (13, height, width)).astype(np.uint16),
            "s2_clear": rng.integers(100, 4000, (13, height, width)).astype(np.uint16),
            "s1": -(rng.random((2, height, width)) * 30).astype(np.float32),
            "landcover": rng.integers(0, 7, (height, width)).astype(np.uint8),
            "cloudmask": mask,
        }
        for piece in pieces:
            write_tif(root / f"scene{i}" / f"{piece}.tif", arrays[piece], crs, transform)
    return root


@contextmanager
def silent_server(life_s: float = 60.0) -> Iterator[tuple[str, list[int]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; it stops by
    itself after ``life_s`` seconds (or when the block ends). Yields its URL and a list whose
    length counts the connections accepted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        held = []
        end = time.monotonic() + life_s
        while not stop.is_set() and time.monotonic() < end:
            try:
                held.append(server.accept()[0])
                accepted.append(1)
            except TimeoutError:
                continue
        for conn in held:
            conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
