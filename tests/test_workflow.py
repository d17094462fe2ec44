"""The Snakemake workflow end to end on a tiny config (synthetic scenes -> tile store)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tdpcr.data.store import open_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copy(REPO / "config" / "tiny.yaml", workdir / "config.yaml")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
            "all",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_all_builds_the_default_tile_store(tiny_run: Path) -> None:
    ds = open_store(tiny_run / "results" / "tiles" / "synthetic.zarr")
    assert ds.sizes["patch"] == 5 * 4
    assert ds.attrs["source_layout"] == "synthetic"
    assert set(ds.data_vars) >= {"s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask"}
    assert (ds["split"].values == "train").sum() >= 10


def test_every_variant_trained_and_tracked(tiny_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tdpcr.training.variants import VARIANTS

    models = tiny_run / "results" / "models"
    assert all((models / name / "model.safetensors").exists() for name in VARIANTS)
    assert "device: cpu" in (tiny_run / "results" / "logs" / "train_tdpcr-full.log").read_text()
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_run / 'results' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert set(VARIANTS) <= {r.info.run_name for r in runs}
    assert (tiny_run / "results" / "complexity.csv").exists()


def test_every_rule_logged_and_benchmarked(tiny_run: Path) -> None:
    logs = tiny_run / "results" / "logs"
    assert (logs / "synthetic_scenes.log").exists() and (logs / "tile_synthetic.log").exists()
    assert (tiny_run / "results" / "benchmarks" / "tile_synthetic.tsv").exists()
    assert '"patches": 20' in (logs / "tile_synthetic.log").read_text()


def test_rerun_has_nothing_to_do(tiny_run: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tiny_run),
            "--configfile",
            str(tiny_run / "config.yaml"),
            "--cores",
            "2",
            "-n",
            "all",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
