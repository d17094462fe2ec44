"""The result tables of the README and the documentation, generated from the workflow's CSVs.

``tdpcr readme-results --results results --readme README.md --page docs/evaluation.md
--snapshot docs/results`` renders Tables I-III and the claims as Markdown (value with its 95 %
interval; the paper's numbers in their own columns) between :data:`BEGIN` and :data:`END` of
the documentation page, the headline rows of Tables I and II (:func:`render_headline`) between
:data:`HEADLINE_BEGIN` and :data:`HEADLINE_END` of the README, and copies the CSVs it rendered
to the snapshot folder. ``tests/test_docs.py`` renders the snapshot again and checks both
files say the same, so their numbers are always the CSVs' numbers.

When the results folder also holds the studies beside ``all`` (``snakemake --cores 8 seeds``:
``seeds/table*.csv`` and ``seeds/claims_seed*.csv``; ``snakemake results/sweeps/phase2.csv``;
``snakemake --cores 8 budget``: ``budget/claims.csv`` and its figures), they are rendered after
the tables and copied to the snapshot too (the budget figures with them, which the page shows).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

from tdpcr.core.config import schema_default
from tdpcr.core.errors import InputDataError
from tdpcr.core.io import open_atomic

BEGIN = "<!-- BEGIN generated results: tdpcr readme-results; do not edit by hand -->"
END = "<!-- END generated results -->"
HEADLINE_BEGIN = (
    "<!-- BEGIN generated headline results: tdpcr readme-results; do not edit by hand -->"
)
HEADLINE_END = "<!-- END generated headline results -->"
#: The CSVs rendered, in order.
SOURCES: tuple[str, ...] = ("table1.csv", "table2.csv", "table3.csv", "claims.csv")


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    path = Path(folder) / name
    if not path.is_file():
        raise InputDataError(f"{path}: not found; run `snakemake --cores 8 all` first")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text: str, digits: int) -> str:
    return f"{float(text):.{digits}f}" if text not in ("", None) else ""


def cell(row: dict[str, str], metric: str, digits: int) -> str:
    """``value [low, high]`` (and ``± sd (n seeds)`` when there are seeds); '' if unmeasured."""
    value = _num(row.get(metric, ""), digits)
    if not value:
        return ""
    low, high = (
        _num(row.get(f"{metric}_ci_low", ""), digits),
        _num(row.get(f"{metric}_ci_high", ""), digits),
    )
    text = f"{value} [{low}, {high}]" if low and high else value
    mean = _num(row.get(f"{metric}_seed_mean", ""), digits)
    spread = _num(row.get(f"{metric}_seed_sd", ""), digits)
    if mean and spread and int(row.get("seeds") or 1) > 1:
        text += f"; {row['seeds']} seeds {mean} ± {spread}"
    return text


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def steps(row: dict[str, str]) -> str:
    """Optimizer steps behind the row's model(s) from random initialisation ('' if unknown:
    results written before tables recorded them)."""
    return row.get("train_steps") or ""


def table1(rows: list[dict[str, str]]) -> str:
    header = ["method", "steps", "PSNR (dB)", "SSIM", "RMSE", "SAM (°)", "PSNR cloudy"]
    header += ["PSNR clear", "params (M) / MACs (G)", "paper PSNR", "paper SSIM"]
    body = []
    for r in rows:
        size = f"{r['params_M']} / {r['macs_G']}" if r["params_M"] else ""
        body.append(
            [
                r["label"],
                steps(r),
                cell(r, "psnr", 2),
                cell(r, "ssim", 3),
                cell(r, "rmse", 4),
                cell(r, "sam", 2),
                cell(r, "psnr_cloudy", 2),
                cell(r, "psnr_clear", 2),
                size,
                _num(r["paper_psnr"], 2),
                _num(r["paper_ssim"], 3),
            ]
        )
    return _markdown(header, body)


def table2(rows: list[dict[str, str]]) -> str:
    header = ["paradigm", "method", "steps", "mIoU", "PA", "mIoU cloudy", "mIoU clear"]
    header += ["IoU built-up", "paper mIoU", "paper PA"]
    body = [
        [
            r["paradigm"],
            r["label"],
            steps(r),
            cell(r, "miou", 3),
            cell(r, "pa", 3),
            cell(r, "miou_cloudy", 3),
            cell(r, "miou_clear", 3),
            cell(r, "iou_built-up", 3),
            _num(r["paper_miou"], 3),
            _num(r["paper_pa"], 3),
        ]
        for r in rows
    ]
    return _markdown(header, body)


def table3(rows: list[dict[str, str]]) -> str:
    header = ["group", "configuration", "steps", "PSNR (dB)", "SSIM", "PA", "mIoU"]
    header += ["paper PSNR", "paper mIoU"]
    body = [
        [
            r["group"],
            r["configuration"],
            steps(r),
            cell(r, "psnr", 2),
            cell(r, "ssim", 3),
            cell(r, "pa", 3),
            cell(r, "miou", 3),
            _num(r["paper_psnr"], 2),
            _num(r["paper_miou"], 3),
        ]
        for r in rows
    ]
    return _markdown(header, body)


def _claim_digits(metric: str) -> int:
    """Decimals of a claim's difference: dB 2, fractions 3, PGF weight differences 4 (PGF
    rows compare one method's weights in two regions: small differences)."""
    return 2 if metric.startswith("psnr") else 4 if metric.startswith("pgf_") else 3


def claims(rows: list[dict[str, str]]) -> str:
    header = ["claim (paper)", "metric", "ours: better - worse [95 % CI]", "steps"]
    header += ["verdict", "paper"]
    body = []
    for r in rows:
        ours, budget = "", ""
        if r.get("better_steps") and r.get("worse_steps"):
            budget = f"{r['better_steps']} vs {r['worse_steps']}"
        if r["difference"]:
            pgf = r["metric"].startswith("pgf_")
            digits = _claim_digits(r["metric"])
            which = f"{r['better']}: cloudy - clear" if pgf else f"{r['better']} - {r['worse']}"
            ours = f"{_num(r['difference'], digits)} [{_num(r['ci_low'], digits)}, "
            ours += f"{_num(r['ci_high'], digits)}] ({which})"
        body.append(
            [r["text"], r["metric"], ours, budget, r["verdict"], _num(r["paper_difference"], 3)]
        )
    return _markdown(header, body)


#: The phase-2 sweep's CSV, relative to the results folder.
SWEEP = "sweeps/phase2.csv"
#: Roman numerals of the tables, as the paper numbers them.
TABLE_NUMERALS = {"table1.csv": "I", "table2.csv": "II", "table3.csv": "III"}
#: The extra-seed tables, relative to the results folder (their claims: ``claims_seed<N>.csv``).
SEED_FOLDER = "seeds"
#: The budget study's claims and figures, relative to the results folder (the snapshot keeps
#: them at the same place under docs/results, where the page's figure links point).
BUDGET_CLAIMS = "budget/claims.csv"
BUDGET_FIGURES: tuple[str, ...] = ("budget/claims.png", "budget/learning_curves.png")
BUDGET_TITLE = "Does more training change the verdicts?"


def _seed_claim_files(folder: Path) -> list[str]:
    seeds = sorted((Path(folder) / SEED_FOLDER).glob("claims_seed*.csv"))
    return [f"{SEED_FOLDER}/{p.name}" for p in seeds]


def rendered_files(folder: Path) -> list[str]:
    """The CSVs :func:`render` reads from ``folder`` (paths relative to it)."""
    names = list(SOURCES)
    if (Path(folder) / SWEEP).is_file():
        names.append(SWEEP)
    if (Path(folder) / SEED_FOLDER).is_dir():
        names += [f"{SEED_FOLDER}/{name}" for name in SOURCES[:3]]
        names += _seed_claim_files(folder)
    if (Path(folder) / BUDGET_CLAIMS).is_file():
        names.append(BUDGET_CLAIMS)
    return names


def snapshot_files(folder: Path) -> list[str]:
    """What ``--snapshot`` copies: the rendered CSVs and the figures the rendering shows."""
    figures = [f for f in BUDGET_FIGURES if (Path(folder) / f).is_file()]
    return [*rendered_files(folder), *(figures if BUDGET_CLAIMS in rendered_files(folder) else [])]


def sweep(rows: list[dict[str, str]]) -> str:
    """The phase-2 sweep's points on the validation split, with the selection score."""
    weight = float(schema_default("train", "selection_psnr_weight"))
    header = ["point", "prompt + PGF lr", "lambda_seg", "seed", "val PSNR (dB)", "val mIoU"]
    header += [f"mIoU + {weight:g} x PSNR"]
    body = []
    scores = [float(r["miou"]) + weight * float(r["psnr"]) for r in rows]
    for r, score in zip(rows, scores, strict=True):
        best = " (best)" if score == max(scores) else ""
        rate = r["train.finetune_lr.prompt"] or r["train.lr"]
        body.append([r["point"], _num(rate, 4).rstrip("0"), r["train.lambda_seg"],
                     r["train.seed"], _num(r["psnr"], 2), _num(r["miou"], 3),
                     f"{score:.3f}{best}"])  # fmt: skip
    return _markdown(header, body)


def seed_claims(tables: list[list[dict[str, str]]], seeds: list[str]) -> str:
    """Each claim's paired difference and verdict, one column per training seed."""
    header = ["claim (paper)", "metric", *(f"seed {s}" for s in seeds)]
    body = []
    for rows in zip(*tables, strict=True):
        cells = []
        for r in rows:
            digits = _claim_digits(r["metric"])
            diff = _num(r["difference"], digits)
            cells.append(f"{diff} [{_num(r['ci_low'], digits)}, {_num(r['ci_high'], digits)}] "
                         f"{r['verdict']}" if diff else r["verdict"])  # fmt: skip
        label = rows[0]["text"]
        if rows[0]["metric"].startswith("pgf_"):
            label += f" ({rows[0]['better']})"
        body.append([label, rows[0]["metric"], *cells])
    return _markdown(header, body)


def budget_claims(rows: list[dict[str, str]]) -> str:
    """Each claim's paired difference and verdict, one column per training budget, and the
    first budget whose verdict differs from the smallest budget's."""
    budgets = sorted({int(r["budget"]) for r in rows})
    steps = {int(r["budget"]): (r["phase1_steps"], r["phase2_steps"]) for r in rows}
    header = ["claim (paper)", "metric"]
    header += [f"x{k} (N {steps[k][0]}, M {steps[k][1]})" for k in budgets]
    header += ["verdict changes at"]
    by_claim: dict[str, dict[int, dict[str, str]]] = {}
    for r in rows:
        by_claim.setdefault(r["claim"], {})[int(r["budget"])] = r
    body = []
    for found in by_claim.values():
        first = found[budgets[0]]
        cells = []
        for k in budgets:
            r = found.get(k)
            if r is None:
                cells.append("")
                continue
            digits = _claim_digits(r["metric"])
            diff = _num(r["difference"], digits)
            cells.append(f"{diff} [{_num(r['ci_low'], digits)}, {_num(r['ci_high'], digits)}] "
                         f"{r['verdict']}" if diff else r["verdict"])  # fmt: skip
        label = first["text"]
        if first["metric"].startswith("pgf_"):
            label += f" ({first['better']})"
        change = first.get("first_change_budget") or ""
        body.append([label, first["metric"], *cells, f"x{change}" if change else "never"])
    return _markdown(header, body)


def render_budget(folder: Path) -> str:
    """The budget study's block: the claims per budget and the study's figures."""
    title = f"**{BUDGET_TITLE}** (`results/{BUDGET_CLAIMS}`; one run per budget, k x N and "
    title += "k x M steps)"
    block = f"{title}\n\n{budget_claims(_rows(folder, BUDGET_CLAIMS))}"
    for name, alt in zip(
        BUDGET_FIGURES,
        ("Claims against the training budget", "Learning curves over training budgets"),
        strict=True,
    ):
        if (Path(folder) / name).is_file():
            block += f"\n\n![{alt}](results/{name})"
    return block


def render_studies(folder: Path) -> list[str]:
    """The sweep's and the extra seeds' blocks, for what ``folder`` holds (maybe none)."""
    folder = Path(folder)
    blocks = []
    if (folder / SWEEP).is_file():
        title = "**Phase-2 sweep, validation split** (`results/sweeps/phase2.csv`)"
        blocks.append(f"{title}\n\n{sweep(_rows(folder, SWEEP))}")
    if (folder / SEED_FOLDER).is_dir():
        renderers = (table1, table2, table3)
        for name, render_table in zip(SOURCES[:3], renderers, strict=True):
            title = (
                f"**Table {TABLE_NUMERALS[name]} over training seeds** (`results/seeds/{name}`: "
            )
            title += "seed 0 with its interval; seeds: mean ± sd)"
            blocks.append(f"{title}\n\n{render_table(_rows(folder, f'{SEED_FOLDER}/{name}'))}")
        claim_files = ["claims.csv", *_seed_claim_files(folder)]
        seeds = ["0", *(Path(n).stem.removeprefix("claims_seed") for n in claim_files[1:])]
        title = (
            "**Claims per training seed** (`results/claims.csv`, `results/seeds/claims_seed*.csv`)"
        )
        tables = [_rows(folder, name) for name in claim_files]
        blocks.append(f"{title}\n\n{seed_claims(tables, seeds)}")
    if (folder / BUDGET_CLAIMS).is_file():
        blocks.append(render_budget(folder))
    return blocks


def render(folder: Path) -> str:
    """The generated README block (without the markers) from the CSVs in ``folder``."""
    parts = [
        ("**Table I, cloud removal** (`results/table1.csv`)", table1),
        ("**Table II, land cover** (`results/table2.csv`)", table2),
        ("**Table III, ablations** (`results/table3.csv`)", table3),
        ("**The paper's claims on our test patches** (`results/claims.csv`)", claims),
    ]
    blocks = [
        f"{title}\n\n{render_table(_rows(folder, name))}"
        for (title, render_table), name in zip(parts, SOURCES, strict=True)
    ]
    return "\n\n".join([*blocks, *render_studies(folder)])


def render_headline(folder: Path) -> str:
    """The README's table: the measured rows of Tables I (PSNR) and II (mIoU), with intervals
    and the paper's values (the rows the paper reports alone are left to the full tables)."""
    header = ["", "method", "steps", "ours [95 % CI]", "paper (LuojiaSET-OSFCR)"]
    body = []
    for name, metric, title, digits in (
        ("table1.csv", "psnr", "Table I: PSNR (dB)", 2),
        ("table2.csv", "miou", "Table II: mIoU", 3),
    ):
        rows = [r for r in _rows(folder, name) if r.get(metric)]
        for i, r in enumerate(rows):
            label = f"{r['paradigm']}: {r['label']}" if r.get("paradigm") else r["label"]
            paper = _num(r.get(f"paper_{metric}", ""), digits)
            body.append([title if i == 0 else "", label, steps(r), cell(r, metric, digits), paper])
    return _markdown(header, body)


def replace_block(
    text: str, block: str, where: str = "README", begin: str = BEGIN, end: str = END
) -> str:
    """``text`` with the part between the markers replaced by ``block``."""
    if begin not in text or end not in text:
        raise InputDataError(f"{where}: markers {begin!r} ... {end!r} not found")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def generated_block(text: str, begin: str = BEGIN, end: str = END) -> str:
    """The part of ``text`` between the markers."""
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def _rewrite(path: Path, block: str, begin: str, end: str) -> None:
    text = replace_block(Path(path).read_text(), block, str(path), begin, end)
    with open_atomic(path) as fh:
        fh.write(text)


def update_readme(
    results: Path,
    readme: Path | None,
    snapshot: Path | None = None,
    page: Path | None = None,
) -> str:
    """Render ``results``' CSVs: the headline table into ``readme``, every table into ``page``
    (each if given); copy the CSVs to ``snapshot`` if given. Returns the full block."""
    block = render(results)
    if readme is not None:
        _rewrite(readme, render_headline(results), HEADLINE_BEGIN, HEADLINE_END)
    if page is not None:
        _rewrite(page, block, BEGIN, END)
    if snapshot is not None:
        for name in snapshot_files(results):
            (Path(snapshot) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(results) / name, Path(snapshot) / name)
    return block
