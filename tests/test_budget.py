"""The training-budget study's tables, claims and figures from hand-made evaluations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tdpcr.cli import main
from tdpcr.evaluation.budget import CLAIM_COLUMNS, FIRST_CHANGE, mark_verdict_changes
from tdpcr.evaluation.claims import CLAIMS, PGF_CLAIMS, claim_methods
from tdpcr.evaluation.tables import TABLES
from tests.test_tables_claims import fake_evaluation, read_csv, write_evaluations


def test_the_first_budget_whose_verdict_differs_is_marked_on_every_row_of_the_claim() -> None:
    verdicts = {
        "steady": ["holds", "holds", "holds"],
        "late": ["holds", "holds", "inconclusive"],
        "back-and-forth": ["inconclusive", "holds", "inconclusive"],
    }
    rows = [
        {"claim": claim, "budget": str(k), "verdict": verdict}
        for claim, found in verdicts.items()
        for k, verdict in reversed(list(zip((1, 3, 9), found, strict=True)))  # any order
    ]
    marked = mark_verdict_changes(rows)
    first = {r["claim"]: r[FIRST_CHANGE] for r in marked}
    assert first == {"steady": None, "late": 9, "back-and-forth": 3}
    assert all(r[FIRST_CHANGE] == first[r["claim"]] for r in marked)


def _budget_evals(tmp_path: Path) -> list[str]:
    """Evaluations at budgets x1 and x9, equal but for FPFT: better than Full at x1, worse
    at x9, so only the claim "FPFT costs PSNR" changes its verdict (to holds at x9)."""
    quality = {name: 0.0 for name in claim_methods()}
    quality.update({"tdpcr-full": 1.0, "tdpcr-joint": 1.0, "tdpcr-fpft": 2.0})
    paths = write_evaluations(tmp_path / "x1", quality)
    (tmp_path / "x9").mkdir()
    for path in paths:  # the same evaluations (seeds included), then FPFT's replaced
        shutil.copyfile(path, tmp_path / "x9" / path.name)
    fpft = fake_evaluation("tdpcr-fpft", 0.0, seed=paths.index(tmp_path / "x1" / "tdpcr-fpft.json"))
    (tmp_path / "x9" / "tdpcr-fpft.json").write_text(json.dumps(fpft))
    return [
        ",".join(str(folder / p.name) for p in paths)
        for folder in (tmp_path / "x1", tmp_path / "x9")
    ]


def test_budget_tables_and_claims_stack_every_budget(tmp_path: Path) -> None:
    groups = _budget_evals(tmp_path)
    budget = ["--budget-evals", *groups, "--multipliers", "1", "9", "--phase1", "4"]
    budget += ["--phase2", "2", "--resamples", "200"]
    out = tmp_path / "table3.csv"
    assert main(["budget-table", "table3", *budget, "--out", str(out)]) == 0
    rows = read_csv(out)
    assert len(rows) == 2 * len(TABLES["table3"].rows)
    assert [r["budget"] for r in rows] == ["1"] * 6 + ["9"] * 6
    assert {(r["phase1_steps"], r["phase2_steps"]) for r in rows[6:]} == {("36", "18")}
    assert rows[0]["psnr_ci_low"] and rows[0]["paper_psnr"]

    claims, figure = tmp_path / "claims.csv", tmp_path / "claims.png"
    curves = tmp_path / "learning_curves.png"
    args = ["budget-claims", *budget, "--out", str(claims), "--figure", str(figure)]
    assert main([*args, "--curves", str(curves)]) == 0
    rows = read_csv(claims)
    assert list(rows[0]) == list(CLAIM_COLUMNS)
    keys = [c.key for c in (*CLAIMS, *PGF_CLAIMS)]
    assert [r["claim"] for r in rows] == [key for key in keys for _ in (1, 9)]
    fpft = [r for r in rows if r["claim"] == "fpft-costs-psnr"]
    assert [r["verdict"] for r in fpft] == ["contradicted", "holds"]
    assert {r[FIRST_CHANGE] for r in fpft} == {"9"}
    assert {r[FIRST_CHANGE] for r in rows if r["claim"] != "fpft-costs-psnr"} == {""}
    assert figure.stat().st_size > 10_000 and curves.stat().st_size > 10_000


def test_evaluations_trained_for_another_budget_are_refused(tmp_path: Path, capsys) -> None:
    # Refused while the evaluations are read: one per budget is enough.
    groups = []
    for k in (1, 9):
        evaluation = fake_evaluation("tdpcr-cr", 0.0)
        evaluation["models"] = {"tdpcr-cr": {"train_steps": 4}}  # trained for N = 4 at x1, x9
        path = tmp_path / f"x{k}.json"
        path.write_text(json.dumps(evaluation))
        groups.append(str(path))
    out = tmp_path / "table1.csv"
    args = ["budget-table", "table3", "--budget-evals", *groups, "--multipliers", "1", "9"]
    assert main([*args, "--phase1", "4", "--phase2", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "tdpcr-cr at budget x9: tdpcr-cr was trained for 4 steps, the budget gives 36" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main([*args[:-1], "--phase1", "4", "--phase2", "2", "--out", str(out)]) == 2
    assert "2 groups of evaluations for 1 budgets" in capsys.readouterr().err
