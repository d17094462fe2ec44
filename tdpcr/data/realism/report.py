"""The realism report (JSON and figure) and the ``tdpcr realism`` command."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from tdpcr.core.specs import CLASS_NAMES
from tdpcr.data.realism.figure import plot_report
from tdpcr.data.realism.measures import (
    APPARENT_CLOUD_B2,
    BOXCAR,
    MIN_CLASS_PIXELS,
    OPACITY_BINS,
    SAR_BINS,
    TARGETS,
    VEGETATION,
    check_targets,
    difficulty,
    measure_dataset,
)
from tdpcr.data.realism.samples import PATCH_SIZE, REAL_KINDS, default_real_roots, scene_samples


def write_realism_report(
    synthetic_root: Path,
    real_roots: list[tuple[str, Path]] | None,
    out_json: Path,
    out_png: Path,
    evals: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Measure the synthetic scenes and the real samples; write the JSON and the figure.

    Args:
        synthetic_root: folder of synthetic (or any) scene folders.
        real_roots: ``(kind, folder)`` pairs, kind one of :data:`REAL_KINDS`; a kind may be
            written ``kind:name`` to name the dataset (default: the kind). ``None`` or empty:
            synthetic only.
        out_json: the report, written atomically.
        out_png: its figure, written atomically.
        evals: ``{"clear", "cloudy", "sar"}`` -> evaluation JSON of the Direct segmenters
            (``results/eval/segformer-*.json``); missing files are left out.

    Returns:
        The report as written.
    """
    from tdpcr import __version__
    from tdpcr.core.errors import InputDataError
    from tdpcr.core.io import write_json_atomic

    datasets: dict[str, Any] = {}
    synth = measure_dataset(scene_samples(Path(synthetic_root), "synthetic"))
    datasets["synthetic"] = {"kind": "synthetic", "root": str(synthetic_root), **synth}
    for kind_name, root in real_roots or []:
        kind, _, name = kind_name.partition(":")
        if kind not in REAL_KINDS:
            raise InputDataError(
                f"realism: unknown real-data kind {kind!r}; expected one of {', '.join(REAL_KINDS)}"
            )
        name = name or kind.replace("-", "_")
        datasets[name] = {
            "kind": kind,
            "root": str(root),
            **measure_dataset(REAL_KINDS[kind](Path(root), name)),
        }
    report: dict[str, Any] = {
        "generator": f"tdpcr {__version__} tdpcr.data.realism",
        "conventions": {
            "boxcar": BOXCAR,
            "patch_size": PATCH_SIZE,
            "min_class_pixels": MIN_CLASS_PIXELS,
            "class_pixels": "class-interior pixels (5x5 window of one class)",
            "fisher": "between-class / within-class variance of boxcar dB, per patch",
            "vegetation": [CLASS_NAMES[c] for c in VEGETATION],
            "luojiaset_legend": "values kept (undocumented); all values treated as vegetation",
            "apparent_opacity": f"(B2 cloudy - B2 clear) / ({APPARENT_CLOUD_B2} - B2 clear)",
            "sar_bins_db": [float(SAR_BINS[0]), float(SAR_BINS[-1]), 0.5],
            "opacity_bins": [0.0, 1.0, len(OPACITY_BINS) - 1],
        },
        "targets": TARGETS,
        "within_targets": check_targets(datasets["synthetic"]),
        "difficulty": difficulty(evals),
        "datasets": datasets,
    }
    write_json_atomic(out_json, report)
    plot_report(report, Path(out_png))
    return report


def _fmt_range(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "n/a"
    return f"{stats['min']:.2f} to {stats['max']:.2f}"


def comparison_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """The issue's table: measure -> dataset -> "min to max" string."""
    rows = [
        ("Fisher ratio, vegetation classes (VV, VH)", "fisher_vegetation"),
        ("Fisher ratio, all classes, VV", "fisher_all_vv"),
        ("Fisher ratio, all classes, VH", "fisher_all_vh"),
        ("within-class |corr(VH, B8)|", "within_class_abs_corr_vh_b8"),
        ("whole-patch corr(VH, NDVI)", "corr_vh_ndvi"),
        ("vegetation B8 reflectance", "vegetation_b8"),
        ("clear-sky |dB8|/B8 between dates", "time_gap_b8"),
    ]
    return [
        (label, {n: _fmt_range(d["summary"].get(key)) for n, d in report["datasets"].items()})
        for label, key in rows
    ]


_REAL_RE = re.compile(r"^(?P<kind>[a-z0-9-]+(?::[A-Za-z0-9_-]+)?)=(?P<path>.+)$")


def run_command(args: argparse.Namespace) -> None:
    """``tdpcr realism`` (its arguments are defined in :mod:`tdpcr.data.commands`)."""
    from tdpcr.core.errors import ConfigError

    real: list[tuple[str, Path]] = []
    if args.realdata:
        realdata = Path(args.realdata)
        if realdata.is_dir():
            real += default_real_roots(realdata)
    for spec in args.real or []:
        match = _REAL_RE.match(spec)
        if match is None:
            raise ConfigError(
                f"--real {spec!r}: expected KIND=PATH, KIND one of {', '.join(REAL_KINDS)}"
            )
        real.append((match["kind"], Path(match["path"])))
    evals = {
        key: Path(path)
        for key, path in (
            ("clear", args.eval_clear),
            ("cloudy", args.eval_cloudy),
            ("sar", args.eval_sar),
        )
        if path
    }
    report = write_realism_report(
        Path(args.synthetic), real, Path(args.out), Path(args.figure), evals
    )
    print(
        json.dumps(
            {"within_targets": report["within_targets"], "difficulty": report["difficulty"]},
            indent=2,
        )
    )
