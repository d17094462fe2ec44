"""Steps are counted per kind of training: N for a complete single-task training, N + M for a
multi-task model, in every shipped config and in what the tables and claims report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdpcr.core.config import shipped_config
from tdpcr.evaluation.claims import CLAIMS, evaluate_claim
from tdpcr.evaluation.methods import METHODS
from tdpcr.evaluation.tables import build_table, read_complexity
from tdpcr.training.variants import VARIANTS, step_budget, steps_from_scratch
from tests.test_tables_claims import fake_complexity, fake_evaluation

#: What a reader of the paper counts as a multi-task model: one network trained with both the
#: reconstruction and the segmentation loss. Everything else is a single-task training.
MULTI_TASK = {name for name, v in VARIANTS.items() if v.reconstruction and v.segmentation}
#: Teachers are part of their student's training (CloudSeg): their steps count there.
TEACHERS = {v.teacher for v in VARIANTS.values() if v.teacher}


def test_the_rule_sees_every_kind_of_training() -> None:
    single = set(VARIANTS) - MULTI_TASK - TEACHERS
    assert {"tdpcr-cr", "tdpcr-global-cr", "tdpcr-local-cr", "dsen2cr"} <= single
    assert {"glfcr", "hpncr", "emrdm"} <= single and "cloudseg" in MULTI_TASK
    assert {"segformer-clear", "segformer-cloudy", "segformer-sar"} <= single
    assert {"tdpcr-full", "tdpcr-global-full", "tdpcr-local-full"} <= MULTI_TASK
    assert {"tdpcr-joint", "tdpcr-fpft"} <= MULTI_TASK


@pytest.mark.parametrize("name", ["default", "tiny", "paper"])
def test_every_variant_of_a_shipped_config_follows_the_step_rule(name: str) -> None:
    steps = shipped_config(name)["train"]["steps"]
    n, m = int(steps["phase1"]), int(steps["phase2"])
    for variant in VARIANTS.values():
        if variant.name in TEACHERS:  # M steps, the student N: N + M for the pair
            assert steps_from_scratch(variant, steps) == m, variant.name
            continue
        expected = n + m if variant.name in MULTI_TASK else n
        assert steps_from_scratch(variant, steps) == expected, variant.name
        # A phase-2 model's own run adds M to the completed phase 1 it starts from.
        if variant.init_from:
            assert step_budget(variant, steps) == m
            assert steps_from_scratch(VARIANTS[variant.init_from], steps) == n


def test_the_default_keeps_the_lengths_of_dsen2cr_and_phase_2() -> None:
    steps = shipped_config("default")["train"]["steps"]
    assert steps_from_scratch(VARIANTS["dsen2cr"], steps) == 500
    assert step_budget(VARIANTS["tdpcr-full"], steps) == 300


def _with_steps(name: str, quality: float, steps: dict) -> dict:
    evaluation = fake_evaluation(name, quality)
    counts = [steps_from_scratch(VARIANTS[v], steps) for v in METHODS[name].variants]
    evaluation["train_steps"] = ";".join(map(str, counts))
    return evaluation


def test_tables_and_claims_report_the_steps_of_each_side(tmp_path: Path) -> None:
    steps = {"phase1": 500, "phase2": 300}
    evaluations = {name: _with_steps(name, 0.1, steps) for name in METHODS}
    complexity = read_complexity(fake_complexity(tmp_path / "complexity.csv"))
    rows = {r["method"]: r for r in build_table("table1", evaluations, complexity)}
    assert rows["tdpcr-cr"]["train_steps"] == rows["dsen2cr"]["train_steps"] == "500"
    assert rows["tdpcr-full"]["train_steps"] == "800"
    assert rows["cloudy-input"]["train_steps"] == ""
    stage = {r["method"]: r for r in build_table("table2", evaluations)}
    assert stage["dsen2cr+segformer-clear"]["train_steps"] == "500;500"
    claim = next(c for c in CLAIMS if c.key == "cr-only-beats-dsen2cr-psnr")
    row = evaluate_claim(claim, evaluations)
    assert (row["better_steps"], row["worse_steps"]) == ("500", "500")
    claim = next(c for c in CLAIMS if c.key == "peft-beats-joint-miou")
    row = evaluate_claim(claim, evaluations)
    assert (row["better_steps"], row["worse_steps"]) == ("800", "800")
