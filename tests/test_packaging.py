"""The workflow as the Snakemake catalogue lists it, and environments that install as promised.

Conda is not installed where these tests run, so the conda environment is checked the way conda
would use it: its pip list is written to a ``condaenv.*.requirements.txt`` beside a copy of the
env file in ``.snakemake/conda/`` (where Snakemake puts it) and handed to
``pip install -U -r <file> --exists-action=b`` from that folder (conda's pip installer), with
``--dry-run`` added; the post-deploy script runs with ``PIP_DRY_RUN``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO

SNAKEFILES = [REPO / "Snakefile", REPO / "workflow" / "Snakefile"]
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def _requirement_lines(path: Path) -> list[str]:
    """Requirement lines of a pip requirements file (comments, blanks and options dropped)."""
    lines = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def _pins(lines: list[str]) -> dict[str, str]:
    """``name -> version`` of ``name==version`` lines."""
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        pins[requirement.name.lower()] = spec.version
    return pins


def _conda_env() -> dict:
    return yaml.safe_load((REPO / "envs" / "tdpcr.yaml").read_text())


def _conda_pip_list() -> list[str]:
    (pip,) = [d["pip"] for d in _conda_env()["dependencies"] if isinstance(d, dict)]
    return [str(item) for item in pip]


# --------------------------------------------------------------------------- the catalogue
def test_catalogue_layout_for_standardized_usage() -> None:
    """The checks of the catalogue's generator (scripts/generate-catalog.py), in order."""
    readme = (REPO / "README.md").read_text().lower()
    assert "snakemake" in readme and "workflow" in readme
    assert (REPO / "workflow").is_dir() and (REPO / "workflow" / "Snakefile").is_file()
    assert RULE_FILES, "workflow/rules must hold .smk files"
    assert (REPO / "config" / "README.md").is_file()
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True


def test_root_snakefile_includes_the_catalogue_entry() -> None:
    assert 'include: "workflow/Snakefile"' in (REPO / "Snakefile").read_text()


def test_snakefmt_check_is_clean() -> None:
    """snakefmt is pinned in the test requirements: missing is a failure, not a skip."""
    snakefmt = shutil.which("snakefmt")
    assert snakefmt is not None, "snakefmt not installed (envs/requirements-test.txt pins it)"
    files = [str(f) for f in [*SNAKEFILES, *RULE_FILES]]
    result = subprocess.run([snakefmt, "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_licence_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the tdpcr authors" in text


# --------------------------------------------------------------------------- conda
def test_conda_env_pip_list_is_self_contained_and_pins_requirements_txt() -> None:
    pip_list = _conda_pip_list()
    # pip refuses options like --no-deps in a requirements file; -r / -e paths would resolve
    # in .snakemake/conda/, where Snakemake copies the env file.
    assert not [line for line in pip_list if line.startswith("-")], pip_list
    assert not [line for line in pip_list if "/" in line or line.startswith(".")], pip_list
    required = _pins(_requirement_lines(REPO / "envs" / "requirements.txt"))
    assert _pins([line.split(" #")[0] for line in pip_list]) == required
    names = {d.split("=")[0] for d in _conda_env()["dependencies"] if isinstance(d, str)}
    assert names == {"python", "pip"}  # everything else from the same pins as pip users


def test_rules_name_the_conda_env_and_it_has_a_post_deploy_script() -> None:
    for path in RULE_FILES:
        text = path.read_text()
        # Every rule that runs a command (aggregation rules run none) names the env.
        assert text.count('"../../envs/tdpcr.yaml"') == text.count("shell:"), path.name
    script = REPO / "envs" / "tdpcr.post-deploy.sh"  # Snakemake's name for the env's script
    assert script.read_text().startswith("#!/usr/bin/env bash")


def _pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def test_conda_env_pip_part_installs_as_conda_hands_it_to_pip(tmp_path: Path) -> None:
    """conda's pip installer (conda/env/installers/pip.py): the list joined by newlines into
    ``condaenv.<random>.requirements.txt`` in the env file's folder, then
    ``pip install -U -r <file> --exists-action=b`` run in that folder."""
    workdir = tmp_path / ".snakemake" / "conda"
    workdir.mkdir(parents=True)
    shutil.copy(REPO / "envs" / "tdpcr.yaml", workdir / "0123abcd_.yaml")
    requirements = workdir / "condaenv.x1y2z3.requirements.txt"
    requirements.write_text("\n".join(_conda_pip_list()))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-U", "-r", requirements.name]
        + ["--exists-action=b", "--dry-run"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=_pip_env(),
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # This environment already is the pinned one: nothing may need replacing.
    assert "Would install" not in result.stdout, result.stdout[-3000:]


def test_post_deploy_script_installs_the_checkout_without_dependencies(tmp_path: Path) -> None:
    # PIP_DRY_RUN also reaches the isolated build environment, which then stays empty: build
    # the editable's metadata with this environment's setuptools instead (pip's inverted
    # spelling: PIP_NO_BUILD_ISOLATION=0 turns isolation off).
    env = {**_pip_env(), "TDPCR_SOURCE": str(REPO), "PIP_DRY_RUN": "1"}
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    script = REPO / "envs" / "tdpcr.post-deploy.sh"
    result = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    would = re.search(r"Would install (.*)", result.stdout)
    assert would, result.stdout[-3000:]
    installed = {name.rsplit("-", 1)[0] for name in would.group(1).split()}
    # tdpcr, and satellite-cloud-generator where it is not installed yet; nothing they declare.
    assert "tdpcr" in installed and installed <= {"satellite-cloud-generator", "tdpcr"}
    missing = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env={**env, "TDPCR_SOURCE": ""}
    )
    assert missing.returncode != 0 and "TDPCR_SOURCE" in missing.stderr


def test_the_workflow_tells_the_post_deploy_script_its_checkout() -> None:
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "os.environ.update(TDPCR_SOURCE=str(Path(workflow.current_basedir).parents[1]))" in text


# --------------------------------------------------------------------------- torch per platform
#: torchvision release built against each torch release (PyTorch's compatibility table).
TORCHVISION_FOR_TORCH = {"2.11": "0.26", "2.12": "0.27", "2.13": "0.28", "2.14": "0.29"}


def test_cuda_requirements_match_the_cpu_pin() -> None:
    cpu = _pins(_requirement_lines(REPO / "envs" / "requirements.txt"))
    text = (REPO / "envs" / "requirements-cuda.txt").read_text()
    cuda = {Requirement(r).name.lower(): Requirement(r) for r in _requirement_lines(
        REPO / "envs" / "requirements-cuda.txt"
    )}  # fmt: skip
    torch = str(next(iter(cuda["torch"].specifier)).version)
    public, local = torch.split("+")
    assert public == cpu["torch"], "CUDA and CPU installs must be the same torch release"
    index = re.search(r"^--extra-index-url https://download\.pytorch\.org/whl/(cu\d+)$", text, re.M)
    assert index and local == index.group(1), "the local label names the index it comes from"
    vision = str(next(iter(cuda["torchvision"].specifier)).version)
    assert vision.split("+")[1] == local
    assert vision.rsplit(".", 1)[0] == TORCHVISION_FOR_TORCH[public.rsplit(".", 1)[0]]
    assert "nvidia-ml-py" in cuda  # GPU system metrics (tracking.system_metrics)
    assert all(len(r.specifier) == 1 and "==" in str(r.specifier) for r in cuda.values())


def test_nothing_else_pins_a_torchvision_or_another_torch() -> None:
    for name in ("requirements.txt", "requirements-test.txt", "requirements-nodeps.txt"):
        names = {Requirement(r).name.lower() for r in _requirement_lines(REPO / "envs" / name)}
        assert "torchvision" not in names, name
    assert _pins([line.split(" #")[0] for line in _conda_pip_list()])["torch"] == "2.13.0"


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-cuda.txt"])
def test_requirement_files_use_only_options_pip_accepts_in_files(name: str) -> None:
    options = [
        line.split()[0]
        for line in (REPO / "envs" / name).read_text().splitlines()
        if line.startswith("-")
    ]
    assert set(options) <= {"--extra-index-url", "--index-url", "--find-links"}, options
