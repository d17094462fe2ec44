"""Deterministic train/val/test splits that never cut a spatial group, stratified by cloud cover.

Neighbouring patches of one scene (or ROI) share fields, roads, clouds and SAR texture: a test
patch whose neighbours were trained on scores optimistically. So whole *groups* (a scene for
scene sources, ``ROIs_<roi>`` for LuojiaSET-OSFCR, ``<season>_<scene>`` for SEN12MS-CR, see
:attr:`tdpcr.data.sources.PatchRef.group`) are assigned to splits, never single patches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import SPLITS


def spatial_split(
    patch_ids: Sequence[str],
    groups: Sequence[str],
    cloud_cover: Sequence[float],
    seed: int,
    fractions: Sequence[float],
) -> np.ndarray:
    """Assign whole groups to train / val / test, stratified by cloud cover.

    Groups are sorted by their patches' mean cloud cover (a seeded shuffle first, so equal
    covers are ordered at random, and groups are taken in sorted-name order before it, so the
    result does not depend on discovery order) and cut into consecutive strata of
    ``round(1 / smallest fraction)`` groups (10 for 8:1:1). Within each stratum the groups, in
    a seeded random order, each go to the split furthest below its share of the patches seen
    so far (ties: test, val, train). Every stratum of similar cloud cover thus feeds every
    split, and the fractions hold for patch counts as far as group sizes allow (with one patch
    per group: exactly 8:1:1 in every cloud-cover bin of 10 k patches). If a split is left
    without any group while there are at least three groups, a training group drawn at random
    moves to it, so small datasets still have every split.

    Returns:
        array of split names aligned with ``patch_ids``.
    """
    if not len(patch_ids) == len(groups) == len(cloud_cover):
        raise ValueError("patch_ids, groups and cloud_cover differ in length")
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    covers = np.asarray(cloud_cover, dtype=float)
    rng = np.random.default_rng(seed)
    names = [sorted(members)[i] for i in rng.permutation(len(members))]
    names.sort(key=lambda g: float(np.mean(covers[members[g]])))  # stable: ties stay shuffled
    stratum = max(1, round(1 / min(f for f in fractions if f > 0)))
    assigned: dict[str, str] = {}
    counts, seen = dict.fromkeys(SPLITS, 0), 0
    for start in range(0, len(names), stratum):
        block = names[start : start + stratum]
        seen += sum(len(members[g]) for g in block)
        for position in rng.permutation(len(block)):
            group = block[position]
            deficits = {s: f * seen - counts[s] for s, f in zip(SPLITS, fractions, strict=True)}
            split = max(reversed(SPLITS), key=lambda s: deficits[s])  # ties: test, val, train
            assigned[group] = split
            counts[split] += len(members[group])
    _fill_empty_splits(assigned, rng)
    result = np.empty(len(patch_ids), dtype=object)
    for group, indexes in members.items():
        result[indexes] = assigned[group]
    return result


def _fill_empty_splits(assigned: dict[str, str], rng: np.random.Generator) -> None:
    """Move a random training group into each split that has none (>= 3 groups)."""
    if len(assigned) < len(SPLITS):
        return
    for split in SPLITS[1:]:
        if split in assigned.values():
            continue
        train = sorted(g for g, s in assigned.items() if s == SPLITS[0])
        if len(train) > 1:
            assigned[train[int(rng.integers(len(train)))]] = split


def check_groups_within_splits(
    groups: Sequence[str], splits: Sequence[str], source: Path | str
) -> None:
    """Refuse a split that puts patches of one spatial group in two splits."""
    seen: dict[str, str] = {}
    for group, split in zip(groups, splits, strict=True):
        if seen.setdefault(group, split) != split:
            raise InputDataError(
                f"{source}: spatial group {group!r} has patches in both {seen[group]!r} and "
                f"{split!r}; neighbouring patches of one group must share a split"
            )


def official_split(groups: Sequence[str], known: Mapping[str, str], source: str) -> np.ndarray:
    """Splits of a layout's published split (group -> split), for every patch's group."""
    if not known:
        raise InputDataError(
            f"tiling.split_method official: the {source} layout has no published split "
            "(only sen12mscr has one); use spatial"
        )
    return np.array([known[group] for group in groups], dtype=object)


def read_split_file(path: Path) -> dict[str, str]:
    """Read an existing split: a CSV with ``patch_id,split`` columns or a tile store."""
    path = Path(path)
    if path.suffix == ".zarr":
        from tdpcr.data.store import open_store

        ds = open_store(path)
        return dict(zip(ds["patch"].values.tolist(), ds["split"].values.tolist(), strict=True))
    if not path.is_file():
        raise InputDataError(f"{path}: split file not found")
    try:
        table = pd.read_csv(path, dtype=str, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = type(err).__name__ if isinstance(err, UnicodeDecodeError) else str(err)
        raise InputDataError(
            f"{path}: not a patch_id,split CSV text file ({reason.splitlines()[0]})"
        ) from None
    if not {"patch_id", "split"} <= set(table.columns):
        raise InputDataError(
            f"{path}: expected columns patch_id,split; found {list(table.columns)}"
        )
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        raise InputDataError(f"{path}: unknown split name(s) {bad}; expected {list(SPLITS)}")
    return dict(zip(table["patch_id"], table["split"], strict=True))


def apply_split(patch_ids: Sequence[str], known: dict[str, str], source: Path) -> np.ndarray:
    """Look up every patch in an existing split; a patch it lacks is an error."""
    missing = [pid for pid in patch_ids if pid not in known]
    if missing:
        raise InputDataError(
            f"{source}: split has no entry for {len(missing)} patch(es), e.g. {missing[0]!r}"
        )
    return np.array([known[pid] for pid in patch_ids], dtype=object)
