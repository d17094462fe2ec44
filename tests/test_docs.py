"""The README's set-up commands, CI, lint and the workflow's own checks stay consistent."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_setup_commands() -> None:
    commands = readme_setup_commands()
    assert len(commands) == 2
    install_and_run, install_and_test = commands
    assert install_and_run.endswith("snakemake --cores 8 all")
    assert install_and_test.endswith("pytest")
    assert "torch" not in install_and_run  # torch comes pinned from envs/requirements.txt


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert readme_setup_commands()[1] in ci.splitlines()


def test_requirements_pin_every_package_and_torch() -> None:
    lines = [
        line.strip()
        for name in ("requirements.txt", "requirements-test.txt")
        for line in (REPO / "envs" / name).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "torch==2.13.0" in lines
    assert all("==" in line for line in lines), [x for x in lines if "==" not in x]


@pytest.mark.parametrize("check", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_clean(check: list[str]) -> None:
    """ruff is pinned in the test requirements: a missing ruff is a failure, not a skip."""
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff not installed (envs/requirements.txt pins it)"
    result = subprocess.run([ruff, *check, str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_snakemake_lint_reports_good_condition() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert "good condition" in result.stdout + result.stderr, result.stdout[-3000:]


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "tiny.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    from tdpcr.core.config import load_config

    config = load_config(REPO / "config" / name)
    if name == "paper.yaml":
        assert config["models"]["tdpcr"]["width"] == 32
        assert config["train"]["crop"] == 128 and config["train"]["lambda_ssim"] == 0.1


def test_config_readme_explains_every_top_level_and_train_key() -> None:
    import yaml

    text = (REPO / "config" / "README.md").read_text()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section in ("synthetic", "tiling", "train", "tracking", "bench"):
        for key in config[section]:
            assert f"`{section}.{key}" in text, f"{section}.{key} undocumented"


def test_readme_figures_exist() -> None:
    """Every image the README shows is in the repository."""
    readme = (REPO / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images
    assert [i for i in images if not (REPO / i).is_file()] == []


def test_readme_results_are_the_snapshot_csvs() -> None:
    """The README's result tables are what `tdpcr readme-results` renders from the CSVs of the
    run kept in docs/results/, so no number in them is typed by hand."""
    from tdpcr.evaluation import report

    readme = (REPO / "README.md").read_text()
    assert report.BEGIN in readme and report.END in readme
    assert report.generated_block(readme) == report.render(REPO / "docs" / "results")


def test_readme_results_command_rewrites_only_the_block(tmp_path: Path) -> None:
    from tdpcr.cli import main
    from tdpcr.evaluation import report

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{report.BEGIN}\nstale\n{report.END}\n\nafter\n")
    snapshot = tmp_path / "snapshot"
    args = ["readme-results", "--results", str(REPO / "docs" / "results"), "--readme"]
    assert main([*args, str(readme), "--snapshot", str(snapshot)]) == 0
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# title\n\nbefore\n") and "after" in text
    assert report.generated_block(text) == report.render(REPO / "docs" / "results")
    copied = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*.csv"))
    assert copied == sorted(report.rendered_files(REPO / "docs" / "results"))
    assert set(report.SOURCES) <= set(copied)


def test_readme_results_render_the_studies_when_present(tmp_path: Path) -> None:
    """The sweep and the extra seeds are rendered once their CSVs exist, and only then."""
    from tdpcr.evaluation import report

    results = tmp_path / "results"
    for name in report.SOURCES:
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "docs" / "results" / name, results / name)
    assert report.render_studies(results) == []
    (results / "sweeps").mkdir()
    (results / report.SWEEP).write_text(
        "point,train.finetune_lr.prompt,train.lr,train.lambda_seg,train.seed,psnr,miou\n"
        "plr0.0001_seg1_s0,0.0001,0.001,1.0,0,35.0,0.30\n"
        "plr0.001_seg1_s0,0.001,0.001,1.0,0,34.0,0.40\n"
    )
    (results / "seeds").mkdir()
    for name in report.SOURCES[:3]:
        shutil.copyfile(results / name, results / "seeds" / name)
    shutil.copyfile(results / "claims.csv", results / "seeds" / "claims_seed1.csv")
    blocks = report.render_studies(results)
    assert len(blocks) == 5 and "phase2.csv" in blocks[0]
    assert "0.740 (best)" in blocks[0] and "0.650 |" in blocks[0]  # 0.40 + 0.01 x 34
    assert "seed 0 | seed 1" in blocks[-1]
    assert report.rendered_files(results)[-1] == "seeds/claims_seed1.csv"
