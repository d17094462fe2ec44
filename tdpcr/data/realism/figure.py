"""The realism report's figure: six panels of synthetic against real statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.core.specs import CLASS_NAMES, S2_BANDS
from tdpcr.data.realism.measures import OPACITY_BINS, SAR_BINS, TARGETS


def _class_colour(name: str) -> str | tuple[float, ...]:
    from tdpcr.core.specs import LANDCOVER_COLORS

    if name in CLASS_NAMES:
        rgba = LANDCOVER_COLORS[CLASS_NAMES.index(name)]
        return tuple(v / 255 for v in rgba)
    return "0.4"


def plot_report(report: dict[str, Any], out_png: Path) -> None:
    """Six panels: spectra, VV and VH per class, Fisher ratios, correlations, cloud opacity.

    Synthetic lines are solid in the class colours, real datasets dashed / dotted in grey
    tones; written atomically (temporary file renamed into place).
    """
    import io

    from matplotlib.figure import Figure

    datasets = report["datasets"]
    names = list(datasets)
    styles = {
        name: ("-" if i == 0 else ("--", ":", "-.")[(i - 1) % 3]) for i, name in enumerate(names)
    }
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    fig = Figure(figsize=(17, 10), layout="constrained")
    axes = fig.subplots(2, 3)

    ax = axes[0, 0]
    x = np.arange(len(S2_BANDS))
    for name, d in datasets.items():
        for cname, c in d["summary"]["per_class"].items():
            if "spectrum_mean" in c:
                colour = _class_colour(cname) if name == "synthetic" else colours[name]
                ax.plot(
                    x,
                    c["spectrum_mean"],
                    styles[name],
                    color=colour,
                    lw=1.3,
                    label=f"{name}: {cname}",
                )
        dense = d["summary"].get("ndvi_strata_spectra", {}).get("dense (>0.6)")
        if dense is not None and not d["summary"]["per_class"]:
            ax.plot(
                x, dense, styles[name], color=colours[name], lw=1.3, label=f"{name}: NDVI > 0.6"
            )
    ax.set_xticks(x, S2_BANDS, fontsize=7)
    ax.set_ylabel("L1C TOA reflectance")
    ax.set_title("(a) mean spectrum per class (real: per label value or NDVI > 0.6)")
    ax.legend(fontsize=5.5, ncol=2)

    centres = 0.5 * (SAR_BINS[1:] + SAR_BINS[:-1])
    for k, pol in enumerate(("vv", "vh")):
        ax = axes[0, 1 + k]
        for name, d in datasets.items():
            for cname, c in d["summary"]["per_class"].items():
                hist = c.get(f"{pol}_hist")
                if not hist or sum(hist) == 0:
                    continue
                colour = _class_colour(cname) if name == "synthetic" else colours[name]
                ax.plot(
                    centres,
                    np.asarray(hist, float) / sum(hist),
                    styles[name],
                    color=colour,
                    lw=1.3,
                    label=f"{name}: {cname}",
                )
        ax.set_xlabel(f"{pol.upper()} sigma0 (dB, 5x5 boxcar)")
        ax.set_ylabel("fraction of class-interior pixels")
        ax.set_title(f"({'bc'[k]}) {pol.upper()} per class")
        ax.legend(fontsize=5.5, ncol=2)

    ax = axes[1, 0]
    keys = ("fisher_vegetation_vv", "fisher_vegetation_vh", "fisher_all_vv", "fisher_all_vh")
    labels = ("vegetation VV", "vegetation VH", "all VV", "all VH")
    width = 0.8 / max(len(names), 1)
    for i, (name, d) in enumerate(datasets.items()):
        for k, key in enumerate(keys):
            values = [p[key] for p in d["per_patch"] if p.get(key) is not None]
            if values:
                pos = k + (i - (len(names) - 1) / 2) * width
                ax.scatter(
                    np.full(len(values), pos),
                    values,
                    s=8,
                    color=colours[name],
                    label=name if k == 0 else None,
                )
    ax.axhline(TARGETS["fisher_vegetation"]["max_median"], color="k", ls="--", lw=0.8)
    ax.set_xticks(range(len(keys)), labels)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0.0)
    ax.set_ylabel("between / within class variance")
    ax.set_title("(d) SAR Fisher ratio per patch (dashed: target 0.3, vegetation)")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    for i, (name, d) in enumerate(datasets.items()):
        within = [
            c["corr_vh_b8"]
            for p in d["per_patch"]
            for c in p["per_class"].values()
            if c.get("corr_vh_b8") is not None
        ]
        whole = [p["corr_vh_ndvi"] for p in d["per_patch"] if p.get("corr_vh_ndvi") is not None]
        if within:
            ax.scatter(np.full(len(within), i - 0.15), within, s=8, color=colours[name])
        if whole:
            ax.scatter(np.full(len(whole), i + 0.15), whole, s=14, marker="^", color=colours[name])
    bound = TARGETS["within_class_corr_vh_b8"]["max_abs_pooled"]
    ax.axhspan(-bound, bound, color="0.92", zorder=0)
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("Pearson r")
    ax.set_title("(e) corr(VH, B8) within class per patch (o), corr(VH, NDVI) per patch (^)")

    ax = axes[1, 2]
    ocentres = 0.5 * (OPACITY_BINS[1:] + OPACITY_BINS[:-1])
    for name, d in datasets.items():
        for key, style, what in (
            ("opacity_hist", "-", "true"),
            ("apparent_opacity_hist", ":", "apparent (B2)"),
        ):
            hist = d["summary"].get(key)
            if hist and sum(hist):
                ax.plot(
                    ocentres,
                    np.asarray(hist, float) / sum(hist),
                    style,
                    color=colours[name],
                    label=f"{name} {what}",
                )
    from tdpcr.data.synthetic.clouds import CLOUD_THRESHOLD

    ax.axvline(CLOUD_THRESHOLD, color="k", ls="--", lw=0.8, label="mask threshold")
    ax.set_yscale("log")
    ax.set_xlabel("cloud opacity")
    ax.set_ylabel("fraction of pixels")
    diff = report["difficulty"]
    text = (
        f"Direct mIoU ratios, paper: SAR/clear {diff['paper_sar_over_clear']:.2f}, "
        f"cloudy/clear {diff['paper_cloudy_over_clear']:.2f}"
    )
    if "sar_over_clear" in diff or "cloudy_over_clear" in diff:
        ours = ", ".join(
            f"{k}/clear {diff[f'{k}_over_clear']:.2f}"
            for k in ("sar", "cloudy")
            if f"{k}_over_clear" in diff
        )
        text += f"\nours: {ours}"
    ax.set_title("(f) cloud opacity: true (synthetic), apparent from B2 (all)")
    ax.text(0.98, 0.98, text, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    ax.legend(fontsize=6, loc="lower left")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(out_png)
