"""Names every stage shares: bands, pieces of a sample, classes and palette, splits, metrics.

Each fact is written here once; the tile store, the sources, the loader, the outputs of
prediction and the tables all derive what they need from it. Nothing here imports numpy or
torch, so the workflow can read it while Snakemake parses the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------- bands
#: Sentinel-2 L1C band order used by SEN12MS-CR, LuojiaSET-OSFCR and this project.
S2_BANDS: tuple[str, ...] = (
    "B1",
    "B2",
    "B3",
    "B4",
    "B5",
    "B6",
    "B7",
    "B8",
    "B8A",
    "B9",
    "B10",
    "B11",
    "B12",
)
#: Processing level of :data:`S2_BANDS` data (top-of-atmosphere reflectance). A checkpoint
#: records the level and bands it was trained on; older checkpoints without them are L1C.
S2_LEVEL = "L1C"
#: Sentinel-2 processing levels predict can read, and their bands (L2A has no B10, cirrus).
S2_LEVEL_BANDS: dict[str, tuple[str, ...]] = {
    "L1C": S2_BANDS,
    "L2A": tuple(b for b in S2_BANDS if b != "B10"),
}


@dataclass(frozen=True)
class S2BandInfo:
    """What catalogues say about one Sentinel-2 band (ESA's S2-A spectral response).

    Attributes:
        common_name: the STAC ``eo`` common name (``None`` where STAC has none).
        center_um: central wavelength in micrometres.
        fwhm_um: full width at half maximum in micrometres.
        gsd_m: native ground sample distance in metres.
        aliases: names the band goes by in products and catalogues (ESA file names,
            Earth Search v1 asset keys), lower case.
    """

    common_name: str | None
    center_um: float
    fwhm_um: float
    gsd_m: int
    aliases: tuple[str, ...]


#: Per-band facts, by :data:`S2_BANDS` name. B5..B7 share the common name "rededge", so
#: Earth Search's keys rededge1..3 are what tells them apart.
S2_BAND_INFO: dict[str, S2BandInfo] = {
    "B1": S2BandInfo("coastal", 0.443, 0.027, 60, ("b01", "coastal")),
    "B2": S2BandInfo("blue", 0.490, 0.098, 10, ("b02", "blue")),
    "B3": S2BandInfo("green", 0.560, 0.045, 10, ("b03", "green")),
    "B4": S2BandInfo("red", 0.665, 0.038, 10, ("b04", "red")),
    "B5": S2BandInfo("rededge", 0.704, 0.019, 20, ("b05", "rededge1")),
    "B6": S2BandInfo("rededge", 0.740, 0.018, 20, ("b06", "rededge2")),
    "B7": S2BandInfo("rededge", 0.783, 0.028, 20, ("b07", "rededge3")),
    "B8": S2BandInfo("nir", 0.842, 0.145, 10, ("b08", "nir")),
    "B8A": S2BandInfo("nir08", 0.865, 0.033, 20, ("b8a", "nir08")),
    "B9": S2BandInfo("nir09", 0.945, 0.026, 60, ("b09", "nir09")),
    "B10": S2BandInfo("cirrus", 1.375, 0.075, 60, ("b10", "cirrus")),
    "B11": S2BandInfo("swir16", 1.610, 0.143, 20, ("b11", "swir16")),
    "B12": S2BandInfo("swir22", 2.190, 0.242, 20, ("b12", "swir22")),
}


def s2_band_name(name: str) -> str | None:
    """The :data:`S2_BANDS` name of a band called ``name`` in a product or catalogue, or None.

    Accepts B1 / B01 / b01, Earth Search keys (coastal, rededge1, nir08, ...) and GDAL's
    SENTINEL2 descriptions ("B4, central wavelength 665 nm").
    """
    key = name.split(",")[0].strip().lower()
    for band, info in S2_BAND_INFO.items():
        if key == band.lower() or key in info.aliases:
            return band
    return None


#: Sentinel-1 GRD polarisations, backscatter in dB.
S1_BANDS: tuple[str, ...] = ("VV", "VH")
#: Units ``tdpcr predict --s1-units`` accepts: decided from the product / values, or given.
S1_UNITS: tuple[str, ...] = ("auto", "db", "linear")
#: True-colour composite (B4, B3, B2) as 0-based indices into :data:`S2_BANDS`.
RGB_BANDS: tuple[int, int, int] = (S2_BANDS.index("B4"), S2_BANDS.index("B3"), S2_BANDS.index("B2"))

#: S2 digital numbers are reflectance x 1e4 (after removing any radiometric offset).
S2_SCALE = 10_000.0
#: Processing baseline >= 04.00 adds this offset to L1C DN (LuojiaSET-OSFCR carries it).
S2_PB04_OFFSET = 1_000
#: The only DN offsets Sentinel-2 products carry (before / since baseline 04.00).
S2_OFFSETS: tuple[int, ...] = (0, S2_PB04_OFFSET)
#: dB clip ranges for S1 normalisation to [0, 1] (DSen2-CR / GLF-CR / CloudSeg convention).
S1_CLIP_DB: dict[str, tuple[float, float]] = {"VV": (-25.0, 0.0), "VH": (-32.5, 0.0)}

# --------------------------------------------------------------------------- classes
#: Land-cover legend (ESA-WorldCover-like, as CloudSeg uses for LuojiaSET-OSFCR).
CLASS_NAMES: tuple[str, ...] = ("tree", "shrub", "grass", "crop", "built-up", "water", "bare")
#: Label value meaning "no label"; ignored by losses and metrics.
IGNORE_INDEX = 255
#: Colour table of land-cover GeoTIFFs and figures (ESA WorldCover palette for the same
#: classes), RGBA by class index; the ignore label is transparent.
LANDCOVER_COLORS: dict[int, tuple[int, int, int, int]] = {
    CLASS_NAMES.index("tree"): (0, 100, 0, 255),
    CLASS_NAMES.index("shrub"): (255, 187, 34, 255),
    CLASS_NAMES.index("grass"): (255, 255, 76, 255),
    CLASS_NAMES.index("crop"): (240, 150, 255, 255),
    CLASS_NAMES.index("built-up"): (250, 0, 0, 255),
    CLASS_NAMES.index("water"): (0, 100, 200, 255),
    CLASS_NAMES.index("bare"): (180, 180, 180, 255),
    IGNORE_INDEX: (0, 0, 0, 0),
}

# --------------------------------------------------------------------------- pieces
#: Values of the cloud mask: clear, cloud (thin haze included), cloud shadow, unknown.
CLOUDMASK_CLEAR, CLOUDMASK_CLOUD, CLOUDMASK_SHADOW, CLOUDMASK_UNKNOWN = 0, 1, 2, 255
#: Mask values whose optical pixel is corrupted (the "cloudy" region of every metric).
CORRUPTED_VALUES: tuple[int, ...] = (CLOUDMASK_CLOUD, CLOUDMASK_SHADOW)


@dataclass(frozen=True)
class PieceSpec:
    """One piece of a sample, as sources deliver it and the tile store keeps it.

    Attributes:
        name: variable name in the store and key of a loader sample.
        dims: dimensions of the store variable (``patch`` first).
        dtype: dtype in the store.
        bands: band names of a multi-band piece; ``None`` for a single-band map.
        fill: value the store holds where a patch lacks the piece (and the Zarr fill value).
        optional: a source may lack the piece for some of its patches (they get ``fill``).
        description: a short human name, used in error messages.
    """

    name: str
    dims: tuple[str, ...]
    dtype: str
    bands: tuple[str, ...] | None
    fill: int | float
    optional: bool
    description: str

    @property
    def band_count(self) -> int:
        """Bands of the piece in a source file (1 for a single-band map)."""
        return 1 if self.bands is None else len(self.bands)

    def shape(self, patches: int, patch_size: int) -> tuple[int, ...]:
        """Shape of the store variable for ``patches`` square patches."""
        inner = () if self.bands is None else (len(self.bands),)
        return (patches, *inner, patch_size, patch_size)


#: Every piece, in the order the store lists them and sources read them.
PIECES: dict[str, PieceSpec] = {
    spec.name: spec
    for spec in (
        PieceSpec(
            "s2_cloudy",
            ("patch", "band", "y", "x"),
            "uint16",
            S2_BANDS,
            0,
            False,
            "cloudy Sentinel-2 L1C (13 bands)",
        ),
        PieceSpec(
            "s2_clear",
            ("patch", "band", "y", "x"),
            "uint16",
            S2_BANDS,
            0,
            False,
            "cloud-free Sentinel-2 L1C (13 bands)",
        ),
        PieceSpec(
            "s1",
            ("patch", "sar_band", "y", "x"),
            "float32",
            S1_BANDS,
            0,
            False,
            "Sentinel-1 VV/VH dB (2 bands)",
        ),
        PieceSpec(
            "landcover", ("patch", "y", "x"), "uint8", None, IGNORE_INDEX, True, "land-cover map"
        ),
        PieceSpec(
            "cloudmask", ("patch", "y", "x"), "uint8", None, CLOUDMASK_UNKNOWN, True, "cloud mask"
        ),
        PieceSpec(
            "cloud_opacity",
            ("patch", "y", "x"),
            "float32",
            None,
            float("nan"),
            True,
            "true cloud opacity in [0, 1] (synthetic scenes)",
        ),
    )
}
#: Pieces that are a single map per patch (stored without a band axis).
MAP_PIECES: tuple[str, ...] = tuple(name for name, spec in PIECES.items() if spec.bands is None)
#: Optical pieces: a sample's grid is checked against the first one present.
OPTICAL_PIECES: tuple[str, ...] = ("s2_cloudy", "s2_clear")

# --------------------------------------------------------------------------- splits
#: Cloud-cover bins of LuojiaSET-OSFCR; also used to stratify splits.
CLOUD_BINS: tuple[str, ...] = ("0-20%", "20%-40%", "40%-60%", "60%-80%", "80%-100%")
#: Split names (their shares are the config's ``tiling.split_fractions``).
SPLITS: tuple[str, ...] = ("train", "val", "test")


def cloud_bin_index(cover: float) -> int:
    """Index into CLOUD_BINS of a cloud-cover fraction in [0, 1] (1.0 falls in the last bin)."""
    return min(int(cover * 5.0), 4)


# --------------------------------------------------------------------------- metrics
#: Pixel sets every score is also computed over, as metric-name suffixes: all pixels, pixels
#: under the cloud mask, clear pixels.
REGIONS: tuple[str, ...] = ("", "_cloudy", "_clear")
#: Cloud-removal metrics per image (PSNR dB, SSIM, RMSE and MAE in reflectance, SAM degrees).
CR_BASE_METRICS: tuple[str, ...] = ("psnr", "ssim", "rmse", "mae", "sam")
#: Cloud-removal metric names (evaluation JSON keys; ``test/`` prefixed in MLflow).
CR_METRICS: tuple[str, ...] = tuple(f"{m}{r}" for r in REGIONS for m in CR_BASE_METRICS)
#: Metrics where lower is better (the rest: higher is better).
LOWER_IS_BETTER: tuple[str, ...] = ("rmse", "mae", "sam")
#: Segmentation metrics.
SEG_METRICS: tuple[str, ...] = tuple(f"{m}{r}" for r in REGIONS for m in ("pa", "miou"))
#: Per-class IoU over all pixels, in class order (``iou_tree``, ...).
CLASS_IOU: tuple[str, ...] = tuple(f"iou_{name}" for name in CLASS_NAMES)


def pgf_stage_key(region: str, stage: int) -> str:
    """Per-patch key of a PGF stage's mean SAR weight: ``pgf_sar_cloudy_s1``, ``pgf_sar_gap_s2``.

    ``region``: ``cloudy``, ``clear`` or ``gap`` (cloudy - clear); stages count from 1.
    """
    return f"pgf_sar_{region}_s{stage}"


#: Per-patch key of the PGF cloudy - clear SAR-weight difference averaged over the stages.
PGF_GAP_MEAN = "pgf_sar_gap_mean"

# --------------------------------------------------------------------------- quality layer
#: Bands of a prediction's ``quality.tif`` (float32, NaN = no data), and what each means.
#: ``sar_weight`` is PGF's SAR weight at the full-resolution stage; coarser stages follow as
#: ``sar_weight_stage<N>`` (upsampled bilinearly), then the prompt's estimate and the change.
QUALITY_DESCRIPTIONS: dict[str, str] = {
    "sar_weight": (
        "PGF modality weight of SAR at the full-resolution encoder stage, mean over channels; "
        "0 = output features from the optical stream only, 1 = from SAR only, 0.5 = equal"
    ),
    "sar_weight_stage": (
        "the same SAR weight at a coarser encoder stage (1/2, 1/4, 1/8 resolution), "
        "upsampled bilinearly; range [0, 1]"
    ),
    "prompt_degradation": (
        "the prompt's degradation estimate: sigmoid of the channel mean of the prompt "
        "branch's SAR-minus-optical logit at the full-resolution PGF (the SAR weight the "
        "prompt alone would give); range [0, 1], 0.5 = no preference, towards 1 = optical "
        "input degraded"
    ),
    "reflectance_change": (
        "mean absolute difference between the cloud-free output and the cloudy input over "
        "the bands, in reflectance units; range [0, 1], 0 = input kept"
    ),
}


def quality_band_names(stages: int, prompt: bool) -> tuple[str, ...]:
    """Band names of ``quality.tif`` for a model with ``stages`` PGF stages (0: none) and a
    prompt branch (``prompt``)."""
    names = ["sar_weight"] if stages else []
    names += [f"sar_weight_stage{i + 1}" for i in range(1, stages)]
    names += ["prompt_degradation"] if prompt and stages else []
    return (*names, "reflectance_change")


def quality_description(name: str) -> str:
    """What a ``quality.tif`` band holds (units and range)."""
    return QUALITY_DESCRIPTIONS["sar_weight_stage" if name.startswith("sar_weight_") else name]
