"""Realism report: the synthetic scenes measured against real Sentinel-1/2 samples, side by side.

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

Real data are read through the project's own source readers (:func:`tdpcr.data.sources.
make_source`) where the layout is one of them; the SEN12MS land cover + S1 pair and loose
SEN12MS-CR cloudy / clear pairs are read with :func:`tdpcr.data.rasters.read_raster`.
"""

from __future__ import annotations

from tdpcr.data.realism.measures import (
    OPACITY_BINS,
    SAR_BINS,
    TARGETS,
    boxcar_db,
    check_targets,
    class_interior,
    difficulty,
    fisher_ratio,
    measure_dataset,
    measure_sample,
    summarise,
)
from tdpcr.data.realism.report import comparison_rows, run_command, write_realism_report
from tdpcr.data.realism.samples import REAL_KINDS, Sample, default_real_roots, scene_samples

__all__ = [
    "OPACITY_BINS",
    "REAL_KINDS",
    "SAR_BINS",
    "TARGETS",
    "Sample",
    "boxcar_db",
    "check_targets",
    "class_interior",
    "comparison_rows",
    "default_real_roots",
    "difficulty",
    "fisher_ratio",
    "measure_dataset",
    "measure_sample",
    "run_command",
    "scene_samples",
    "summarise",
    "write_realism_report",
]
