"""The training-budget study: do the tables and the claims' verdicts survive more training?

Every table and claim of the default run comes from one budget: N = ``train.steps.phase1``
steps for a single-task training, M = ``train.steps.phase2`` more for a multi-task model
(:func:`tdpcr.training.variants.step_budget`). ``snakemake --cores 8 budget`` trains every
variant again at ``k`` times that budget for each multiplier ``k`` of ``budget.multipliers``
(N and M scaled together, validation every ``k x train.val_every`` steps so the best-checkpoint
rule sees as many validations), with the same seed, batch, crops, data and test patches. Each
budget is its own run from scratch: the learning-rate schedule (5 % linear warm-up, then cosine
decay to 0 over the run's total steps) depends on the total, so a snapshot of a long run is not
a shorter run. The smallest budget, ``k = 1``, is the default run itself.

This module builds, from the evaluations at every budget:

* ``results/budget/table{1,2,3}.csv``: each table's rows at every budget (one block per
  budget), with :data:`BUDGET_COLUMNS` in front: ``budget`` (k) and the step counts N and M;
* ``results/budget/claims.csv``: every claim at every budget (the claims' own columns), with
  ``first_change_budget``: the smallest budget whose verdict differs from the smallest
  budget's, on every row of that claim (empty if the verdict never changes);
* the figures of :func:`tdpcr.evaluation.figures.figure_budget_claims` and
  :func:`~tdpcr.evaluation.figures.figure_learning_curves`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tdpcr.core.errors import InputDataError
from tdpcr.core.io import write_csv_atomic
from tdpcr.evaluation import claims as claims_module
from tdpcr.evaluation.methods import METHODS
from tdpcr.evaluation.tables import (
    Uncertainty,
    build_table,
    read_complexity,
    read_evaluations,
    table_spec,
)
from tdpcr.training.variants import VARIANTS, steps_from_scratch

#: Columns in front of every row of the budget tables and claims.
BUDGET_COLUMNS: tuple[str, ...] = ("budget", "phase1_steps", "phase2_steps")
#: Column of the budget claims naming the first budget whose verdict differs from the smallest.
FIRST_CHANGE = "first_change_budget"


def _claim_columns() -> tuple[str, ...]:
    columns = list(claims_module.COLUMNS)
    columns.insert(columns.index("verdict") + 1, FIRST_CHANGE)
    return (*BUDGET_COLUMNS, *columns)


#: Columns of ``results/budget/claims.csv``.
CLAIM_COLUMNS: tuple[str, ...] = _claim_columns()


@dataclass(frozen=True)
class Budget:
    """One training budget: ``multiplier`` times the configured steps N (phase 1) and M."""

    multiplier: int
    phase1: int
    phase2: int

    @property
    def cells(self) -> dict[str, int]:
        """The :data:`BUDGET_COLUMNS` of this budget's rows."""
        return {"budget": self.multiplier, "phase1_steps": self.phase1, "phase2_steps": self.phase2}

    @property
    def steps(self) -> dict[str, int]:
        """This budget as a ``train.steps`` section."""
        return {"phase1": self.phase1, "phase2": self.phase2}


def budgets(multipliers: Sequence[int], phase1: int, phase2: int) -> list[Budget]:
    """The budgets of ``multipliers`` (ascending) for the configured steps N and M."""
    values = [int(k) for k in multipliers]
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise InputDataError(
            f"budget multipliers {values}: give distinct integers >= 1, the smallest first"
        )
    if values != sorted(values):
        raise InputDataError(f"budget multipliers {values}: give them in ascending order")
    return [Budget(k, k * int(phase1), k * int(phase2)) for k in values]


def check_budget(evaluations: Mapping[str, Mapping[str, Any]], budget: Budget) -> None:
    """Every model of the evaluations was trained for ``budget`` (InputDataError otherwise):
    a group of evaluations handed to the wrong multiplier would mislabel a whole table."""
    for method, evaluation in evaluations.items():
        for variant, info in evaluation.get("models", {}).items():
            recorded = info.get("train_steps")
            if recorded is None or variant not in VARIANTS:
                continue  # written before evaluations recorded it
            expected = steps_from_scratch(VARIANTS[variant], budget.steps)
            if int(recorded) != expected:
                raise InputDataError(
                    f"evaluation of {method} at budget x{budget.multiplier}: {variant} was "
                    f"trained for {recorded} steps, the budget gives {expected}"
                )


def read_budget_evaluations(
    groups: Sequence[Sequence[Path]], budget_list: Sequence[Budget]
) -> list[dict[str, dict[str, Any]]]:
    """The evaluations of each budget (one group of files per budget, in the same order)."""
    if len(groups) != len(budget_list):
        raise InputDataError(
            f"{len(groups)} groups of evaluations for {len(budget_list)} budgets; give one "
            "group per multiplier"
        )
    found = [read_evaluations(files) for files in groups]
    for evaluations, budget in zip(found, budget_list, strict=True):
        check_budget(evaluations, budget)
    return found


# --------------------------------------------------------------------------- tables
def budget_table_rows(
    table: str,
    per_budget: Sequence[Mapping[str, Mapping[str, Any]]],
    budget_list: Sequence[Budget],
    complexity: Mapping[tuple[str, str, str], Mapping[str, str]] | None = None,
    uncertainty: Uncertainty | None = None,
) -> list[dict[str, Any]]:
    """``table``'s rows at every budget (:func:`~tdpcr.evaluation.tables.build_table`), one
    block per budget, with the :data:`BUDGET_COLUMNS` in front."""
    rows: list[dict[str, Any]] = []
    for evaluations, budget in zip(per_budget, budget_list, strict=True):
        block = build_table(table, evaluations, complexity, uncertainty=uncertainty)
        rows += [{**budget.cells, **row} for row in block]
    return rows


def write_budget_table(
    table: str,
    groups: Sequence[Sequence[Path]],
    budget_list: Sequence[Budget],
    out: Path,
    complexity_file: Path | None = None,
    uncertainty: Uncertainty | None = None,
) -> list[dict[str, Any]]:
    """Read each budget's evaluations, build ``table`` at every budget, write it to ``out``."""
    per_budget = read_budget_evaluations(groups, budget_list)
    complexity = read_complexity(complexity_file) if complexity_file is not None else None
    rows = budget_table_rows(table, per_budget, budget_list, complexity, uncertainty)
    write_csv_atomic(out, rows, (*BUDGET_COLUMNS, *table_spec(table).columns))
    return rows


# --------------------------------------------------------------------------- claims
def mark_verdict_changes(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set :data:`FIRST_CHANGE` on every row: the smallest budget at which the claim's verdict
    differs from its verdict at the smallest budget, or None if it never does.

    Rows may come in any order and with numbers as strings (a CSV read back).
    """
    by_claim: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_claim.setdefault(row["claim"], []).append(row)
    for claim_rows in by_claim.values():
        ordered = sorted(claim_rows, key=lambda r: int(r["budget"]))
        first = ordered[0]["verdict"]
        changed = next((int(r["budget"]) for r in ordered if r["verdict"] != first), None)
        for row in claim_rows:
            row[FIRST_CHANGE] = changed
    return list(rows)


def budget_claim_rows(
    per_budget: Sequence[Mapping[str, Mapping[str, Any]]],
    budget_list: Sequence[Budget],
    uncertainty: Uncertainty | None = None,
) -> list[dict[str, Any]]:
    """Every claim at every budget, grouped by claim (the claims' order), budgets ascending."""
    rows: list[dict[str, Any]] = []
    for evaluations, budget in zip(per_budget, budget_list, strict=True):
        rows += [
            {**budget.cells, **row} for row in claims_module.claim_rows(evaluations, uncertainty)
        ]
    order = {row["claim"]: i for i, row in enumerate(rows[: len(rows) // len(budget_list)])}
    rows.sort(key=lambda r: (order[r["claim"]], int(r["budget"])))
    return mark_verdict_changes(rows)


def write_budget_claims(
    groups: Sequence[Sequence[Path]],
    budget_list: Sequence[Budget],
    out: Path,
    figure: Path,
    curves: Path,
    uncertainty: Uncertainty | None = None,
) -> list[dict[str, Any]]:
    """``claims.csv`` at every budget, its figure and the learning curves of every method."""
    from tdpcr.evaluation.figures import figure_budget_claims, figure_learning_curves

    per_budget = read_budget_evaluations(groups, budget_list)
    rows = budget_claim_rows(per_budget, budget_list, uncertainty)
    write_csv_atomic(out, rows, CLAIM_COLUMNS)
    figure_budget_claims(rows, figure)
    figure_learning_curves(learning_curves(per_budget, budget_list), curves)
    return rows


def learning_curves(
    per_budget: Sequence[Mapping[str, Mapping[str, Any]]], budget_list: Sequence[Budget]
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Test PSNR and mIoU per method against the budget's N: ``{metric: {method: [(N,
    value), ...]}}``, methods in :data:`~tdpcr.evaluation.methods.METHODS` order, each metric
    only for the methods that score it."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {"psnr": {}, "miou": {}}
    for metric, methods in curves.items():
        for name in METHODS:
            points = [
                (budget.phase1, float(evaluations[name]["metrics"][metric]))
                for evaluations, budget in zip(per_budget, budget_list, strict=True)
                if name in evaluations and evaluations[name]["metrics"].get(metric) is not None
            ]
            if points:
                methods[name] = points
    return curves
