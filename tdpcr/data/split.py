"""Deterministic train/val/test splits, stratified by cloud-cover bin."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import SPLIT_FRACTIONS, SPLITS, cloud_bin_index


def stratified_split(
    patch_ids: Sequence[str],
    cloud_cover: Sequence[float],
    seed: int = 0,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
) -> np.ndarray:
    """Assign each patch to train/val/test, 8:1:1 within every cloud-cover bin.

    Patches are ordered by id before shuffling, so the result depends only on the set of ids,
    their cloud cover and the seed, not on discovery order. Within a bin of n patches, val and
    test get ``round(n * fraction)`` each (at least one each once the bin has 3 patches) and
    train the rest, so small demo datasets still have every split.

    Returns:
        array of split names aligned with ``patch_ids``.
    """
    ids = np.asarray(patch_ids, dtype=object)
    covers = np.asarray(cloud_cover, dtype=float)
    if len(ids) != len(covers):
        raise ValueError("patch_ids and cloud_cover differ in length")
    order = np.argsort(ids, kind="stable")
    bins = np.array([cloud_bin_index(float(c)) for c in covers])
    result = np.empty(len(ids), dtype=object)
    rng = np.random.default_rng(seed)
    for bin_index in range(5):
        members = order[bins[order] == bin_index]
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n >= 3:
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        result[members[:n_test]] = SPLITS[2]
        result[members[n_test : n_test + n_val]] = SPLITS[1]
        result[members[n_test + n_val :]] = SPLITS[0]
    return result


def read_split_file(path: Path) -> dict[str, str]:
    """Read an existing split: a CSV with ``patch_id,split`` columns or a tile store."""
    path = Path(path)
    if path.suffix == ".zarr":
        from tdpcr.data.store import open_store

        ds = open_store(path)
        return dict(zip(ds["patch"].values.tolist(), ds["split"].values.tolist(), strict=True))
    if not path.is_file():
        raise InputDataError(f"{path}: split file not found")
    table = pd.read_csv(path, dtype=str)
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
