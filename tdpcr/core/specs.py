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
#: Sentinel-1 GRD polarisations, backscatter in dB.
S1_BANDS: tuple[str, ...] = ("VV", "VH")
#: True-colour composite (B4, B3, B2) as 0-based indices into :data:`S2_BANDS`.
RGB_BANDS: tuple[int, int, int] = (S2_BANDS.index("B4"), S2_BANDS.index("B3"), S2_BANDS.index("B2"))

#: S2 digital numbers are reflectance x 1e4 (after removing any radiometric offset).
S2_SCALE = 10_000.0
#: Processing baseline >= 04.00 adds this offset to L1C DN (LuojiaSET-OSFCR carries it).
S2_PB04_OFFSET = 1_000
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
