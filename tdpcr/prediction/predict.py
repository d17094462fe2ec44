"""Sliding-window prediction over a whole scene of any size, written as Cloud-Optimized GeoTIFFs.

The engine in brief:

* **Windows.** The scene is covered by ``window`` x ``window`` windows every
  ``window - overlap`` pixels; the last window of a row or column is moved back to end on the
  scene edge, so any scene size is covered without padding. A scene side shorter than the
  window gets one window rounded up to the model's size divisor (16 for TDP-CR), filled by
  mirroring the scene (``symmetric`` padding) - the padded pixels are predicted and dropped.
* **Blending.** Each window's outputs are weighted by a separable raised-cosine (Tukey) taper:
  1 in the window's core, a half-cosine over the ``overlap`` pixels towards each window border
  that lies inside the scene, and no taper on borders that are scene edges. The taper is
  evaluated at pixel centres, so it never reaches 0 and every pixel has a positive total
  weight; where two windows overlap by exactly ``overlap`` their tapers sum to 1. The output is
  ``sum(w * y) / sum(w)``: the window border, where a convolutional model is worst (zero
  padding, a global pooling over a different area), gets almost no weight and the hand-over
  from one window to the next is smooth, so there is no seam. Land cover is the argmax of the
  blended *logits*, never a vote over labels.
* **Bounded memory.** Windows are processed one row of windows at a time. Only the float
  accumulators of the rows in flight exist (``window`` rows x scene width); when the next row
  of windows starts at row ``r``, every row above ``r`` is final and is written to the output
  with a windowed write, and the accumulators shift up. Inputs are read in the same row strips
  (windowed reads; S1 on another grid through a GDAL warped VRT, which reprojects only what is
  read). Peak memory therefore grows with the scene *width* (~ 4 bytes x (13 + classes [+ 8
  prompt channels] + 1) x window x width: 113 MB for a 5490-pixel-wide scene, window 256,
  7 classes), never with its area.
* **COG.** Row bands go to uncompressed tiled GeoTIFFs in a temporary folder next to
  ``--out``; each is then copied with GDAL's COG driver (deflate, overviews, 512 x 512 blocks)
  and the folder is renamed to ``--out`` at the very end, so a failure leaves nothing there.
* **Device.** Batches of windows run under ``torch.inference_mode``, on CUDA with bf16 autocast
  when a GPU is usable (``force_cpu`` to opt out), else float32 on the CPU; channels-last
  memory format on both (faster for these convolutional models, see
  :mod:`tdpcr.benchmarks.inference`).

Value conventions are the training ones (:mod:`tdpcr.data.normalize`): S2 L1C digital numbers
(reflectance x 1e4; pass ``s2_offset=1000`` for processing baseline >= 04.00 products) and S1
backscatter in dB (VV, VH). Nodata: an S2 pixel is nodata when all 13 bands equal the file's
nodata value, or are all 0, or any band is NaN; it is fed to the model as 0 and written as
nodata (0 in ``cloudfree.tif``, whose valid pixels are clipped to >= 1 DN so they never read
as nodata; 255 in ``landcover.tif``; NaN in ``prompt.tif``). S1 nodata (the file's nodata
value, NaN, or outside the S1 footprint) becomes the normalised floor 0, as in training; the
optical pixel stays valid.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from tdpcr.constants import CLASS_NAMES, IGNORE_INDEX, S1_BANDS, S2_BANDS, S2_SCALE
from tdpcr.data.normalize import normalise_s1, normalise_s2
from tdpcr.data.rasters import Grid
from tdpcr.data.synthetic import LANDCOVER_COLORS
from tdpcr.errors import InputDataError, TdpcrError
from tdpcr.models.registry import create_model
from tdpcr.training.checkpoint import load_model_state, read_meta

log = logging.getLogger(__name__)

#: Architectures that produce a cloud-free image (segmenters alone cannot be used here).
PREDICTABLE_MODELS: tuple[str, ...] = ("tdpcr", "dsen2cr")
#: Every file a prediction folder may hold; an existing --out with anything else is refused.
OUTPUT_FILES: tuple[str, ...] = ("cloudfree.tif", "landcover.tif", "prompt.tif", "prediction.json")
#: Nodata of ``cloudfree.tif`` (valid pixels are clipped to >= 1 DN).
CLOUDFREE_NODATA = 0
#: Nodata of ``landcover.tif`` (the project's ignore label).
LANDCOVER_NODATA = IGNORE_INDEX
#: GDAL block cache for the writes and the COG copies: bounds GDAL's share of the memory.
GDAL_CACHE_MB = 256


@dataclass(frozen=True)
class PredictOptions:
    """How :func:`predict_scene` runs.

    Attributes:
        window: window side in pixels; a multiple of the model's size divisor (16 for TDP-CR).
        overlap: pixels shared by neighbouring windows, at most ``window // 2``; also the
            length of the blending taper. 0 gives plain tiling (the last window still overlaps).
        batch_size: windows per forward pass.
        threads: CPU threads for torch (capped by the CPUs available); ``None`` leaves torch's
            default.
        force_cpu: ignore CUDA even when present.
        write_prompt: also write ``prompt.tif`` (TDP-CR with a prompt generator only).
        s2_offset: DN offset to subtract from S2 (1000 for processing baseline >= 04.00).
        progress: show a progress bar (tqdm) over the windows.
    """

    window: int = 256
    overlap: int = 64
    batch_size: int = 4
    threads: int | None = None
    force_cpu: bool = False
    write_prompt: bool = False
    s2_offset: int = 0
    progress: bool = True


@dataclass
class PredictionResult:
    """What one prediction wrote and how long it took (also saved as ``prediction.json``)."""

    out_dir: str
    files: list[str]
    height: int
    width: int
    windows: int
    window: int
    overlap: int
    batch_size: int
    device: str
    seconds: float
    pixels_per_second: float
    s1_reprojected: bool
    nodata_pixels: int
    accumulator_shape: list[int]
    model: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Model


@dataclass
class Predictor:
    """A model ready for inference, and what it outputs.

    ``model(optical, sar)`` must return a dict with ``image`` (B, 13, H, W) and, when
    ``num_classes`` is set, ``logits`` (B, num_classes, H, W); with ``prompt_channels`` set it
    must accept ``return_prompt=True`` and then also return ``prompt``. Any such module works,
    which is how the tests check the blending with a model of known output.
    """

    model: nn.Module
    num_classes: int | None
    prompt_channels: int | None
    size_divisor: int
    device: torch.device
    model_name: str = "custom"
    variant: str = ""
    checkpoint: str = ""
    image_channels: int = len(S2_BANDS)

    def __call__(
        self, optical: np.ndarray, sar: np.ndarray, want_prompt: bool = False
    ) -> dict[str, np.ndarray]:
        """Forward a batch of normalised (B, C, h, w) float32 arrays; float32 numpy outputs."""
        cuda = self.device.type == "cuda"
        fmt = torch.channels_last
        opt = torch.from_numpy(optical).to(self.device).contiguous(memory_format=fmt)
        s1 = torch.from_numpy(sar).to(self.device).contiguous(memory_format=fmt)
        kwargs = {"return_prompt": True} if want_prompt else {}
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda),
        ):
            out = self.model(opt, s1, **kwargs)
        keys = ["image"]
        if self.num_classes is not None:
            keys.append("logits")
        if want_prompt:
            keys.append("prompt")
        # The accumulators are numpy on the host: one copy per batch, contiguous, float32.
        return {k: out[k].float().contiguous().cpu().numpy() for k in keys}


def select_device(force_cpu: bool = False) -> torch.device:
    """CUDA when usable and not ``force_cpu``, else the CPU."""
    if torch.cuda.is_available() and not force_cpu:
        return torch.device("cuda")
    return torch.device("cpu")


def load_predictor(checkpoint: Path, *, force_cpu: bool = False) -> Predictor:
    """Build the model of a checkpoint folder (``model.safetensors`` + ``meta.json``).

    TDP-CR (Full: image + land cover [+ prompt]; CR-only: image [+ prompt]) and DSen2-CR
    (image) are supported; a SegFormer checkpoint is refused, it removes no clouds.

    Raises:
        InputDataError: folder or files missing, unreadable, a segmenter, weights that do not
            fit the architecture in ``meta.json``.
    """
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise InputDataError(
            f"{folder}: checkpoint folder not found (expected a folder with model.safetensors "
            "and meta.json, e.g. results/models/tdpcr-full)"
        )
    meta = read_meta(folder)
    if meta.model_name not in PREDICTABLE_MODELS:
        what = "only segments" if meta.model_name == "segformer" else "is not a known model"
        raise InputDataError(
            f"{folder}: a {meta.model_name!r} checkpoint (variant {meta.variant!r}) {what}; "
            f"predict needs a cloud-removal model ({', '.join(PREDICTABLE_MODELS)})"
        )
    try:
        model = create_model(meta.model_name, **meta.model_kwargs)
    except (ValueError, TypeError) as err:
        raise InputDataError(f"{folder / 'meta.json'}: cannot build the model ({err})") from None
    try:
        load_model_state(folder, model)
    except RuntimeError as err:  # load_state_dict: missing / unexpected keys, shape mismatch
        first = str(err).strip().splitlines()[0]
        raise InputDataError(
            f"{folder / 'model.safetensors'}: weights do not fit meta.json's model ({first})"
        ) from None
    device = select_device(force_cpu)
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    generator = getattr(model, "prompt_generator", None)
    prompt_channels = int(generator.body[-1].out_channels) if generator is not None else None
    return Predictor(
        model=model,
        num_classes=getattr(model, "num_classes", None),
        prompt_channels=prompt_channels,
        size_divisor=int(getattr(model, "size_divisor", 1)),
        device=device,
        model_name=meta.model_name,
        variant=meta.variant,
        checkpoint=str(folder),
    )


# ---------------------------------------------------------------------------------------------
# Windows and weights


def window_offsets(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering ``length``; the last one ends on the edge.

    ``length <= window`` gives the single offset 0 (the window is then padded).
    """
    if length <= window:
        return [0]
    offsets = list(range(0, length - window + 1, stride))
    if offsets[-1] + window < length:
        offsets.append(length - window)
    return offsets


def taper(length: int, overlap: int, start_inside: bool, end_inside: bool) -> np.ndarray:
    """1-D blending weights of one window: 1 in the core, half-cosine ramps of ``overlap``.

    A ramp is applied only on a side that lies inside the scene (``start_inside``,
    ``end_inside``): on a scene edge no neighbour shares the pixels, so they keep full weight.
    Sampled at pixel centres, the ramp is > 0 everywhere and two ramps offset by ``overlap``
    sum to 1 (sin^2 + cos^2).
    """
    weights = np.ones(length, dtype=np.float32)
    ramp_length = min(overlap, length // 2)
    if ramp_length > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / ramp_length)
        ramp = ramp.astype(np.float32)
        if start_inside:
            weights[:ramp_length] = ramp
        if end_inside:
            weights[length - ramp_length :] = ramp[::-1]
    return weights


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class WindowPlan:
    """Window grid over a scene: sizes, offsets and the per-axis weights of every window."""

    height: int
    width: int
    win_y: int
    win_x: int
    rows: list[int]
    cols: list[int]
    overlap: int

    @classmethod
    def make(cls, height: int, width: int, window: int, overlap: int, divisor: int) -> WindowPlan:
        """Plan for a ``height`` x ``width`` scene (see :func:`check_window_options`)."""
        win_y = min(window, _round_up(height, divisor))
        win_x = min(window, _round_up(width, divisor))
        stride = window - overlap
        return cls(
            height,
            width,
            win_y,
            win_x,
            window_offsets(height, win_y, stride),
            window_offsets(width, win_x, stride),
            overlap,
        )

    @property
    def count(self) -> int:
        """Number of windows."""
        return len(self.rows) * len(self.cols)

    def row_weights(self, row: int) -> np.ndarray:
        return taper(self.win_y, self.overlap, row > 0, row + self.win_y < self.height)

    def col_weights(self, col: int) -> np.ndarray:
        return taper(self.win_x, self.overlap, col > 0, col + self.win_x < self.width)


def check_window_options(window: int, overlap: int, batch_size: int, divisor: int) -> None:
    """Refuse window settings the model or the blending cannot use (one line, TdpcrError)."""
    if window < divisor or window % divisor:
        raise TdpcrError(
            f"--window {window}: must be a positive multiple of {divisor} (the model's size "
            "divisor)"
        )
    if not 0 <= overlap <= window // 2:
        raise TdpcrError(f"--overlap {overlap}: must be between 0 and window/2 = {window // 2}")
    if batch_size < 1:
        raise TdpcrError(f"--batch-size {batch_size}: must be at least 1")


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class OpenInputs:
    """Open input datasets and what was learnt checking them."""

    s2: DatasetReader
    s1: Any  # DatasetReader or WarpedVRT: both offer read(window=...)
    grid: Grid
    s2_nodata: float | None
    s1_nodata: float | None
    s1_reprojected: bool


def _open_raster(path: Path, what: str) -> DatasetReader:
    if not Path(path).is_file():
        raise InputDataError(f"{path}: file not found (expected {what})")
    try:
        with warnings.catch_warnings():
            # A file without georeferencing is refused below with one line naming it;
            # rasterio's multi-line warning would only repeat that.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputDataError(f"{path}: not a readable GeoTIFF ({first})") from None


def _same_grid(a: DatasetReader, b: DatasetReader) -> bool:
    """Same CRS, shape and pixel grid (origins within 1/1000 pixel, sizes within 1e-6)."""
    if a.crs != b.crs or a.shape != b.shape:
        return False
    ta, tb = a.transform, b.transform
    pixel = max(abs(ta.a), abs(ta.e))
    same_size = all(
        abs(x - y) <= 1e-6 * pixel
        for x, y in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e))
    )
    return same_size and abs(ta.c - tb.c) <= 1e-3 * pixel and abs(ta.f - tb.f) <= 1e-3 * pixel


def _footprint_coverage(s2: DatasetReader, s1: DatasetReader) -> float:
    """Fraction of the S2 footprint inside the S1 footprint (bounding boxes, in S2's CRS)."""
    left, bottom, right, top = transform_bounds(s1.crs, s2.crs, *s1.bounds, densify_pts=21)
    b = s2.bounds
    width = min(right, b.right) - max(left, b.left)
    height = min(top, b.top) - max(bottom, b.bottom)
    if width <= 0 or height <= 0:
        return 0.0
    return float(width * height / ((b.right - b.left) * (b.top - b.bottom)))


@contextmanager
def open_inputs(optical: Path, sar: Path) -> Iterator[OpenInputs]:
    """Open and check the S2 and S1 scenes; S1 on another grid is warped onto S2's.

    Raises:
        InputDataError: a file missing or unreadable, a band count other than 13 (S2) or 2
            (S1), no CRS, footprints that do not overlap.
    """
    with ExitStack() as stack:
        s2 = stack.enter_context(_open_raster(optical, "a 13-band Sentinel-2 L1C GeoTIFF"))
        s1 = stack.enter_context(_open_raster(sar, "a 2-band Sentinel-1 GeoTIFF (VV, VH in dB)"))
        for src, path, bands, what in (
            (s2, optical, len(S2_BANDS), "Sentinel-2 L1C (B1..B12 incl. B8A)"),
            (s1, sar, len(S1_BANDS), "Sentinel-1 (VV, VH in dB)"),
        ):
            if src.count != bands:
                raise InputDataError(
                    f"{path}: expected {what} with {bands} bands, found {src.count}"
                )
            if src.crs is None:
                raise InputDataError(
                    f"{path}: no CRS; expected a georeferenced GeoTIFF (outputs take the S2 "
                    "CRS and transform)"
                )
        coverage = _footprint_coverage(s2, s1)
        if coverage <= 0.0:
            raise InputDataError(
                f"{sar}: footprint does not overlap the S2 scene {optical} (S1 bounds "
                f"{tuple(round(v, 1) for v in s1.bounds)} in {s1.crs.to_string()}, S2 bounds "
                f"{tuple(round(v, 1) for v in s2.bounds)} in {s2.crs.to_string()})"
            )
        reprojected = not _same_grid(s2, s1)
        reader: Any = s1
        if reprojected:
            log.warning(
                "%s: S1 is not on the S2 grid of %s (%s, %.4g m pixels vs %s, %.4g m); "
                "reprojecting it onto the S2 grid (bilinear)",
                sar,
                optical,
                s1.crs.to_string(),
                abs(s1.transform.a),
                s2.crs.to_string(),
                abs(s2.transform.a),
            )
            # A warped VRT reprojects only the windows read, so memory stays bounded. Pixels
            # outside the S1 footprint read as NaN (-> the normalised floor 0 later).
            reader = stack.enter_context(
                WarpedVRT(
                    s1,
                    crs=s2.crs,
                    transform=s2.transform,
                    width=s2.width,
                    height=s2.height,
                    resampling=Resampling.bilinear,
                    src_nodata=s1.nodata,
                    nodata=float("nan"),
                    dtype="float32",
                )
            )
        if coverage < 0.999:
            log.warning(
                "%s: covers only %.1f %% of the S2 scene %s; S2 pixels without S1 get the "
                "S1 floor value (as missing S1 in training)",
                sar,
                100 * coverage,
                optical,
            )
        grid = Grid(s2.crs, s2.transform, s2.height, s2.width)
        yield OpenInputs(
            s2, reader, grid, s2.nodata, None if reprojected else s1.nodata, reprojected
        )


def read_strip(
    src: Any, path: Path, row: int, rows: int, width: int, dtype: str | None = None
) -> np.ndarray:
    """Rows ``row .. row + rows`` over the full width, (bands, rows, width)."""
    try:
        data = src.read(window=Window(0, row, width, rows))
    except RasterioError as err:
        raise InputDataError(
            f"{path}: cannot read rows {row}..{row + rows}, file truncated or corrupt ({err})"
        ) from None
    return data if dtype is None else data.astype(dtype, copy=False)


def read_row_strip(
    inputs: OpenInputs, optical: Path, sar: Path, row: int, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S2 DN, S1 dB (nodata -> NaN) and the S2 nodata mask of ``rows`` scene rows from ``row``."""
    width = inputs.grid.width
    s2 = read_strip(inputs.s2, optical, row, rows, width)
    s1 = read_strip(inputs.s1, sar, row, rows, width, "float32")
    if inputs.s1_nodata is not None and not math.isnan(inputs.s1_nodata):
        s1[s1 == np.float32(inputs.s1_nodata)] = np.nan
    return s2, s1, nodata_mask(s2, inputs.s2_nodata)


def nodata_mask(strip: np.ndarray, nodata: float | None) -> np.ndarray:
    """(rows, width) True where an S2 pixel is nodata (see the module docstring)."""
    invalid = (strip == 0).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        invalid |= (strip == nodata).all(axis=0)
    if strip.dtype.kind == "f":
        invalid |= np.isnan(strip).any(axis=0)
    return invalid


def pad_to(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mirror-pad the last two axes up to ``rows`` x ``cols`` (a scene smaller than a window)."""
    pad_r, pad_c = rows - array.shape[-2], cols - array.shape[-1]
    if pad_r <= 0 and pad_c <= 0:
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(0, max(pad_r, 0)), (0, max(pad_c, 0))]
    return np.pad(array, widths, mode="symmetric")


# ---------------------------------------------------------------------------------------------
# Accumulation


class RowBandBlender:
    """Weighted sums of the rows in flight: ``channels`` x ``rows`` x scene width, float32.

    ``top`` is the scene row of buffer row 0. :meth:`shift_to` drops finished rows off the top;
    nothing here ever spans the scene height, which is what bounds the memory.
    """

    def __init__(self, channels: int, rows: int, width: int) -> None:
        self.acc = np.zeros((channels, rows, width), dtype=np.float32)
        self.weight = np.zeros((rows, width), dtype=np.float32)
        self.invalid = np.zeros((rows, width), dtype=bool)
        self.top = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.acc.shape

    def shift_to(self, top: int) -> None:
        """Make scene row ``top`` buffer row 0; rows above must have been taken already."""
        delta = top - self.top
        if delta <= 0:
            return
        keep = max(self.acc.shape[1] - delta, 0)
        if keep:
            # Overlapping source and target: numpy buffers the copy.
            self.acc[:, :keep] = self.acc[:, delta : delta + keep]
            self.weight[:keep] = self.weight[delta : delta + keep]
            self.invalid[:keep] = self.invalid[delta : delta + keep]
        self.acc[:, keep:] = 0.0
        self.weight[keep:] = 0.0
        self.invalid[keep:] = False
        self.top = top

    def add(self, values: np.ndarray, row: int, col: int, weights: np.ndarray) -> None:
        """Add ``weights * values`` ((C, h, w) at scene ``row``, ``col``)."""
        r = row - self.top
        h, w = weights.shape
        self.acc[:, r : r + h, col : col + w] += values * weights
        self.weight[r : r + h, col : col + w] += weights

    def take(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Blended values and nodata mask of scene rows ``start .. stop``."""
        a, b = start - self.top, stop - self.top
        return self.acc[:, a:b] / self.weight[a:b], self.invalid[a:b]


# ---------------------------------------------------------------------------------------------
# Outputs


def raw_profile(grid: Grid, count: int, dtype: str, nodata: float | None) -> dict[str, Any]:
    """Uncompressed tiled GeoTIFF: row bands of any height are rewritten in place."""
    return {
        "driver": "GTiff",
        "height": grid.height,
        "width": grid.width,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "interleave": "band",
        "bigtiff": "if_safer",
    }


def convert_to_cog(raw: Path, final: Path, *, resampling: str, threads: int = 1) -> Path:
    """Copy a tiled GeoTIFF to a Cloud-Optimized GeoTIFF (deflate, overviews), remove ``raw``.

    Band descriptions, tags, nodata and colour tables carry over (GDAL's CreateCopy).
    """
    dtype = None
    with rasterio.open(raw) as src:
        dtype = src.dtypes[0]
    options = {
        "compress": "DEFLATE",
        "predictor": "3" if dtype.startswith("float") else "2",
        "blocksize": "512",
        "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
        "num_threads": str(max(1, threads)),
    }
    rasterio.shutil.copy(str(raw), str(final), driver="COG", **options)
    Path(raw).unlink()
    return final


def _prepare_out(out: Path) -> Path:
    """Check ``out`` may be (re)placed; return the temporary folder to write into."""
    if out.exists():
        if not out.is_dir():
            raise TdpcrError(f"--out {out}: exists and is not a folder")
        foreign = sorted(
            p.name for p in out.iterdir() if p.name not in OUTPUT_FILES and p.suffix != ".xml"
        )
        if foreign:
            raise TdpcrError(
                f"--out {out}: exists and holds other files ({foreign[0]}, ...); choose a new "
                "or empty folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder to ``out`` (replacing a previous prediction)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def available_cpus() -> int:
    """CPUs this process may use (affinity, i.e. a SLURM allocation), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# The engine


def predict_scene(
    optical: Path,
    sar: Path,
    checkpoint: Path | Predictor,
    out: Path,
    options: PredictOptions | None = None,
) -> PredictionResult:
    """Predict a whole scene and write ``cloudfree.tif``, ``landcover.tif`` (models with a
    segmentation head) and optionally ``prompt.tif`` as COGs in ``out``.

    Args:
        optical: cloudy Sentinel-2 L1C GeoTIFF, 13 bands (DN = reflectance x 1e4).
        sar: Sentinel-1 GeoTIFF, 2 bands (VV, VH in dB); reprojected (bilinear) onto the S2 grid
            with a warning when it is on another grid.
        checkpoint: checkpoint folder, or an already loaded :class:`Predictor`.
        out: output folder; written under a temporary name and renamed when complete.
        options: window, overlap, batch size, threads, device, prompt output.

    Returns:
        What was written (also saved as ``out/prediction.json``).

    Raises:
        InputDataError: bad inputs or checkpoint (one line naming the file).
        TdpcrError: bad options, or an ``out`` that holds unrelated files.
    """
    options = options or PredictOptions()
    optical, sar, out = Path(optical), Path(sar), Path(out)
    if options.threads is not None:
        torch.set_num_threads(max(1, min(options.threads, available_cpus())))
    predictor = (
        checkpoint
        if isinstance(checkpoint, Predictor)
        else load_predictor(Path(checkpoint), force_cpu=options.force_cpu)
    )
    check_window_options(
        options.window, options.overlap, options.batch_size, predictor.size_divisor
    )
    if options.write_prompt and predictor.prompt_channels is None:
        raise TdpcrError(
            f"--prompt: the checkpoint {predictor.checkpoint or predictor.model_name} has no "
            "prompt generator (TDP-CR with PGF local or both only)"
        )
    t0 = time.perf_counter()
    with open_inputs(optical, sar) as inputs:
        tmp = _prepare_out(out)
        try:
            result = _run(predictor, inputs, optical, sar, tmp, options)
            result.out_dir = str(out)
            result.seconds = round(time.perf_counter() - t0, 3)
            result.pixels_per_second = round(result.height * result.width / result.seconds, 1)
            (tmp / "prediction.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
            _publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return result


def _run(
    predictor: Predictor,
    inputs: OpenInputs,
    optical: Path,
    sar: Path,
    tmp: Path,
    options: PredictOptions,
) -> PredictionResult:
    grid = inputs.grid
    height, width = grid.height, grid.width
    plan = WindowPlan.make(height, width, options.window, options.overlap, predictor.size_divisor)
    n_img = predictor.image_channels
    n_cls = predictor.num_classes or 0
    n_prm = predictor.prompt_channels if options.write_prompt else 0
    n_prm = n_prm or 0
    blender = RowBandBlender(n_img + n_cls + n_prm, plan.win_y, width)
    col_weights = [plan.col_weights(c) for c in plan.cols]

    tags = {
        "generator": "tdpcr predict",
        "model": predictor.model_name,
        "variant": predictor.variant,
        "checkpoint": predictor.checkpoint,
        "optical": str(optical),
        "sar": str(sar),
        "window": str(options.window),
        "overlap": str(options.overlap),
    }
    raw = {"cloudfree": tmp / ".cloudfree.raw.tif"}
    if n_cls:
        raw["landcover"] = tmp / ".landcover.raw.tif"
    if n_prm:
        raw["prompt"] = tmp / ".prompt.raw.tif"

    nodata_pixels = 0
    gdal_env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
    with gdal_env, ExitStack() as stack:
        dst = {
            "cloudfree": stack.enter_context(
                rasterio.open(
                    raw["cloudfree"],
                    "w",
                    **raw_profile(grid, n_img, "uint16", CLOUDFREE_NODATA),
                )
            )
        }
        dst["cloudfree"].update_tags(**tags, scale="reflectance x 10000")
        for index, name in enumerate(S2_BANDS[:n_img], start=1):
            dst["cloudfree"].set_band_description(index, name)
        if n_cls:
            lc = stack.enter_context(
                rasterio.open(
                    raw["landcover"], "w", **raw_profile(grid, 1, "uint8", LANDCOVER_NODATA)
                )
            )
            # Before any pixel: libtiff cannot change the photometric tag after a write.
            lc.write_colormap(1, LANDCOVER_COLORS)
            lc.set_band_description(1, "landcover")
            names = CLASS_NAMES if n_cls == len(CLASS_NAMES) else tuple(map(str, range(n_cls)))
            lc.update_tags(**tags, class_names=",".join(names), nodata_label="255 = no data")
            lc.update_tags(
                1,
                CLASS_NAMES=",".join(names),
                **{f"CLASS_{i}": name for i, name in enumerate(names)},
            )
            dst["landcover"] = lc
        if n_prm:
            pr = stack.enter_context(
                rasterio.open(
                    raw["prompt"], "w", **raw_profile(grid, n_prm, "float32", float("nan"))
                )
            )
            pr.update_tags(**tags)
            for index in range(1, n_prm + 1):
                pr.set_band_description(index, f"prompt_{index - 1}")
            dst["prompt"] = pr

        def emit(start: int, stop: int) -> None:
            """Write the final rows ``start .. stop`` to every output."""
            nonlocal nodata_pixels
            values, invalid = blender.take(start, stop)
            nodata_pixels += int(invalid.sum())
            win = Window(0, start, width, stop - start)
            image = np.rint(np.clip(values[:n_img], 0.0, 1.0) * np.float32(S2_SCALE))
            image = np.maximum(image, 1).astype(np.uint16)  # 0 is nodata: keep valid pixels >= 1
            image[:, invalid] = CLOUDFREE_NODATA
            dst["cloudfree"].write(image, window=win)
            if n_cls:
                labels = values[n_img : n_img + n_cls].argmax(axis=0).astype(np.uint8)
                labels[invalid] = LANDCOVER_NODATA
                dst["landcover"].write(labels[None], window=win)
            if n_prm:
                prompt = values[n_img + n_cls :].astype(np.float32, copy=True)
                prompt[:, invalid] = np.nan
                dst["prompt"].write(prompt, window=win)

        bar = tqdm(total=plan.count, desc="predict", unit="window", disable=not options.progress)
        written = 0
        warned_linear = False
        with bar:
            for row in plan.rows:
                # Every row above `row` has received all of its windows: write it, shift.
                if row > written:
                    emit(written, row)
                    written = row
                blender.shift_to(row)
                valid_rows = min(plan.win_y, height - row)
                s2, s1, invalid = read_row_strip(inputs, optical, sar, row, valid_rows)
                if not warned_linear:
                    warned_linear = _warn_if_linear(s1, sar)
                blender.invalid[:valid_rows] = invalid
                row_w = plan.row_weights(row)
                for start in range(0, len(plan.cols), options.batch_size):
                    cols = plan.cols[start : start + options.batch_size]
                    opt_batch, sar_batch = window_batch(
                        s2, s1, invalid, cols, plan.win_y, plan.win_x, options.s2_offset
                    )
                    out = predictor(opt_batch, sar_batch, want_prompt=bool(n_prm))
                    parts = [out["image"]]
                    if n_cls:
                        parts.append(out["logits"])
                    if n_prm:
                        parts.append(out["prompt"])
                    stacked = np.concatenate(parts, axis=1)
                    for i, col in enumerate(cols):
                        valid_cols = min(plan.win_x, width - col)
                        weights = np.outer(row_w, col_weights[start + i])
                        weights = weights[:valid_rows, :valid_cols]
                        blender.add(stacked[i, :, :valid_rows, :valid_cols], row, col, weights)
                    bar.update(len(cols))
            emit(written, height)

    threads = options.threads or torch.get_num_threads()
    files = []
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        for name, path in raw.items():
            resampling = "NEAREST" if name == "landcover" else "AVERAGE"
            convert_to_cog(path, tmp / f"{name}.tif", resampling=resampling, threads=threads)
            files.append(f"{name}.tif")
    return PredictionResult(
        out_dir="",
        files=files,
        height=height,
        width=width,
        windows=plan.count,
        window=options.window,
        overlap=options.overlap,
        batch_size=options.batch_size,
        device=str(predictor.device),
        seconds=0.0,
        pixels_per_second=0.0,
        s1_reprojected=inputs.s1_reprojected,
        nodata_pixels=nodata_pixels,
        accumulator_shape=list(blender.shape),
        model={
            "name": predictor.model_name,
            "variant": predictor.variant,
            "checkpoint": predictor.checkpoint,
            "classes": n_cls,
        },
        inputs={"optical": str(optical), "sar": str(sar)},
    )


def window_batch(
    s2: np.ndarray,
    s1: np.ndarray,
    invalid: np.ndarray,
    cols: list[int],
    win_y: int,
    win_x: int,
    s2_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised model inputs (B, C, win_y, win_x) of the windows at ``cols`` of a row strip.

    Windows reaching past the strip (a scene smaller than a window, or the last tile of plain
    tiling) are mirror-padded.
    """
    opt, rad = [], []
    for col in cols:
        dn = s2[:, :, col : col + win_x]
        if s2_offset:
            dn = np.clip(dn.astype(np.float32) - np.float32(s2_offset), 0.0, None)
        x = normalise_s2(dn)
        x[:, invalid[:, col : col + win_x]] = 0.0  # NaN and nodata fill -> 0 reflectance
        opt.append(pad_to(x, win_y, win_x))
        rad.append(pad_to(normalise_s1(s1[:, :, col : col + win_x]), win_y, win_x))
    return np.stack(opt), np.stack(rad)


def _warn_if_linear(s1: np.ndarray, path: Path) -> bool:
    """Warn once when S1 looks like linear power, not dB; True once a check could be made."""
    finite = s1[np.isfinite(s1)]
    if finite.size == 0:
        return False
    if float(np.mean(finite > 0)) > 0.5:
        log.warning(
            "%s: most S1 values are > 0; expected backscatter in dB (VV, VH, mostly negative). "
            "Convert linear power with 10 * log10(x)",
            path,
        )
    return True
