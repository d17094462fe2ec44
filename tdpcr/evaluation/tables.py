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

from tdpcr.errors import InputDataError
from tdpcr.io import write_csv_atomic

#: Note on every row while the paper's accuracy numbers are not filled in.
PAPER_NOTE = "paper values: fill from arXiv 2601.12052 Tables I-III"
MEASURED = "measured"
NOT_REIMPLEMENTED = "not reimplemented"

#: (params in M, "FLOPs" in G at one 256x256 sample) as the paper reports them
#: (docs/model.md; the baselines' "FLOPs" are MACs, see docs/data-formats.md).
PAPER_COMPLEXITY: dict[str, tuple[float, float]] = {
    "tdpcr-cr": (5.92, 34.3),
    "tdpcr-full": (5.95, 38.2),
    "dsen2cr": (18.95, 1241.2),
    "glf-cr": (14.83, 249.7),
    "hpn-cr": (3.69, 19.6),
    "emrdm": (39.13, 83.6),
    "cloudseg": (203.22, 105.9),
}
#: Extra remarks on a paper row.
PAPER_REMARKS: dict[str, str] = {"emrdm": "FLOPs per sampling step"}

#: Method -> (model, variant) row of results/complexity.csv.
COMPLEXITY_ROWS: dict[str, tuple[str, str]] = {
    "dsen2cr": ("dsen2cr", "cr"),
    "tdpcr-cr": ("tdpcr", "cr-only"),
    "tdpcr-full": ("tdpcr", "full"),
}


@dataclass(frozen=True)
class Row:
    """One table row: an evaluated method, or a paper-only method (``method`` None).

    ``key`` identifies paper numbers (:data:`PAPER_COMPLEXITY`); ``group`` is the paradigm
    (Table II) or the ablation (Table III).
    """

    key: str
    label: str
    method: str | None
    group: str = ""


#: Table I: cloud removal (measured rows first in paper order, paper-only rows in between).
TABLE1_ROWS: tuple[Row, ...] = (
    Row("cloudy-input", "Cloudy input (no-op reference)", "cloudy-input"),
    Row("dsen2cr", "DSen2-CR", "dsen2cr"),
    Row("glf-cr", "GLF-CR", None),
    Row("hpn-cr", "HPN-CR", None),
    Row("emrdm", "EMRDM", None),
    Row("cloudseg", "CloudSeg", None),
    Row("tdpcr-cr", "TDP-CR (CR-only)", "tdpcr-cr"),
    Row("tdpcr-full", "TDP-CR (Full)", "tdpcr-full"),
)
#: Table II: land-cover segmentation by paradigm.
TABLE2_ROWS: tuple[Row, ...] = (
    Row("segformer-clear", "SegFormer on clear optical", "segformer-clear", "Direct"),
    Row("segformer-cloudy", "SegFormer on cloudy optical", "segformer-cloudy", "Direct"),
    Row("segformer-sar", "SegFormer on SAR", "segformer-sar", "Direct"),
    Row(
        "dsen2cr+segformer-clear", "DSen2-CR -> SegFormer", "dsen2cr+segformer-clear", "Multi-stage"
    ),
    Row(
        "tdpcr-cr+segformer-clear",
        "TDP-CR (CR-only) -> SegFormer",
        "tdpcr-cr+segformer-clear",
        "Multi-stage",
    ),
    Row("cloudseg", "CloudSeg", None, "Multi-task"),
    Row("tdpcr-full", "TDP-CR (Full)", "tdpcr-full", "Multi-task"),
)
#: Table III: ablations (the full model appears in both groups, as in the paper).
TABLE3_ROWS: tuple[Row, ...] = (
    Row("tdpcr-global-full", "PGF global only", "tdpcr-global-full", "PGF branches"),
    Row("tdpcr-local-full", "PGF local only", "tdpcr-local-full", "PGF branches"),
    Row("tdpcr-full", "PGF global + local", "tdpcr-full", "PGF branches"),
    Row("tdpcr-joint", "Joint training", "tdpcr-joint", "Training strategy"),
    Row("tdpcr-fpft", "Phase 1 + FPFT", "tdpcr-fpft", "Training strategy"),
    Row("tdpcr-full", "Phase 1 + PEFT", "tdpcr-full", "Training strategy"),
)

TABLE_ROWS: dict[str, tuple[Row, ...]] = {
    "table1": TABLE1_ROWS,
    "table2": TABLE2_ROWS,
    "table3": TABLE3_ROWS,
}

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "table1": (
        "method",
        "label",
        "status",
        "psnr",
        "ssim",
        "psnr_cloudy",
        "ssim_cloudy",
        "psnr_clear",
        "ssim_clear",
        "params_M",
        "macs_G",
        "params_M_at_paper_size",
        "macs_G_at_paper_size",
        "paper_psnr",
        "paper_ssim",
        "paper_params_M",
        "paper_flops_G",
        "paper_note",
        "mlflow_run_id",
    ),
    "table2": (
        "paradigm",
        "method",
        "label",
        "status",
        "miou",
        "pa",
        "miou_cloudy",
        "miou_clear",
        "pa_cloudy",
        "pa_clear",
        "paper_miou",
        "paper_pa",
        "paper_miou_cloudy",
        "paper_miou_clear",
        "paper_note",
        "mlflow_run_id",
    ),
    "table3": (
        "group",
        "configuration",
        "method",
        "status",
        "psnr",
        "ssim",
        "pa",
        "miou",
        "paper_psnr",
        "paper_ssim",
        "paper_pa",
        "paper_miou",
        "paper_note",
        "mlflow_run_id",
    ),
}


def table_methods(table: str) -> tuple[str, ...]:
    """Evaluated methods a table needs (what its Snakemake rule depends on), in row order."""
    rows = _rows(table)
    return tuple(dict.fromkeys(r.method for r in rows if r.method is not None))


def _rows(table: str) -> tuple[Row, ...]:
    if table not in TABLE_ROWS:
        raise InputDataError(f"unknown table {table!r}; known: {', '.join(TABLE_ROWS)}")
    return TABLE_ROWS[table]


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
    rows = _rows(table)
    missing = [m for m in table_methods(table) if m not in evaluations]
    if missing:
        raise InputDataError(f"{table}: evaluation of method {missing[0]!r} missing")
    if table == "table1" and complexity is None:
        raise InputDataError("table1 needs the complexity report (results/complexity.csv)")
    columns = TABLE_COLUMNS[table]
    out: list[dict[str, Any]] = []
    for row in rows:
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
        if table == "table1":
            record["label"] = row.label
            paper = PAPER_COMPLEXITY.get(row.key)
            if paper is not None:
                record["paper_params_M"], record["paper_flops_G"] = paper
            if row.key in COMPLEXITY_ROWS and evaluation is not None:
                model, variant = COMPLEXITY_ROWS[row.key]
                for size, suffix in (("configured", ""), ("paper", "_at_paper_size")):
                    found = complexity.get((model, variant, size)) if complexity else None
                    if found is None:
                        raise InputDataError(
                            f"complexity report has no {size}-size row for {model} {variant}"
                        )
                    record[f"params_M{suffix}"] = _number(found["params_M"])
                    record[f"macs_G{suffix}"] = _number(found["macs_G"])
        elif table == "table2":
            record["paradigm"], record["label"] = row.group, row.label
        else:
            record["group"], record["configuration"] = row.group, row.label
        out.append(record)
    return out


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
    write_table_csv(rows, TABLE_COLUMNS[table], out)
    return rows
