"""SEN12MS-CR (mono-temporal) in the official nested layout or the flat GLF-CR/DSen2-CR layout.

Official nested layout (the mediaTUM tarballs, see ``docs/data-formats.md``)::

    root/<season>_s1/s1_<scene>/<season>_s1_<scene>_p<patch>.tif                -> s1
    root/<season>_s2/s2_<scene>/<season>_s2_<scene>_p<patch>.tif                -> s2_clear
    root/<season>_s2_cloudy/s2_cloudy_<scene>/<season>_s2_cloudy_<scene>_p<patch>.tif -> s2_cloudy
    root/<season>_lc/lc_<scene>/<season>_lc_<scene>_p<patch>.tif                -> landcover

``<season>`` is ``ROIs1158_spring``, ``ROIs1868_summer``, ``ROIs1970_fall`` or
``ROIs2017_winter``; the patch id is ``<season>_<scene>_p<patch>`` (``ROIs1970_fall_139_p839``),
the id SEN12MS and the flat layout use too. Land cover (SEN12MS, 4 bands) is optional; band 1
(IGBP) is read.

Flat layout (GLF-CR, DSen2-CR)::

    root/s1/<name>.tif
    root/s2_cloudfree/<name>.tif        (DSen2-CR: s2_cloudFree)
    root/s2_cloudy/<name>.tif
    root/data.csv (or any single *.csv): split(1/2/3), s1dir, cloudfreedir, cloudydir, filename

GLF-CR's csv is comma-separated, DSen2-CR's tab-separated; neither has a header (one is skipped
if present). Without a csv every file in ``s2_cloudy/`` is a patch. The patch id is the file stem.
The csv splits are exposed by :meth:`Sen12MSCRSource.source_splits`.

SEN12MS-CR has no cloud mask: ``cloudmask`` is detected from ``s2_cloudy`` while tiling with
s2cloudless (:mod:`tdpcr.data.cloudmask`), and the method is recorded in the store's
``cloud_mask_method`` attribute. Its S2 predates processing baseline 04.00, so no DN offset is
removed.

Spatial groups are scenes, ``<season>_<scene>`` (``ROIs1970_fall_139``); the official scene
split (UnCRtainTS, SEN12MS-CR) is :meth:`Sen12MSCRSource.official_splits`.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import IGNORE_INDEX, PIECES, SPLITS
from tdpcr.data.sources.base import PatchData, PatchRef, Source

log = logging.getLogger(__name__)

#: The four SEN12MS(-CR) seasons (ROI collections). Discovery accepts any ``ROIs<4 digits>_<name>``
#: so that a renamed or future collection is not silently ignored.
SEASONS: tuple[str, ...] = (
    "ROIs1158_spring",
    "ROIs1868_summer",
    "ROIs1970_fall",
    "ROIs2017_winter",
)
#: Pieces every patch must have.
REQUIRED_PIECES: tuple[str, ...] = ("s2_cloudy", "s2_clear", "s1")
#: Piece -> the "kind" token of the nested layout's folder and file names.
NESTED_KINDS: dict[str, str] = {
    "s2_cloudy": "s2_cloudy",
    "s2_clear": "s2",
    "s1": "s1",
    "landcover": "lc",
}
#: Piece -> default folder of the flat layout (the clear folder also has a DSen2-CR spelling).
FLAT_FOLDERS: dict[str, str] = {"s2_cloudy": "s2_cloudy", "s2_clear": "s2_cloudfree", "s1": "s1"}
#: IGBP band of the SEN12MS land-cover file (bands: IGBP, LCCS-LC, LCCS-LU, LCCS-SH).
IGBP_BAND = 1

#: IGBP class (1..17) -> project class (0 tree, 1 shrub, 2 grass, 3 crop, 4 built-up, 5 water,
#: 6 bare); anything absent (0, 15 and unknown values) maps to IGNORE_INDEX. Why each:
IGBP_TO_CLASS: dict[int, int] = {
    1: 0,  # evergreen needleleaf forest -> tree
    2: 0,  # evergreen broadleaf forest -> tree
    3: 0,  # deciduous needleleaf forest -> tree
    4: 0,  # deciduous broadleaf forest -> tree
    5: 0,  # mixed forest -> tree
    6: 1,  # closed shrubland -> shrub
    7: 1,  # open shrubland -> shrub
    8: 0,  # woody savanna (30-60 % tree cover) -> tree, as WorldCover counts >10 % canopy as tree
    9: 2,  # savanna (10-30 % tree cover, herbaceous understorey) -> grass
    10: 2,  # grassland -> grass
    11: 2,  # permanent wetland: herbaceous-dominated at 500 m; no wetland class -> grass
    12: 3,  # cropland -> crop
    13: 4,  # urban and built-up -> built-up
    14: 3,  # cropland / natural vegetation mosaic (>= 40 % crop) -> crop
    # 15 permanent snow and ice: no such class -> ignored
    16: 6,  # barren -> bare
    17: 5,  # water bodies -> water
}
_IGBP_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _igbp, _cls in IGBP_TO_CLASS.items():
    _IGBP_LUT[_igbp] = _cls

#: The official SEN12MS-CR scene split, as the UnCRtainTS loader defines it
#: (PatrickTUM/UnCRtainTS ``data/dataLoader.py``, class SEN12MSCR; docs/data-formats.md): the
#: validation and test scenes per season; every other scene is training.
OFFICIAL_SPLIT_SCENES: dict[str, dict[str, tuple[int, ...]]] = {
    "val": {
        "ROIs2017_winter": (22, 107, 130, 84),
        "ROIs1868_summer": (19, 80, 127, 17),
        "ROIs1970_fall": (65,),
        "ROIs1158_spring": (17,),
    },
    "test": {
        "ROIs1158_spring": (106, 123, 140, 31, 44),
        "ROIs1868_summer": (119, 73),
        "ROIs1970_fall": (139,),
        "ROIs2017_winter": (108, 63),
    },
}
#: A patch id ``<season>_<scene>_p<patch>``; its spatial group is ``<season>_<scene>``.
_PATCH_ID_RE = re.compile(r"^(?P<group>(?P<season>ROIs\d{4}_[A-Za-z]+)_(?P<scene>\d+))_p\d+$")

_SEASON_DIR_RE = re.compile(r"^(?P<season>ROIs\d{4}_[A-Za-z]+)_(?P<kind>s1|s2|s2_cloudy|lc)$")
_NESTED_FILE_RE = re.compile(
    r"^(?P<season>ROIs\d{4}_[A-Za-z]+)_(?P<kind>s1|s2|s2_cloudy|lc)_(?P<scene>\d+)"
    r"_p(?P<patch>\d+)\.tiff?$",
    re.IGNORECASE,
)
_LAYOUT_HINT = (
    "expected either the official layout <root>/<season>_{s1,s2,s2_cloudy}/"
    "{s1,s2,s2_cloudy}_<scene>/<season>_{s1,s2,s2_cloudy}_<scene>_p<patch>.tif "
    "(season e.g. ROIs1970_fall) or the flat GLF-CR/DSen2-CR layout <root>/"
    "{s1,s2_cloudfree,s2_cloudy}/<name>.tif with an optional data.csv"
)


@dataclass(frozen=True)
class _NestedKey:
    season: str
    scene: str
    patch: str

    @property
    def patch_id(self) -> str:
        return f"{self.season}_{self.scene}_p{self.patch}"

    def path(self, root: Path, piece: str) -> Path:
        """Where the official layout keeps ``piece`` of this patch."""
        kind = NESTED_KINDS[piece]
        return (
            root
            / f"{self.season}_{kind}"
            / f"{kind}_{self.scene}"
            / f"{self.season}_{kind}_{self.scene}_p{self.patch}.tif"
        )


class Sen12MSCRSource(Source):
    """SEN12MS-CR patches in the official nested or the flat layout (module docstring).

    Args:
        root: the dataset folder (the one holding ``<season>_s1/`` ... or ``s1/`` ...).
        skip_incomplete: drop patches lacking S1, clear S2 or cloudy S2 (with a warning)
            instead of raising :class:`InputDataError`.

    Attributes:
        layout: ``"nested"`` or ``"flat"``.
        csv_path: the flat layout's csv, if one was used.

    Raises:
        InputDataError: no matching file, both layouts under one root, an unreadable csv, or
            (unless ``skip_incomplete``) a listed patch without its S1/S2 file, naming the
            expected path.
    """

    name = "sen12mscr"

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.csv_path: Path | None = None
        self._splits: dict[str, str] = {}
        nested = self._discover_nested()
        flat = self._flat_folders()
        has_csv = bool(self._csv_candidates())
        if nested and (has_csv or any(any(f.glob("*.tif*")) for f in flat.values())):
            flat_names = [p.name for p in [*flat.values(), *self._csv_candidates()]]
            raise InputDataError(
                f"{self.root}: holds both the official nested SEN12MS-CR layout and the flat "
                f"one ({', '.join(flat_names)}); point the source at one of them"
            )
        if nested:
            self.layout = "nested"
            found = {key.patch_id: (key, files) for key, files in nested.items()}
            expected = {
                pid: {p: key.path(self.root, p) for p in REQUIRED_PIECES}
                for pid, (key, _) in found.items()
            }
            patch_files = {pid: files for pid, (_, files) in found.items()}
        elif flat or has_csv:
            self.layout = "flat"
            patch_files, expected = self._discover_flat(flat)
        else:
            raise InputDataError(f"{self.root}: no SEN12MS-CR patch found; {_LAYOUT_HINT}")
        if not patch_files:
            raise InputDataError(f"{self.root}: no SEN12MS-CR patch found; {_LAYOUT_HINT}")

        complete = self._drop_incomplete(patch_files, expected)
        if not complete:
            raise InputDataError(
                f"{self.root}: every SEN12MS-CR patch lacks S1, clear S2 or cloudy S2; "
                f"{_LAYOUT_HINT}"
            )
        self._splits = {pid: s for pid, s in self._splits.items() if pid in complete}
        # Land cover, when present, is the IGBP band of the SEN12MS file; never a cloud mask.
        self._set_patches(
            [
                PatchRef(
                    patch_id=pid,
                    files=files,
                    band_indexes={"landcover": (IGBP_BAND,)} if "landcover" in files else {},
                    group=scene_group(pid),
                )
                for pid, files in complete.items()
            ]
        )

    @property
    def pieces(self) -> tuple[str, ...]:
        """The files' pieces plus ``cloudmask``, detected from ``s2_cloudy`` (see ``read``)."""
        return tuple(p for p in PIECES if p in (*self._pieces, "cloudmask"))

    @property
    def cloudmask_method(self) -> str:
        """How the cloud masks are made (recorded in the tile store's attributes)."""
        from tdpcr.data.cloudmask import method

        return method()

    def read(self, ref: PatchRef) -> PatchData:
        """Read one patch and detect its cloud mask (s2cloudless, :mod:`tdpcr.data.cloudmask`)."""
        from tdpcr.data.cloudmask import detect_clouds

        data = super().read(ref)
        data.arrays["cloudmask"] = detect_clouds(data.arrays["s2_cloudy"])
        return data

    def source_splits(self) -> dict[str, str]:
        """Patch id -> ``"train"``/``"val"``/``"test"`` from the flat layout's csv (else empty)."""
        return dict(self._splits)

    def official_splits(self) -> dict[str, str]:
        """Scene group -> split of the official SEN12MS-CR split (:data:`OFFICIAL_SPLIT_SCENES`)."""
        splits = {}
        for group in {ref.spatial_group for ref in self._refs}:
            match = _PATCH_ID_RE.match(f"{group}_p0")
            splits[group] = "train"
            for split, seasons in OFFICIAL_SPLIT_SCENES.items():
                if match and int(match["scene"]) in seasons.get(match["season"], ()):
                    splits[group] = split
        return splits

    def map_labels(self, landcover: np.ndarray) -> np.ndarray:
        """IGBP (1..17) to project classes via :data:`IGBP_TO_CLASS`; 0, 15, unknown -> 255."""
        values = np.asarray(landcover)
        # Values outside 0..255 cannot be IGBP; clip them onto 0 (-> ignore) before the lookup.
        index = np.where((values >= 0) & (values <= 255), values, 0).astype(np.intp)
        return _IGBP_LUT[index]

    # ----------------------------------------------------------------------------- nested

    def _discover_nested(self) -> dict[_NestedKey, dict[str, Path]]:
        """Every patch in ``<season>_<kind>/<kind>_<scene>/`` folders, by (season, scene, patch)."""
        found: dict[_NestedKey, dict[str, Path]] = defaultdict(dict)
        piece_of_kind = {kind: piece for piece, kind in NESTED_KINDS.items()}
        for season_dir in sorted(self.root.iterdir()):
            dir_match = _SEASON_DIR_RE.match(season_dir.name)
            if dir_match is None or not season_dir.is_dir():
                continue
            kind = dir_match["kind"]
            for path in sorted(season_dir.glob(f"{kind}_*/*.tif*")):
                match = _NESTED_FILE_RE.match(path.name)
                # A file must carry its own folder's season and kind, or it would be mis-paired.
                if (
                    match is None
                    or match["kind"] != kind
                    or match["season"] != dir_match["season"]
                    or path.parent.name != f"{kind}_{match['scene']}"
                ):
                    continue
                key = _NestedKey(match["season"], match["scene"], match["patch"])
                found[key][piece_of_kind[kind]] = path
        # Only S1/S2 files define patches: SEN12MS land cover covers ~180k patches, of which
        # SEN12MS-CR has ~122k, so an lc file without S1/S2 is not an incomplete patch.
        return {
            k: {p: v[p] for p in PIECES if p in v}
            for k, v in found.items()
            if any(p in v for p in REQUIRED_PIECES)
        }

    # ------------------------------------------------------------------------------- flat

    def _flat_folders(self) -> dict[str, Path]:
        """Existing flat piece folders (exact name, else a case-insensitive match)."""
        folders: dict[str, Path] = {}
        for piece, name in FLAT_FOLDERS.items():
            folder = self._resolve_dir(name)
            if folder is not None:
                folders[piece] = folder
        return folders

    def _resolve_dir(self, name: str) -> Path | None:
        """``root/name`` if it exists, else the one sub-folder equal to it ignoring case.

        DSen2-CR spells the clear folder ``s2_cloudFree``, GLF-CR ``s2_cloudfree``; csv files
        and folders do not always agree on a case-sensitive file system.
        """
        exact = self.root / name
        if exact.is_dir():
            return exact
        matches = [c for c in self.root.iterdir() if c.is_dir() and c.name.lower() == name.lower()]
        return matches[0] if len(matches) == 1 else None

    def _csv_candidates(self) -> list[Path]:
        data_csv = self.root / "data.csv"
        if data_csv.is_file():
            return [data_csv]
        return sorted(p for p in self.root.glob("*.csv") if p.is_file())

    def _discover_flat(
        self, folders: dict[str, Path]
    ) -> tuple[dict[str, dict[str, Path]], dict[str, dict[str, Path]]]:
        """Patch files and expected paths of the flat layout, from the csv or ``s2_cloudy/``."""
        candidates = self._csv_candidates()
        if len(candidates) > 1:
            raise InputDataError(
                f"{self.root}: several csv files ({', '.join(p.name for p in candidates)}) "
                "and no data.csv; expected one file list"
            )
        rows: list[tuple[str, dict[str, str], str | None]] = []
        if candidates:
            self.csv_path = candidates[0]
            for split, dirs, filename in _read_file_list(self.csv_path):
                rows.append((filename, dirs, split))
        else:
            cloudy = folders.get("s2_cloudy")
            if cloudy is None:
                return {}, {}
            for path in sorted(cloudy.glob("*.tif*")):
                if path.is_file() and path.suffix.lower() in (".tif", ".tiff"):
                    rows.append((path.name, {}, None))

        # One listing per folder instead of one stat per file: the full csv has ~122k rows.
        listings: dict[str, tuple[Path, set[str]]] = {}

        def folder_listing(dir_name: str) -> tuple[Path, set[str]]:
            if dir_name not in listings:
                folder = self._resolve_dir(dir_name)
                if folder is None:
                    listings[dir_name] = (self.root / dir_name, set())
                else:
                    names = {e.name for e in os.scandir(folder) if e.is_file()}
                    listings[dir_name] = (folder, names)
            return listings[dir_name]

        patch_files: dict[str, dict[str, Path]] = {}
        expected: dict[str, dict[str, Path]] = {}
        for filename, dirs, split in rows:
            patch_id = Path(filename).stem
            if patch_id in expected:
                raise InputDataError(
                    f"{self.csv_path}: {filename} is listed twice; expected one row per patch"
                )
            expected[patch_id] = {}
            files: dict[str, Path] = {}
            for piece in REQUIRED_PIECES:
                default = folders[piece].name if piece in folders else FLAT_FOLDERS[piece]
                folder, names = folder_listing(dirs.get(piece, default))
                expected[patch_id][piece] = folder / filename
                if filename in names:
                    files[piece] = folder / filename
            patch_files[patch_id] = files
            if split is not None:
                self._splits[patch_id] = split
        return patch_files, expected

    # ------------------------------------------------------------------------------ both

    def _drop_incomplete(
        self,
        patch_files: dict[str, dict[str, Path]],
        expected: dict[str, dict[str, Path]],
    ) -> dict[str, dict[str, Path]]:
        """Remove (with a warning) or report the patches lacking S1, clear S2 or cloudy S2."""
        complete: dict[str, dict[str, Path]] = {}
        problems: list[str] = []
        for patch_id in sorted(patch_files):
            files = patch_files[patch_id]
            missing = [p for p in REQUIRED_PIECES if p not in files]
            if not missing:
                complete[patch_id] = files
                continue
            paths = ", ".join(str(expected[patch_id][p]) for p in missing)
            problems.append(f"patch {patch_id} lacks {'/'.join(missing)} (expected {paths})")
        if problems and not self.skip_incomplete:
            shown = "; ".join(problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise InputDataError(
                f"{self.root}: {len(problems)} incomplete patch(es): {shown}{more} "
                "(pass skip_incomplete=True to drop them)"
            )
        for problem in problems:
            log.warning("%s: skipping %s", self.root, problem)
        return complete


def scene_group(patch_id: str) -> str:
    """``ROIs1970_fall_139_p839`` -> ``ROIs1970_fall_139`` (its scene); '' for other ids."""
    match = _PATCH_ID_RE.match(patch_id)
    return match["group"] if match else ""


def _read_file_list(path: Path) -> list[tuple[str, dict[str, str], str]]:
    """Rows of a GLF-CR (comma) or DSen2-CR (tab) file list: (split, piece dirs, filename).

    Raises:
        InputDataError: naming the csv and line of a malformed row.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: cannot read the file list ({err})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputDataError(f"{path}: empty file list; expected split,s1,cloudfree,cloudy,name")
    delimiter = "\t" if "\t" in lines[0] else ","
    rows: list[tuple[str, dict[str, str], str]] = []
    for number, fields in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        fields = [f.strip() for f in fields]
        if number == 1 and fields and fields[0] not in ("1", "2", "3"):
            continue  # a header row ("split,s1,..."): neither upstream list has one, some forks do
        if len(fields) != 5 or fields[0] not in ("1", "2", "3") or not fields[4]:
            raise InputDataError(
                f"{path}: line {number} is {','.join(fields)!r}; expected "
                "split (1/2/3), s1 folder, cloud-free folder, cloudy folder, file name"
            )
        split = SPLITS[int(fields[0]) - 1]
        dirs = {"s1": fields[1], "s2_clear": fields[2], "s2_cloudy": fields[3]}
        rows.append((split, dirs, fields[4]))
    return rows
