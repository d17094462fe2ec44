"""The paper's claims as paired comparisons on our test patches: ``results/claims.csv``.

Each claim says one method beats another on one metric (the claims listed at the end of the
paper's accuracy section in ``docs/model.md``, plus the Table I rankings they rest on). On our
data it is the paired difference ``better - worse`` on the same test patches, with a seeded
bootstrap interval over patches (:mod:`tdpcr.evaluation.statistics`; mIoU recomputed from each
resample's summed confusion matrices). Verdict, on the sign only:

- ``holds``: the interval lies above 0 (the claimed direction);
- ``contradicted``: it lies below 0;
- ``inconclusive``: it contains 0.

The paper's own difference is in ``paper_difference``, never mixed with ours; whether our
difference reaches its size is not part of the verdict.

The PGF rows (:data:`PGF_CLAIMS`, after the paper's) test the mechanism the paper shows in its
Fig. 4, "PGF relies on SAR where the optical input is corrupted", one row per method of
:data:`~tdpcr.evaluation.methods.PGF_METHODS`: the per-patch difference of the mean PGF SAR
weight inside minus outside the cloud mask (:mod:`tdpcr.evaluation.pgf`), averaged over the
4 PGF stages, with its bootstrap interval over patches. The paper gives no size, so the row
needs a stated minimum effect, :data:`PGF_MIN_EFFECT`: ``holds`` when the interval lies
above 0 and the difference reaches it, ``contradicted`` when the whole interval lies below
it (an effect that large is ruled out), ``inconclusive`` otherwise. The global-only ablation
is the control (its weights cannot vary within a patch): its row holds when the interval lies
within +-:data:`PGF_MIN_EFFECT`, and its difference should be 0 to rounding.

A claim against a method without an evaluation would be listed as ``not tested``; every
method the paper compares with is reimplemented, so none is.
Metrics where lower is better (RMSE, MAE, SAM) would be compared as ``worse - better``; every
claim of the paper here is on PSNR or mIoU.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.core.errors import InputDataError
from tdpcr.core.io import write_csv_atomic
from tdpcr.core.specs import LOWER_IS_BETTER, PGF_GAP_MEAN, pgf_stage_key
from tdpcr.evaluation.methods import PGF_CONTROL, PGF_METHODS
from tdpcr.evaluation.statistics import Bootstrap, Interval, Statistic
from tdpcr.evaluation.tables import Uncertainty, per_patch_statistic, read_evaluations

HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = (
    "holds",
    "contradicted",
    "inconclusive",
    "not tested",
)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``better`` beats ``worse`` on ``metric``.

    Attributes:
        key: short identifier (a row of claims.csv).
        text: the claim as the paper makes it.
        metric: metric name of the evaluation JSONs (``psnr``, ``miou``, ``pgf_sar_gap``...).
        better: the method claimed better.
        worse: the method(s) claimed worse; with several, the best of them on our data (the
            "best multi-stage pipeline").
        paper_difference: the paper's own difference in our units (dB, fractions), if any.
        untestable: why the claim cannot be tested here (a method we did not reimplement).
    """

    key: str
    text: str
    metric: str
    better: str
    worse: tuple[str, ...]
    paper_difference: float | None = None
    untestable: str = ""

    @property
    def methods(self) -> tuple[str, ...]:
        """Evaluated methods the claim needs."""
        return () if self.untestable else (self.better, *self.worse)


#: The paper's claims (docs/model.md) in the order the paper makes them.
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "full-beats-dsen2cr-psnr",
        "TDP-CR (Full) reconstructs better than DSen2-CR (Table I: 33.10 vs 28.52 dB)",
        "psnr",
        "tdpcr-full",
        ("dsen2cr",),
        33.10 - 28.52,
    ),
    Claim(
        "cr-only-beats-dsen2cr-psnr",
        "TDP-CR (CR-only) reconstructs better than DSen2-CR (Table I: 32.41 vs 28.52 dB)",
        "psnr",
        "tdpcr-cr",
        ("dsen2cr",),
        32.41 - 28.52,
    ),
    Claim(
        "full-beats-emrdm-psnr",
        "Full beats EMRDM by 0.18 dB PSNR with 15 % of its parameters",
        "psnr",
        "tdpcr-full",
        ("emrdm",),
        33.10 - 32.92,
    ),
    Claim(
        "peft-raises-psnr",
        "Phase 2 (PEFT) raises PSNR over CR-only (32.41 -> 33.10 dB)",
        "psnr",
        "tdpcr-full",
        ("tdpcr-cr",),
        33.10 - 32.41,
    ),
    Claim(
        "multitask-beats-multistage-miou",
        "Multi-task TDP-CR beats the best multi-stage pipeline by 2.6 mIoU (paper: vs "
        "EMRDM -> SegFormer)",
        "miou",
        "tdpcr-full",
        (
            "dsen2cr+segformer-clear",
            "glfcr+segformer-clear",
            "hpncr+segformer-clear",
            "emrdm+segformer-clear",
            "tdpcr-cr+segformer-clear",
        ),
        0.618 - 0.592,
    ),
    Claim(
        "multitask-beats-cloudseg-miou",
        "Multi-task TDP-CR beats CloudSeg by 1.4 mIoU",
        "miou",
        "tdpcr-full",
        ("cloudseg",),
        0.618 - 0.604,
    ),
    Claim(
        "local-branch-adds-psnr",
        "Adding the local branch to the global one gives +1.25 dB PSNR",
        "psnr",
        "tdpcr-full",
        ("tdpcr-global-full",),
        33.10 - 31.85,
    ),
    Claim(
        "local-branch-adds-miou",
        "Adding the local branch to the global one gives +5.0 mIoU",
        "miou",
        "tdpcr-full",
        ("tdpcr-global-full",),
        0.618 - 0.568,
    ),
    Claim(
        "peft-beats-joint-miou",
        "Joint training loses 6.7 mIoU to phase 1 + PEFT",
        "miou",
        "tdpcr-full",
        ("tdpcr-joint",),
        0.618 - 0.551,
    ),
    Claim(
        "fpft-costs-psnr",
        "Phase 1 + FPFT costs PSNR (32.28 vs 33.10 dB)",
        "psnr",
        "tdpcr-full",
        ("tdpcr-fpft",),
        33.10 - 32.28,
    ),
)

COLUMNS: tuple[str, ...] = (
    "claim",
    "text",
    "metric",
    "better",
    "worse",
    "better_steps",
    "worse_steps",
    "difference",
    "ci_low",
    "ci_high",
    "verdict",
    "paper_difference",
    "patches",
    "groups",
    "resamples",
    "confidence",
    "note",
)


#: Smallest cloudy - clear difference of the PGF SAR weight (a weight in [0, 1]) that counts
#: as "relies on SAR where the optical input is corrupted"; ours, the paper states none.
PGF_MIN_EFFECT = 0.05


@dataclass(frozen=True)
class PGFClaim:
    """The PGF-behaviour claim on one method (a row of claims.csv).

    Attributes:
        key: short identifier.
        text: what the row tests.
        method: the evaluated TDP-CR method.
        control: the method's weights cannot vary in space (the difference must be ~0).
    """

    key: str
    text: str
    method: str
    control: bool = False


def _pgf_claims() -> tuple[PGFClaim, ...]:
    claims = []
    for method in PGF_METHODS:
        control = method == PGF_CONTROL
        text = "PGF relies on SAR where the optical input is corrupted"
        if control:
            text = "Control: PGF global only cannot vary in space (cloudy - clear SAR weight ~0)"
        claims.append(PGFClaim(f"pgf-sar-where-corrupted-{method}", text, method, control))
    return tuple(claims)


#: The PGF-behaviour rows, one per method of PGF_METHODS.
PGF_CLAIMS: tuple[PGFClaim, ...] = _pgf_claims()


def claim_methods() -> tuple[str, ...]:
    """Every evaluated method some claim needs (the claims rule's inputs)."""
    methods = [m for claim in CLAIMS for m in claim.methods]
    return tuple(dict.fromkeys([*methods, *(c.method for c in PGF_CLAIMS)]))


def verdict(interval: Interval) -> str:
    """``holds`` / ``contradicted`` / ``inconclusive`` from the interval of ``better - worse``."""
    if interval.low > 0:
        return HOLDS
    if interval.high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def _aligned(evaluations: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """The test patch ids shared by ``names``; their evaluations must list the same patches."""
    ids = [evaluations[n]["per_patch"]["patch_id"] for n in names]
    for name, other in zip(names[1:], ids[1:], strict=True):
        if other != ids[0]:
            raise InputDataError(
                f"evaluations of {names[0]} and {name} scored different test patches; "
                "evaluate both on the same store"
            )
    return ids[0]


def _oriented(metric: str, statistic: Statistic) -> Statistic:
    """The statistic signed so that larger is better."""
    if metric.partition("_")[0] in LOWER_IS_BETTER:
        return lambda weights: -statistic(weights)
    return statistic


def evaluate_claim(
    claim: Claim,
    evaluations: Mapping[str, Mapping[str, Any]],
    uncertainty: Uncertainty | None = None,
) -> dict[str, Any]:
    """One row of claims.csv (bootstrap settings: the schema's unless given)."""
    uncertainty = uncertainty or Uncertainty.default()
    row: dict[str, Any] = {
        "claim": claim.key,
        "text": claim.text,
        "metric": claim.metric,
        "better": claim.better,
        "worse": ";".join(claim.worse),
        "paper_difference": None
        if claim.paper_difference is None
        else round(claim.paper_difference, 4),
    }
    if claim.untestable:
        return {**row, "verdict": NOT_TESTED, "note": claim.untestable}
    missing = [m for m in claim.methods if m not in evaluations]
    if missing:
        raise InputDataError(f"claim {claim.key}: evaluation of method {missing[0]!r} missing")
    ids = _aligned(evaluations, claim.methods)
    better = _oriented(claim.metric, per_patch_statistic(evaluations[claim.better], claim.metric))
    rivals = {
        name: _oriented(claim.metric, per_patch_statistic(evaluations[name], claim.metric))
        for name in claim.worse
    }
    bootstrap = Bootstrap(len(ids), uncertainty.resamples, uncertainty.seed, uncertainty.confidence)
    ones = [[1.0] * len(ids)]
    # The rival is the best of `worse` on all patches (then compared on the same resamples).
    worse = max(rivals, key=lambda name: float(rivals[name](ones)[0]))
    interval = bootstrap.difference(better, rivals[worse])
    groups = evaluations[claim.better]["per_patch"].get("group", [])
    note = f"worse = {worse} (best of {', '.join(claim.worse)})" if len(rivals) > 1 else ""
    return {
        **row,
        "worse": worse,
        "better_steps": evaluations[claim.better].get("train_steps", ""),
        "worse_steps": evaluations[worse].get("train_steps", ""),
        "difference": round(interval.value, 4),
        "ci_low": round(interval.low, 4),
        "ci_high": round(interval.high, 4),
        "verdict": verdict(interval),
        "patches": len(ids),
        "groups": len(set(groups)),
        "resamples": uncertainty.resamples,
        "confidence": uncertainty.confidence,
        "note": note,
    }


def pgf_verdict(interval: Interval, control: bool) -> str:
    """Verdict of a PGF row from the interval of cloudy - clear (see the module docstring)."""
    if control:
        if interval.low > -PGF_MIN_EFFECT and interval.high < PGF_MIN_EFFECT:
            return HOLDS
        if interval.low >= PGF_MIN_EFFECT or interval.high <= -PGF_MIN_EFFECT:
            return CONTRADICTED
        return INCONCLUSIVE
    if interval.low > 0 and interval.value >= PGF_MIN_EFFECT:
        return HOLDS
    if interval.high < PGF_MIN_EFFECT:
        return CONTRADICTED
    return INCONCLUSIVE


def evaluate_pgf_claim(
    claim: PGFClaim,
    evaluations: Mapping[str, Mapping[str, Any]],
    uncertainty: Uncertainty | None = None,
) -> dict[str, Any]:
    """One PGF row of claims.csv: the bootstrap interval of the mean cloudy - clear weight."""
    uncertainty = uncertainty or Uncertainty.default()
    evaluation = evaluations.get(claim.method)
    if evaluation is None:
        raise InputDataError(f"claim {claim.key}: evaluation of method {claim.method!r} missing")
    per_patch = evaluation.get("per_patch", {})
    if PGF_GAP_MEAN not in per_patch:
        raise InputDataError(
            f"claim {claim.key}: evaluation of {claim.method} has no PGF weights "
            "(re-run tdpcr evaluate with --pgf)"
        )
    gaps = np.asarray(per_patch[PGF_GAP_MEAN], dtype=np.float64)
    stages = [
        float(np.nanmean(np.asarray(per_patch[pgf_stage_key("gap", s)], dtype=np.float64)))
        for s in range(1, int(evaluation.get("pgf", {}).get("stages", 0)) + 1)
    ]
    bootstrap = Bootstrap(
        len(gaps), uncertainty.resamples, uncertainty.seed, uncertainty.confidence
    )
    interval = bootstrap.interval(per_patch_statistic(evaluation, PGF_GAP_MEAN))
    per_stage = ", ".join(f"s{i} {v:+.4f}" for i, v in enumerate(stages, start=1))
    note = (
        f"mean over the {len(stages)} PGF stages of cloudy - clear mean SAR weight per patch "
        f"(per stage: {per_stage}); minimum effect {PGF_MIN_EFFECT}"
    )
    return {
        "claim": claim.key,
        "text": claim.text,
        "metric": PGF_GAP_MEAN,
        "better": claim.method,
        "worse": "",
        "difference": round(interval.value, 6),
        "ci_low": round(interval.low, 6),
        "ci_high": round(interval.high, 6),
        "verdict": pgf_verdict(interval, claim.control),
        "paper_difference": None,
        "patches": int(np.isfinite(gaps).sum()),
        "groups": len(set(per_patch.get("group", []))),
        "resamples": uncertainty.resamples,
        "confidence": uncertainty.confidence,
        "note": ("control; " if claim.control else "") + note,
    }


def write_claims(
    evaluation_files: Sequence[Path], out: Path, uncertainty: Uncertainty | None = None
) -> list[dict[str, Any]]:
    """Test every claim on the evaluations and write ``claims.csv`` atomically."""
    rows = claim_rows(read_evaluations(evaluation_files), uncertainty)
    write_csv_atomic(out, rows, COLUMNS)
    return rows


def claim_rows(
    evaluations: Mapping[str, Mapping[str, Any]], uncertainty: Uncertainty | None = None
) -> list[dict[str, Any]]:
    """Every row of claims.csv: the paper's claims, then the PGF rows."""
    rows = [evaluate_claim(claim, evaluations, uncertainty) for claim in CLAIMS]
    rows += [evaluate_pgf_claim(claim, evaluations, uncertainty) for claim in PGF_CLAIMS]
    return rows


def read_claims(path: Path) -> list[dict[str, str]]:
    """Rows of a claims.csv."""
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))
