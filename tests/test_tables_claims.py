"""Tables I-III, bootstrap intervals and the claims: from evaluation JSONs, no model needed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tdpcr.cli import main
from tdpcr.core.metrics import pa_miou
from tdpcr.core.paper import PAPER_COMPLEXITY, PAPER_TABLES
from tdpcr.core.specs import (
    CLASS_IOU,
    CLASS_NAMES,
    CR_METRICS,
    PGF_GAP_MEAN,
    REGIONS,
    SEG_METRICS,
    pgf_stage_key,
)
from tdpcr.evaluation.claims import (
    CLAIMS,
    PGF_CLAIMS,
    claim_methods,
    evaluate_claim,
    read_claims,
)
from tdpcr.evaluation.methods import METHODS, PGF_METHODS
from tdpcr.evaluation.statistics import Bootstrap, confusion_statistic, mean_of
from tdpcr.evaluation.tables import NOT_REIMPLEMENTED, PAPER_NOTE, TABLES, table_methods

PATCHES = 16
K = len(CLASS_NAMES)


def fake_evaluation(name: str, quality: float, seed: int = 0) -> dict:
    """An evaluation JSON of ``name`` whose metrics follow from its per-patch values.

    ``quality`` shifts every score (higher = better), so comparisons have a known sign.
    """
    rng = np.random.default_rng(seed)
    method = METHODS[name]
    ids = [f"scene{i // 4}_r{i % 4}_c0" for i in range(PATCHES)]
    per_patch: dict = {"patch_id": ids, "group": [i.split("_")[0] for i in ids]}
    metrics: dict = {}
    if method.scores_cr:
        for metric in CR_METRICS:
            base = {"psnr": 25.0, "ssim": 0.8, "rmse": 0.05, "mae": 0.03, "sam": 5.0}
            sign = -1 if metric.split("_")[0] in ("rmse", "mae", "sam") else 1
            center = base[metric.split("_")[0]] * (1 + sign * 0.1 * quality)
            values = center + rng.normal(0, 0.02 * center, PATCHES)
            if metric == "ssim_cloudy":
                values[0] = np.nan  # a patch without cloudy pixels
            per_patch[metric] = values.tolist()
            metrics[metric] = float(np.nanmean(values))
    if method.scores_seg:
        confusion = {}
        for region in REGIONS:
            cms = rng.integers(0, 20, (PATCHES, K, K))
            cms[:, np.arange(K), np.arange(K)] += int(100 * (1 + quality))
            confusion[region.removeprefix("_") or "all"] = cms.tolist()
            pa, miou, per_class = pa_miou(torch.as_tensor(cms.sum(0)))
            metrics[f"pa{region}"], metrics[f"miou{region}"] = pa, miou
            if region == "":
                metrics.update(dict(zip(CLASS_IOU, per_class, strict=True)))
        per_patch["confusion"] = confusion
    if name in PGF_METHODS:  # the PGF SAR weight per stage: cloudy above clear with quality
        gaps = []
        for stage in range(1, 5):
            clear = rng.uniform(0.3, 0.5, PATCHES)
            cloudy = clear + 0.1 * quality + rng.normal(0, 0.01, PATCHES)
            per_patch[pgf_stage_key("cloudy", stage)] = cloudy.tolist()
            per_patch[pgf_stage_key("clear", stage)] = clear.tolist()
            per_patch[pgf_stage_key("gap", stage)] = (cloudy - clear).tolist()
            gaps.append(cloudy - clear)
        per_patch[PGF_GAP_MEAN] = np.mean(gaps, axis=0).tolist()
    return {
        "method": name,
        "metrics": metrics,
        "per_patch": per_patch,
        "mlflow_run_id": f"run-{name}",
    }


def write_evaluations(folder: Path, quality: dict[str, float] | None = None, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    methods = sorted({m for table in TABLES for m in table_methods(table)} | set(claim_methods()))
    paths = []
    for i, name in enumerate(methods):
        q = (quality or {}).get(name, i / len(methods))
        path = folder / f"{name}.json"
        path.write_text(json.dumps(fake_evaluation(name, q, seed + i)))
        paths.append(path)
    return paths


def fake_complexity(path: Path) -> Path:
    from tdpcr.benchmarks.complexity import write_rows_csv

    rows = []
    for k, (model, variant) in enumerate(
        [
            ("tdpcr", "cr-only"),
            ("tdpcr", "full"),
            ("dsen2cr", "cr"),
            ("segformer", "sar-2"),
            ("glfcr", "cr"),
            ("hpncr", "cr"),
            ("emrdm", "per-evaluation"),
            ("cloudseg", "multi-task"),
        ]
    ):
        for size, scale in (("configured", 1), ("paper", 10)):
            rows.append(
                {
                    "model": model,
                    "variant": variant,
                    "size": size,
                    "params_M": scale * (k + 1.5),
                    "macs_G": scale * (k + 2.25),
                }
            )
    return write_rows_csv(rows, path)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- statistics
def test_bootstrap_is_seeded_and_covers_the_mean() -> None:
    values = np.random.default_rng(3).normal(10.0, 1.0, 200)
    first = Bootstrap(200, 1000, seed=1).interval(mean_of(values))
    again = Bootstrap(200, 1000, seed=1).interval(mean_of(values))
    assert first == again
    assert first.value == pytest.approx(values.mean())
    assert first.low < values.mean() < first.high
    # Standard error of the mean 1 / sqrt(200) = 0.071: the 95 % interval is about +-0.14.
    assert 0.2 < first.high - first.low < 0.36


def test_bootstrap_leaves_out_patches_without_a_value() -> None:
    values = np.array([1.0, np.nan, 3.0, np.nan])
    assert Bootstrap(4, 200).interval(mean_of(values)).value == pytest.approx(2.0)


def test_miou_is_recomputed_from_summed_matrices() -> None:
    # Patch 0 sees only class 0, patch 1 only class 1: per-patch mIoU averages differ from
    # the mIoU of the summed matrix, which is what the split's mIoU is.
    cms = np.zeros((2, 2, 2))
    cms[0, 0, 0], cms[0, 0, 1] = 90, 10
    cms[1, 1, 1], cms[1, 1, 0] = 10, 10
    statistic = confusion_statistic(cms, "miou")
    _, expected, _ = pa_miou(torch.as_tensor(cms.sum(0)))
    assert statistic(np.ones((1, 2)))[0] == pytest.approx(expected)
    pa = confusion_statistic(cms, "pa")(np.ones((1, 2)))[0]
    assert pa == pytest.approx(100 / 120)


def test_paired_difference_is_tighter_than_separate_intervals() -> None:
    rng = np.random.default_rng(0)
    common = rng.normal(30, 3, 64)  # patch difficulty shared by both methods
    a, b = common + 0.5 + rng.normal(0, 0.2, 64), common + rng.normal(0, 0.2, 64)
    boot = Bootstrap(64, 2000)
    diff = boot.difference(mean_of(a), mean_of(b))
    assert diff.low > 0  # the 0.5 dB gain is certain when paired
    separate = boot.interval(mean_of(a)), boot.interval(mean_of(b))
    assert separate[0].low < separate[1].high  # ...though the two intervals overlap


# --------------------------------------------------------------------------- tables
def test_tables_have_their_rows_columns_intervals_and_paper_values_apart(tmp_path: Path) -> None:
    evals = write_evaluations(tmp_path / "eval")
    data = {p.stem: json.loads(p.read_text()) for p in evals}
    complexity = fake_complexity(tmp_path / "complexity.csv")
    tables = {}
    for table, spec in TABLES.items():
        out = tmp_path / f"{table}.csv"
        args = ["table", table, "--evals", *map(str, evals), "--out", str(out)]
        args += ["--resamples", "300"]
        if spec.extra:
            args += ["--complexity", str(complexity)]
        assert main(args) == 0
        tables[table] = rows = read_csv(out)
        assert list(rows[0]) == list(spec.columns)
        assert len(rows) == len(spec.rows)
        for row, spec_row in zip(rows, spec.rows, strict=True):
            assert row["paper_note"].startswith(PAPER_NOTE)
            paper = PAPER_TABLES[table].get(spec_row.key, {})
            for metric in spec.paper:
                if metric in paper:
                    assert float(row[f"paper_{metric}"]) == paper[metric]  # only the paper's
            if row["status"] == NOT_REIMPLEMENTED:
                assert all(row[m] == "" for m in spec.metrics) and row["mlflow_run_id"] == ""
                continue
            evaluation = data[row["method"]]
            assert row["mlflow_run_id"] == evaluation["mlflow_run_id"]
            assert row["seeds"] == "1" and row[f"{spec.metrics[0]}_seed_sd"] == ""
            for metric in spec.metrics:
                value = float(row[metric])
                assert value == pytest.approx(evaluation["metrics"][metric], abs=1e-4)
                low, high = float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"])
                assert low <= value + 1e-4 and value - 1e-4 <= high and low < high, metric
    t1 = {row.key: r for r, row in zip(tables["table1"], TABLES["table1"].rows, strict=True)}
    for key, (params, flops) in PAPER_COMPLEXITY.items():
        assert (float(t1[key]["paper_params_M"]), float(t1[key]["paper_flops_G"])) == (
            params,
            flops,
        )
    assert t1["dsen2cr"]["params_M"] == "3.5" and t1["dsen2cr"]["params_M_at_paper_size"] == "35.0"
    assert t1["cloudy-input"]["params_M"] == "" and t1["cloudy-input"]["paper_psnr"] == ""
    assert "per sampling step" in t1["emrdm"]["paper_note"]
    assert t1["glf-cr"]["params_M"] == "5.5" and t1["cloudseg"]["macs_G_at_paper_size"] == "92.5"
    t2 = tables["table2"]
    assert [r["method"] for r in (*t1.values(), *t2) if r["status"] == NOT_REIMPLEMENTED] == []
    assert float(t2[0]["paper_miou"]) == 0.721  # SegFormer on clear: 72.1 % in the paper
    assert set(CLASS_IOU) <= set(t2[0])


def test_tables_report_the_spread_over_seeds(tmp_path: Path) -> None:
    evals = write_evaluations(tmp_path / "s0")
    others = [write_evaluations(tmp_path / f"s{s}", seed=100 * s) for s in (1, 2)]
    out = tmp_path / "table3.csv"
    groups = [",".join(map(str, paths)) for paths in others]
    args = ["table", "table3", "--evals", *map(str, evals), "--seed-evals", *groups]
    assert main([*args, "--out", str(out), "--resamples", "200"]) == 0
    row = read_csv(out)[0]
    values = [
        json.loads((tmp_path / f"s{s}" / f"{row['method']}.json").read_text())["metrics"]["psnr"]
        for s in (0, 1, 2)
    ]
    assert row["seeds"] == "3"
    assert float(row["psnr_seed_mean"]) == pytest.approx(np.mean(values), abs=1e-4)
    assert float(row["psnr_seed_sd"]) == pytest.approx(np.std(values, ddof=1), abs=1e-4)


def test_table_refuses_a_missing_evaluation(tmp_path: Path, capsys) -> None:
    evals = [p for p in write_evaluations(tmp_path) if p.stem != "segformer-sar"]
    out = tmp_path / "table2.csv"
    assert main(["table", "table2", "--evals", *map(str, evals), "--out", str(out)]) == 2
    assert "segformer-sar" in capsys.readouterr().err and not out.exists()


# --------------------------------------------------------------------------- claims
def test_claims_verdicts_follow_the_paired_interval(tmp_path: Path) -> None:
    # tdpcr-full clearly best; dsen2cr clearly worse; joint equal to full (same quality).
    quality = {name: 0.0 for name in claim_methods()}
    quality.update({"tdpcr-full": 1.0, "tdpcr-joint": 1.0, "tdpcr-fpft": 2.0})
    evals = write_evaluations(tmp_path / "eval", quality)
    out = tmp_path / "claims.csv"
    assert (
        main(["claims", "--evals", *map(str, evals), "--out", str(out), "--resamples", "500"]) == 0
    )
    rows = {r["claim"]: r for r in read_claims(out)}
    assert list(rows) == [c.key for c in (*CLAIMS, *PGF_CLAIMS)]
    assert all(rows[c.key]["verdict"] for c in PGF_CLAIMS)
    rows = {c.key: rows[c.key] for c in CLAIMS}  # the sign-only verdicts below
    assert rows["full-beats-dsen2cr-psnr"]["verdict"] == "holds"
    assert rows["fpft-costs-psnr"]["verdict"] == "contradicted"  # FPFT is better here
    assert rows["full-beats-emrdm-psnr"]["verdict"] == "holds"  # every method reimplemented
    assert rows["multitask-beats-cloudseg-miou"]["verdict"] == "holds"
    for row in rows.values():
        if row["verdict"] in ("holds", "contradicted", "inconclusive"):
            low, high = float(row["ci_low"]), float(row["ci_high"])
            assert low <= float(row["difference"]) <= high
            assert row["patches"] == str(PATCHES) and row["groups"] == "4"
            assert (row["verdict"] == "holds") == (low > 0)
            assert (row["verdict"] == "contradicted") == (high < 0)
    multi = rows["multitask-beats-multistage-miou"]
    assert multi["worse"] in next(c.worse for c in CLAIMS if c.key == multi["claim"])
    assert float(multi["paper_difference"]) == pytest.approx(0.026)


def test_a_claim_with_equal_methods_is_inconclusive() -> None:
    claim = next(c for c in CLAIMS if c.key == "peft-beats-joint-miou")
    evaluations = {
        "tdpcr-full": fake_evaluation("tdpcr-full", 0.5, seed=1),
        "tdpcr-joint": fake_evaluation("tdpcr-joint", 0.5, seed=2),
    }
    row = evaluate_claim(claim, evaluations)
    assert row["verdict"] == "inconclusive" and float(row["ci_low"]) < 0 < float(row["ci_high"])


def test_claims_refuse_evaluations_of_different_patches() -> None:
    claim = next(c for c in CLAIMS if c.key == "fpft-costs-psnr")
    other = fake_evaluation("tdpcr-fpft", 0.0)
    other["per_patch"]["patch_id"] = other["per_patch"]["patch_id"][::-1]
    evaluations = {"tdpcr-full": fake_evaluation("tdpcr-full", 0.0), "tdpcr-fpft": other}
    from tdpcr.core.errors import InputDataError

    with pytest.raises(InputDataError, match="different test patches"):
        evaluate_claim(claim, evaluations)


def test_every_claim_names_metrics_the_evaluations_have() -> None:
    for claim in CLAIMS:
        assert claim.metric in (*CR_METRICS, *SEG_METRICS)
        assert all(m in METHODS for m in claim.methods)
        if claim.paper_difference is not None:
            assert not math.isnan(claim.paper_difference)
