"""Trained models in MLflow: logged without pickle, registered with an alias, fetched back.

:func:`log_checkpoint` logs a checkpoint folder as a pyfunc "model from code"
(:mod:`tdpcr.tracking.pyfunc_model`): the model's ``checkpoint`` artifact holds
``model.safetensors`` and ``meta.json``; the ``tdpcr`` package is bundled as the model's code
(``code_paths``), so ``mlflow.pyfunc.load_model`` works where only the pip requirements are
installed; a signature and a small input example (a crop of a real patch) come with it.
``mlflow.pytorch.log_model`` is not used: it pickles the module.

:func:`register` adds the model as a version of a registered model and moves the alias to it
when its validation selection metric (``meta.json``) is at least the alias holder's: the
alias always names the best version trained so far.

:func:`fetch_checkpoint` downloads a ``models:/...`` or ``runs:/...`` model and returns its
checkpoint folder, which every tdpcr loader reads like a local one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tdpcr.core.errors import InputDataError
from tdpcr.core.specs import S1_BANDS, S2_BANDS
from tdpcr.tracking.stores import check_store, unanswered_server

if TYPE_CHECKING:  # the checkpoint module imports torch: only where a model is handled
    from tdpcr.core.checkpoint import CheckpointMeta

log = logging.getLogger(__name__)

#: The models-from-code file MLflow copies into every logged model.
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
#: The tdpcr package, bundled as each model's code.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Name of the model artifact that holds model.safetensors and meta.json.
CHECKPOINT_ARTIFACT = "checkpoint"
#: Side of the input example (a crop of a real patch): small, and a multiple of 16.
EXAMPLE_SIZE = 32
#: URI schemes that name an MLflow model.
MODEL_URI_SCHEMES = ("models:/", "runs:/")
#: Tags of registered model versions.
SELECTION_METRIC_TAG = "tdpcr.selection_metric"
SELECTION_VALUE_TAG = "tdpcr.selection_value"

#: Distributions the model code imports (versions pinned from this environment).
_REQUIREMENTS = ("torch", "numpy", "safetensors", "mlflow")


@dataclass(frozen=True)
class RegistrySettings:
    """Where the best model of one variant is registered (config ``tracking.*``)."""

    variant: str
    name: str
    alias: str


@contextmanager
def using_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI (and so its registry URI) at ``uri``.

    ``Model.log`` and the artifact downloads read the global URI; the rest of tdpcr uses
    clients with explicit URIs. MLflow's own helper restores the previous *setting* (often
    "none", i.e. the environment or default), which ``set_tracking_uri(get_tracking_uri())``
    would not: that would pin the default and later clients would open ./mlflow.db. The
    helper also unsets ``$MLFLOW_TRACKING_URI`` on the way out; the user's value is put back.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    # Downloads (also the input-example check while logging) draw a progress bar otherwise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from_environment = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if from_environment is not None:
            os.environ["MLFLOW_TRACKING_URI"] = from_environment


def is_model_uri(value: str | Path) -> bool:
    """True for ``models:/...`` and ``runs:/...``."""
    return str(value).startswith(MODEL_URI_SCHEMES)


# --------------------------------------------------------------------------- signature
def model_inputs(meta: CheckpointMeta) -> tuple[str, ...]:
    """Named inputs of a checkpoint's model (the pyfunc's rule, see :mod:`.pyfunc_model`)."""
    if meta.model_name != "segformer":
        return ("optical", "sar")
    return ("sar",) if meta.model_kwargs.get("in_channels") == 2 else ("optical",)


def model_outputs(meta: CheckpointMeta) -> tuple[str, ...]:
    """Named outputs: ``cloudfree`` for cloud-removal models, ``landcover`` with a class head."""
    outputs = () if meta.model_name == "segformer" else ("cloudfree",)
    if meta.model_kwargs.get("num_classes"):
        outputs += ("landcover",)
    return outputs


def signature(meta: CheckpointMeta):
    """The pyfunc's signature: tensors with free batch and spatial axes, param ``s2_offset``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    channels = {"optical": len(S2_BANDS), "sar": len(S1_BANDS), "cloudfree": len(S2_BANDS)}
    specs = {
        name: TensorSpec(np.dtype(np.float32), (-1, channels[name], -1, -1), name)
        for name in channels
    }
    specs["landcover"] = TensorSpec(np.dtype(np.uint8), (-1, -1, -1), "landcover")
    return ModelSignature(
        inputs=Schema([specs[name] for name in model_inputs(meta)]),
        outputs=Schema([specs[name] for name in model_outputs(meta)]),
        params=ParamSchema([ParamSpec("s2_offset", "integer", 0)]),
    )


def input_example(meta: CheckpointMeta, store: Path, pieces: tuple[str, ...]) -> dict:
    """A top-left ``EXAMPLE_SIZE`` crop of the store's first validation (else training) patch.

    ``optical`` is the first optical piece the variant trains on (``s2_cloudy`` for cloud
    removal, ``s2_clear`` for the clear-image segmenter), in DN as float32.
    """
    from tdpcr.data.store import open_store

    ds = open_store(store)
    splits = ds["split"].values
    index = int(np.flatnonzero(splits == "val")[0] if (splits == "val").any() else 0)
    crop = {"y": slice(0, EXAMPLE_SIZE), "x": slice(0, EXAMPLE_SIZE)}
    optical = next(p for p in (*pieces, "s2_cloudy") if p in ("s2_cloudy", "s2_clear"))
    variables = {"optical": optical, "sar": "s1"}
    return {
        name: ds[variables[name]].isel(patch=[index], **crop).values.astype(np.float32)
        for name in model_inputs(meta)
    }


def requirements() -> list[str]:
    """Pip requirements of the model code, pinned to this environment's versions.

    A local version label (``2.13.0+cpu``) is dropped so that a GPU machine installs its own
    build of the same torch release.
    """
    pinned = []
    for name in _REQUIREMENTS:
        version = importlib.metadata.version(name).split("+")[0]
        pinned.append(f"{name}=={version}")
    return pinned


# --------------------------------------------------------------------------- logging
def log_checkpoint(
    uri: str,
    run_id: str,
    checkpoint_dir: Path,
    *,
    store: Path,
    pieces: tuple[str, ...],
    step: int,
):
    """Log ``checkpoint_dir`` (model.safetensors + meta.json) as a model of run ``run_id``.

    The model is named after the variant; metrics the run logged at ``step`` are linked to it.
    Returns MLflow's ``ModelInfo`` (``model_uri`` is ``models:/<model id>``).
    """
    import mlflow
    from mlflow.models import Model

    from tdpcr.core.checkpoint import read_meta

    meta = read_meta(checkpoint_dir)
    with tempfile.TemporaryDirectory(prefix="tdpcr-model-") as staging:
        artifact = Path(staging) / CHECKPOINT_ARTIFACT
        artifact.mkdir()
        for name in ("model.safetensors", "meta.json"):
            shutil.copyfile(checkpoint_dir / name, artifact / name)
        with using_uri(uri), _run_experiment(run_id):
            return Model.log(
                artifact_path=None,  # MLflow 3: models are named (``name``), not paths
                name=meta.variant,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                step=step,
                tags=model_tags(meta),
                python_model=str(PYFUNC_CODE),
                artifacts={CHECKPOINT_ARTIFACT: str(artifact)},
                code_paths=[str(PACKAGE_DIR)],
                signature=signature(meta),
                input_example=input_example(meta, store, pieces),
                pip_requirements=requirements(),
            )


def model_tags(meta: CheckpointMeta) -> dict[str, str]:
    """Tags of a logged model and its registered versions: variant, model, selection metric."""
    tags = {"tdpcr.variant": meta.variant, "tdpcr.model": meta.model_name}
    selection = meta.extra.get("selection", "")
    # The trainer records the score it selected by (two-task variants: mIoU + w x PSNR);
    # checkpoints from before that name a metric of their validation metrics instead.
    value = meta.extra.get("selection_value", meta.metrics.get(selection))
    if selection and value is not None:
        tags[SELECTION_METRIC_TAG] = selection
        tags[SELECTION_VALUE_TAG] = repr(float(value))
    return tags


@contextmanager
def _run_experiment(run_id: str) -> Iterator[None]:
    """Make the run's experiment MLflow's current one: ``Model.log`` files the new model under
    the current experiment (the default one, ``0``, unless set), not under its run's."""
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    previous = os.environ.get("MLFLOW_EXPERIMENT_ID")
    os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = previous


def register(
    uri: str, model_info, meta: CheckpointMeta, settings: RegistrySettings, run_id: str
) -> tuple[str, bool]:
    """Register a logged model as a new version of ``settings.name``; move the alias to it
    when its selection metric is at least the current holder's. Returns (version, aliased)."""
    from mlflow.tracking import MlflowClient

    with using_uri(uri):  # the registry resolves models:/<id> sources in the global store
        return _register(
            MlflowClient(tracking_uri=uri, registry_uri=uri), model_info, meta, settings, run_id
        )


def _register(client, model_info, meta: CheckpointMeta, settings: RegistrySettings, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(settings.name)
    except MlflowException:
        description = (
            f"tdpcr {settings.variant} models; alias {settings.alias!r} is the version with the "
            "best validation selection metric"
        )
        client.create_registered_model(settings.name, description=description)
    tags = model_tags(meta)
    version = client.create_model_version(
        settings.name,
        source=model_info.model_uri,
        run_id=run_id,
        tags=tags,
        model_id=model_info.model_id,
    )
    value = _selection_value(tags)
    try:
        holder = client.get_model_version_by_alias(settings.name, settings.alias)
        best_so_far = _selection_value(holder.tags)
    except MlflowException:  # no version holds the alias yet
        best_so_far = None
    better = best_so_far is None or (value is not None and value >= best_so_far)
    if better:
        client.set_registered_model_alias(settings.name, settings.alias, version.version)
    return str(version.version), better


def _selection_value(tags: Mapping[str, str]) -> float | None:
    try:
        return float(tags[SELECTION_VALUE_TAG])
    except (KeyError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- fetching
@contextmanager
def fetch_checkpoint(model_uri: str, uri: str) -> Iterator[tuple[Path, str]]:
    """Download the MLflow model ``model_uri`` from tracking store ``uri``; yield its checkpoint
    folder (deleted afterwards) and a description of what it resolved to.

    The store is only read: one that MLflow would create or alter to open is refused first
    (:func:`tdpcr.tracking.stores.check_store`). An error about the checkpoint raised while
    the folder is in use names ``model_uri``, not the temporary folder.

    Raises:
        InputDataError: the store, the registered model, the alias or the run does not exist,
            the store is not an MLflow store or its server does not answer, or the model is
            not a tdpcr model (one line naming the URI).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        check_store(uri)
    except InputDataError as err:
        raise InputDataError(f"{model_uri}: {err}") from None
    with tempfile.TemporaryDirectory(prefix="tdpcr-fetch-") as tmp, using_uri(uri):
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except MlflowException as err:
            raise InputDataError(f"{model_uri}: {_fetch_failure(err, uri)}") from None
        folder = local / "artifacts" / CHECKPOINT_ARTIFACT
        if not (folder / "meta.json").is_file():
            what = f"no {CHECKPOINT_ARTIFACT} artifact"
            raise InputDataError(f"{model_uri}: not a tdpcr model ({what})")
        try:
            yield folder, _describe(model_uri, uri)
        except InputDataError as err:  # the temporary folder is gone when the user reads it
            named = str(err).replace(str(folder), f"{model_uri} {CHECKPOINT_ARTIFACT}")
            raise InputDataError(named.replace(tmp, model_uri)) from None


def _fetch_failure(err, uri: str) -> str:
    """What went wrong, in one line: an unanswered server as such, else MLflow's first line."""
    return unanswered_server(err, uri) or str(err.message).strip().splitlines()[0]


def _describe(model_uri: str, uri: str) -> str:
    """``models:/name@alias (version 3, run <id>)``: what a registry URI pointed at."""
    if not model_uri.startswith("models:/") or "@" not in model_uri:
        return model_uri
    from mlflow.tracking import MlflowClient

    name, alias = model_uri.removeprefix("models:/").split("@", 1)
    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
        name, alias
    )
    return f"{model_uri} (version {version.version}, run {version.run_id})"
