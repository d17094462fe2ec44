"""MLflow tracking: the only package of tdpcr that imports mlflow.

Layout of what a workflow run records (one experiment per config ``name``, tagged
``mlflow.experimentKind = custom_model_development`` so the MLflow 3 UI opens on its runs):

- one parent run per trained model family (``tdpcr``, ``tdpcr-global``, ``tdpcr-local``,
  ``tdpcr-joint``, ``dsen2cr``, ``segformer-clear``, ...), tagged with the config hash;
- one nested run per training phase of that family (``tdpcr-cr`` is phase 1 of ``tdpcr``;
  ``tdpcr-full`` (PEFT) and ``tdpcr-fpft`` are its phase-2 runs);
- parameters: the full resolved config, flattened (``train.lr``, ``models.tdpcr.width``...);
  per-step metrics, final validation metrics, ``system/*`` metrics (``tracking.system_metrics``);
  tags: variant, phase, dataset, config hash, and MLflow's source / git tags (:mod:`.context`);
- dataset inputs: the tile store's splits, ``training`` / ``validation`` (:mod:`.datasets`;
  evaluation adds ``test``);
- the trained model as a pyfunc model from code, no pickle (:mod:`.model_logging`,
  :mod:`.pyfunc_model`); the best ``tracking.registered_variant`` is registered as
  ``tracking.registered_model`` with alias ``tracking.model_alias``.

The client API (``MlflowClient``) is used rather than ``mlflow.start_run`` so that nothing
depends on a process-global active run.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tdpcr.core.errors import InputDataError
from tdpcr.tracking.context import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    git_commit,
    source_tags,
    system_metrics,
)
from tdpcr.tracking.model_logging import RegistrySettings, fetch_checkpoint, is_model_uri
from tdpcr.tracking.stores import check_store, server_failures_as_input_errors, store_exists

__all__ = [
    "DEFAULT_URI",
    "RegistrySettings",
    "Tracker",
    "fetch_checkpoint",
    "find_run",
    "find_variant_run",
    "flatten",
    "git_commit",
    "init_store",
    "is_model_uri",
    "metric_histories",
    "record_evaluation",
    "resolve_uri",
]

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///results/mlflow.db"
#: Tag values tdpcr searches runs by: variant names, config hashes.
_PLAIN_VALUE = re.compile(r"[\w.:@+-]+")
#: Environment variable that overrides the config's tracking URI (e.g. an mlflow server).
URI_ENV = "MLFLOW_TRACKING_URI"


def resolve_uri(config_uri: str | None) -> str:
    """The tracking URI: ``$MLFLOW_TRACKING_URI`` if set, else the config's, else the default."""
    return os.environ.get(URI_ENV) or config_uri or DEFAULT_URI


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": "0.001"}`` (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return flat


def _tag_filter(tags: Mapping[str, str]) -> str:
    """An MLflow search filter matching ``tags`` exactly.

    The values come from configs and meta.json files; a quote in one would change what the
    filter means (MLflow's filter language has no escape for it), so only plain names pass.

    Raises:
        InputDataError: a value holds anything but letters, digits and ``_ . - : @ +``.
    """
    for key, value in tags.items():
        if not _PLAIN_VALUE.fullmatch(str(value)):
            raise InputDataError(
                f"MLflow tag {key} = {value!r}: only letters, digits and _ . - : @ + are "
                "searched for (a quote would change the search)"
            )
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def _artifact_root(uri: str) -> str | None:
    """Artifacts next to a local SQLite store (results/mlartifacts), else the server's default."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


@contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive file lock beside a local SQLite store (a no-op for servers).

    Processes opening a brand-new SQLite store race on its schema creation (7 of 8 parallel
    ``tdpcr train`` runs crashed); under the lock the first one creates it, the others wait
    and then find it. A store refused in the body (not an MLflow store) keeps nothing of
    tdpcr's beside it: a lock file this call created is removed.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    if db.is_dir() or db.parent.is_file():
        yield  # not a store: the body refuses it, there is nothing to lock beside
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    path = db.with_name(f"{db.name}.lock")
    created = not path.exists()
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        except InputDataError:
            if created:
                path.unlink(missing_ok=True)
            raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def init_store(uri: str) -> str:
    """Create the tracking store (and its schema) if absent; safe from parallel processes.

    The workflow still calls it in a single first rule, so jobs never wait on the lock.

    Raises:
        InputDataError: the URI names a file or folder that is not an MLflow store (nothing
            is written to it, not even the lock beside it).
    """
    from mlflow.tracking import MlflowClient

    with _first_use_lock(uri), server_failures_as_input_errors(uri):
        check_store(uri, create=True)  # under the lock: no other process is creating it
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    return uri


class Tracker:
    """Records training and evaluation in MLflow; every method is a no-op when disabled.

    Args:
        enabled: record anything at all.
        uri: tracking URI (see :func:`resolve_uri`).
        experiment: experiment name (the config's ``name``).
        system_metrics: sample ``system/*`` metrics while a run is open.
        log_models: log each trained checkpoint as an MLflow model.
        registry: where the best model of one variant is registered (None: nowhere).
    """

    def __init__(
        self,
        enabled: bool,
        uri: str,
        experiment: str,
        *,
        system_metrics: bool = False,
        log_models: bool = False,
        registry: RegistrySettings | None = None,
    ) -> None:
        self.enabled = enabled
        self.uri = uri
        self.experiment_name = experiment
        self.system_metrics = system_metrics
        self.log_models = log_models
        self.registry = registry
        self.run_id: str | None = None
        self.parent_run_id: str | None = None
        self.store: Path | None = None
        self._client = None
        self._experiment_id: str | None = None
        if enabled:
            os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
            from mlflow.tracking import MlflowClient

            # A brand-new store: schema and experiment, once.
            with _first_use_lock(uri), server_failures_as_input_errors(uri):
                check_store(uri, create=True)
                self._client = MlflowClient(tracking_uri=uri)
                self._client.search_experiments(max_results=1)
                self._experiment_id = self._experiment(experiment)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], enabled: bool = True) -> Tracker:
        """The tracker a validated config asks for (section ``tracking``, experiment ``name``)."""
        tracking = config["tracking"]
        registry = None
        if tracking["registered_model"]:
            registry = RegistrySettings(
                variant=tracking["registered_variant"],
                name=tracking["registered_model"],
                alias=tracking["model_alias"],
            )
        return cls(
            enabled and tracking["enabled"],
            resolve_uri(tracking["uri"]),
            str(config["name"]),
            system_metrics=tracking["system_metrics"],
            log_models=tracking["log_models"],
            registry=registry,
        )

    def _experiment(self, name: str) -> str:
        existing = self._client.get_experiment_by_name(name)
        if existing is not None:
            experiment_id = existing.experiment_id
            if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # older stores
                self._client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return experiment_id
        try:
            return self._client.create_experiment(
                name,
                artifact_location=_artifact_root(self.uri),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except Exception:  # another job created it first
            return self._client.get_experiment_by_name(name).experiment_id

    def _find_run(self, tags: Mapping[str, str]) -> str | None:
        query = _tag_filter(tags)
        runs = self._client.search_runs(
            [self._experiment_id],
            filter_string=query,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].info.run_id if runs else None

    def parent_run(self, family: str, config_hash: str, tags: Mapping[str, str]) -> str | None:
        """The family's parent run for this config (created if absent)."""
        if not self.enabled:
            return None
        key = {"tdpcr.family": family, "tdpcr.config_hash": config_hash, "tdpcr.level": "model"}
        run_id = self._find_run(key)
        if run_id is None:
            all_tags = {**source_tags("train"), **tags, **key}
            run = self._client.create_run(self._experiment_id, run_name=family, tags=all_tags)
            run_id = run.info.run_id
        self.parent_run_id = run_id
        return run_id

    @contextmanager
    def run(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        store: Path | None = None,
    ) -> Iterator[Tracker]:
        """A (nested when ``parent_run_id``) training run; FAILED or KILLED if the body raises.

        With ``store``, its training and validation splits are logged as the run's dataset
        inputs (and the store gives the logged model its input example).
        """
        if not self.enabled:
            yield self
            return
        all_tags = {**source_tags("train"), **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self._client.create_run(self._experiment_id, run_name=name, tags=all_tags)
        self.run_id = run.info.run_id
        if params:
            self.log_params(params)
        if store is not None:
            from tdpcr.tracking.datasets import TRAINING_CONTEXTS, store_inputs

            self.store = Path(store)
            self._client.log_inputs(self.run_id, datasets=store_inputs(store, TRAINING_CONTEXTS))
        status = "FINISHED"
        try:
            with system_metrics(self.system_metrics, self.run_id, self.uri):
                yield self
        except (KeyboardInterrupt, SystemExit):
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self._client.set_terminated(self.run_id, status=status)
            if parent_run_id and status == "FINISHED":
                # The parent (model family) run is complete once any phase completes; a
                # later phase reopens nothing, it only adds a child.
                self._client.set_terminated(parent_run_id, status="FINISHED")

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int, run_id: str | None = None):
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]
        if items:
            self._client.log_batch(run_id or self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, str], run_id: str | None = None) -> None:
        if not self.enabled:
            return
        for key, value in tags.items():
            self._client.set_tag(run_id or self.run_id, key, str(value))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        self._client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_model(self, checkpoint_dir: Path, pieces: tuple[str, ...], step: int) -> str | None:
        """Log the published checkpoint as the run's model (and register it when it is the
        registered variant); returns the model URI. Without ``log_models`` only its meta.json
        is logged (artifact ``checkpoint/``) and None is returned.

        ``pieces`` are the store pieces the variant trains on (they pick the input example);
        metrics logged at ``step`` are linked to the model.
        """
        if not self.enabled:
            return None
        if not self.log_models:  # keep at least what the checkpoint is, as before
            self.log_artifact(Path(checkpoint_dir) / "meta.json", "checkpoint")
            return None
        from tdpcr.core.checkpoint import read_meta
        from tdpcr.tracking.model_logging import log_checkpoint, register

        if self.store is None:
            raise ValueError("log_model needs the run's store (Tracker.run(..., store=...))")
        info = log_checkpoint(
            self.uri, self.run_id, Path(checkpoint_dir), store=self.store, pieces=pieces, step=step
        )
        tags = {"tdpcr.model_uri": info.model_uri}
        meta = read_meta(Path(checkpoint_dir))
        if self.registry is not None and meta.variant == self.registry.variant:
            version, aliased = register(self.uri, info, meta, self.registry, self.run_id)
            tags["tdpcr.registered_version"] = f"{self.registry.name}/{version}"
            where = f"models:/{self.registry.name}/{version}"
            if aliased:
                where += f" = models:/{self.registry.name}@{self.registry.alias}"
            print(f"registered {where}", flush=True)
        self.set_tags(tags)
        return info.model_uri


def find_run(uri: str, experiment: str, tags: Mapping[str, str]) -> str | None:
    """Run id of the newest run of ``experiment`` with ``tags`` (for evaluation to log into)."""
    from mlflow.tracking import MlflowClient

    check_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = _tag_filter(tags)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=query,
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


# --------------------------------------------------------------------------- evaluation
def find_variant_run(uri: str, experiment: str, variant: str, config_hash: str) -> str | None:
    """Run id of the training run of ``variant`` whose config hash is ``config_hash``.

    The hash is the one stored in the checkpoint's ``meta.json`` (``extra.config_hash``), so
    this is the run that produced that checkpoint. A finished run is preferred; a resumed
    training leaves one run per attempt, and the newest finished one is the one that
    published the checkpoint. None when the store, the experiment or the run is absent.

    Raises:
        InputDataError: the URI names something that is not an MLflow store of this MLflow's
            schema (it is only read, never created or migrated).
    """
    if not store_exists(uri):  # opening it would create an empty store
        return None
    check_store(uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = _tag_filter({"tdpcr.variant": variant, "tdpcr.config_hash": config_hash})
    for status_filter in (" and attributes.status = 'FINISHED'", ""):
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=query + status_filter,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if runs:
            return runs[0].info.run_id
    return None


def record_evaluation(
    uri: str,
    run_id: str,
    metrics: Mapping[str, float],
    step: int,
    artifact: Path | None = None,
    *,
    store: Path | None = None,
    split: str = "test",
) -> None:
    """Log test metrics (NaN skipped), the evaluated split of ``store`` as a ``test`` dataset
    input, and optionally an evaluation file into an existing run.

    MLflow accepts metrics on a finished run, so evaluation adds to the training run it
    evaluates instead of creating a run of its own (one place to compare variants).
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]
    for start in range(0, len(items), 1000):  # MLflow's batch limit for metrics
        client.log_batch(run_id, metrics=items[start : start + 1000])
    if store is not None:
        from tdpcr.tracking.datasets import TEST_CONTEXT, store_inputs

        client.log_inputs(run_id, datasets=store_inputs(store, {split: TEST_CONTEXT}))
    if artifact is not None:
        client.log_artifact(run_id, str(artifact), artifact_path="evaluation")


def metric_histories(
    uri: str, run_id: str, keys: list[str] | tuple[str, ...]
) -> dict[str, list[tuple[int, float]]]:
    """``key -> [(step, value), ...]`` sorted by step, for the keys the run has logged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(run_id).data.metrics
    histories: dict[str, list[tuple[int, float]]] = {}
    for key in keys:
        if key in logged:
            history = client.get_metric_history(run_id, key)
            histories[key] = sorted((m.step, m.value) for m in history)
    return histories
