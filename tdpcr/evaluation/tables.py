"""The paper's Tables I-III as CSV files, from evaluation JSONs and the complexity report.

Measured columns hold only our numbers (this run's evaluations and ``results/complexity.csv``);
columns prefixed ``paper_`` hold only numbers printed in the paper. The paper's PSNR / SSIM /
PA / mIoU values are not in the project notes (``docs/model.md`` gives only parameters and
FLOPs), so those reference columns are empty and every row says where to fill them from
(:data:`PAPER_NOTE`). Rows of methods we did not reimplement (GLF-CR, HPN-CR, EMRDM, CloudSeg)
carry only paper numbers and ``status = not reimplemented``.

Every row names the MLflow run(s) its numbers came from (``mlflow_run_id``, ``;``-separated
for multi-stage methods, empty when tracking is off).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tdpcr.core.errors import InputDataError
from tdpcr.core.io import write_csv_atomic
from tdpcr.core.paper import PAPER_COMPLEXITY, PAPER_REMARKS
from tdpcr.core.specs import CR_METRICS, SEG_METRICS

#: Note on every row while the paper's accuracy numbers are not filled in.
PAPER_NOTE = "paper values: fill from arXiv 2601.12052 Tables I-III"
MEASURED = "measured"
NOT_REIMPLEMENTED = "not reimplemented"

#: Method -> (model, variant) row of results/complexity.csv.
COMPLEXITY_ROWS: dict[str, tuple[str, str]] = {
    "dsen2cr": ("dsen2cr", "cr"),
    "tdpcr-cr": ("tdpcr", "cr-only"),
    "tdpcr-full": ("tdpcr", "full"),
}
#: Table I's complexity columns: ours at the configured and at the paper's size, the paper's.
COMPLEXITY_COLUMNS: tuple[str, ...] = (
    "params_M",
    "macs_G",
    "params_M_at_paper_size",
    "macs_G_at_paper_size",
)


@dataclass(frozen=True)
class Row:
    """One table row: an evaluated method, or a paper-only method (``method`` None).

    ``key`` identifies paper numbers (:data:`tdpcr.core.paper.PAPER_COMPLEXITY`); ``group`` is
    the paradigm (Table II) or the ablation (Table III).
    """

    key: str
    label: str
    method: str | None
    group: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's tables: its rows and, in order, its columns.

    Attributes:
        rows: the rows, in the paper's order.
        lead: identifying columns (the row's group, method and label, status).
        label_column: the lead column that holds a row's label.
        group_column: the lead column that holds a row's group (paradigm, ablation), if any.
        metrics: metric columns taken from the evaluation JSONs, names of
            :data:`~tdpcr.core.specs.CR_METRICS` / :data:`~tdpcr.core.specs.SEG_METRICS`.
        extra: further measured columns (Table I: :data:`COMPLEXITY_COLUMNS`).
        paper: the paper's own numbers, each ``paper_<name>``.
    """

    rows: tuple[Row, ...]
    lead: tuple[str, ...]
    metrics: tuple[str, ...]
    label_column: str = "label"
    group_column: str | None = None
    extra: tuple[str, ...] = ()
    paper: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in (*CR_METRICS, *SEG_METRICS)]
        if unknown:
            raise ValueError(f"table metric {unknown[0]!r} is not a metric name")

    @property
    def columns(self) -> tuple[str, ...]:
        paper = tuple(f"paper_{name}" for name in self.paper)
        return (
            *self.lead, *self.metrics, *self.extra, *paper, "paper_note", "mlflow_run_id",
        )  # fmt: skip

    @property
    def methods(self) -> tuple[str, ...]:
        """Evaluated methods the table needs (its Snakemake inputs), in row order."""
        return tuple(dict.fromkeys(r.method for r in self.rows if r.method is not None))


#: The paper's Tables I-III. Table I: cloud removal (measured rows in paper order, paper-only
#: rows in between); Table II: land-cover segmentation by paradigm; Table III: ablations (the
#: full model appears in both groups, as in the paper).
TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(
        rows=(
            Row("cloudy-input", "Cloudy input (no-op reference)", "cloudy-input"),
            Row("dsen2cr", "DSen2-CR", "dsen2cr"),
            Row("glf-cr", "GLF-CR", None),
            Row("hpn-cr", "HPN-CR", None),
            Row("emrdm", "EMRDM", None),
            Row("cloudseg", "CloudSeg", None),
            Row("tdpcr-cr", "TDP-CR (CR-only)", "tdpcr-cr"),
            Row("tdpcr-full", "TDP-CR (Full)", "tdpcr-full"),
        ),
        lead=("method", "label", "status"),
        metrics=CR_METRICS,
        extra=COMPLEXITY_COLUMNS,
        paper=("psnr", "ssim", "params_M", "flops_G"),
    ),
    "table2": TableSpec(
        rows=(
            Row("segformer-clear", "SegFormer on clear optical", "segformer-clear", "Direct"),
            Row("segformer-cloudy", "SegFormer on cloudy optical", "segformer-cloudy", "Direct"),
            Row("segformer-sar", "SegFormer on SAR", "segformer-sar", "Direct"),
            Row(
                "dsen2cr+segformer-clear",
                "DSen2-CR -> SegFormer",
                "dsen2cr+segformer-clear",
                "Multi-stage",
            ),
            Row(
                "tdpcr-cr+segformer-clear",
                "TDP-CR (CR-only) -> SegFormer",
                "tdpcr-cr+segformer-clear",
                "Multi-stage",
            ),
            Row("cloudseg", "CloudSeg", None, "Multi-task"),
            Row("tdpcr-full", "TDP-CR (Full)", "tdpcr-full", "Multi-task"),
        ),
        lead=("paradigm", "method", "label", "status"),
        group_column="paradigm",
        metrics=("miou", "pa", "miou_cloudy", "miou_clear", "pa_cloudy", "pa_clear"),
        paper=("miou", "pa", "miou_cloudy", "miou_clear"),
    ),
    "table3": TableSpec(
        rows=(
            Row("tdpcr-global-full", "PGF global only", "tdpcr-global-full", "PGF branches"),
            Row("tdpcr-local-full", "PGF local only", "tdpcr-local-full", "PGF branches"),
            Row("tdpcr-full", "PGF global + local", "tdpcr-full", "PGF branches"),
            Row("tdpcr-joint", "Joint training", "tdpcr-joint", "Training strategy"),
            Row("tdpcr-fpft", "Phase 1 + FPFT", "tdpcr-fpft", "Training strategy"),
            Row("tdpcr-full", "Phase 1 + PEFT", "tdpcr-full", "Training strategy"),
        ),
        lead=("group", "configuration", "method", "status"),
        label_column="configuration",
        group_column="group",
        metrics=("psnr", "ssim", "pa", "miou"),
        paper=("psnr", "ssim", "pa", "miou"),
    ),
}


def table_spec(table: str) -> TableSpec:
    """The table called ``table``; InputDataError listing the known ones otherwise."""
    if table not in TABLES:
        raise InputDataError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return TABLES[table]


def table_methods(table: str) -> tuple[str, ...]:
    """Evaluated methods a table needs (what its Snakemake rule depends on), in row order."""
    return table_spec(table).methods


def _number(value: Any, digits: int = 4) -> float | None:
    """A finite number rounded for the CSV, else None (written as an empty cell)."""
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def read_evaluations(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Evaluation JSONs by method name (InputDataError for an unreadable or foreign file)."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputDataError(f"{path}: unreadable evaluation ({err})") from None
        if not isinstance(data, dict) or "method" not in data or "metrics" not in data:
            raise InputDataError(f"{path}: not a tdpcr evaluation (no 'method' / 'metrics')")
        found[data["method"]] = data
    return found


def read_complexity(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """Rows of ``tdpcr complexity``'s CSV by (model, variant, size)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise InputDataError(f"{path}: unreadable complexity report ({err})") from None
    if rows and not {"model", "variant", "size", "params_M", "macs_G"} <= set(rows[0]):
        raise InputDataError(f"{path}: not a tdpcr complexity report (columns missing)")
    return {(r["model"], r["variant"], r["size"]): r for r in rows}


def _paper_note(key: str) -> str:
    remark = PAPER_REMARKS.get(key)
    return f"{PAPER_NOTE}; {remark}" if remark else PAPER_NOTE


def build_table(
    table: str,
    evaluations: Mapping[str, Mapping[str, Any]],
    complexity: Mapping[tuple[str, str, str], Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``table`` (``table1``, ``table2``, ``table3``) as dicts with its columns.

    Args:
        evaluations: evaluation JSON content by method name (every method of the table).
        complexity: :func:`read_complexity` (Table I's params / MACs; required for table1).
    """
    spec = table_spec(table)
    missing = [m for m in spec.methods if m not in evaluations]
    if missing:
        raise InputDataError(f"{table}: evaluation of method {missing[0]!r} missing")
    if spec.extra and complexity is None:
        raise InputDataError(f"{table} needs the complexity report (results/complexity.csv)")
    columns = spec.columns
    out: list[dict[str, Any]] = []
    for row in spec.rows:
        record: dict[str, Any] = dict.fromkeys(columns)
        evaluation = evaluations[row.method] if row.method is not None else None
        metrics = dict(evaluation["metrics"]) if evaluation is not None else {}
        record["method"] = row.method or row.key
        record["status"] = MEASURED if evaluation is not None else NOT_REIMPLEMENTED
        record["mlflow_run_id"] = evaluation.get("mlflow_run_id", "") if evaluation else ""
        record["paper_note"] = _paper_note(row.key)
        for name in columns:
            if name in metrics:
                record[name] = _number(metrics[name])
        record[spec.label_column] = row.label
        if spec.group_column is not None:
            record[spec.group_column] = row.group
        if "params_M" in spec.paper and row.key in PAPER_COMPLEXITY:
            record["paper_params_M"], record["paper_flops_G"] = PAPER_COMPLEXITY[row.key]
        if spec.extra and row.key in COMPLEXITY_ROWS and evaluation is not None:
            record.update(_complexity_cells(row.key, complexity))
        out.append(record)
    return out


def _complexity_cells(
    key: str, complexity: Mapping[tuple[str, str, str], Mapping[str, str]]
) -> dict[str, float | None]:
    """Table I's params / MACs of one method, at the configured and at the paper's size."""
    model, variant = COMPLEXITY_ROWS[key]
    cells: dict[str, float | None] = {}
    for size, suffix in (("configured", ""), ("paper", "_at_paper_size")):
        found = complexity.get((model, variant, size))
        if found is None:
            raise InputDataError(f"complexity report has no {size}-size row for {model} {variant}")
        cells[f"params_M{suffix}"] = _number(found["params_M"])
        cells[f"macs_G{suffix}"] = _number(found["macs_G"])
    return cells


def write_table_csv(rows: Iterable[Mapping[str, Any]], columns: Iterable[str], out: Path) -> Path:
    """Write rows to CSV atomically (temporary file, then rename); None -> empty cell."""
    return write_csv_atomic(out, rows, columns)


def write_table(
    table: str,
    evaluation_files: Iterable[Path],
    out: Path,
    complexity_file: Path | None = None,
) -> list[dict[str, Any]]:
    """Read the evaluations (and complexity report), build ``table``, write it to ``out``."""
    evaluations = read_evaluations(evaluation_files)
    complexity = read_complexity(complexity_file) if complexity_file is not None else None
    rows = build_table(table, evaluations, complexity)
    write_table_csv(rows, table_spec(table).columns, out)
    return rows
