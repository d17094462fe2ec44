"""Shared fixtures: small fake scene folders and the tile stores built from them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tdpcr.data.sources import make_source
from tdpcr.data.tiling import tile_source
from tests.fakes import make_scenes

REPO = Path(__file__).resolve().parents[1]
#: ../shared/realdata next to the repository (absent in a user's clone: tests skip).
REALDATA = REPO.parent / "shared" / "realdata"

# Subprocesses (the `tdpcr` console script inside workflow rules, `python -m tdpcr`) must run
# this checkout's package, not whichever checkout an editable install points at.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """This repository's workflow run in ``workdir`` with ``workdir/config.yaml``, plus args."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 80x100 scenes -> 3 x 4 patches of 32x32 each (120 patches), cloud cover 0..1."""
    return make_scenes(tmp_path_factory.mktemp("scenes"), n_scenes=10, height=80, width=100)


@pytest.fixture(scope="session")
def scene_store(scenes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tile store of ``scenes_root`` with 32x32 patches, shards of 4."""
    out = tmp_path_factory.mktemp("stores") / "scenes.zarr"
    source = make_source("scenes", scenes_root, patch_size=32)
    tile_source(source, out, shard_patches=4, split_seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run_timed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """`snakemake --cores 2 all` on config/tiny.yaml, once per test session, and its wall
    time: the workflow tests read its outputs, the SLURM tests compare their time with it."""
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copy(REPO / "config" / "tiny.yaml", workdir / "config.yaml")
    start = time.perf_counter()
    result = subprocess.run(
        snakemake_command(workdir, "--cores", "2", "all"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, time.perf_counter() - start


@pytest.fixture(scope="session")
def tiny_run(tiny_run_timed: tuple[Path, float]) -> Path:
    """The working directory of the tiny workflow run (:func:`tiny_run_timed`)."""
    return tiny_run_timed[0]
