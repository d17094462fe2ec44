"""The paper's Tables I-III as CSV files, from evaluation JSONs and the complexity report.

Measured columns hold only our numbers (this run's evaluations and ``results/complexity.csv``);
columns prefixed ``paper_`` hold only numbers printed in the paper
(:mod:`tdpcr.core.paper`; mIoU and PA as fractions). Every method of the paper's tables is
reimplemented and measured; a row of a method without an evaluation would carry only paper
numbers and ``status = not reimplemented``.

Every measured metric ``m`` has a 95 % confidence interval ``m_ci_low`` / ``m_ci_high``: a
seeded bootstrap over the test patches (:mod:`tdpcr.evaluation.statistics`; mIoU, PA and
per-class IoU recomputed from each resample's summed confusion matrices). With evaluations of
further training seeds (``seed_evaluations``), ``m_seed_mean`` / ``m_seed_sd`` give the mean
and standard deviation over seeds and ``seeds`` their number.

Every row names the MLflow run(s) its numbers came from (``mlflow_run_id``, ``;``-separated
for multi-stage methods, empty when tracking is off) and the optimizer steps behind each of its
models from random initialisation (``train_steps``, in the same order): N for a complete
single-task training, N + M for a multi-task model (``train.steps``; see
:func:`tdpcr.training.variants.step_budget`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.core.config import schema_default
from tdpcr.core.errors import InputDataError
from tdpcr.core.io import write_csv_atomic
from tdpcr.core.paper import PAPER_COMPLEXITY, PAPER_REMARKS, PAPER_TABLES
from tdpcr.core.specs import CLASS_IOU, CR_METRICS, SEG_METRICS
from tdpcr.evaluation.statistics import Bootstrap, Statistic, confusion_statistic, mean_of

#: Note on every row: where the paper's numbers come from.
PAPER_NOTE = "paper_*: arXiv 2601.12052 Tables I-III, LuojiaSET-OSFCR test split"
MEASURED = "measured"
NOT_REIMPLEMENTED = "not reimplemented"

#: Table I row key -> (model, variant) row of results/complexity.csv.
COMPLEXITY_ROWS: dict[str, tuple[str, str]] = {
    "dsen2cr": ("dsen2cr", "cr"),
    "glf-cr": ("glfcr", "cr"),
    "hpn-cr": ("hpncr", "cr"),
    "emrdm": ("emrdm", "per-evaluation"),
    "cloudseg": ("cloudseg", "multi-task"),
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

    ``key`` identifies paper numbers (:mod:`tdpcr.core.paper`); ``group`` is the paradigm
    (Table II) or the ablation (Table III).
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
        metrics: metric columns taken from the evaluation JSONs, names of
            :data:`~tdpcr.core.specs.CR_METRICS` / :data:`~tdpcr.core.specs.SEG_METRICS` /
            :data:`CLASS_IOU`; each gets its confidence interval and seed columns.
        label_column: the lead column that holds a row's label.
        group_column: the lead column that holds a row's group (paradigm, ablation), if any.
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
        unknown = [m for m in self.metrics if m not in (*CR_METRICS, *SEG_METRICS, *CLASS_IOU)]
        if unknown:
            raise ValueError(f"table metric {unknown[0]!r} is not a metric name")

    @property
    def columns(self) -> tuple[str, ...]:
        measured = tuple(
            f"{m}{suffix}"
            for m in self.metrics
            for suffix in ("", "_ci_low", "_ci_high", "_seed_mean", "_seed_sd")
        )
        paper = tuple(f"paper_{name}" for name in self.paper)
        return (
            *self.lead, *measured, "seeds", "train_steps", *self.extra, *paper, "paper_note",
            "mlflow_run_id",
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
            Row("glf-cr", "GLF-CR", "glfcr"),
            Row("hpn-cr", "HPN-CR", "hpncr"),
            Row("emrdm", "EMRDM", "emrdm"),
            Row("cloudseg", "CloudSeg", "cloudseg"),
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
                "glf-cr+segformer-clear",
                "GLF-CR -> SegFormer",
                "glfcr+segformer-clear",
                "Multi-stage",
            ),
            Row(
                "hpn-cr+segformer-clear",
                "HPN-CR -> SegFormer",
                "hpncr+segformer-clear",
                "Multi-stage",
            ),
            Row(
                "emrdm+segformer-clear",
                "EMRDM -> SegFormer",
                "emrdm+segformer-clear",
                "Multi-stage",
            ),
            Row(
                "tdpcr-cr+segformer-clear",
                "TDP-CR (CR-only) -> SegFormer",
                "tdpcr-cr+segformer-clear",
                "Multi-stage",
            ),
            Row("cloudseg", "CloudSeg", "cloudseg", "Multi-task"),
            Row("tdpcr-full", "TDP-CR (Full)", "tdpcr-full", "Multi-task"),
        ),
        lead=("paradigm", "method", "label", "status"),
        metrics=("miou", "pa", "miou_cloudy", "miou_clear", "pa_cloudy", "pa_clear", *CLASS_IOU),
        group_column="paradigm",
        paper=("miou", "pa"),
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
        metrics=("psnr", "ssim", "pa", "miou"),
        label_column="configuration",
        group_column="group",
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


# --------------------------------------------------------------------------- inputs
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


def per_patch_statistic(evaluation: Mapping[str, Any], metric: str) -> Statistic:
    """The bootstrap statistic of ``metric`` from an evaluation's per-patch values."""
    per_patch = evaluation.get("per_patch")
    if not per_patch:
        raise InputDataError(f"evaluation of {evaluation['method']}: no per-patch values")
    base, _, region = metric.partition("_")
    if metric in CLASS_IOU:
        return confusion_statistic(per_patch["confusion"]["all"], "iou", CLASS_IOU.index(metric))
    if base in ("pa", "miou"):
        return confusion_statistic(per_patch["confusion"][region or "all"], base)
    return mean_of(np.asarray(per_patch[metric], dtype=np.float64))


def _paper_note(key: str) -> str:
    remark = PAPER_REMARKS.get(key)
    return f"{PAPER_NOTE}; {remark}" if remark else PAPER_NOTE


# --------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Uncertainty:
    """How intervals are computed: bootstrap resamples, seed and coverage (the config's
    ``evaluation`` section)."""

    resamples: int
    seed: int
    confidence: float

    @classmethod
    def default(cls) -> Uncertainty:
        """The schema's defaults."""
        return cls(
            schema_default("evaluation", "bootstrap_resamples"),
            schema_default("evaluation", "bootstrap_seed"),
            schema_default("evaluation", "confidence"),
        )


def _measured_cells(
    spec: TableSpec,
    evaluation: Mapping[str, Any],
    seeds: Sequence[Mapping[str, Any]],
    uncertainty: Uncertainty,
) -> dict[str, Any]:
    """Each metric of the row with its bootstrap interval and, with seeds, their spread."""
    cells: dict[str, Any] = {}
    metrics = evaluation["metrics"]
    bootstrap = Bootstrap(
        len(evaluation["per_patch"]["patch_id"]),
        uncertainty.resamples,
        uncertainty.seed,
        uncertainty.confidence,
    )
    for metric in spec.metrics:
        if metric not in metrics:
            continue
        interval = bootstrap.interval(per_patch_statistic(evaluation, metric))
        cells[metric] = _number(metrics[metric])
        cells[f"{metric}_ci_low"], cells[f"{metric}_ci_high"] = (
            _number(interval.low),
            _number(interval.high),
        )
        if seeds:
            values = [float(e["metrics"][metric]) for e in (evaluation, *seeds)]
            values = [v for v in values if math.isfinite(v)]
            if values:
                cells[f"{metric}_seed_mean"] = _number(np.mean(values))
                cells[f"{metric}_seed_sd"] = _number(
                    np.std(values, ddof=1) if len(values) > 1 else 0
                )
    cells["seeds"] = 1 + len(seeds)
    return cells


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


def _paper_cells(table: str, spec: TableSpec, key: str) -> dict[str, float]:
    """The paper's numbers of a row (only the paper's)."""
    cells = {f"paper_{m}": v for m, v in PAPER_TABLES[table].get(key, {}).items()}
    if "params_M" in spec.paper and key in PAPER_COMPLEXITY:
        cells["paper_params_M"], cells["paper_flops_G"] = PAPER_COMPLEXITY[key]
    return {k: v for k, v in cells.items() if k.removeprefix("paper_") in spec.paper}


def build_table(
    table: str,
    evaluations: Mapping[str, Mapping[str, Any]],
    complexity: Mapping[tuple[str, str, str], Mapping[str, str]] | None = None,
    *,
    seed_evaluations: Sequence[Mapping[str, Mapping[str, Any]]] = (),
    uncertainty: Uncertainty | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``table`` (``table1``, ``table2``, ``table3``) as dicts with its columns.

    Args:
        evaluations: evaluation JSON content by method name (every method of the table).
        complexity: :func:`read_complexity` (Table I's params / MACs; required for table1).
        seed_evaluations: the same evaluations for further training seeds (one mapping per
            seed); rows of methods they hold get the seed mean and spread.
        uncertainty: bootstrap settings of the confidence intervals (default: the schema's).
    """
    uncertainty = uncertainty or Uncertainty.default()
    spec = table_spec(table)
    missing = [m for m in spec.methods if m not in evaluations]
    if missing:
        raise InputDataError(f"{table}: evaluation of method {missing[0]!r} missing")
    if spec.extra and complexity is None:
        raise InputDataError(f"{table} needs the complexity report (results/complexity.csv)")
    out: list[dict[str, Any]] = []
    for row in spec.rows:
        record: dict[str, Any] = dict.fromkeys(spec.columns)
        evaluation = evaluations[row.method] if row.method is not None else None
        record["method"] = row.method or row.key
        record["status"] = MEASURED if evaluation is not None else NOT_REIMPLEMENTED
        record["mlflow_run_id"] = evaluation.get("mlflow_run_id", "") if evaluation else ""
        record["train_steps"] = evaluation.get("train_steps", "") if evaluation else ""
        record["paper_note"] = _paper_note(row.key)
        record[spec.label_column] = row.label
        if spec.group_column is not None:
            record[spec.group_column] = row.group
        record.update(_paper_cells(table, spec, row.key))
        if evaluation is not None:
            seeds = [s[row.method] for s in seed_evaluations if row.method in s]
            record.update(_measured_cells(spec, evaluation, seeds, uncertainty))
            if spec.extra and row.key in COMPLEXITY_ROWS:
                record.update(_complexity_cells(row.key, complexity))
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
    *,
    seed_files: Iterable[Iterable[Path]] = (),
    uncertainty: Uncertainty | None = None,
) -> list[dict[str, Any]]:
    """Read the evaluations (and complexity report), build ``table``, write it to ``out``."""
    evaluations = read_evaluations(evaluation_files)
    complexity = read_complexity(complexity_file) if complexity_file is not None else None
    seeds = [read_evaluations(files) for files in seed_files]
    rows = build_table(
        table, evaluations, complexity, seed_evaluations=seeds, uncertainty=uncertainty
    )
    write_table_csv(rows, table_spec(table).columns, out)
    return rows
