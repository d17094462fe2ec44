"""Tracking stores, checked before MLflow opens them; tracking servers, with bounded waits.

MLflow opens a store by making it what it expects: a SQLite file (missing, empty, or another
application's database) gets MLflow's tables, a folder gets an experiment and a ``.trash``,
an older MLflow store is migrated when some of today's tables are missing. A command that only
reads (``predict`` / ``evaluate`` looking up a model or a run) must change nothing, so it
opens a store only when it already is a store of this MLflow's schema (:func:`check_store`).
A command that records (``train``, ``tracking-init``) may create a store that does not exist
yet, but never adds MLflow's tables to a file or folder that holds something else.

MLflow's HTTP client retries a tracking server 7 times with a doubling backoff and waits 120 s
for each answer: an unreachable server holds a command for minutes. tdpcr sets shorter bounds
(:func:`bound_requests`) unless the user set MLflow's variables.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tdpcr.core.errors import InputDataError

#: Tables every MLflow SQL store has (tracking and registry); a database without them holds
#: no MLflow store.
MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "runs", "registered_models"})
#: What every MLflow file store folder holds (MLflow's ``FileStore`` creates it first).
FILE_STORE_MARKER = ".trash"
#: MLflow's variables for its HTTP client: seconds per request, retries, backoff factor.
HTTP_SETTINGS = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)
NOT_FOUND = "not found (set --tracking-uri or MLFLOW_TRACKING_URI to the store that holds it)"
NOT_WRITTEN = "tdpcr writes no MLflow tables or files into it"


@dataclass(frozen=True)
class RequestBounds:
    """How long one tdpcr command waits for a tracking server before it gives up."""

    timeout_s: int
    retries: int
    backoff_factor: int = 1

    def environment(self) -> dict[str, str]:
        """The MLflow environment variables that carry these bounds."""
        values = (self.timeout_s, self.retries, self.backoff_factor)
        return dict(zip(HTTP_SETTINGS, map(str, values), strict=True))


#: Looking a model or a run up: two tries of 5 s, then one line (about 12 s at worst).
LOOKUP = RequestBounds(timeout_s=5, retries=1)
#: Recording a training run: rides out a short outage or a rate limit (minutes at worst).
RECORDING = RequestBounds(timeout_s=30, retries=5)


def bound_requests(bounds: RequestBounds) -> None:
    """Set MLflow's HTTP timeout and retries to ``bounds`` where the user has not set them.

    MLflow reads the variables at every request, so this holds from the next request on; the
    first bounds a process sets stay (one process does one kind of work).
    """
    for name, value in bounds.environment().items():
        os.environ.setdefault(name, value)


def unanswered_server(err: Exception, uri: str) -> str | None:
    """``tracking server URI did not answer (...)`` when MLflow gave up on the server behind
    ``err`` (connection refused, timed out, reset), else None."""
    import requests

    cause = err.__cause__ or err.__context__
    if not (is_server(uri) and isinstance(cause, requests.RequestException)):
        return None
    waited = ", ".join(f"{name}={os.environ.get(name, 'default')}" for name in HTTP_SETTINGS)
    return (
        f"tracking server {uri} did not answer ({type(cause).__name__}; waited with {waited}: "
        "raise them for a slow server)"
    )


@contextmanager
def server_failures_as_input_errors(uri: str) -> Iterator[None]:
    """Turn MLflow giving up on the tracking server into one line naming it."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        message = unanswered_server(err, uri)
        if message is None:
            raise
        raise InputDataError(message) from None


def is_server(uri: str) -> bool:
    """True for an ``http://`` / ``https://`` tracking server."""
    return uri.startswith(("http://", "https://"))


def is_local_store(uri: str) -> bool:
    """True for a SQLite file or a file store folder (``file:`` URI or plain path)."""
    from mlflow.utils.uri import is_databricks_uri  # "databricks" has no scheme either

    scheme = urlparse(uri).scheme
    return scheme in ("sqlite", "file") or (scheme == "" and not is_databricks_uri(uri))


def local_store_path(uri: str) -> Path | None:
    """The file or folder of a local store URI (None: in-memory SQLite, or not local)."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url  # parses the URI as MLflow's engine will

        database = make_url(uri).database
        return Path(database) if database and database != ":memory:" else None
    if is_local_store(uri):
        from mlflow.utils.file_utils import local_file_uri_to_path  # MLflow's own reading

        return Path(local_file_uri_to_path(uri))
    return None


def store_exists(uri: str) -> bool:
    """False for a local store whose file or folder does not exist (servers: True)."""
    if not is_local_store(uri):
        return True
    path = local_store_path(uri)
    return path is not None and path.exists()


def check_store(uri: str, *, create: bool = False) -> None:
    """Refuse a store that MLflow would have to create or alter to open it.

    With ``create`` (commands that record), a store that does not exist yet is fine: MLflow
    creates it. Servers are bounded (:func:`bound_requests`), other schemes left to MLflow.

    Raises:
        InputDataError: the store is missing (reads), not a store, not an MLflow store, or of
            another MLflow schema version (one line naming the URI).
    """
    if is_server(uri):
        bound_requests(RECORDING if create else LOOKUP)
    elif uri.startswith("sqlite:"):
        _check_sqlite(uri, create)
    elif is_local_store(uri):
        _check_file_store(uri, create)


def _refuse(uri: str, problem: str) -> InputDataError:
    return InputDataError(f"tracking store {uri} {problem}")


def _check_sqlite(uri: str, create: bool) -> None:
    path = local_store_path(uri)
    if path is None:
        if create:
            return
        raise _refuse(uri, "is an in-memory database: it holds no model")
    if not path.exists():
        if create:
            return
        raise _refuse(uri, NOT_FOUND)
    if not path.is_file():
        raise _refuse(uri, f"is not a file ({path} is a folder; expected an MLflow SQLite store)")
    tables, revision = _sqlite_contents(uri, path)
    if not tables and create and path.stat().st_size == 0:
        return  # an empty file: MLflow's tables overwrite nothing
    missing = sorted(MLFLOW_TABLES - tables)
    if missing:
        lacking = f"tables {', '.join(missing)} missing"
        raise _refuse(uri, f"holds no MLflow store ({lacking}); {NOT_WRITTEN}")
    _check_revision(uri, revision)


def _sqlite_contents(uri: str, path: Path) -> tuple[frozenset[str], str | None]:
    """Table names and MLflow schema revision, read through a read-only connection.

    sqlite3's ``mode=ro`` opens without creating, locking for writes or migrating anything,
    which MLflow's own engine would do.
    """
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            tables = frozenset(name for (name,) in rows)
            revision = None
            if "alembic_version" in tables:
                found = db.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = found[0] if found else None
    except sqlite3.Error as err:
        raise _refuse(uri, f"is not an SQLite database ({err})") from None
    return tables, revision


def _check_revision(uri: str, revision: str | None) -> None:
    """Refuse a store of another MLflow schema: this MLflow would migrate it in place."""
    from mlflow.store.db.utils import _get_latest_schema_revision  # MLflow's own head

    head = _get_latest_schema_revision()
    if revision != head:
        import mlflow

        upgrade = f"back it up and run 'mlflow db upgrade {uri}', or use an MLflow of its version"
        found = f"has MLflow schema {revision}, MLflow {mlflow.__version__} reads {head}"
        raise _refuse(uri, f"{found}; {upgrade}")


def _check_file_store(uri: str, create: bool) -> None:
    path = local_store_path(uri)
    if not path.exists():
        if create:
            return
        raise _refuse(uri, NOT_FOUND)
    if not path.is_dir():
        expected = "sqlite:///FILE.db, a server URL or an MLflow file store folder"
        raise _refuse(uri, f"is not a folder ({path} is a file; expected {expected})")
    if create and not any(path.iterdir()):
        return  # an empty folder: MLflow's files overwrite nothing
    if not (path / FILE_STORE_MARKER).is_dir():
        lacking = f"{path} has no {FILE_STORE_MARKER} folder"
        raise _refuse(uri, f"holds no MLflow store ({lacking}); {NOT_WRITTEN}")
