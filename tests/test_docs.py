"""The README and the documentation site stay consistent with the code, CI and each other.

The README's set-up commands and CI; lint and the workflow's own checks; the site builds in
strict mode; its generated references have a description for every schema key and option;
the result tables of the README and the site are the snapshot CSVs'.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
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


def test_every_schema_key_has_a_description() -> None:
    """The schema is the configuration reference's one source: a key without a description
    would be a blank row there and in config/README.md."""
    from scripts.docs_reference import undocumented_schema_keys

    assert undocumented_schema_keys() == []


def test_every_command_line_option_has_a_description() -> None:
    """The command-line reference is built from the parsers' help texts."""
    from scripts.docs_reference import parsers, undocumented_cli_options

    names = [name for name, _ in parsers()]
    assert {"tdpcr predict", "tdpcr bench predict-tile", "python -m tdpcr.benchmarks.gpu"} <= set(
        names
    )
    assert undocumented_cli_options() == []


def test_a_missing_description_is_caught() -> None:
    import argparse

    from scripts.docs_reference import undocumented_cli_options, undocumented_schema_keys

    entry = {"type": "object", "properties": {"b": {"type": "integer"}}}
    schema = {"properties": {"a": {**entry, "description": "a section"}, "m": {
        "type": "object", "description": "a map", "additionalProperties": entry}}}  # fmt: skip
    assert undocumented_schema_keys(schema) == ["a.b", "m.<name>.b"]
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--said", help="something")
    parser.add_argument("--silent")
    parser.add_argument("--hidden", help=argparse.SUPPRESS)
    assert undocumented_cli_options([("tool", parser)]) == ["tool --silent"]


def test_config_readme_is_generated_from_the_schema() -> None:
    """config/README.md (what the workflow catalogue shows) holds the table the schema gives;
    `python scripts/docs_reference.py` rewrites it."""
    import yaml

    from scripts.docs_reference import CONFIG_README, render_config_readme

    text = CONFIG_README.read_text()
    assert text == render_config_readme(text), "stale: run python scripts/docs_reference.py"
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section in ("synthetic", "tiling", "train", "tracking", "bench"):
        for key in config[section]:
            assert f"`{section}.{key}" in text, f"{section}.{key} undocumented"


def _relative_targets(markdown: str) -> list[str]:
    """Targets of the relative links and images of a Markdown text, anchors cut off."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", markdown)
    return [
        t.split("#", 1)[0]
        for t in targets
        if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")
    ]


def test_readme_links_and_images_exist() -> None:
    """Every relative link and image of the README points at a file of the repository."""
    readme = (REPO / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images
    targets = _relative_targets(readme)
    assert len(targets) > len(images)
    assert [t for t in targets if not (REPO / t).exists()] == []


def test_the_link_check_sees_broken_links() -> None:
    text = "[a](docs/nope.md) ![b](docs/figures/none.png) [c](https://x.org/y) [d](#top)"
    assert _relative_targets(text) == ["docs/nope.md", "docs/figures/none.png"]


def test_readme_is_short_and_links_every_documentation_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md") if p.name != "index.md")
    assert [p for p in pages if f"(docs/{p})" not in readme] == []


def test_documentation_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken internal link or anchor, a missing image, a page left
    out of the navigation or a reference to a moved symbol fails the build. mkdocs is pinned
    in the test requirements: missing is a failure, not a skip."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a warning of ours
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    site = tmp_path / "site"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, env=env,
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for page in ("getting-started", "evaluation", "reference/configuration", "reference/cli"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "reference" / "api" / "tdpcr.data.synthetic" / "index.html").read_text()
    assert "write_synthetic_scenes" in api
    print(f"documentation site built in {seconds:.1f} s")


def test_result_tables_are_the_snapshot_csvs() -> None:
    """The README's headline table and the documentation's full tables are what `tdpcr
    readme-results` renders from the CSVs of the run kept in docs/results/, so no number in
    them is typed by hand."""
    from tdpcr.evaluation import report

    snapshot = REPO / "docs" / "results"
    readme = (REPO / "README.md").read_text()
    begin, end = report.HEADLINE_BEGIN, report.HEADLINE_END
    assert report.generated_block(readme, begin, end) == report.render_headline(snapshot)
    page = (REPO / "docs" / "evaluation.md").read_text()
    assert report.generated_block(page) == report.render(snapshot)


def test_readme_results_command_rewrites_only_the_blocks(tmp_path: Path) -> None:
    from tdpcr.cli import main
    from tdpcr.evaluation import report

    readme = tmp_path / "README.md"
    begin, end = report.HEADLINE_BEGIN, report.HEADLINE_END
    readme.write_text(f"# title\n\nbefore\n\n{begin}\nstale\n{end}\n\nafter\n")
    page = tmp_path / "evaluation.md"
    page.write_text(f"# results\n\n{report.BEGIN}\nstale\n{report.END}\n\nmore\n")
    snapshot = tmp_path / "snapshot"
    args = ["readme-results", "--results", str(REPO / "docs" / "results"), "--readme"]
    args += [str(readme), "--page", str(page), "--snapshot", str(snapshot)]
    assert main(args) == 0
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# title\n\nbefore\n") and "after" in text
    assert report.generated_block(text, begin, end) == report.render_headline(
        REPO / "docs" / "results"
    )
    text = page.read_text()
    assert "stale" not in text and text.startswith("# results\n") and "more" in text
    assert report.generated_block(text) == report.render(REPO / "docs" / "results")
    copied = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*.csv"))
    assert copied == sorted(report.rendered_files(REPO / "docs" / "results"))
    assert set(report.SOURCES) <= set(copied)


def test_readme_results_render_the_studies_when_present(tmp_path: Path) -> None:
    """The sweep, the extra seeds and the training budgets are rendered once their CSVs
    exist, and only then."""
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
    assert report.snapshot_files(results) == report.rendered_files(results)

    # The budget study: every claim at x1 and x9, the first claim's verdict changing at x9.
    from tdpcr.core.io import write_csv_atomic
    from tdpcr.evaluation.budget import CLAIM_COLUMNS, FIRST_CHANGE, mark_verdict_changes

    rows = []
    for k in (1, 9):
        for i, row in enumerate(report._rows(results, "claims.csv")):
            other = "holds" if row["verdict"] == "inconclusive" else "inconclusive"
            verdict = other if (k, i) == (9, 0) else row["verdict"]
            steps = {"phase1_steps": 500 * k, "phase2_steps": 300 * k}
            rows.append({**row, "budget": k, **steps, "verdict": verdict})
    write_csv_atomic(results / report.BUDGET_CLAIMS, mark_verdict_changes(rows), CLAIM_COLUMNS)
    assert rows[0][FIRST_CHANGE] == 9
    (results / report.BUDGET_FIGURES[0]).write_bytes(b"png")
    blocks = report.render_studies(results)
    assert len(blocks) == 6 and report.BUDGET_TITLE in blocks[-1]
    assert "x1 (N 500, M 300) | x9 (N 4500, M 2700) | verdict changes at" in blocks[-1]
    lines = blocks[-1].splitlines()
    first, second = (
        next(line for line in lines if line.startswith(f"| {r['text']}")) for r in rows[:2]
    )
    assert first.endswith(f"{rows[-len(rows) // 2]['verdict']} | x9 |")
    assert second.endswith(" | never |")
    assert "](results/budget/claims.png)" in blocks[-1] and "learning_curves" not in blocks[-1]
    assert report.rendered_files(results)[-1] == report.BUDGET_CLAIMS
    assert report.snapshot_files(results)[-1] == report.BUDGET_FIGURES[0]
    snapshot = tmp_path / "snapshot"
    report.update_readme(results, None, snapshot)
    assert (snapshot / report.BUDGET_FIGURES[0]).read_bytes() == b"png"


def test_tile_benchmark_tables_are_the_committed_json() -> None:
    """The Benchmarks page's whole-tile tables are rendered from the committed JSON (`tdpcr
    bench tile-table`), so no figure in them is typed by hand."""
    import json

    from tdpcr.benchmarks import tile_report

    result = json.loads(
        (REPO / "docs" / "results" / "bench" / "predict_tile_quiet.json").read_text()
    )
    speed, guard = tile_report.page_blocks(REPO / "docs" / "benchmarks.md")
    assert speed == tile_report.render_tile_table(result)
    assert guard == tile_report.render_guard_table(result)
    assert "`product`" in speed and "`compile`" in guard
