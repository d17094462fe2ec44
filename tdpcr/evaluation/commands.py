"""``tdpcr`` sub-commands of the evaluation stage: evaluate, table, claims, figures, pgf-figure,
grid-check, training-curves, and the studies' sweep-table, budget-table, budget-claims."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tdpcr.core.commands import CommandFactory


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from tdpcr.core.config import load_config
    from tdpcr.evaluation.protocols import evaluate_method

    config = load_config(Path(args.config))
    result = evaluate_method(
        config,
        args.method,
        Path(args.store),
        Path(args.models),
        Path(args.out),
        split=args.split,
        batch_size=args.batch_size,
        threads=args.threads,
        force_cpu=args.cpu,
        tracking=not args.no_tracking,
        pgf=args.pgf,
    )
    summary = {k: result[k] for k in ("method", "patches", "device", "metrics", "mlflow_run_id")}
    if "grid" in result:
        summary["grid"] = {k: result["grid"][k] for k in ("ratio", "limit", "passed")}
    print(json.dumps(summary, indent=2))


def _uncertainty(args: argparse.Namespace):
    from tdpcr.evaluation.tables import Uncertainty

    return Uncertainty(args.resamples, args.bootstrap_seed, args.confidence)


def _cmd_table(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.tables import write_table

    complexity = Path(args.complexity) if args.complexity else None
    rows = write_table(
        args.table,
        [Path(p) for p in args.evals],
        Path(args.out),
        complexity,
        seed_files=[[Path(p) for p in group.split(",")] for group in args.seed_evals],
        uncertainty=_uncertainty(args),
    )
    print(f"wrote {len(rows)} rows to {args.out}")


def _cmd_claims(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.claims import write_claims

    rows = write_claims([Path(p) for p in args.evals], Path(args.out), _uncertainty(args))
    verdicts = ", ".join(f"{r['claim']}: {r['verdict']}" for r in rows)
    print(f"wrote {len(rows)} claims to {args.out} ({verdicts})")


def _cmd_readme_results(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.report import render, update_readme

    if args.readme or args.page:
        snapshot = Path(args.snapshot) if args.snapshot else None
        readme = Path(args.readme) if args.readme else None
        page = Path(args.page) if args.page else None
        update_readme(Path(args.results), readme, snapshot, page)
        print(f"updated {', '.join(p for p in (args.readme, args.page) if p)} from {args.results}")
    else:
        print(render(Path(args.results)))


def _cmd_sweep_table(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.sweeps import write_sweep

    rows = write_sweep([Path(p) for p in args.evals], Path(args.out), Path(args.figure))
    print(f"wrote {len(rows)} sweep points to {args.out} and {args.figure}")


def _budgets(args: argparse.Namespace):
    from tdpcr.evaluation.budget import budgets

    return budgets(args.multipliers, args.phase1, args.phase2)


def _groups(args: argparse.Namespace) -> list[list[Path]]:
    return [[Path(p) for p in group.split(",")] for group in args.budget_evals]


def _cmd_budget_table(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.budget import write_budget_table

    complexity = Path(args.complexity) if args.complexity else None
    rows = write_budget_table(
        args.table, _groups(args), _budgets(args), Path(args.out), complexity, _uncertainty(args)
    )
    print(f"wrote {len(rows)} rows ({len(args.multipliers)} budgets) to {args.out}")


def _cmd_budget_claims(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.budget import FIRST_CHANGE, write_budget_claims

    rows = write_budget_claims(
        _groups(args),
        _budgets(args),
        Path(args.out),
        Path(args.figure),
        Path(args.curves),
        _uncertainty(args),
    )
    changed = sorted({r["claim"] for r in rows if r[FIRST_CHANGE] is not None})
    which = ", ".join(changed) if changed else "none"
    print(f"wrote {len(rows)} rows to {args.out}, {args.figure}, {args.curves} "
          f"(verdicts that change with the budget: {which})")  # fmt: skip


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    """The budgets and their evaluations (``snakemake budget``)."""
    parser.add_argument(
        "--budget-evals",
        nargs="+",
        required=True,
        metavar="A.json,B.json",
        help="evaluations of each budget: one comma-separated list per multiplier, same order",
    )
    parser.add_argument(
        "--multipliers",
        nargs="+",
        type=int,
        required=True,
        help="each budget as a multiple k of train.steps (ascending, the smallest first)",
    )
    parser.add_argument(
        "--phase1", type=int, required=True, help="N: the config's train.steps.phase1"
    )
    parser.add_argument(
        "--phase2", type=int, required=True, help="M: the config's train.steps.phase2"
    )


def _add_uncertainty_options(parser: argparse.ArgumentParser) -> None:
    """Bootstrap options; their defaults are the schema's ``evaluation`` defaults."""
    from tdpcr.core.config import schema_default

    parser.add_argument(
        "--resamples",
        type=int,
        default=schema_default("evaluation", "bootstrap_resamples"),
        help="bootstrap resamples of the confidence intervals",
    )
    parser.add_argument(
        "--bootstrap-seed",
        type=int,
        default=schema_default("evaluation", "bootstrap_seed"),
        help="seed of the bootstrap resamples",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=schema_default("evaluation", "confidence"),
        help="coverage of the intervals",
    )


def _cmd_figures(args: argparse.Namespace) -> None:
    from tdpcr.core.config import load_config
    from tdpcr.evaluation.figures import make_figures

    config = load_config(Path(args.config))
    written = make_figures(
        config,
        Path(args.store),
        Path(args.models),
        Path(args.fig3),
        Path(args.fig4),
        Path(args.fig5),
        split=args.split,
        rows=args.rows,
        threads=args.threads,
        force_cpu=args.cpu,
    )
    for path in written:
        print(f"wrote {path}")


def _cmd_training_curves(args: argparse.Namespace) -> None:
    from tdpcr.core.config import load_config
    from tdpcr.evaluation.figures import plot_training_curves
    from tdpcr.training.variants import VARIANTS

    config = load_config(Path(args.config))
    variants = args.variants or list(VARIANTS)
    histories = plot_training_curves(
        config, Path(args.models), variants, Path(args.out), tracking=not args.no_tracking
    )
    print(f"wrote {args.out} ({len(histories)} of {len(variants)} variants tracked)")


def _cmd_pgf_figure(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.figures import figure_pgf_sar_weight
    from tdpcr.evaluation.tables import read_evaluations

    evaluations = read_evaluations([Path(p) for p in args.evals])
    figure_pgf_sar_weight(evaluations, Path(args.out))
    print(f"wrote {args.out} ({', '.join(evaluations)})")


def _cmd_grid_check(args: argparse.Namespace) -> None:
    from tdpcr.evaluation.spectrum import grid_check
    from tdpcr.evaluation.tables import read_evaluations

    result = grid_check(read_evaluations([Path(p) for p in args.evals]), Path(args.out))
    # The verdict is recorded, not enforced: a gridded model must not stop the workflow
    # from writing its other results (tests/test_pgf_grid.py is what fails on one).
    for name, entry in result["methods"].items():
        verdict = "pass" if entry["passed"] else "FAIL"
        print(f"{name}: grid ratio {entry['ratio']} (limit {result['limit']}): {verdict}")


def register(command: CommandFactory) -> None:
    """Add the evaluation sub-commands to the ``tdpcr`` parser."""
    evaluate = command(
        "evaluate",
        _cmd_evaluate,
        "score one method (Tables I-III) on the test split; write its metrics as JSON",
    )
    evaluate.add_argument("--config", required=True, help="workflow config (YAML)")
    evaluate.add_argument(
        "--method", required=True, help="e.g. dsen2cr, tdpcr-full, dsen2cr+segformer-clear"
    )
    evaluate.add_argument("--store", required=True, help="tile store")
    evaluate.add_argument("--models", default="results/models", help="checkpoints folder")
    evaluate.add_argument("--out", required=True, help="JSON to write (results/eval/<method>.json)")
    evaluate.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="split to score"
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=None, help="default: the config's train.val_batch_size"
    )
    evaluate.add_argument("--threads", type=int, default=1, help="CPU threads (Snakemake threads)")
    evaluate.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")
    evaluate.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    evaluate.add_argument(
        "--pgf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure PGF SAR weights and grid energy (default: for the TDP-CR PGF methods)",
    )

    from tdpcr.evaluation.tables import TABLES

    table = command("table", _cmd_table, "write one of the paper's Tables I-III as CSV")
    table.add_argument("table", choices=tuple(TABLES), help="which table")
    table.add_argument("--evals", nargs="+", required=True, help="evaluation JSON files")
    table.add_argument("--complexity", default=None, help="complexity CSV (table1)")
    table.add_argument(
        "--seed-evals",
        nargs="*",
        default=[],
        metavar="A.json,B.json",
        help="evaluations of further training seeds: one comma-separated list per seed",
    )
    table.add_argument("--out", required=True, help="CSV to write")
    _add_uncertainty_options(table)

    claims = command(
        "claims",
        _cmd_claims,
        "test the paper's claims as paired differences with bootstrap intervals (claims.csv)",
    )
    claims.add_argument("--evals", nargs="+", required=True, help="evaluation JSON files")
    claims.add_argument("--out", required=True, help="CSV to write")
    _add_uncertainty_options(claims)

    readme = command(
        "readme-results",
        _cmd_readme_results,
        "render Tables I-III and the claims from their CSVs as Markdown (or into the README "
        "and the documentation)",
    )
    readme.add_argument("--results", default="results", help="folder with table*.csv, claims.csv")
    readme.add_argument(
        "--readme", default=None, help="README whose headline table to update between its markers"
    )
    readme.add_argument(
        "--page",
        default=None,
        help="documentation page whose full tables to update (docs/evaluation.md)",
    )
    readme.add_argument("--snapshot", default=None, help="copy the rendered CSVs here")

    sweep = command(
        "sweep-table",
        _cmd_sweep_table,
        "the phase-2 sweep's points (validation PSNR, mIoU, settings) as CSV and a figure",
    )
    sweep.add_argument("--evals", nargs="+", required=True, help="the points' val evaluations")
    sweep.add_argument("--out", required=True, help="CSV to write")
    sweep.add_argument("--figure", required=True, help="PNG to write")

    budget_table = command(
        "budget-table",
        _cmd_budget_table,
        "one of Tables I-III at every training budget (results/budget/table*.csv)",
    )
    budget_table.add_argument("table", choices=tuple(TABLES), help="which table")
    _add_budget_options(budget_table)
    budget_table.add_argument("--complexity", default=None, help="complexity CSV (table1)")
    budget_table.add_argument("--out", required=True, help="CSV to write")
    _add_uncertainty_options(budget_table)

    budget_claims = command(
        "budget-claims",
        _cmd_budget_claims,
        "the claims at every training budget (CSV, where a verdict changes), their figure and "
        "the learning curves",
    )
    _add_budget_options(budget_claims)
    budget_claims.add_argument("--out", required=True, help="CSV to write")
    budget_claims.add_argument("--figure", required=True, help="claims figure (PNG)")
    budget_claims.add_argument("--curves", required=True, help="learning-curve figure (PNG)")
    _add_uncertainty_options(budget_claims)

    figures = command(
        "figures", _cmd_figures, "draw Figures 3-5 (cloud removal, prompts, land-cover maps)"
    )
    figures.add_argument("--config", required=True, help="workflow config (YAML)")
    figures.add_argument("--store", required=True, help="tile store")
    figures.add_argument("--models", default="results/models", help="checkpoints folder")
    figures.add_argument("--fig3", required=True, help="cloud-removal figure (PNG)")
    figures.add_argument("--fig4", required=True, help="prompt PCA figure (PNG)")
    figures.add_argument("--fig5", required=True, help="segmentation figure (PNG)")
    figures.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="split to draw from"
    )
    figures.add_argument("--rows", type=int, default=3, help="patches shown (by cloud cover)")
    figures.add_argument("--threads", type=int, default=1, help="CPU threads")
    figures.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")

    pgf_figure = command(
        "pgf-figure",
        _cmd_pgf_figure,
        "plot PGF's SAR weight against cloud opacity per stage from TDP-CR evaluations",
    )
    pgf_figure.add_argument("--evals", nargs="+", required=True, help="evaluation JSON files")
    pgf_figure.add_argument("--out", required=True, help="PNG to write")

    grid = command(
        "grid-check",
        _cmd_grid_check,
        "collect the outputs' 2-/4-pixel grid energy vs the reference (records pass/fail)",
    )
    grid.add_argument("--evals", nargs="+", required=True, help="evaluation JSON files")
    grid.add_argument("--out", required=True, help="JSON to write (results/grid_check.json)")

    curves = command(
        "training-curves",
        _cmd_training_curves,
        "plot training loss and validation metrics per variant from MLflow",
    )
    curves.add_argument("--config", required=True, help="workflow config (YAML)")
    curves.add_argument("--models", default="results/models", help="checkpoints folder")
    curves.add_argument("--variants", nargs="+", default=None, help="default: every variant")
    curves.add_argument("--out", required=True, help="PNG to write")
    curves.add_argument("--no-tracking", action="store_true", help="do not read MLflow")
