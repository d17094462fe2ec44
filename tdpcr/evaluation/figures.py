"""The paper-style figures: cloud removal, prompt maps, segmentation maps, training curves.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global state) and saved as PNG at :data:`DPI`. Predictions come from the same
:func:`~tdpcr.evaluation.protocols.predict` the evaluation scores, so a figure shows exactly
what a table row measures.

RGB composites are B4, B3, B2 with a 2-98 % percentile stretch per band. Within a row the
stretch limits come from the cloud-free reference and are applied to every optical image of
that row, so the cloudy input, the reconstructions and the reference share one colour scale
(per-image limits would let thick cloud compress the cloudy image's scale and make a
reconstruction look better or worse than it is).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from tdpcr.core.errors import InputDataError
from tdpcr.core.metrics import corrupted
from tdpcr.core.rendering import class_colors, landcover_rgb, rgb_composite, stretch
from tdpcr.core.runtime import (
    autocast,
    reuse_cpu_memory_on,
    select_device,
    set_threads,
    to_device,
)
from tdpcr.core.specs import CLASS_NAMES, CLOUDMASK_UNKNOWN, IGNORE_INDEX
from tdpcr.evaluation.methods import FIG3_METHODS, FIG4_VARIANT, FIG5_METHODS, get_method

#: Output resolution of every figure.
DPI = 300
#: Metrics drawn by :func:`plot_training_curves` (panel title, MLflow key).
CURVE_PANELS: tuple[tuple[str, str], ...] = (
    ("training loss", "train/loss"),
    ("validation PSNR (dB)", "val/psnr"),
    ("validation SSIM", "val/ssim"),
    ("validation mIoU", "val/miou"),
    ("validation PA", "val/pa"),
)


# --------------------------------------------------------------------------- image helpers
def prompt_pca(prompt: torch.Tensor) -> np.ndarray:
    """Prompt maps (B, C_p, H, W) -> (B, H, W, 3) RGB in [0, 1] by PCA over the channels.

    One PCA is fitted on the pixels of every image together, so a colour means the same
    prompt direction in every row. Each component's sign is fixed (largest loading positive)
    to make the colours deterministic; each component is stretched 2-98 %. With fewer than
    three prompt channels the missing components are 0.
    """
    b, c, h, w = prompt.shape
    pixels = prompt.detach().float().cpu().permute(0, 2, 3, 1).reshape(-1, c).double()
    centred = pixels - pixels.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # rows = principal directions
    components = vh[:3]
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    scores = (centred @ components.T).numpy()  # (N, k), k = min(3, c)
    rgb = np.zeros((scores.shape[0], 3))
    for k in range(scores.shape[1]):
        rgb[:, k] = stretch(scores[:, k])
    return rgb.reshape(b, h, w, 3)


def _show(ax: Any, image: np.ndarray, title: str | None = None, **kwargs: Any) -> None:
    ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _save(fig: Figure, out: Path) -> Path:
    """Save as PNG at DPI via a temporary name, so a failed save leaves no partial figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    tmp.replace(out)
    return out


# --------------------------------------------------------------------------- data helpers
def select_patches(store: Path, split: str, count: int) -> list[int]:
    """Positions (within ``split``, store order) of up to ``count`` patches spread over cloud
    cover: evenly spaced in the cover ranking, lowest to highest."""
    from tdpcr.data.store import open_store

    ds = open_store(store)
    in_split = np.flatnonzero(ds["split"].values == split)
    if len(in_split) == 0:
        raise InputDataError(f"{store}: split {split!r} has no patches")
    cover = np.asarray(ds["cloud_cover"].values, dtype=np.float64)[in_split]
    cover = np.where(np.isnan(cover), -1.0, cover)  # unknown cover ranks lowest
    order = np.argsort(cover, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, min(count, len(order)))))
    return [int(order[int(i)]) for i in picks]


def load_patches(
    store: Path, split: str, positions: Sequence[int], pieces: Sequence[str]
) -> dict[str, Any]:
    """The patches at ``positions`` of ``split`` as one batch (full size, no augmentation)."""
    from tdpcr.data.dataset import TileDataset

    dataset = TileDataset(store, split, pieces=pieces)
    samples = [dataset[i] for i in positions]
    batch: dict[str, Any] = {"patch_id": [s["patch_id"] for s in samples]}
    for piece in dataset.pieces:
        batch[piece] = torch.stack([s[piece] for s in samples])
    return batch


class _Models:
    """Loads each variant once, on first use."""

    def __init__(self, models_dir: Path, config: Mapping[str, Any], device: torch.device):
        self.models_dir, self.config, self.device = Path(models_dir), config, device
        self.loaded: dict[str, torch.nn.Module] = {}

    def for_method(self, method: Any) -> dict[str, torch.nn.Module]:
        from tdpcr.evaluation.protocols import load_variant_model

        for name in method.variants:
            if name not in self.loaded:
                self.loaded[name] = load_variant_model(
                    self.models_dir, name, self.config, self.device
                )[0]
        return {name: self.loaded[name] for name in method.variants}


def _run(method_name: str, models: _Models, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    from tdpcr.evaluation.protocols import predict

    method = get_method(method_name)
    device = models.device
    with torch.inference_mode(), autocast(device.type == "cuda"):
        out = predict(method, models.for_method(method), to_device(batch, device))
    return {k: v.float().cpu() for k, v in out.items()}


# --------------------------------------------------------------------------- figures
def _row_label(batch: Mapping[str, Any], row: int) -> str:
    if "cloudmask" in batch:
        mask = batch["cloudmask"][row]
        known = mask != CLOUDMASK_UNKNOWN
        cover = float(corrupted(mask[known]).float().mean()) if bool(known.any()) else math.nan
        return f"{batch['patch_id'][row]}\ncloud {100 * cover:.0f} %"
    return str(batch["patch_id"][row])


def figure_cloud_removal(
    batch: Mapping[str, Any], outputs: Mapping[str, torch.Tensor], out: Path
) -> Path:
    """Figure 3: rows = patches; cloudy RGB, SAR VV, each method's output, clear reference.

    ``outputs`` maps a column title to the (B, 13, H, W) reconstruction; each output's title
    carries its PSNR on that patch.
    """
    from tdpcr.core.metrics import psnr_per_image

    rows = batch["s2_cloudy"].shape[0]
    columns = 3 + len(outputs)
    fig = Figure(figsize=(1.9 * columns, 1.9 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    clear = batch["s2_clear"].numpy()
    for r in range(rows):
        ref = clear[r]
        _show(
            axes[r, 0],
            rgb_composite(batch["s2_cloudy"][r].numpy(), ref),
            "cloudy input" if r == 0 else None,
        )
        axes[r, 0].set_ylabel(_row_label(batch, r), fontsize=6)
        _show(
            axes[r, 1],
            stretch(batch["s1"][r, 0].numpy()),
            "SAR (VV)" if r == 0 else None,
            cmap="gray",
        )
        for c, (title, image) in enumerate(outputs.items(), start=2):
            psnr = float(psnr_per_image(image[r : r + 1], batch["s2_clear"][r : r + 1])[0])
            label = f"{title}\n{psnr:.2f} dB" if r == 0 else f"{psnr:.2f} dB"
            _show(axes[r, c], rgb_composite(image[r].numpy(), ref), label)
        _show(axes[r, -1], rgb_composite(ref, ref), "clear reference" if r == 0 else None)
    fig.suptitle(
        "Cloud removal on test patches (B4/B3/B2, 2-98 % stretch of the reference)", fontsize=8
    )
    return _save(fig, out)


def figure_prompt(
    batch: Mapping[str, Any],
    prompt: torch.Tensor,
    sar_weight: torch.Tensor | None,
    out: Path,
) -> Path:
    """Figure 4: cloudy input, cloud mask, prompt PCA (and the first PGF stage's SAR weight)."""
    rows = batch["s2_cloudy"].shape[0]
    pca = prompt_pca(prompt)
    columns = 3 + (sar_weight is not None)
    fig = Figure(figsize=(1.9 * columns, 1.9 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        _show(
            axes[r, 0],
            rgb_composite(batch["s2_cloudy"][r].numpy(), batch["s2_clear"][r]),
            "cloudy input" if r == 0 else None,
        )
        axes[r, 0].set_ylabel(_row_label(batch, r), fontsize=6)
        if "cloudmask" in batch:
            mask = batch["cloudmask"][r].numpy().astype(np.float64)
            _show(
                axes[r, 1],
                np.where(mask == 255, 0.5, mask),
                "cloud mask" if r == 0 else None,
                cmap="gray",
                vmin=0,
                vmax=1,
            )
        else:
            axes[r, 1].set_axis_off()
        _show(axes[r, 2], pca[r], "prompt, PCA to RGB" if r == 0 else None)
        if sar_weight is not None:
            image = axes[r, 3].imshow(
                sar_weight[r].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
            )
            axes[r, 3].set_xticks([])
            axes[r, 3].set_yticks([])
            if r == 0:
                axes[r, 3].set_title("PGF stage 1: SAR weight", fontsize=7)
            if r == rows - 1:
                fig.colorbar(image, ax=axes[:, 3].tolist(), shrink=0.6)
    fig.suptitle("TDP-CR prompt maps (3 principal components of the prompt channels)", fontsize=8)
    return _save(fig, out)


def figure_segmentation(
    batch: Mapping[str, Any], maps: Mapping[str, torch.Tensor], out: Path
) -> Path:
    """Figure 5: cloudy input, ground truth and each protocol's land-cover map, with legend."""
    rows = batch["landcover"].shape[0]
    columns = 2 + len(maps)
    fig = Figure(figsize=(1.7 * columns, 1.7 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        cloudy = batch.get("s2_cloudy")
        if cloudy is not None:
            ref = batch["s2_clear"][r].numpy() if "s2_clear" in batch else None
            _show(
                axes[r, 0],
                rgb_composite(cloudy[r].numpy(), ref),
                "cloudy input" if r == 0 else None,
            )
        else:
            axes[r, 0].set_axis_off()
        axes[r, 0].set_ylabel(_row_label(batch, r), fontsize=6)
        truth = landcover_rgb(batch["landcover"][r].numpy())
        _show(axes[r, 1], truth, "ground truth" if r == 0 else None)
        for c, (title, labels) in enumerate(maps.items(), start=2):
            _show(axes[r, c], landcover_rgb(labels[r].numpy()), title if r == 0 else None)
    colours = class_colors()
    handles = [Patch(color=colours[i], label=name) for i, name in enumerate(CLASS_NAMES)]
    handles.append(Patch(facecolor="white", edgecolor="grey", label=f"no label ({IGNORE_INDEX})"))
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=6, frameon=False
    )
    fig.suptitle("Land-cover maps of the test patches by protocol", fontsize=8)
    return _save(fig, out)


def make_figures(
    config: Mapping[str, Any],
    store: Path,
    models_dir: Path,
    fig3: Path,
    fig4: Path,
    fig5: Path,
    *,
    split: str = "test",
    rows: int = 3,
    threads: int = 1,
    force_cpu: bool = False,
) -> list[Path]:
    """Figures 3, 4 and 5 on ``rows`` test patches of increasing cloud cover."""
    from tdpcr.data.store import open_store

    set_threads(threads)
    device = select_device(force_cpu)
    reuse_cpu_memory_on(device)
    positions = select_patches(store, split, rows)
    pieces = ["s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask"]
    present = [p for p in pieces if p in open_store(store)]
    missing = [p for p in pieces[:4] if p not in present]
    if missing:
        raise InputDataError(f"{store}: the figures need {missing[0]!r}, absent")
    batch = load_patches(store, split, positions, present)
    models = _Models(models_dir, config, device)

    outputs = {title: _run(name, models, batch)["image"] for title, name in FIG3_METHODS}
    written = [figure_cloud_removal(batch, outputs, fig3)]

    model = models.for_method(get_method(FIG4_VARIANT))[FIG4_VARIANT]
    moved = to_device(batch, device)
    with torch.inference_mode():
        out = model(moved["s2_cloudy"], moved["s1"], return_prompt=True, return_weights=True)
    if out.get("prompt") is None:
        raise InputDataError(f"{FIG4_VARIANT} has no prompt generator (PGF global only)")
    sar_weight = out["weights"][0][:, 1].float().mean(dim=1).cpu()  # (B, H, W), mean over C
    written.append(figure_prompt(batch, out["prompt"].float().cpu(), sar_weight, fig4))

    maps = {title: _run(name, models, batch)["logits"].argmax(1) for title, name in FIG5_METHODS}
    written.append(figure_segmentation(batch, maps, fig5))
    return written


def plot_training_curves(
    config: Mapping[str, Any],
    models_dir: Path,
    variants: Sequence[str],
    out: Path,
    *,
    tracking: bool = True,
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Training loss and validation metrics per variant, read back from MLflow.

    Each variant's run is the one that produced its checkpoint (variant tag + the config
    hash in ``meta.json``). Without tracking the figure says so (the workflow still gets its
    output). Returns the plotted histories by variant.
    """
    from tdpcr.core.checkpoint import read_meta
    from tdpcr.evaluation.protocols import tracking_target

    target = tracking_target(config, tracking)
    histories: dict[str, dict[str, list[tuple[int, float]]]] = {}
    if target is not None:
        from tdpcr.tracking import find_variant_run, metric_histories

        keys = [key for _, key in CURVE_PANELS]
        for name in variants:
            meta = read_meta(Path(models_dir) / name)
            run_id = find_variant_run(target[0], target[1], name, meta.extra.get("config_hash"))
            if run_id is not None:
                histories[name] = metric_histories(target[0], run_id, keys)

    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    palette = [colormaps["tab20"](i % 20) for i in range(len(variants))]
    for ax, (title, key) in zip(axes, CURVE_PANELS, strict=False):
        for colour, name in zip(palette, variants, strict=True):
            points = histories.get(name, {}).get(key)
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(
                    steps,
                    values,
                    color=colour,
                    marker="." if len(points) < 30 else None,
                    linewidth=1.0,
                    label=name,
                )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if key == "train/loss" and any(histories.get(n, {}).get(key) for n in variants):
            ax.set_yscale("log")
    legend_ax = axes[-1]
    legend_ax.set_axis_off()
    if histories:
        handles = [
            legend_ax.plot([], [], color=c, label=n)[0]
            for c, n in zip(palette, variants, strict=True)
            if n in histories
        ]
        legend_ax.legend(handles=handles, loc="center", fontsize=7, frameon=False)
    else:
        reason = "tracking disabled" if target is None else "no MLflow runs found"
        legend_ax.text(0.5, 0.5, f"{reason}: no training curves", ha="center", va="center")
    fig.suptitle(f"Training curves per variant (MLflow experiment {config['name']!r})", fontsize=10)
    _save(fig, out)
    return histories


def figure_pgf_sar_weight(evaluations: Mapping[str, Mapping[str, Any]], out: Path) -> Path:
    """PGF SAR weight against local cloud opacity, binned: one panel per stage, one line per
    method (the ``pgf`` sections of the TDP-CR evaluations, :mod:`tdpcr.evaluation.pgf`).

    Bins without pixels are gaps; without the store's ``cloud_opacity`` a panel says so.
    """
    stages = max((int(e["pgf"]["stages"]) for e in evaluations.values()), default=0)
    if stages == 0:
        raise InputDataError("no evaluation has PGF weights (tdpcr evaluate --pgf)")
    fig = Figure(figsize=(3.0 * stages, 3.0), layout="constrained")
    axes = fig.subplots(1, stages, squeeze=False)[0]
    palette = colormaps["tab10"]
    for stage, ax in enumerate(axes):
        drawn = False
        for colour, (name, evaluation) in enumerate(evaluations.items()):
            pgf = evaluation["pgf"]
            means = pgf["opacity_sar_weight"]
            if stage >= len(means):
                continue
            edges = np.asarray(pgf["opacity_edges"], dtype=np.float64)
            centres = (edges[:-1] + edges[1:]) / 2
            values = np.asarray([np.nan if v is None else v for v in means[stage]], dtype=float)
            if np.isfinite(values).any():
                ax.plot(centres, values, marker=".", color=palette(colour), label=name)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no cloud_opacity in the store", ha="center", va="center")
        ax.set_title(f"PGF stage {stage + 1} (1/{2**stage} resolution)", fontsize=8)
        ax.set_xlabel("local cloud opacity (pooled to the stage)", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("mean SAR weight (channel mean of a_s)", fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7)
    fig.suptitle("PGF SAR weight against cloud opacity, test patches", fontsize=9)
    return _save(fig, out)


# --------------------------------------------------------------------------- training budget
def _budget_axis(ax: Any, steps: Sequence[int], multipliers: Sequence[int]) -> None:
    """A log x-axis ticked at each budget's N, labelled with N and its multiplier."""
    ax.set_xscale("log")
    ax.set_xticks(list(steps), [f"{n}\n(x{k})" for n, k in zip(steps, multipliers, strict=True)])
    ax.minorticks_off()
    ax.tick_params(labelsize=6)


def _coverage(row: Mapping[str, Any]) -> str:
    """The interval's coverage of a claims row, as a percentage ('95 %')."""
    confidence = row.get("confidence")
    return f"{100 * float(confidence):g} %" if confidence not in (None, "") else "bootstrap"


def figure_budget_claims(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Each claim's difference (better - worse) against the budget's N on a log axis: one
    panel per claim, the bootstrap interval as bars, 0 and the paper's difference as lines.

    ``rows`` are those of :func:`tdpcr.evaluation.budget.budget_claim_rows`.
    """
    by_claim: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("difference") not in (None, ""):
            by_claim.setdefault(str(row["claim"]), []).append(row)
    if not by_claim:
        raise InputDataError("no tested claim to draw")
    columns = min(4, len(by_claim))
    lines = math.ceil(len(by_claim) / columns)
    fig = Figure(figsize=(3.0 * columns, 2.6 * lines), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for ax, (claim, found) in zip(axes, by_claim.items(), strict=False):
        found = sorted(found, key=lambda r: int(r["budget"]))
        steps = [int(r["phase1_steps"]) for r in found]
        value = np.asarray([float(r["difference"]) for r in found])
        low = np.asarray([float(r["ci_low"]) for r in found])
        high = np.asarray([float(r["ci_high"]) for r in found])
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        paper = found[0].get("paper_difference")
        if paper not in (None, ""):
            ax.axhline(float(paper), color="tab:red", linestyle="--", linewidth=0.8,
                       label="paper")  # fmt: skip
        # A percentile interval need not contain the point estimate; matplotlib refuses a
        # negative bar length.
        bars = [np.clip(value - low, 0, None), np.clip(high - value, 0, None)]
        ax.errorbar(steps, value, yerr=bars, marker="o", capsize=3,
                    color="tab:blue", label=f"ours, {_coverage(found[0])} interval")  # fmt: skip
        for x, y, r in zip(steps, value, found, strict=True):
            ax.annotate(str(r["verdict"]), (x, y), fontsize=5, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        _budget_axis(ax, steps, [int(r["budget"]) for r in found])
        ax.set_title(claim, fontsize=7)
        ax.set_ylabel(f"{found[0]['metric']} difference", fontsize=6)
    for ax in axes[len(by_claim) :]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    for ax in axes:  # a claim without a paper value has no paper line
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=len(legend),
               fontsize=7)  # fmt: skip
    fig.suptitle("The paper's claims against the training budget (x: N single-task steps, "
                 "M scaled with it), test patches", fontsize=9)  # fmt: skip
    return _save(fig, out)


def figure_learning_curves(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], out: Path
) -> Path:
    """Test PSNR and mIoU per method against the budget's N (log axis): one panel per metric
    (:func:`tdpcr.evaluation.budget.learning_curves`)."""
    titles = {"psnr": "test PSNR (dB)", "miou": "test mIoU"}
    panels = [(metric, methods) for metric, methods in curves.items() if methods]
    if not panels:
        raise InputDataError("no evaluation with PSNR or mIoU to draw")
    fig = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    palette = colormaps["tab20"]
    # One colour per method across both panels.
    colours = {
        name: i % 20 for i, name in enumerate(dict.fromkeys(n for _, m in panels for n in m))
    }
    for ax, (metric, methods) in zip(axes, panels, strict=True):
        for name, points in methods.items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o", markersize=3, color=palette(colours[name]),
                    label=name)  # fmt: skip
        ax.set_xscale("log")
        ticks = sorted({n for points in methods.values() for n, _ in points})
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training budget: N single-task steps", fontsize=7)
        ax.set_ylabel(titles.get(metric, metric), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, ncol=2)
    fig.suptitle("Learning curves over training budgets (one run per budget)", fontsize=9)
    return _save(fig, out)
