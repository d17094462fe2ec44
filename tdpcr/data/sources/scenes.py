"""Full scenes as folders of GeoTIFFs (the synthetic default and users' own scenes).

Layout, one folder per scene (any size, any UTM CRS)::

    root/<scene>/s2_cloudy.tif   13 bands uint16, reflectance x 1e4
    root/<scene>/s2_clear.tif    optional, same grid
    root/<scene>/s1.tif          2 bands float32 dB (VV, VH), same grid (sub-pixel shifts tolerated)
    root/<scene>/landcover.tif   optional, uint8, 255 = no label
    root/<scene>/cloudmask.tif   optional, uint8 0 clear, 1 cloud, 2 shadow (or 0/1)

Each scene is cut into ``patch_size`` patches on a regular grid with ``stride``; a partial last
row or column is shifted back to end at the scene edge, so every pixel is covered and every
patch is full size. Patch ids are ``<scene>_r<row>_c<col>``; a scene is one spatial group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rasterio.windows import Window

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import PIECES
from tdpcr.data.rasters import read_grid
from tdpcr.data.sources.base import PatchRef, Source

REQUIRED_PIECES = ("s2_cloudy", "s1")
#: Written by ``tdpcr synth`` beside its scene folders: the scenes of its latest run.
MANIFEST = "manifest.json"


def grid_offsets(length: int, patch_size: int, stride: int) -> list[int]:
    """Start offsets covering ``length`` with ``patch_size`` windows every ``stride`` pixels.

    The last window is moved back to end exactly at ``length`` (overlapping its neighbour)
    rather than padded, so patches hold only real pixels.
    """
    if length < patch_size:
        return []
    offsets = list(range(0, length - patch_size + 1, stride))
    if offsets[-1] + patch_size < length:
        offsets.append(length - patch_size)
    return offsets


class SceneSource(Source):
    """Folders of full-scene GeoTIFFs cut into patches on a regular grid."""

    name = "scenes"
    takes_s2_offset = True

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        patch_size, skip_incomplete = self.patch_size, self.skip_incomplete
        scene_dirs = self.scene_dirs()
        if not scene_dirs:
            raise InputDataError(
                f"{self.root}: no scene folders found; expected <scene>/s2_cloudy.tif, "
                "<scene>/s1.tif and optional s2_clear.tif, landcover.tif, cloudmask.tif"
            )
        refs: list[PatchRef] = []
        for scene_dir in scene_dirs:
            files = {p: scene_dir / f"{p}.tif" for p in PIECES if (scene_dir / f"{p}.tif").exists()}
            missing = [p for p in REQUIRED_PIECES if p not in files]
            if missing:
                if skip_incomplete:
                    continue
                raise InputDataError(f"{scene_dir / (missing[0] + '.tif')}: file not found")
            grid = read_grid(files["s2_cloudy"])
            for piece, path in files.items():
                other = read_grid(path)
                if (other.height, other.width) != (grid.height, grid.width):
                    raise InputDataError(
                        f"{path}: {piece} is {other.width}x{other.height}, expected the "
                        f"{grid.width}x{grid.height} grid of s2_cloudy.tif (reproject it first)"
                    )
            rows = grid_offsets(grid.height, patch_size, self.stride)
            cols = grid_offsets(grid.width, patch_size, self.stride)
            if not rows or not cols:
                raise InputDataError(
                    f"{files['s2_cloudy']}: scene is {grid.width}x{grid.height}, "
                    f"smaller than one {patch_size}x{patch_size} patch"
                )
            for r, row in enumerate(rows):
                for c, col in enumerate(cols):
                    refs.append(
                        PatchRef(
                            patch_id=f"{scene_dir.name}_r{r}_c{c}",
                            files=files,
                            window=Window(col, row, patch_size, patch_size),
                            group=scene_dir.name,
                            s2_offset=self.s2_offset,
                        )
                    )
        self._set_patches(refs)

    def scene_dirs(self) -> list[Path]:
        """Every sub-folder holding an ``s2_cloudy.tif``."""
        return sorted(p for p in self.root.iterdir() if (p / "s2_cloudy.tif").exists())


class SyntheticSource(SceneSource):
    """The embedded default: scenes written by ``tdpcr synth`` (same layout as user scenes)."""

    name = "synthetic"

    def scene_dirs(self) -> list[Path]:
        """The scenes ``tdpcr synth`` lists in its manifest (all scene folders without one)."""
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            return super().scene_dirs()
        try:
            names = json.loads(manifest.read_text())["scenes"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputDataError(
                f"{manifest}: unreadable; expected the JSON `tdpcr synth` writes"
            ) from None
        missing = [n for n in names if not (self.root / n / "s2_cloudy.tif").is_file()]
        if missing:
            raise InputDataError(f"{self.root / missing[0]}: listed in {MANIFEST}, not found")
        return [self.root / n for n in names]
