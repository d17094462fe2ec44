"""The torch Dataset and loader over the tile store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tdpcr.core.errors import InputDataError
from tdpcr.data.dataset import TileDataset, make_loader
from tdpcr.data.normalize import denormalise_s2, normalise_s1, normalise_s2
from tdpcr.data.store import open_store


def test_full_patches_for_evaluation_match_the_store(scene_store: Path) -> None:
    ds = TileDataset(scene_store, "test")
    store = open_store(scene_store)
    assert len(ds) == int((store["split"].values == "test").sum())
    sample = ds[0]
    index = sample["index"]
    assert sample["patch_id"] == store["patch"].values[index]
    assert sample["s2_cloudy"].shape == (13, 32, 32) and sample["s2_cloudy"].dtype == torch.float32
    assert sample["s1"].shape == (2, 32, 32)
    assert sample["landcover"].dtype == torch.int64
    expected = store["s2_cloudy"].isel(patch=index).values / 1e4
    np.testing.assert_allclose(sample["s2_cloudy"].numpy(), np.clip(expected, 0, 1), rtol=1e-6)


def test_training_crops_and_flips_are_seeded(scene_store: Path) -> None:
    a = TileDataset(scene_store, "train", crop=16, flips=True, seed=1)
    b = TileDataset(scene_store, "train", crop=16, flips=True, seed=1)
    c = TileDataset(scene_store, "train", crop=16, flips=True, seed=2)
    first = [a[i]["s2_clear"] for i in range(6)]
    assert all(x.shape == (13, 16, 16) for x in first)
    assert all(torch.equal(x, b[i]["s2_clear"]) for i, x in enumerate(first))
    assert not all(torch.equal(x, c[i]["s2_clear"]) for i, x in enumerate(first))


def test_crop_is_a_window_of_the_patch(scene_store: Path) -> None:
    cropped = TileDataset(scene_store, "train", crop=16, flips=False, seed=0)[3]
    full = TileDataset(scene_store, "train")[3]["s1"].numpy()
    window = cropped["s1"].numpy()
    hits = [
        (y, x)
        for y in range(17)
        for x in range(17)
        if np.array_equal(full[:, y : y + 16, x : x + 16], window)
    ]
    assert hits, "crop is not a window of the full patch"


def test_normalisation_ranges_and_nan() -> None:
    s1 = np.array(
        [[[-40.0, -25.0, -12.5, 0.0, 5.0]], [[-40.0, -32.5, np.nan, 0.0, 1.0]]], np.float32
    )
    out = normalise_s1(s1)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(out[1, 0], [0, 0, 0, 1, 1])
    dn = np.array([0, 5000, 10000, 20000], np.uint16)
    np.testing.assert_allclose(normalise_s2(dn), [0, 0.5, 1, 1])
    np.testing.assert_array_equal(denormalise_s2(normalise_s2(dn[:3])), dn[:3])


def test_loader_with_workers_opens_the_store_per_worker(scene_store: Path) -> None:
    def batches(seed: int) -> list[torch.Tensor]:
        loader = make_loader(
            scene_store, "train", batch_size=8, train=True, crop=16, workers=2, seed=seed
        )
        return [batch["s2_cloudy"] for batch in loader]

    first, again = batches(0), batches(0)
    assert first[0].shape == (8, 13, 16, 16)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


def test_unknown_split_and_bad_crop(scene_store: Path) -> None:
    with pytest.raises(InputDataError, match="split 'training'"):
        TileDataset(scene_store, "training")
    with pytest.raises(InputDataError, match="crop 64"):
        TileDataset(scene_store, "train", crop=64)
    with pytest.raises(InputDataError, match="not found"):
        TileDataset(scene_store.parent / "missing.zarr")


def test_cache_returns_the_same_samples_and_stays_within_budget(scene_store: Path) -> None:
    plain = TileDataset(scene_store, "train", crop=16, flips=True, seed=3)
    cached = TileDataset(scene_store, "train", crop=16, flips=True, seed=3, cache_mb=64)
    for item in (*range(len(plain)), 0, 2):  # the second visits come from memory
        a, b = plain[(item, 7 + item)], cached[(item, 7 + item)]
        for piece in plain.pieces:
            assert torch.equal(a[piece], b[piece]), (item, piece)
    assert cached.cached_patches == len(cached)

    one_patch_mb = (
        sum(open_store(scene_store)[piece].isel(patch=0).nbytes for piece in cached.pieces) / 2**20
    )
    small = TileDataset(scene_store, "train", crop=16, cache_mb=2.5 * one_patch_mb)
    for item in range(len(small)):
        small[item]
    assert small.cached_patches == 2  # the third patch would pass the budget
    cached_index = next(iter(small._cache))
    item = int(np.flatnonzero(small.indices == cached_index)[0])
    small._arrays = dict.fromkeys(small.pieces)  # a cached patch must not read the store
    uncached = TileDataset(scene_store, "train", crop=16)
    assert torch.equal(small[(item, 1)]["s1"], uncached[(item, 1)]["s1"])
    assert uncached.cached_patches == 0
    with pytest.raises(InputDataError, match="cache_mb"):
        TileDataset(scene_store, "train", cache_mb=-1)
