"""PyTorch access to the tile store: a torchgeo-style Dataset of dicts and a loader factory.

The store is opened lazily inside each loader worker (after fork), indexing zarr arrays
directly: one patch is one chunk, so a sample is one decompression per variable, with no
xarray or dask overhead on the hot path.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import PIECES, SPLITS
from tdpcr.data.normalize import normalise_s1, normalise_s2
from tdpcr.data.store import open_store


class TileDataset(Dataset):
    """Patches of one split of a tile store, as dicts of tensors.

    A sample holds, for the pieces present in the store:

    - ``s2_cloudy``, ``s2_clear``: float32 (13, H, W) reflectance in [0, 1]
    - ``s1``: float32 (2, H, W) VV, VH scaled to [0, 1]
    - ``landcover``: int64 (H, W) class index, 255 = ignore
    - ``cloudmask``: uint8 (H, W) 0 = clear, 1 = cloud, 2 = cloud shadow, 255 = unknown
    - ``index``: int, the patch's position in the store; ``patch_id``: str

    Args:
        store: path of a ``.zarr`` tile store.
        split: ``train``, ``val``, ``test`` or ``None`` for every patch.
        crop: side of a random square crop (training); ``None`` returns full patches.
        flips: random horizontal and vertical flips (training).
        pieces: restrict to these pieces (all present ones by default).
        seed: seed of crops and flips; each loader worker derives its own stream from torch's
            per-worker seed, so runs with the same seed and worker count repeat exactly.
        cache_mb: keep decoded patches in memory up to this many MB (per loader process);
            0 reads every sample from the store. Worth it when the split fits: zarr spends
            ~2 ms per array read on a local disk whatever the crop, so a cached sample is
            several times cheaper. Patches past the budget are read from the store each time.
    """

    def __init__(
        self,
        store: Path,
        split: str | None = "train",
        *,
        crop: int | None = None,
        flips: bool = False,
        pieces: Sequence[str] | None = None,
        seed: int = 0,
        cache_mb: float = 0.0,
    ) -> None:
        self.store = Path(store)
        ds = open_store(self.store)
        if split is not None and split not in SPLITS:
            raise InputDataError(f"split {split!r} unknown; expected one of {list(SPLITS)}")
        present = [p for p in PIECES if p in ds]
        if pieces is not None:
            absent = [p for p in pieces if p not in present]
            if absent:
                raise InputDataError(f"{self.store}: store has no {absent[0]!r} variable")
            present = [p for p in present if p in pieces]
        self.pieces = tuple(present)
        splits = ds["split"].values
        self.indices = np.arange(len(splits)) if split is None else np.flatnonzero(splits == split)
        if len(self.indices) == 0:
            raise InputDataError(f"{self.store}: split {split!r} has no patches")
        self.patch_ids = ds["patch"].values[self.indices].tolist()
        self.patch_size = int(ds.attrs["patch_size"])
        if crop is not None and not 0 < crop <= self.patch_size:
            raise InputDataError(f"crop {crop} must be in 1..{self.patch_size} (patch size)")
        self.crop = crop
        self.flips = flips
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._arrays: dict[str, zarr.Array] | None = None
        self._pid: int | None = None
        if cache_mb < 0:
            raise InputDataError(f"cache_mb must be >= 0, got {cache_mb}")
        self._cache_budget = int(cache_mb * 2**20)
        self._cache_bytes = 0
        self._cache_full = False
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self) -> dict[str, zarr.Array]:
        # Re-open after a fork: zarr's async machinery must not be shared across processes.
        if self._arrays is None or self._pid != os.getpid():
            group = zarr.open_group(self.store, mode="r")
            self._arrays = {p: group[p] for p in self.pieces}
            self._pid = os.getpid()
        return self._arrays

    @property
    def cached_patches(self) -> int:
        """Patches held in memory by this process."""
        return len(self._cache)

    def _patch(self, index: int) -> dict[str, np.ndarray] | None:
        """The whole stored patch from the cache, reading and caching it while budget lasts."""
        if index in self._cache:
            return self._cache[index]
        if self._cache_full:
            return None
        patch = {piece: self._read(piece, arr, index) for piece, arr in self._open().items()}
        size = sum(values.nbytes for values in patch.values())
        if self._cache_bytes + size > self._cache_budget:
            # Full: keep what is cached and add nothing more (access is random, so evicting
            # one patch for another would buy nothing). This patch is used once, uncached.
            self._cache_full = True
            return patch
        self._cache[index] = patch
        self._cache_bytes += size
        return patch

    def _read(self, piece: str, array: zarr.Array, index: int, region: tuple = ()) -> np.ndarray:
        """``region`` of stored patch ``index`` of ``piece``; damage is named, not a traceback."""
        try:
            return array[(index, *region)]
        except Exception as err:  # zarr and numcodecs raise many types for damaged bytes
            raise InputDataError(
                f"{self.store}: variable {piece!r}, patch {index}: unreadable "
                f"({type(err).__name__}); the store is damaged, re-run `tdpcr tile`"
            ) from None

    def reseed(self, seed: int) -> None:
        """Restart the crop/flip stream (called per loader worker)."""
        self._rng = np.random.default_rng(seed)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor | int | str]:
        # A sampler may pass (item, augmentation seed): crops and flips then depend only on
        # that seed, so a resumed training run sees exactly the batches of an uninterrupted one.
        if isinstance(item, tuple):
            item, aug_seed = item
            rng = np.random.default_rng(aug_seed)
        else:
            rng = self._rng
        index = int(self.indices[item])
        arrays = self._open()
        y0 = x0 = 0
        size = self.patch_size
        if self.crop is not None:
            size = self.crop
            y0, x0 = (int(v) for v in rng.integers(0, self.patch_size - size + 1, 2))
        flip_y = flip_x = False
        if self.flips:
            flip_y, flip_x = (bool(v) for v in rng.integers(0, 2, 2))
        sample: dict[str, torch.Tensor | int | str] = {
            "index": index,
            "patch_id": self.patch_ids[item],
        }
        patch = self._patch(index) if self._cache_budget else None
        for piece, array in arrays.items():
            region = (..., slice(y0, y0 + size), slice(x0, x0 + size))
            if patch is None:
                window = self._read(piece, array, index, region)
            else:
                window = patch[piece][region]
            if flip_y:
                window = window[..., ::-1, :]
            if flip_x:
                window = window[..., ::-1]
            sample[piece] = _to_tensor(piece, np.ascontiguousarray(window))
        return sample


class ResumableSampler(torch.utils.data.Sampler):
    """Shuffled epochs as a pure function of (seed, epoch), startable mid-epoch.

    Yields ``(item, augmentation_seed)`` pairs for :class:`TileDataset`. Epoch ``e`` is a
    permutation drawn from ``seed`` and ``e``; under data parallelism each rank takes every
    ``world``-th element (and its augmentation seed), so step ``s`` of ``world`` ranks at batch
    ``b`` covers the same samples, crops and flips as step ``s`` of one process at batch
    ``world * b``. :meth:`start_at` skips the samples of steps already trained, which
    makes a resumed run identical to an uninterrupted one.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch, self.skip = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, (self.size // self.world) // self.batch_size)

    def start_at(self, step: int) -> None:
        """Position the sampler at global training step ``step``."""
        self.epoch, within = divmod(step, self.steps_per_epoch)
        self.skip = within * self.batch_size

    def __len__(self) -> int:
        return self.size // self.world

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        # Draw the epoch's order and augmentation seeds for every sample, then take this
        # rank's share of both: the ranks of one step together see exactly the samples (and
        # crops and flips) of one step at world x batch_size in one process.
        order = rng.permutation(self.size)[self.rank :: self.world][: len(self)]
        aug_seeds = rng.integers(0, 2**63 - 1, size=self.size)[self.rank :: self.world]
        for position in range(self.skip, len(order)):
            yield int(order[position]), int(aug_seeds[position])
        self.epoch, self.skip = self.epoch + 1, 0


def _to_tensor(piece: str, values: np.ndarray) -> torch.Tensor:
    if piece in ("s2_cloudy", "s2_clear"):
        return torch.from_numpy(normalise_s2(values))
    if piece == "s1":
        return torch.from_numpy(normalise_s1(values))
    if piece == "landcover":
        return torch.from_numpy(values.astype(np.int64))
    return torch.from_numpy(values)


def _seed_worker(worker_id: int) -> None:
    """Reseed the worker's augmentations; leave SIGTERM to the main process.

    ``scancel``, SLURM preemption and ``timeout`` signal the whole process group: a worker
    killed by it would make the loader raise before the trainer saved ``last/``. Ignored
    here (torch already ignores SIGINT in workers), the main process saves and exits, and
    the loader then stops its workers itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        info.dataset.reseed(torch.initial_seed() % 2**32)


def make_loader(
    store: Path,
    split: str | None,
    *,
    batch_size: int,
    train: bool,
    crop: int | None = None,
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool | None = None,
    pieces: Sequence[str] | None = None,
    drop_last: bool | None = None,
    sampler: torch.utils.data.Sampler | None = None,
    cache_mb: float = 0.0,
) -> DataLoader:
    """The loader every trainer and evaluator uses.

    Training loaders shuffle, crop and flip; evaluation loaders return full patches in store
    order. ``pin_memory`` defaults to "CUDA is available"; workers use fork and persist
    across epochs (so each worker keeps its own ``cache_mb`` cache across epochs).
    """
    dataset = TileDataset(
        store,
        split,
        crop=crop if train else None,
        flips=train,
        pieces=pieces,
        seed=seed,
        cache_mb=cache_mb,
    )
    generator = torch.Generator().manual_seed(seed)
    kwargs: dict = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=_seed_worker)
        if "fork" in torch.multiprocessing.get_all_start_methods():
            kwargs["multiprocessing_context"] = "fork"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=train if drop_last is None else drop_last,
        generator=generator,
        **kwargs,
    )
