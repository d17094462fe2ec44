"""The phase-2 sweep: PSNR against mIoU over fine-tuning learning rates and loss weights.

Each point of ``snakemake results/sweeps/phase2.csv`` is TDP-CR Full fine-tuned from the same
phase-1 checkpoint with other settings (the pretrained prompt generator and PGF's learning rate
``train.finetune_lr.{prompt,fusion}``, ``train.lambda_seg``, the seed), evaluated on the
*validation* split: the sweep chooses defaults, so it must not look at the test patches.
:func:`write_sweep` reads the points' evaluations and checkpoints, writes the CSV and a
trade-off figure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from tdpcr.core.checkpoint import read_meta
from tdpcr.core.errors import InputDataError
from tdpcr.core.io import write_csv_atomic

#: Settings recorded per point (dotted config keys) and the validation metrics.
SETTINGS: tuple[str, ...] = (
    "train.finetune_lr.prompt",
    "train.finetune_lr.fusion",
    "train.finetune_lr.head",
    "train.lr",
    "train.lambda_seg",
    "train.lambda_rec",
    "train.seed",
)
METRICS: tuple[str, ...] = ("psnr", "ssim", "psnr_cloudy", "psnr_clear", "miou", "pa")
COLUMNS: tuple[str, ...] = ("point", *SETTINGS, *METRICS, "step", "split")


def _setting(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def sweep_row(evaluation_file: Path) -> dict[str, Any]:
    """One point: its settings (from the checkpoint's config) and validation metrics."""
    evaluation = json.loads(Path(evaluation_file).read_text())
    info = evaluation["models"].get("tdpcr-full")
    if info is None:
        raise InputDataError(f"{evaluation_file}: not an evaluation of tdpcr-full")
    meta = read_meta(Path(info["checkpoint"]).parent)
    row = {"point": Path(evaluation_file).parent.name, "split": evaluation["split"]}
    row.update({key: _setting(meta.config, key) for key in SETTINGS})
    row.update({m: evaluation["metrics"].get(m) for m in METRICS})
    row["step"] = meta.step
    return row


def _rate(row: dict[str, Any]) -> float:
    """The learning rate of the pretrained prompt generator and PGF at a point."""
    return float(row["train.finetune_lr.prompt"] or row["train.lr"])


def plot_tradeoff(rows: Sequence[dict[str, Any]], out: Path) -> Path:
    """Validation PSNR against mIoU, one marker per point, labelled by its settings."""
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    seg_values = sorted({r["train.lambda_seg"] for r in rows})
    markers = dict(zip(seg_values, "osD^v<>", strict=False))
    rates = sorted({_rate(r) for r in rows})
    for row in rows:
        lr = _rate(row)
        colour = colormaps["viridis"](rates.index(lr) / max(len(rates) - 1, 1))
        ax.scatter(
            row["miou"], row["psnr"], marker=markers[row["train.lambda_seg"]], color=colour, s=40
        )
        ax.annotate(f"lr {lr:g}, λseg {row['train.lambda_seg']:g}", (row["miou"], row["psnr"]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("validation mIoU")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("Phase 2 (PEFT): reconstruction against segmentation", fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=200)
    tmp.replace(out)
    return out


def write_sweep(evaluation_files: Sequence[Path], out_csv: Path, out_png: Path) -> list[dict]:
    """The sweep's CSV and figure from its points' validation evaluations."""
    rows = sorted((sweep_row(Path(p)) for p in evaluation_files), key=lambda r: r["point"])
    if not rows:
        raise InputDataError("sweep: no evaluation given")
    write_csv_atomic(out_csv, rows, COLUMNS)
    plot_tradeoff(rows, out_png)
    return rows
