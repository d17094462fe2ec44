"""Reliability of MLflow tracking and model lookup on hostile inputs.

A command that looks a model up only reads its tracking store: it neither creates MLflow's
tables in a file that holds something else nor a store where none is; an unanswered tracking
server ends it in seconds with one line; a meta.json edited after training (or a swapped one)
is refused instead of feeding the bands in another order; errors name what the user gave.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from tdpcr.cli import main
from tdpcr.core.checkpoint import load_checkpoint
from tdpcr.core.config import shipped_config
from tdpcr.core.errors import InputDataError
from tests import test_predict
from tests.fakes import silent_server as never_answering_server
from tests.test_products import tiny_checkpoint
from tests.test_reliability import one_line_refusal

#: MLflow settings of the caller that would change what these tests check.
CALLER_SETTINGS = ("MLFLOW_TRACKING_URI", "MLFLOW_LOGGING_LEVEL", "MLFLOW_ALLOW_FILE_STORE")
#: An unanswered server must end a lookup within this (MLflow's defaults take minutes).
SERVER_BOUND_S = 30


def run_tdpcr(*args: object, env: dict[str, str] | None = None, timeout: float = 120):
    """``tdpcr ARGS`` in a fresh interpreter with MLflow's defaults: (status, stderr, seconds)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in CALLER_SETTINGS and not k.startswith("MLFLOW_HTTP_")
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tdpcr.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=timeout,
    )
    return done.returncode, done.stderr, time.monotonic() - started


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return test_predict.write_scene(tmp_path_factory.mktemp("scene"), 32, 32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TDP-CR Full saved by today's code (meta.json records the L1C bands)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tdpcr-full")


def predict_args(scene: tuple[Path, Path], model: object, out: Path) -> list[str]:
    optical, sar = scene
    return [
        "predict", "--optical", str(optical), "--sar", str(sar), "--checkpoint", str(model),
        "--out", str(out), "--window", "32", "--overlap", "0", "--quiet",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# A lookup only reads its tracking store


def _empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _other_apps_database(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO notes (text) VALUES ('keep me')")
    return path


def _text_file(path: Path) -> Path:
    path.write_text("shopping list\n")
    return path


#: name -> (what the user has there, how the URI names it, what the refusal says).
NOT_A_STORE: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "empty-sqlite-file": (_empty_file, "sqlite:///{}", "holds no MLflow store"),
    "other-apps-sqlite": (_other_apps_database, "sqlite:///{}", "holds no MLflow store"),
    "text-as-sqlite": (_text_file, "sqlite:///{}", "is not an SQLite database"),
    "text-as-path": (_text_file, "{}", "is not a folder"),
    "text-as-file-uri": (_text_file, "file://{}", "is not a folder"),
}


@pytest.fixture
def file_stores_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses file stores unless opted into, as a user keeping one would do."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.usefixtures("file_stores_allowed")
@pytest.mark.parametrize("case", sorted(NOT_A_STORE))
def test_a_lookup_writes_nothing_into_what_is_not_an_mlflow_store(
    tmp_path: Path, scene: tuple[Path, Path], capsys, case: str
) -> None:
    make, template, expected = NOT_A_STORE[case]
    user = tmp_path / "user"
    user.mkdir()
    path = make(user / "notes.db")
    before, files = digest(path), listing(tmp_path)
    uri = template.format(path)
    capsys.readouterr()
    code = main(
        [*predict_args(scene, "models:/tdpcr-full@champion", tmp_path / "pred"),
         "--tracking-uri", uri]
    )  # fmt: skip
    err = capsys.readouterr().err
    one_line_refusal(code, err, "models:/tdpcr-full@champion", f"tracking store {uri} ", expected)
    assert digest(path) == before and listing(tmp_path) == files  # nothing created or changed


@pytest.mark.usefixtures("file_stores_allowed")
def test_a_lookup_creates_no_store_where_there_is_none(
    tmp_path: Path, scene: tuple[Path, Path], capsys
) -> None:
    missing = tmp_path / "mlruns"
    capsys.readouterr()
    code = main(
        [*predict_args(scene, "models:/tdpcr-full/1", tmp_path / "pred"),
         "--tracking-uri", f"file://{missing}"]
    )  # fmt: skip
    one_line_refusal(code, capsys.readouterr().err, f"tracking store file://{missing} not found")
    assert listing(tmp_path) == []


def _tracking_config(tmp_path: Path, uri: str) -> Path:
    config = shipped_config("tiny")
    config["tracking"] = {**config["tracking"], "enabled": True, "uri": uri}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_tracking_init_adds_no_tables_to_another_apps_database(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would name the store
    db = _other_apps_database(tmp_path / "app.db")
    config = _tracking_config(tmp_path, f"sqlite:///{db}")
    before, files = digest(db), listing(tmp_path)
    capsys.readouterr()
    code = main(["tracking-init", "--config", str(config), "--out", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    one_line_refusal(code, err, f"tracking store sqlite:///{db} holds no MLflow store")
    assert digest(db) == before and listing(tmp_path) == files  # no tables, no lock, no output


def test_a_new_store_is_created_without_library_info_lines(tmp_path: Path) -> None:
    db = tmp_path / "results" / "mlflow.db"
    config = _tracking_config(tmp_path, f"sqlite:///{db}")
    code, err, _ = run_tdpcr("tracking-init", "--config", config, "--out", tmp_path / "t.json")
    assert code == 0 and err == "", err  # MLflow's and alembic's INFO lines stay off stderr
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as store:
        tables = {name for (name,) in store.execute("SELECT name FROM sqlite_master")}
    assert {"experiments", "registered_models"} <= tables


# ---------------------------------------------------------------------------------------------
# An unanswered tracking server


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server on 127.0.0.1 that accepts connections and never answers; it stops by itself
    after 3 x SERVER_BOUND_S seconds (and at the end of the test)."""
    with never_answering_server(3 * SERVER_BOUND_S) as (url, _):
        yield url


def closed_port() -> str:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


@pytest.mark.parametrize("server", ["closed-port", "never-answers"])
def test_an_unanswered_tracking_server_ends_the_lookup_in_time(
    tmp_path: Path, scene: tuple[Path, Path], request: pytest.FixtureRequest, server: str
) -> None:
    uri = closed_port() if server == "closed-port" else request.getfixturevalue("silent_server")
    out = tmp_path / "pred"
    code, err, seconds = run_tdpcr(
        *predict_args(scene, "models:/tdpcr-full@champion", out), "--tracking-uri", uri,
        timeout=3 * SERVER_BOUND_S,
    )  # fmt: skip
    assert seconds < SERVER_BOUND_S, seconds
    one_line_refusal(code, err, "models:/tdpcr-full@champion", f"tracking server {uri} ")
    assert "did not answer" in err and listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# meta.json must be the one saved with the weights


def _edit_meta(folder: Path, edit: Callable[[dict], None]) -> Path:
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta, indent=2))
    return path


def _reverse_bands(meta: dict) -> None:
    meta["extra"]["s2_bands"] = meta["extra"]["s2_bands"][::-1]


def _swap_two_bands(meta: dict) -> None:
    bands = meta["extra"]["s2_bands"]
    bands[1], bands[3] = bands[3], bands[1]  # B2 <-> B4: blue and red


def _other_config_hash(meta: dict) -> None:
    meta["extra"]["config_hash"] = "0" * 16


EDITS = {"reversed-bands": _reverse_bands, "blue-red-swapped": _swap_two_bands,
         "config-hash": _other_config_hash}  # fmt: skip


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_predict_refuses_a_checkpoint_whose_meta_json_was_edited(
    tmp_path: Path, scene: tuple[Path, Path], checkpoint: Path, capsys, edit: str
) -> None:
    folder = tmp_path / "tdpcr-full"
    shutil.copytree(checkpoint, folder)
    meta = _edit_meta(folder, EDITS[edit])
    capsys.readouterr()
    code = main(predict_args(scene, folder, tmp_path / "pred"))
    one_line_refusal(code, capsys.readouterr().err, f"{meta}: edited since training")
    assert not (tmp_path / "pred").exists()


def test_a_checkpoint_saved_before_the_record_is_read_unless_its_bands_are_reordered(
    tmp_path: Path, checkpoint: Path
) -> None:
    folder = tmp_path / "older"
    shutil.copytree(checkpoint, folder)
    weights = folder / "model.safetensors"
    save_file(load_file(str(weights)), str(weights))  # as saved before: no metadata
    assert load_checkpoint(folder).meta.extra["s2_bands"][1] == "B2"  # still readable
    meta = _edit_meta(folder, _swap_two_bands)
    with pytest.raises(InputDataError, match="is not the L1C band order") as refused:
        load_checkpoint(folder)
    assert str(refused.value).startswith(f"{meta}: ") and "\n" not in str(refused.value)


def test_a_logged_model_with_an_edited_meta_json_is_refused_naming_its_uri(
    tmp_path: Path, scene: tuple[Path, Path], checkpoint: Path, capsys
) -> None:
    from mlflow.tracking import MlflowClient

    from tdpcr.tracking import init_store

    uri = init_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    edited = tmp_path / "edited"
    shutil.copytree(checkpoint, edited)
    _edit_meta(edited, _reverse_bands)
    client.log_artifacts(run_id, str(edited), "tdpcr-full/artifacts/checkpoint")
    model_uri = f"runs:/{run_id}/tdpcr-full"
    capsys.readouterr()
    code = main([*predict_args(scene, model_uri, tmp_path / "pred"), "--tracking-uri", uri])
    line = one_line_refusal(
        code, capsys.readouterr().err, f"{model_uri} checkpoint/meta.json: edited since training"
    )
    assert "tdpcr-fetch-" not in line  # not the temporary download folder, gone by now
    assert not (tmp_path / "pred").exists()


# ---------------------------------------------------------------------------------------------
# Values from configs and meta.json never change an MLflow search


def test_a_config_hash_with_a_quote_is_refused_not_searched(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tdpcr.tracking import find_variant_run, init_store

    uri = init_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    MlflowClient(tracking_uri=uri).create_experiment("tiny")
    forged = "0' or tags.`tdpcr.variant` = 'tdpcr-cr"  # as a hand-edited meta.json could hold
    with pytest.raises(InputDataError, match="tdpcr.config_hash") as refused:
        find_variant_run(uri, "tiny", "tdpcr-full", forged)
    assert repr(forged) in str(refused.value) and "\n" not in str(refused.value)


def test_recording_to_an_unanswered_tracking_server_is_one_line(tmp_path: Path) -> None:
    uri = closed_port()
    config = _tracking_config(tmp_path, uri)
    # The user's own bounds (no retries) are kept; tdpcr's own would retry for half a minute.
    code, err, _ = run_tdpcr(
        "tracking-init", "--config", config, "--out", tmp_path / "t.json",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, timeout=3 * SERVER_BOUND_S,
    )  # fmt: skip
    one_line_refusal(code, err, f"tracking server {uri} did not answer", "MAX_RETRIES=0")
    assert not (tmp_path / "t.json").exists()
