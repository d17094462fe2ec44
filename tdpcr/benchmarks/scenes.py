"""Large benchmark scenes: one synthetic scene repeated into a mosaic of any size.

Generating a synthetic scene holds the whole scene in memory several times over (cloud
simulation, texture), which a 8192 x 8192 or 10980-wide scene would not fit next to other
jobs. Speed and memory of tiling and prediction do not depend on the content beyond its
compressibility, so the benchmarks generate one ``base`` x ``base`` scene
(:func:`tdpcr.data.synthetic.write_synthetic_scenes`) and repeat it, mirrored every other
time so that neighbouring copies meet without a jump, into files of any height and width
with windowed writes (bounded memory). Same pieces, dtypes, compression, tiling, CRS and
colour table as the synthetic scene itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from tdpcr.core.specs import PIECES
from tdpcr.data.synthetic import write_synthetic_scenes

#: Side of the generated scene that the mosaics repeat.
BASE_SIDE = 512


def _mirrored(data: np.ndarray, tile_row: int, tile_col: int) -> np.ndarray:
    if tile_row % 2:
        data = data[..., ::-1, :]
    if tile_col % 2:
        data = data[..., :, ::-1]
    return data


def mosaic_scene(base: Path, out: Path, height: int, width: int) -> Path:
    """Write every piece of scene folder ``base`` repeated to ``height`` x ``width`` in ``out``.

    Returns ``out`` (a scene folder with the same file names).
    """
    out.mkdir(parents=True, exist_ok=True)
    # s2_cloudy last: scene readers recognise a complete folder by it.
    names = sorted(
        (p for p in PIECES if (base / f"{p}.tif").exists()), key=lambda p: p == "s2_cloudy"
    )
    for piece in names:
        with rasterio.open(base / f"{piece}.tif") as src:
            data = src.read()
            profile = src.profile
            profile.update(height=height, width=width, tiled=True, blockxsize=256, blockysize=256)
            profile["bigtiff"] = "if_safer"
            colormap = src.colormap(1) if src.count == 1 and piece == "landcover" else None
            tags = src.tags()
            descriptions = src.descriptions
        bh, bw = data.shape[-2:]
        with rasterio.open(out / f"{piece}.tif", "w", **profile) as dst:
            dst.update_tags(**tags)
            for index, text in enumerate(descriptions, start=1):
                if text:
                    dst.set_band_description(index, text)
            if colormap is not None:
                dst.write_colormap(1, colormap)
            for tile_row, row in enumerate(range(0, height, bh)):
                for tile_col, col in enumerate(range(0, width, bw)):
                    h, w = min(bh, height - row), min(bw, width - col)
                    block = _mirrored(data, tile_row, tile_col)[:, :h, :w]
                    dst.write(np.ascontiguousarray(block), window=Window(col, row, w, h))
    return out


def benchmark_scene(workdir: Path, height: int, width: int, seed: int) -> Path:
    """Scene folder ``workdir/<height>x<width>/scene00`` (the only scene of that root).

    The base scene is generated once per ``workdir`` and reused for every size.
    """
    base_root = workdir / "base"
    base = base_root / "scene00"
    if not (base / "s2_cloudy.tif").exists():
        write_synthetic_scenes(base_root, 1, BASE_SIDE, seed)
    return mosaic_scene(base, workdir / f"{height}x{width}" / "scene00", height, width)
