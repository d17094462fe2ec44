"""Band names, class names and normalisation constants shared by every stage."""

from __future__ import annotations

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

#: Land-cover legend (ESA-WorldCover-like, as CloudSeg uses for LuojiaSET-OSFCR).
CLASS_NAMES: tuple[str, ...] = ("tree", "shrub", "grass", "crop", "built-up", "water", "bare")
#: Label value meaning "no label"; ignored by losses and metrics.
IGNORE_INDEX = 255

#: S2 digital numbers are reflectance x 1e4 (after removing any radiometric offset).
S2_SCALE = 10_000.0
#: Processing baseline >= 04.00 adds this offset to L1C DN (LuojiaSET-OSFCR carries it).
S2_PB04_OFFSET = 1_000
#: dB clip ranges for S1 normalisation to [0, 1] (DSen2-CR / GLF-CR / CloudSeg convention).
S1_CLIP_DB: dict[str, tuple[float, float]] = {"VV": (-25.0, 0.0), "VH": (-32.5, 0.0)}

#: Pieces of a sample, in the order the tile store lists them.
PIECES: tuple[str, ...] = ("s2_cloudy", "s2_clear", "s1", "landcover", "cloudmask")
#: Cloud-cover bins of LuojiaSET-OSFCR; also used to stratify splits.
CLOUD_BINS: tuple[str, ...] = ("0-20%", "20%-40%", "40%-60%", "60%-80%", "80%-100%")
#: Split names and the 8:1:1 ratios.
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS: tuple[float, ...] = (0.8, 0.1, 0.1)


def cloud_bin_index(cover: float) -> int:
    """Index into CLOUD_BINS of a cloud-cover fraction in [0, 1] (1.0 falls in the last bin)."""
    return min(int(cover * 5.0), 4)
