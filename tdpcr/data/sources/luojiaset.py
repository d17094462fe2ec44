"""LuojiaSET-OSFCR (HDRSA-Net, Pan et al. 2024) as published by RSIIPAC/LuojiaSET-OSFCR.

Layout (see ``docs/data-formats.md``)::

    root/<bin>/s1/ROIs_<roi>_s1_p<N>.tif                         -> s1
    root/<bin>/s2/ROIs_<roi>_s2_p<N>.tif                         -> s2_clear
    root/<bin>/s2_cloudy/ROIs_<roi>_s2_p<N>.tif                  -> s2_cloudy
    root/<bin>/land_cover_maps/ROIs_<roi>_s2_p<N>.tif            -> landcover (optional)
    root/<bin>/cloud_detection_results/ROIs_<roi>_s2_cloudy_p<N>.tif -> cloudmask (optional)

with ``<bin>`` one of :data:`tdpcr.core.specs.CLOUD_BINS`. ``root`` may also be the folder that
holds a single ``LuojiaSET-OSFCR/`` directory (the upstream repository's layout).

File names differ between the piece folders (the cloud mask has ``_s2_cloudy_`` in its name, the
cloudy S2 does not), so the pieces of one patch are matched on the ROI and patch number only.

Patch ids:
    ``p<N>`` when that number occurs once in the source (after incomplete patches are dropped).
    When the same ``p<N>`` occurs more than once, every patch of that group is qualified with
    whatever tells them apart: the ROI (``ROIs_<roi>_p<N>``) when the ROIs differ, the cloud bin
    without its ``%`` signs (``60-80_p22``) when the bins differ, or both
    (``60-80_ROIs_01_p22``). Ids therefore contain no path separators and no ``%``.

Spatial groups:
    ``ROIs_<roi>``: the patches of one region of interest are neighbours (splits keep a ROI
    in one split).

Land cover:
    The legend is undocumented upstream (values 2..6 are seen; 6 is the densest vegetation).
    The numeric values are kept as they are, so the project's class *names* do not describe
    LuojiaSET classes; values >= 7 other than 255 are not in the 7-class range and become 255
    (ignored by losses and metrics).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import CLOUD_BINS, IGNORE_INDEX, PIECES, S2_PB04_OFFSET
from tdpcr.data.sources.base import PatchRef, Source

log = logging.getLogger(__name__)

#: Piece -> sub-folder of a cloud-cover bin.
PIECE_FOLDERS: dict[str, str] = {
    "s2_cloudy": "s2_cloudy",
    "s2_clear": "s2",
    "s1": "s1",
    "landcover": "land_cover_maps",
    "cloudmask": "cloud_detection_results",
}
#: Pieces every patch must have.
REQUIRED_PIECES: tuple[str, ...] = ("s2_cloudy", "s2_clear", "s1")
#: Pieces the tiler fills with no-data when a patch lacks them.
OPTIONAL_PIECES: tuple[str, ...] = ("landcover", "cloudmask")
#: Middle part of the upstream file name of each piece, used to name an expected missing file.
_NAME_KIND: dict[str, str] = {
    "s2_cloudy": "s2",
    "s2_clear": "s2",
    "s1": "s1",
    "landcover": "s2",
    "cloudmask": "s2_cloudy",
}
#: Largest land-cover value kept as is; anything above (except 255) is not a known class.
MAX_LANDCOVER_VALUE = 6

_PATCH_RE = re.compile(r"(?:^|_)p(?P<n>\d+)\.tiff?$", re.IGNORECASE)
_ROI_RE = re.compile(r"^ROIs_?(?P<roi>[0-9A-Za-z]+)_", re.IGNORECASE)
_LAYOUT_HINT = (
    "expected <root>/<bin>/{s1,s2,s2_cloudy,land_cover_maps,cloud_detection_results}/"
    "ROIs_<roi>_..._p<N>.tif with <bin> one of " + ", ".join(CLOUD_BINS)
)


@dataclass(frozen=True)
class _Key:
    """What identifies one LuojiaSET patch on disk: its bin, ROI and patch number."""

    cloud_bin: str
    roi: str
    number: str

    def expected_name(self, piece: str) -> str:
        """Upstream file name of ``piece`` for this patch (for error messages)."""
        prefix = f"ROIs_{self.roi}_" if self.roi else "*_"
        return f"{prefix}{_NAME_KIND[piece]}_p{self.number}.tif"


class LuojiaSetSource(Source):
    """LuojiaSET-OSFCR folders of cloud-cover bins; see the module docstring for the layout.

    Args:
        root: the folder holding the bin folders (or holding a single folder that does).
        skip_incomplete: drop patches that lack a required piece (with a warning) instead of
            raising :class:`InputDataError`.

    Raises:
        InputDataError: ``root`` has no matching file, a file is ambiguous, or (unless
            ``skip_incomplete``) a patch lacks cloudy S2, cloud-free S2 or S1.
    """

    #: LuojiaSET-OSFCR does not document its land-cover legend (values 2..6 seen, 6 the
    #: densest vegetation): values are kept, so class_names do not name them.
    label_legend = "LuojiaSET-OSFCR source values kept (legend undocumented upstream)"

    name = "luojiaset"

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.data_root = self._find_data_root(self.root)
        found = self._discover(self.data_root)
        if not found:
            raise InputDataError(f"{self.root}: no LuojiaSET-OSFCR patch found; {_LAYOUT_HINT}")
        complete = self._drop_incomplete(found)
        if not complete:
            raise InputDataError(
                f"{self.root}: every LuojiaSET-OSFCR patch lacks a required piece "
                f"(s2_cloudy, s2, s1); {_LAYOUT_HINT}"
            )
        ids = _patch_ids(list(complete))
        # Every patch carries the PB >= 04.00 offset (1000 DN), removed when it is read.
        self._set_patches(
            [
                PatchRef(
                    patch_id=ids[key],
                    files=files,
                    cloud_bin=key.cloud_bin,
                    s2_offset=S2_PB04_OFFSET,
                    group=f"ROIs_{key.roi}" if key.roi else "",
                )
                for key, files in complete.items()
            ]
        )

    def map_labels(self, landcover: np.ndarray) -> np.ndarray:
        """Keep LuojiaSET values; values above 6 other than 255 are unknown and become 255."""
        out = np.asarray(landcover).copy()
        out[(out > MAX_LANDCOVER_VALUE) & (out != IGNORE_INDEX)] = IGNORE_INDEX
        return out

    @staticmethod
    def _find_data_root(root: Path) -> Path:
        """``root`` if it holds bin folders, else its single sub-folder that does."""
        if any((root / b).is_dir() for b in CLOUD_BINS):
            return root
        candidates = [
            child
            for child in sorted(root.iterdir())
            if child.is_dir() and any((child / b).is_dir() for b in CLOUD_BINS)
        ]
        if len(candidates) == 1:
            # The upstream repository nests the bins in LuojiaSET-OSFCR/; accept its parent too.
            return candidates[0]
        return root

    @staticmethod
    def _discover(data_root: Path) -> dict[_Key, dict[str, Path]]:
        """Map each (bin, ROI, p<N>) found to its files, without opening any of them."""
        found: dict[_Key, dict[str, Path]] = defaultdict(dict)
        for cloud_bin in CLOUD_BINS:
            for piece, folder in PIECE_FOLDERS.items():
                directory = data_root / cloud_bin / folder
                if not directory.is_dir():
                    continue
                for path in sorted(directory.iterdir()):
                    match = _PATCH_RE.search(path.name)
                    if match is None or not path.is_file():
                        continue
                    roi_match = _ROI_RE.match(path.name)
                    key = _Key(cloud_bin, roi_match["roi"] if roi_match else "", match["n"])
                    previous = found[key].get(piece)
                    if previous is not None:
                        raise InputDataError(
                            f"{path}: same patch p{key.number} as {previous.name} in "
                            f"{directory}; expected one file per patch and piece"
                        )
                    found[key][piece] = path
        # Dicts in PIECES order, so read_patch reads (and reports) the cloudy S2 first.
        return {key: {p: files[p] for p in PIECES if p in files} for key, files in found.items()}

    def _drop_incomplete(self, found: dict[_Key, dict[str, Path]]) -> dict[_Key, dict[str, Path]]:
        """Remove (with a warning) or report the patches lacking a required piece."""
        complete: dict[_Key, dict[str, Path]] = {}
        problems: list[str] = []
        for key in sorted(found, key=lambda k: (CLOUD_BINS.index(k.cloud_bin), k.roi, k.number)):
            files = found[key]
            missing = [p for p in REQUIRED_PIECES if p not in files]
            if not missing:
                complete[key] = files
                continue
            expected = ", ".join(
                str(self.data_root / key.cloud_bin / PIECE_FOLDERS[p] / key.expected_name(p))
                for p in missing
            )
            problems.append(
                f"patch p{key.number} in {key.cloud_bin} lacks {'/'.join(missing)} "
                f"(expected {expected})"
            )
        if problems and not self.skip_incomplete:
            shown = "; ".join(problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise InputDataError(
                f"{self.data_root}: {len(problems)} incomplete patch(es): {shown}{more} "
                "(pass skip_incomplete=True to drop them)"
            )
        for problem in problems:
            log.warning("%s: skipping %s", self.data_root, problem)
        return complete


def _patch_ids(keys: list[_Key]) -> dict[_Key, str]:
    """``p<N>``, qualified by ROI and/or bin only where the same number occurs twice."""
    groups: dict[str, list[_Key]] = defaultdict(list)
    for key in keys:
        groups[key.number].append(key)
    ids: dict[_Key, str] = {}
    for number, group in groups.items():
        if len(group) == 1:
            ids[group[0]] = f"p{number}"
            continue
        by_roi = len({k.roi for k in group}) > 1
        by_bin = len({k.cloud_bin for k in group}) > 1
        for key in group:
            parts = []
            if by_bin:
                parts.append(key.cloud_bin.replace("%", ""))
            if by_roi:
                parts.append(f"ROIs_{key.roi}" if key.roi else "ROIs_none")
            parts.append(f"p{number}")
            ids[key] = "_".join(parts)
    return ids
