"""The tile store as MLflow dataset inputs, so runs show (and can be searched by) their data.

One MLflow dataset per split of a store, named ``<store>-<split>`` (``synthetic-train``), logged
with the context MLflow's UI shows next to it: ``training`` and ``validation`` by the trainer,
``test`` by evaluation. MLflow keeps one input per (name, digest) and run, so the three splits
are three datasets rather than one dataset under three contexts.

The digest fingerprints what training read without hashing gigabytes of pixels: the store's
metadata documents (every ``zarr.json``: shapes, dtypes, codecs, band and class names,
normalisation, source layout) plus the split's patch ids. Re-tiling with other patches, another
split or other attributes changes it; the same store always gives the same digest. The schema
lists each variable as a tensor (dtype, shape with the patch axis free) and the profile the
split's size.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import DatasetInput, InputTag
from mlflow.types.schema import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from tdpcr.data.store import open_store

#: Split of the store -> the MLflow context a training run reads it in.
TRAINING_CONTEXTS: dict[str, str] = {"train": "training", "val": "validation"}
#: The context evaluation logs its split under.
TEST_CONTEXT = "test"

#: Pixel variables of the store in the dataset schema: what models read, what they are scored on.
_FEATURES = ("s2_cloudy", "s1", "cloudmask")
_TARGETS = ("s2_clear", "landcover")
_PIXEL_VARIABLES = (*_FEATURES, *_TARGETS)


def metadata_digest(store: Path) -> str:
    """SHA-256 of the store's metadata documents (every ``zarr.json``, in path order)."""
    store = Path(store)
    digest = hashlib.sha256()
    for document in sorted(store.rglob("zarr.json")):
        digest.update(document.relative_to(store).as_posix().encode())
        digest.update(document.read_bytes())
    return digest.hexdigest()


def _local_source(path: Path):
    """MLflow's ``local`` dataset source of a folder."""
    with warnings.catch_warnings():
        # MLflow 3.17 registers its local artifact source class twice, so resolving any local
        # path warns that it "can be interpreted in multiple ways" between the two identical
        # candidates; the choice is the same either way.
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        return resolve_dataset_source(str(path))


class TileStoreDataset(Dataset):
    """One split of a tile store, as MLflow sees a dataset (metadata only, no data)."""

    def __init__(self, store: Path, split: str) -> None:
        self.store = Path(store).resolve()
        self.split = split
        ds = open_store(self.store)
        in_split = ds["split"].values == split
        self._patch_ids = [str(p) for p in ds["patch"].values[in_split]]
        self._variables = {
            name: (ds[name].dtype, ds[name].shape[1:]) for name in _PIXEL_VARIABLES if name in ds
        }
        self._attrs = {
            "source_layout": str(ds.attrs["source_layout"]),
            "patch_size": int(ds.attrs["patch_size"]),
        }
        super().__init__(source=_local_source(self.store), name=f"{self.store.stem}-{split}")

    def _compute_digest(self) -> str:
        digest = hashlib.sha256(metadata_digest(self.store).encode())
        digest.update(self.split.encode())
        digest.update("\n".join(self._patch_ids).encode())
        return digest.hexdigest()[:16]

    @property
    def profile(self) -> dict[str, Any]:
        return {"patches": len(self._patch_ids), "split": self.split, **self._attrs}

    @cached_property
    def schema(self) -> TensorDatasetSchema:
        """Inputs (cloudy optical, SAR, cloud mask) as features; references as targets."""

        def specs(names: tuple[str, ...]) -> Schema | None:
            found = [
                TensorSpec(np.dtype(dtype), (-1, *shape), name)
                for name, (dtype, shape) in self._variables.items()
                if name in names
            ]
            return Schema(found) if found else None

        return TensorDatasetSchema(features=specs(_FEATURES), targets=specs(_TARGETS))

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        # The serialisation of MLflow's own tensor datasets (NumpyDataset), which the UI reads.
        config["schema"] = json.dumps(self.schema.to_dict())
        config["profile"] = json.dumps(self.profile)
        return config


def store_inputs(store: Path, contexts: Mapping[str, str]) -> list[DatasetInput]:
    """Dataset inputs of the splits in ``contexts`` (split -> context) that hold patches."""
    inputs = []
    for split, context in contexts.items():
        dataset = TileStoreDataset(store, split)
        if dataset.profile["patches"]:
            tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
            inputs.append(DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags))
    return inputs
