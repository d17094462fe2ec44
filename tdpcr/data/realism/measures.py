"""Realism measures: the same statistics on the synthetic scenes and on real Sentinel-1/2 data.

Every number the default run reports is measured on the synthetic scenes, so this module
measures how much they behave like real data, with the same code on both:

* **SAR class separability**: Fisher ratio (between-class over within-class variance) of VV and
  VH in dB after a 5x5 boxcar on intensity, over the vegetation classes and over all classes.
* **Cross-modal coupling**: within-class Pearson correlation of VH with NIR (B8), and the
  whole-patch correlation of VH with NDVI.
* **Per-class spectra and backscatter**: mean / std of the 13 bands and of VV / VH per class,
  SAR histograms, and mean spectra by NDVI stratum (comparable whatever the legend).
* **Clouds**: the distribution of the true cloud opacity (synthetic only), of the *apparent*
  opacity estimated from a cloudy / clear pair (both), and the clear-sky difference between the
  two acquisitions outside the clouds (the time gap).
* **Difficulty**: the ratios of Direct-SAR and Direct-cloudy to Direct-clear mIoU from the
  evaluation JSONs, next to the paper's 41.0 / 72.1 and 28.4 / 72.1.

Per-class statistics use *class-interior* pixels only (every pixel of the 5x5 window has the
class), so the boxcar does not mix classes across an edge. Statistics are computed per
256 x 256 patch (the real samples' size; synthetic scenes are cut into such patches) and
summarised per dataset as min / median / max.

The patches come from :mod:`tdpcr.data.realism.samples`; the figure is drawn by
:mod:`tdpcr.data.realism.figure` and the report written by :mod:`tdpcr.data.realism.report`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tdpcr.core.specs import CLASS_NAMES, S2_BANDS, S2_SCALE
from tdpcr.data.realism.samples import Sample

TREE, SHRUB, GRASS, CROP, BUILT, WATER, BARE = range(len(CLASS_NAMES))
#: Project classes counted as vegetation.
VEGETATION: tuple[int, ...] = (TREE, SHRUB, GRASS, CROP)
B2, B4, B8, B10 = (S2_BANDS.index(b) for b in ("B2", "B4", "B8", "B10"))
#: Boxcar (pixels) applied to SAR intensity before any SAR statistic.
BOXCAR = 5
#: Smallest number of class-interior pixels for a class to enter a statistic.
MIN_CLASS_PIXELS = 200
#: SAR histogram bin edges (dB).
SAR_BINS = np.arange(-35.0, 5.0 + 1e-6, 0.5)
#: Opacity histogram bin edges.
OPACITY_BINS = np.linspace(0.0, 1.0, 51)
#: NDVI strata for the legend-free spectra: name -> (low, high) NDVI, plus B8 < 0.08 for water.
NDVI_STRATA: dict[str, tuple[float, float]] = {
    "water (NDVI<0, B8<0.08)": (-1.0, 0.0),
    "sparse (0.1-0.3)": (0.1, 0.3),
    "moderate (0.3-0.6)": (0.3, 0.6),
    "dense (>0.6)": (0.6, 1.0),
}
#: Thick-cloud blue (B2) reflectance assumed by the apparent-opacity estimator.
APPARENT_CLOUD_B2 = 0.6
#: Apparent opacity below which a pixel counts as clear in both acquisitions.
CLEAR_BOTH_OPACITY = 0.02

#: The paper's Direct-protocol mIoU (Table II, LuojiaSET-OSFCR): clear, cloudy, SAR.
PAPER_MIOU = {"clear": 72.1, "cloudy": 28.4, "sar": 41.0}

#: Bands the synthetic scenes must stay inside (tested by tests/test_realism.py); see
#: docs/synthetic-data.md for where each comes from. "per patch" values are summarised over
#: the 256 x 256 patches of a dataset; "pooled" values pool the class-interior pixels of all.
TARGETS: dict[str, dict[str, Any]] = {
    "fisher_vegetation": {
        "max_median": 0.3,
        "max_pooled": 0.3,
        "what": "Fisher ratio of VV and VH (5x5 boxcar) over the vegetation classes: median "
        "over patches and pooled over the dataset, each below 0.3",
        "real": "LuojiaSET 0.00-0.03, SEN12MS 0.05-0.10 per patch (the real samples)",
    },
    "within_class_corr_vh_b8": {
        "max_abs_pooled": 0.4,
        "max_abs_median": 0.4,
        "what": "|corr(VH, B8)| inside each class: pooled per class, and the median over "
        "patch x class, each below 0.4",
        "real": "0.02-0.35 (the real samples)",
    },
    "vegetation_b8": {
        "min": 0.15,
        "max": 0.30,
        "what": "mean B8 (L1C TOA reflectance) of vegetation-class pixels, every patch in "
        "0.15-0.30",
        "real": "0.18-0.20 (LuojiaSET forest); dense-vegetation stratum of SEN12MS-CR "
        "0.21-0.34; L1C literature: conifer 0.15-0.25, broadleaf/crops 0.25-0.45",
    },
    "corr_vh_ndvi": {
        "min": -0.8,
        "max": 0.9,
        "max_positive_share": 0.95,
        "what": "whole-patch corr(VH, NDVI) of every patch in [-0.8, 0.9], and not always "
        "positive: at most 95 % of patches above +0.1",
        "real": "SEN12MS-CR -0.68 and +0.61; LuojiaSET -0.15 to +0.17 (the real samples)",
    },
    "time_gap_b8": {
        "min": 0.005,
        "max": 0.10,
        "what": "median |B8 cloudy - B8 clear| / B8 clear on pixels clear at both dates, "
        "every patch in 0.005-0.10 (not identical, not another place)",
        "real": "SEN12MS-CR pairs 0.08-0.47, inflated by residual haze the clear-pixel test "
        "cannot see",
    },
    "cloud_mask": {
        "what": "mask = 1 exactly where the true opacity >= the cloud threshold, 2 only "
        "where not cloud (shadow), in every patch with a cloud_opacity file",
    },
}


# ---------------------------------------------------------------------------------------------
# Measures


def boxcar_db(s1_db: np.ndarray, size: int = BOXCAR) -> np.ndarray:
    """(2, H, W) dB after a ``size`` x ``size`` boxcar on intensity; non-finite input -> NaN."""
    from scipy.ndimage import uniform_filter

    out = np.empty(s1_db.shape, dtype=np.float32)
    for p in range(s1_db.shape[0]):
        db = s1_db[p].astype(np.float32)
        finite = np.isfinite(db)
        linear = np.where(finite, np.power(10.0, db / 10.0, dtype=np.float32), 0.0)
        weight = uniform_filter(finite.astype(np.float32), size=size, mode="reflect")
        mean = uniform_filter(linear.astype(np.float32), size=size, mode="reflect")
        with np.errstate(divide="ignore", invalid="ignore"):
            out[p] = 10.0 * np.log10(np.maximum(mean / weight, 1e-6))
        out[p][weight < 0.5] = np.nan
    return out


def class_interior(labels: np.ndarray, size: int = BOXCAR) -> np.ndarray:
    """Pixels whose ``size`` x ``size`` window holds one class only (255 excluded)."""
    from scipy.ndimage import maximum_filter, minimum_filter

    same = minimum_filter(labels, size=size, mode="nearest") == maximum_filter(
        labels, size=size, mode="nearest"
    )
    return same & (labels != 255)


def fisher_ratio(values: np.ndarray, labels: np.ndarray, classes: list[int]) -> float | None:
    """Between-class over within-class variance of ``values`` for the given ``classes``.

    ``values`` and ``labels`` are 1-D over the eligible pixels; ``None`` with fewer than two
    classes of :data:`MIN_CLASS_PIXELS` pixels.
    """
    groups = []
    for cls in classes:
        v = values[(labels == cls) & np.isfinite(values)].astype(np.float64)
        if v.size >= MIN_CLASS_PIXELS:
            groups.append(v)
    if len(groups) < 2:
        return None
    n = np.array([g.size for g in groups], dtype=np.float64)
    means = np.array([g.mean() for g in groups])
    grand = float((n * means).sum() / n.sum())
    between = float((n * (means - grand) ** 2).sum() / n.sum())
    within = float(sum(((g - m) ** 2).sum() for g, m in zip(groups, means, strict=True)) / n.sum())
    return between / within if within > 0 else None


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < MIN_CLASS_PIXELS:
        return None
    a, b = a[ok].astype(np.float64), b[ok].astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _moments(a: np.ndarray, b: np.ndarray | None = None) -> list[float]:
    """Sufficient statistics for pooling: n, sum a, sum a^2 (and sum b, sum b^2, sum ab)."""
    ok = np.isfinite(a) if b is None else np.isfinite(a) & np.isfinite(b)
    x = a[ok].astype(np.float64)
    out = [float(x.size), float(x.sum()), float((x * x).sum())]
    if b is not None:
        y = b[ok].astype(np.float64)
        out += [float(y.sum()), float((y * y).sum()), float((x * y).sum())]
    return out


def _pooled_corr(moments: list[list[float]]) -> float | None:
    n, sx, sxx, sy, syy, sxy = np.sum(moments, axis=0)
    if n < MIN_CLASS_PIXELS:
        return None
    vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
    if vx <= 0 or vy <= 0:
        return None
    return float((sxy / n - sx * sy / n**2) / math.sqrt(vx * vy))


def _pooled_fisher(per_class: list[list[float]]) -> float | None:
    """Fisher ratio from per-class pooled moments (n, sum, sum of squares)."""
    groups = [m for m in per_class if m[0] >= MIN_CLASS_PIXELS]
    if len(groups) < 2:
        return None
    n = np.array([g[0] for g in groups])
    mean = np.array([g[1] / g[0] for g in groups])
    var = np.array([g[2] / g[0] - (g[1] / g[0]) ** 2 for g in groups])
    grand = float((n * mean).sum() / n.sum())
    between = float((n * (mean - grand) ** 2).sum() / n.sum())
    within = float((n * var).sum() / n.sum())
    return between / within if within > 0 else None


def _ndvi(s2: np.ndarray) -> np.ndarray:
    nir = s2[B8].astype(np.float32)
    red = s2[B4].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (nir - red) / np.maximum(nir + red, 1.0)


def apparent_opacity(cloudy: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Opacity a cloudy / clear pair suggests in B2: (cloudy - clear) / (cloud - clear), in [0, 1].

    Uses the mixing model ``cloudy = clear (1 - a) + a C`` with a thick-cloud blue reflectance
    ``C`` = :data:`APPARENT_CLOUD_B2`. The same estimator runs on real and synthetic pairs, so
    the two distributions are comparable even though real pairs have no true opacity.
    """
    y = cloudy[B2].astype(np.float32) / S2_SCALE
    x = clear[B2].astype(np.float32) / S2_SCALE
    return np.clip((y - x) / np.maximum(APPARENT_CLOUD_B2 - x, 0.05), 0.0, 1.0)


def _class_names(sample: Sample, values: list[int]) -> dict[int, str]:
    if sample.legend == "project":
        return {v: CLASS_NAMES[v] for v in values if v < len(CLASS_NAMES)}
    return {v: f"value {v}" for v in values}


def measure_sample(sample: Sample) -> dict[str, Any]:
    """Every per-patch statistic the report uses, as plain JSON-able values."""
    out: dict[str, Any] = {"patch_id": sample.patch_id, "notes": list(sample.notes)}
    lc = sample.landcover
    interior = class_interior(lc) if lc is not None else None
    present = sorted(int(v) for v in np.unique(lc) if v != 255) if lc is not None else []
    names = _class_names(sample, present)
    sar = boxcar_db(sample.s1) if sample.s1 is not None else None
    s2 = sample.s2_clear.astype(np.float32) / S2_SCALE if sample.s2_clear is not None else None
    # Legend unknown (LuojiaSET): every class; the LuojiaSET sample is vegetated land only.
    vegetation = [c for c in present if c in VEGETATION] if sample.legend == "project" else present
    out["vegetation_classes"] = [names[c] for c in vegetation]

    per_class: dict[str, Any] = {}
    for cls in present:
        pix = (lc == cls) & interior
        if pix.sum() < MIN_CLASS_PIXELS:
            continue
        entry: dict[str, Any] = {"pixels": int(pix.sum())}
        if s2 is not None:
            bands = s2[:, pix]
            entry["spectrum_mean"] = [round(float(v), 4) for v in bands.mean(axis=1)]
            entry["spectrum_std"] = [round(float(v), 4) for v in bands.std(axis=1)]
        if sar is not None:
            for p, pol in enumerate(("vv", "vh")):
                v = sar[p][pix]
                v = v[np.isfinite(v)]
                entry[f"{pol}_mean"] = round(float(v.mean()), 3)
                entry[f"{pol}_std"] = round(float(v.std()), 3)
                entry[f"{pol}_hist"] = np.histogram(v, bins=SAR_BINS)[0].tolist()
            if s2 is not None:
                entry["corr_vh_b8"] = _corr(sar[1][pix], s2[B8][pix])
                entry["corr_vv_b8"] = _corr(sar[0][pix], s2[B8][pix])
                entry["moments_vh_b8"] = _moments(sar[1][pix], s2[B8][pix])
            entry["moments_sar"] = [_moments(sar[0][pix]), _moments(sar[1][pix])]
        per_class[names[cls]] = entry
    out["per_class"] = per_class

    if sar is not None and lc is not None:
        keep = interior
        for p, pol in enumerate(("vv", "vh")):
            out[f"fisher_all_{pol}"] = fisher_ratio(sar[p][keep], lc[keep], present)
            out[f"fisher_vegetation_{pol}"] = fisher_ratio(sar[p][keep], lc[keep], vegetation)
    if sar is not None and s2 is not None:
        ndvi = _ndvi(sample.s2_clear)
        out["corr_vh_ndvi"] = _corr(sar[1].ravel(), ndvi.ravel())
        out["corr_vv_ndvi"] = _corr(sar[0].ravel(), ndvi.ravel())
    if s2 is not None:
        if lc is not None and vegetation:
            veg = np.isin(lc, vegetation)
            out["vegetation_b8"] = float(s2[B8][veg].mean()) if veg.any() else None
        ndvi = _ndvi(sample.s2_clear)
        strata = {}
        for name, (lo, hi) in NDVI_STRATA.items():
            sel = (ndvi >= lo) & (ndvi < hi)
            if name.startswith("water"):
                sel &= s2[B8] < 0.08
            if sel.sum() >= MIN_CLASS_PIXELS:
                strata[name] = {
                    "fraction": round(float(sel.mean()), 4),
                    "spectrum_mean": [round(float(v), 4) for v in s2[:, sel].mean(axis=1)],
                }
        out["ndvi_strata"] = strata
        out["dense_vegetation_b8"] = strata.get("dense (>0.6)", {}).get(
            "spectrum_mean", [None] * 13
        )[B8]
    if sample.s2_cloudy is not None and sample.s2_clear is not None:
        app = apparent_opacity(sample.s2_cloudy, sample.s2_clear)
        out["apparent_opacity_hist"] = np.histogram(app, bins=OPACITY_BINS)[0].tolist()
        clear_both = app < CLEAR_BOTH_OPACITY
        if sample.cloudmask is not None:
            clear_both &= sample.cloudmask == 0
        # Shadows darken: keep pixels the cloudy date does not darken by more than 20 % in NIR.
        nir0 = sample.s2_clear[B8].astype(np.float32)
        nir1 = sample.s2_cloudy[B8].astype(np.float32)
        clear_both &= nir1 > 0.8 * nir0
        out["clear_both_fraction"] = round(float(clear_both.mean()), 4)
        if clear_both.sum() >= MIN_CLASS_PIXELS:
            rel = np.abs(nir1 - nir0)[clear_both] / np.maximum(nir0[clear_both], 1.0)
            out["time_gap_b8"] = float(np.median(rel))
            gains = []
            for b in range(len(S2_BANDS)):
                x0 = sample.s2_clear[b][clear_both].astype(np.float64)
                x1 = sample.s2_cloudy[b][clear_both].astype(np.float64)
                gains.append(round(float(np.median(x1) / max(np.median(x0), 1.0)), 4))
            out["time_gap_band_ratio"] = gains
            d_ndvi = _ndvi(sample.s2_cloudy) - _ndvi(sample.s2_clear)
            out["time_gap_ndvi_std"] = float(d_ndvi[clear_both].std())
    if sample.cloud_opacity is not None:
        out["opacity_hist"] = np.histogram(sample.cloud_opacity, bins=OPACITY_BINS)[0].tolist()
    if sample.cloudmask is not None:
        mask = sample.cloudmask
        out["mask_cloud_fraction"] = round(float((mask == 1).mean()), 4)
        out["mask_shadow_fraction"] = round(float((mask == 2).mean()), 4)
        if sample.cloud_opacity is not None:
            from tdpcr.data.synthetic.clouds import CLOUD_THRESHOLD

            cloud = sample.cloud_opacity >= CLOUD_THRESHOLD
            haze = cloud & (sample.cloud_opacity < 0.1)
            out["mask_haze_fraction"] = round(float(haze.mean()), 4)
            out["mask_matches_opacity"] = bool(
                np.array_equal(mask == 1, cloud) and not (mask[cloud] == 2).any()
            )
    return out


# ---------------------------------------------------------------------------------------------
# Summaries


#: Per-patch scalar measures summarised per dataset.
SCALARS: tuple[str, ...] = (
    "fisher_vegetation_vv",
    "fisher_vegetation_vh",
    "fisher_all_vv",
    "fisher_all_vh",
    "corr_vh_ndvi",
    "corr_vv_ndvi",
    "vegetation_b8",
    "dense_vegetation_b8",
    "time_gap_b8",
    "time_gap_ndvi_std",
    "mask_cloud_fraction",
    "mask_shadow_fraction",
)


def _stats(values: list[float]) -> dict[str, Any] | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return {
        "min": round(min(vals), 4),
        "median": round(float(np.median(vals)), 4),
        "max": round(max(vals), 4),
        "n": len(vals),
    }


def summarise(patches: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset summary: scalar ranges, pooled per-class statistics, pooled histograms."""
    summary: dict[str, Any] = {k: _stats([p.get(k) for p in patches]) for k in SCALARS}
    corr = [
        abs(c["corr_vh_b8"])
        for p in patches
        for c in p["per_class"].values()
        if c.get("corr_vh_b8") is not None
    ]
    summary["within_class_abs_corr_vh_b8"] = _stats(corr)
    veg_corr = [
        abs(c["corr_vh_b8"])
        for p in patches
        for name, c in p["per_class"].items()
        if c.get("corr_vh_b8") is not None and name in p["vegetation_classes"]
    ]
    summary["within_class_abs_corr_vh_b8_vegetation"] = _stats(veg_corr)
    fisher_veg = [p.get(f"fisher_vegetation_{pol}") for p in patches for pol in ("vv", "vh")]
    summary["fisher_vegetation"] = _stats(fisher_veg)
    ndvi_corr = [p["corr_vh_ndvi"] for p in patches if p.get("corr_vh_ndvi") is not None]
    summary["corr_vh_ndvi_positive_share"] = (
        round(float(np.mean([c > 0.1 for c in ndvi_corr])), 4) if ndvi_corr else None
    )

    classes: dict[str, Any] = {}
    for p in patches:
        for name, c in p["per_class"].items():
            entry = classes.setdefault(name, {"pixels": 0, "patches": 0, "_w": []})
            entry["pixels"] += c["pixels"]
            entry["patches"] += 1
            entry["_w"].append(c)
    for entry in classes.values():
        items = entry.pop("_w")
        w = np.array([c["pixels"] for c in items], dtype=np.float64)
        for key in ("spectrum_mean", "spectrum_std"):
            if all(key in c for c in items):
                arr = np.array([c[key] for c in items])
                entry[key] = [round(float(v), 4) for v in (arr * w[:, None]).sum(0) / w.sum()]
        for key in ("vv_mean", "vh_mean", "vv_std", "vh_std"):
            if all(key in c for c in items):
                entry[key] = round(
                    float((np.array([c[key] for c in items]) * w).sum() / w.sum()), 3
                )
        for key in ("vv_hist", "vh_hist"):
            if all(key in c for c in items):
                entry[key] = np.sum([c[key] for c in items], axis=0).tolist()
        for key in ("corr_vh_b8", "corr_vv_b8"):
            entry[key] = _stats([c.get(key) for c in items])
        moments = [c["moments_vh_b8"] for c in items if "moments_vh_b8" in c]
        entry["pooled_corr_vh_b8"] = _pooled_corr(moments) if moments else None
        sar_moments = [c["moments_sar"] for c in items if "moments_sar" in c]
        if sar_moments:
            entry["_sar"] = np.sum(sar_moments, axis=0).tolist()
    pooled = [
        abs(c["pooled_corr_vh_b8"]) for c in classes.values() if c["pooled_corr_vh_b8"] is not None
    ]
    summary["pooled_within_class_abs_corr_vh_b8"] = _stats(pooled)
    vegetation = {v for p in patches for v in p["vegetation_classes"]}
    for pol, index in (("vv", 0), ("vh", 1)):
        moments = [
            c["_sar"][index] for name, c in classes.items() if "_sar" in c and name in vegetation
        ]
        summary[f"pooled_fisher_vegetation_{pol}"] = _pooled_fisher(moments)
        moments = [c["_sar"][index] for c in classes.values() if "_sar" in c]
        summary[f"pooled_fisher_all_{pol}"] = _pooled_fisher(moments)
    for c in classes.values():
        c.pop("_sar", None)
    summary["per_class"] = classes
    for key in ("opacity_hist", "apparent_opacity_hist"):
        hists = [p[key] for p in patches if key in p]
        if hists:
            summary[key] = np.sum(hists, axis=0).tolist()
    strata: dict[str, Any] = {}
    for p in patches:
        for name, s in p.get("ndvi_strata", {}).items():
            strata.setdefault(name, []).append(s["spectrum_mean"])
    summary["ndvi_strata_spectra"] = {
        name: [round(float(v), 4) for v in np.mean(spectra, axis=0)]
        for name, spectra in strata.items()
    }
    ratios = [p["time_gap_band_ratio"] for p in patches if "time_gap_band_ratio" in p]
    if ratios:
        summary["time_gap_band_ratio_median"] = [
            round(float(v), 4) for v in np.median(ratios, axis=0)
        ]
    return summary


#: Per-patch entries that only feed the summary (histograms, pooling moments).
_BULKY = ("vv_hist", "vh_hist", "moments_vh_b8", "moments_sar", "opacity_hist")


def measure_dataset(samples: Iterator[Sample]) -> dict[str, Any]:
    """Measure every patch of a dataset and summarise; per-patch entries without bulk."""
    patches = [measure_sample(s) for s in samples]
    summary = summarise(patches)
    for p in patches:
        for key in ("opacity_hist", "apparent_opacity_hist", "ndvi_strata"):
            p.pop(key, None)
        for c in p["per_class"].values():
            for key in _BULKY:
                c.pop(key, None)
    return {"patches": len(patches), "summary": summary, "per_patch": patches}


def check_targets(dataset: dict[str, Any]) -> dict[str, bool | None]:
    """Whether a measured dataset lies inside :data:`TARGETS` (``None``: not measurable)."""
    summary = dataset["summary"]
    t = TARGETS

    def within(stats: dict[str, Any] | None, lo: float | None, hi: float | None) -> bool | None:
        if stats is None:
            return None
        return bool((lo is None or stats["min"] >= lo) and (hi is None or stats["max"] <= hi))

    result: dict[str, bool | None] = {}
    fisher = summary["fisher_vegetation"]
    pooled = [summary[f"pooled_fisher_vegetation_{pol}"] for pol in ("vv", "vh")]
    result["fisher_vegetation"] = (
        None
        if fisher is None
        else bool(
            fisher["median"] < t["fisher_vegetation"]["max_median"]
            and all(v is None or v < t["fisher_vegetation"]["max_pooled"] for v in pooled)
        )
    )
    corr = summary["pooled_within_class_abs_corr_vh_b8"]
    per_patch = summary["within_class_abs_corr_vh_b8"]
    result["within_class_corr_vh_b8"] = (
        None
        if corr is None
        else bool(
            corr["max"] < t["within_class_corr_vh_b8"]["max_abs_pooled"]
            and per_patch["median"] < t["within_class_corr_vh_b8"]["max_abs_median"]
        )
    )
    result["vegetation_b8"] = within(
        summary["vegetation_b8"], t["vegetation_b8"]["min"], t["vegetation_b8"]["max"]
    )
    result["time_gap_b8"] = within(
        summary["time_gap_b8"], t["time_gap_b8"]["min"], t["time_gap_b8"]["max"]
    )
    band = within(summary["corr_vh_ndvi"], t["corr_vh_ndvi"]["min"], t["corr_vh_ndvi"]["max"])
    share = summary["corr_vh_ndvi_positive_share"]
    result["corr_vh_ndvi"] = (
        None if band is None else bool(band and share <= t["corr_vh_ndvi"]["max_positive_share"])
    )
    matches = [
        p["mask_matches_opacity"] for p in dataset["per_patch"] if "mask_matches_opacity" in p
    ]
    result["cloud_mask"] = bool(all(matches)) if matches else None
    return result


def difficulty(evals: dict[str, Path] | None) -> dict[str, Any]:
    """Direct-SAR / Direct-clear and Direct-cloudy / Direct-clear mIoU, ours and the paper's."""
    out: dict[str, Any] = {
        "paper_miou": dict(PAPER_MIOU),
        "paper_sar_over_clear": round(PAPER_MIOU["sar"] / PAPER_MIOU["clear"], 3),
        "paper_cloudy_over_clear": round(PAPER_MIOU["cloudy"] / PAPER_MIOU["clear"], 3),
        "paper_source": "TDP-CR Table II, Direct protocol, LuojiaSET-OSFCR (docs/model.md)",
    }
    miou: dict[str, float] = {}
    for key, path in (evals or {}).items():
        path = Path(path)
        if path.exists():
            miou[key] = float(json.loads(path.read_text())["metrics"]["miou"])
    out["miou"] = miou
    if "clear" in miou and miou["clear"] > 0:
        for key in ("sar", "cloudy"):
            if key in miou:
                ours = miou[key] / miou["clear"]
                paper = out[f"paper_{key}_over_clear"]
                out[f"{key}_over_clear"] = round(ours, 3)
                out[f"{key}_over_clear_minus_paper"] = round(ours - paper, 3)
    return out
