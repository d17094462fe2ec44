"""Whole-scene prediction: the engine that wires inputs, windows, the model and the writers.

:func:`predict_scene` reads the scene in row strips (:mod:`.inputs`), runs batches of windows
through the model, blends them in a row-band accumulator (:mod:`.windows`) and writes every
finished row to the outputs (:mod:`.writers`), which become Cloud-Optimized GeoTIFFs in
``--out`` only when everything is written.

Device: batches of windows run under ``torch.inference_mode``, on CUDA with bf16 autocast
when a GPU is usable (``force_cpu`` to opt out), else float32 on the CPU; channels-last
memory format on both (faster for these convolutional models, see
:mod:`tdpcr.benchmarks.inference`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from tdpcr.core.checkpoint import load_checkpoint, trained_input_bands
from tdpcr.core.errors import InputDataError, TdpcrError
from tdpcr.core.io import atomic_folder
from tdpcr.core.runtime import autocast, select_device, set_threads
from tdpcr.core.specs import S2_BANDS, S2_LEVEL, quality_band_names
from tdpcr.models import create_model_from
from tdpcr.prediction.inputs import OpenInputs, open_inputs, read_row_strip, window_batch
from tdpcr.prediction.stac import write_item
from tdpcr.prediction.windows import RowBandBlender, WindowPlan, check_window_options
from tdpcr.prediction.writers import SceneWriter, check_out

#: Architectures that produce a cloud-free image (segmenters alone cannot be used here).
PREDICTABLE_MODELS: tuple[str, ...] = ("tdpcr", "dsen2cr")


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
        write_quality: write ``quality.tif`` (PGF SAR weights, the prompt's degradation
            estimate, the reflectance change; see :data:`tdpcr.core.specs.QUALITY_DESCRIPTIONS`).
        s2_offset: DN offset to subtract from every S2 band instead of the product's own
            (``None``: from the product's metadata, 0 for a GeoTIFF without any).
        s1_units: "auto" (declared by the product, else decided from the values), "db" or
            "linear" (gamma0 / sigma0 power, converted to dB).
        bbox: (minx, miny, maxx, maxy) in ``bbox_crs``: predict only this part of the scene.
        bbox_crs: CRS of ``bbox`` (default longitude / latitude, EPSG:4326).
        progress: show a progress bar (tqdm) over the windows.
        tracking_uri: the MLflow store ``models:/...`` and ``runs:/...`` checkpoints resolve
            in; ``None`` means ``$MLFLOW_TRACKING_URI``, else ``sqlite:///results/mlflow.db``.
    """

    window: int = 256
    overlap: int = 64
    batch_size: int = 4
    threads: int | None = None
    force_cpu: bool = False
    write_prompt: bool = False
    write_quality: bool = True
    s2_offset: float | None = None
    s1_units: str = "auto"
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str = "EPSG:4326"
    progress: bool = True
    tracking_uri: str | None = None


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
    inputs: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------


@dataclass
class Predictor:
    """A model ready for inference, and what it outputs.

    ``model(optical, sar)`` must return a dict with ``image`` (B, C, H, W) and, when
    ``num_classes`` is set, ``logits`` (B, num_classes, H, W); with ``prompt_channels`` set it
    must accept ``return_prompt=True`` and then also return ``prompt``; with ``pgf_stages`` > 0
    it must accept ``return_weights=True`` and return TDP-CR's per-stage ``weights``. Any such
    module works, which is how the tests check the blending with a model of known output.
    ``s2_bands`` / ``s2_level``: the bands (in order) and level the model was trained on.
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
    s2_bands: tuple[str, ...] = S2_BANDS
    s2_level: str = S2_LEVEL
    pgf_stages: int = 0
    prompt_degradation: bool = False
    config_hash: str = ""

    @property
    def quality_names(self) -> tuple[str, ...]:
        """Bands of ``quality.tif`` this model produces."""
        return quality_band_names(self.pgf_stages, self.prompt_degradation)

    def __call__(
        self,
        optical: np.ndarray,
        sar: np.ndarray,
        want_prompt: bool = False,
        want_quality: bool = False,
    ) -> dict[str, np.ndarray]:
        """Forward a batch of normalised (B, C, h, w) float32 arrays; float32 numpy outputs.

        ``quality`` (with ``want_quality``): (B, len(quality_names), h, w), see
        :func:`quality_maps`.
        """
        cuda = self.device.type == "cuda"
        fmt = torch.channels_last
        opt = torch.from_numpy(optical).to(self.device).contiguous(memory_format=fmt)
        s1 = torch.from_numpy(sar).to(self.device).contiguous(memory_format=fmt)
        kwargs = {}
        if want_prompt or (want_quality and self.prompt_degradation):
            kwargs["return_prompt"] = True
        if want_quality and self.pgf_stages:
            kwargs["return_weights"] = True
        with torch.inference_mode(), autocast(cuda):
            out = self.model(opt, s1, **kwargs)
            if want_quality:
                out["quality"] = quality_maps(self, out, opt)
        keys = ["image"]
        if self.num_classes is not None:
            keys.append("logits")
        if want_prompt:
            keys.append("prompt")
        if want_quality:
            keys.append("quality")
        # The accumulators are numpy on the host: one copy per batch, contiguous, float32.
        return {k: out[k].float().contiguous().cpu().numpy() for k in keys}


def quality_maps(predictor: Predictor, out: dict[str, Any], optical: torch.Tensor) -> torch.Tensor:
    """The per-pixel quality channels of one batch, at the input resolution.

    Per PGF stage, the channel mean of the SAR weight (``weights[:, 1]``), upsampled
    bilinearly from the stage's resolution; the prompt's degradation estimate
    (:meth:`tdpcr.models.tdpcr.TDPCR.prompt_degradation`); the mean absolute reflectance
    change from the input to the (clipped) output.

    Shapes: optical (B, C, H, W) -> (B, len(predictor.quality_names), H, W) float32.
    """
    size = optical.shape[-2:]
    maps = []
    for weights in out.get("weights") or []:
        sar_weight = weights[:, 1].float().mean(dim=1, keepdim=True)
        if sar_weight.shape[-2:] != size:
            sar_weight = F.interpolate(sar_weight, size=size, mode="bilinear", align_corners=False)
        maps.append(sar_weight)
    if predictor.prompt_degradation:
        maps.append(predictor.model.prompt_degradation(out["prompt"]).float())
    change = (out["image"].float().clamp(0.0, 1.0) - optical.float()).abs()
    maps.append(change.mean(dim=1, keepdim=True))
    return torch.cat(maps, dim=1)


def load_predictor(
    checkpoint: Path | str, *, force_cpu: bool = False, tracking_uri: str | None = None
) -> Predictor:
    """Build the model of a checkpoint folder (``model.safetensors`` + ``meta.json``), or of
    an MLflow model (``models:/<name>@<alias>``, ``models:/<name>/<version>``,
    ``runs:/<run id>/<variant>``) fetched from ``tracking_uri`` (see :class:`PredictOptions`).

    TDP-CR (Full: image + land cover [+ prompt]; CR-only: image [+ prompt]) and DSen2-CR
    (image) are supported; a SegFormer checkpoint is refused, it removes no clouds. The MLflow
    model's weights are the same safetensors, so both give the same predictions.

    Raises:
        InputDataError: folder or files missing, unreadable, a segmenter, weights that do not
            fit the architecture in ``meta.json``; an MLflow model or store that does not exist.
    """
    from tdpcr.tracking import fetch_checkpoint, is_model_uri, resolve_uri

    if is_model_uri(checkpoint):
        store = tracking_uri or resolve_uri(None)  # an explicit store beats the environment
        with fetch_checkpoint(str(checkpoint), store) as (folder, described):
            predictor = _load_folder(folder, force_cpu)
        predictor.checkpoint = described
        return predictor
    return _load_folder(Path(checkpoint), force_cpu)


def _load_folder(folder: Path, force_cpu: bool) -> Predictor:
    if not folder.is_dir():
        raise InputDataError(
            f"{folder}: checkpoint folder not found (expected a folder with model.safetensors "
            "and meta.json, e.g. results/models/tdpcr-full)"
        )
    loaded = load_checkpoint(folder)
    meta = loaded.meta
    if meta.model_name not in PREDICTABLE_MODELS:
        what = "only segments" if meta.model_name == "segformer" else "is not a known model"
        raise InputDataError(
            f"{folder}: a {meta.model_name!r} checkpoint (variant {meta.variant!r}) {what}; "
            f"predict needs a cloud-removal model ({', '.join(PREDICTABLE_MODELS)})"
        )
    device = select_device(force_cpu)
    model = create_model_from(loaded).eval().to(device=device, memory_format=torch.channels_last)
    generator = getattr(model, "prompt_generator", None)
    prompt_channels = int(generator.body[-1].out_channels) if generator is not None else None
    bands, level = trained_input_bands(meta)
    stages = len(getattr(model, "pgf", ()))
    return Predictor(
        model=model,
        num_classes=getattr(model, "num_classes", None),
        prompt_channels=prompt_channels,
        size_divisor=int(getattr(model, "size_divisor", 1)),
        device=device,
        model_name=meta.model_name,
        variant=meta.variant,
        checkpoint=str(folder),
        image_channels=len(bands),
        s2_bands=bands,
        s2_level=level,
        pgf_stages=stages,
        prompt_degradation=bool(stages) and getattr(model, "pgf_mode", "") != "global",
        config_hash=str(meta.extra.get("config_hash", "")),
    )


def predict_scene(
    optical: Path,
    sar: Path,
    checkpoint: Path | str | Predictor,
    out: Path,
    options: PredictOptions | None = None,
) -> PredictionResult:
    """Predict a whole scene and write ``cloudfree.tif``, ``landcover.tif`` (models with a
    segmentation head), ``quality.tif`` and optionally ``prompt.tif`` as COGs in ``out``, with
    a STAC Item ``item.json`` describing them and ``prediction.json`` (the run's record).

    Args:
        optical: cloudy Sentinel-2: a GeoTIFF, a SAFE folder or zip, or a STAC Item JSON
            (:mod:`tdpcr.prediction.products`), of the level and bands the checkpoint was
            trained on (L1C, 13 bands).
        sar: Sentinel-1 VV, VH: a GeoTIFF (dB or linear power) or a STAC Item with ``vv`` /
            ``vh`` assets; resampled (bilinear) onto the S2 grid with a warning when on another.
        checkpoint: checkpoint folder, MLflow model URI (see :func:`load_predictor`), or an
            already loaded :class:`Predictor`.
        out: output folder; written under a temporary name and renamed when complete.
        options: window, overlap, batch size, threads, device, outputs, input overrides, bbox.

    Returns:
        What was written (also saved as ``out/prediction.json``).

    Raises:
        InputDataError: bad inputs or checkpoint (one line naming the file).
        TdpcrError: bad options, or an ``out`` that holds unrelated files.
    """
    options = options or PredictOptions()
    optical, sar, out = Path(optical), Path(sar), Path(out)
    if options.threads is not None:
        set_threads(options.threads)
    predictor = (
        checkpoint
        if isinstance(checkpoint, Predictor)
        else load_predictor(
            checkpoint, force_cpu=options.force_cpu, tracking_uri=options.tracking_uri
        )
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
    check_out(out)
    with (
        open_inputs(
            optical,
            sar,
            bands=predictor.s2_bands,
            level=predictor.s2_level,
            checkpoint=predictor.checkpoint or predictor.model_name,
            s2_offset=options.s2_offset,
            s1_units=options.s1_units,
            bbox=options.bbox,
            bbox_crs=options.bbox_crs,
        ) as inputs,
        atomic_folder(out) as tmp,
    ):
        result = _run(predictor, inputs, optical, sar, tmp, options)
        result.out_dir = str(out)
        result.seconds = round(time.perf_counter() - t0, 3)
        result.pixels_per_second = round(result.height * result.width / result.seconds, 1)
        (tmp / "prediction.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
        write_item(tmp, inputs, predictor, options, result)
    return result


def _inputs_record(inputs: OpenInputs, optical: Path, sar: Path) -> dict[str, Any]:
    """What was read, for ``prediction.json`` and the STAC Item."""
    s2, s1 = inputs.optical, inputs.sar
    record: dict[str, Any] = {"optical": str(optical), "sar": str(sar)}
    if s2 is not None:
        record.update(
            optical_kind=s2.kind,
            optical_level=s2.level,
            s2_dn_offset=[int(v) for v in inputs.s2_dn_offset],
        )
    if s1 is not None:
        record.update(sar_kind=s1.kind, s1_units=s1.units)
    if inputs.window is not None:
        w = inputs.window
        record["window"] = [int(w.col_off), int(w.row_off), int(w.width), int(w.height)]
    return record


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
    n_prm = (predictor.prompt_channels or 0) if options.write_prompt else 0
    quality = predictor.quality_names if options.write_quality else ()
    blender = RowBandBlender(n_img + n_cls + n_prm + len(quality), plan.win_y, width)
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
    writer = SceneWriter(
        tmp, grid, image_bands=n_img, classes=n_cls, prompt_channels=n_prm, tags=tags,
        band_names=predictor.s2_bands, quality_bands=quality,
    )  # fmt: skip
    with writer:

        def emit(start: int, stop: int) -> None:
            """Write the final rows ``start .. stop`` to every output."""
            values, invalid = blender.take(start, stop)
            writer.write(values, invalid, Window(0, start, width, stop - start))

        bar = tqdm(total=plan.count, desc="predict", unit="window", disable=not options.progress)
        written = 0
        with bar:
            for row in plan.rows:
                # Every row above `row` has received all of its windows: write it, shift.
                if row > written:
                    emit(written, row)
                    written = row
                blender.shift_to(row)
                valid_rows = min(plan.win_y, height - row)
                s2, s1, invalid = read_row_strip(inputs, optical, sar, row, valid_rows)
                blender.invalid[:valid_rows] = invalid
                row_w = plan.row_weights(row)
                for start in range(0, len(plan.cols), options.batch_size):
                    cols = plan.cols[start : start + options.batch_size]
                    opt_batch, sar_batch = window_batch(
                        s2, s1, invalid, cols, plan.win_y, plan.win_x
                    )
                    out = predictor(
                        opt_batch, sar_batch, want_prompt=bool(n_prm), want_quality=bool(quality)
                    )
                    parts = [out["image"]]
                    if n_cls:
                        parts.append(out["logits"])
                    if n_prm:
                        parts.append(out["prompt"])
                    if quality:
                        parts.append(out["quality"])
                    stacked = np.concatenate(parts, axis=1)
                    for i, col in enumerate(cols):
                        valid_cols = min(plan.win_x, width - col)
                        weights = np.outer(row_w, col_weights[start + i])
                        weights = weights[:valid_rows, :valid_cols]
                        blender.add(stacked[i, :, :valid_rows, :valid_cols], row, col, weights)
                    bar.update(len(cols))
            emit(written, height)
        files = writer.to_cogs(threads=options.threads or torch.get_num_threads())
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
        nodata_pixels=writer.nodata_pixels,
        accumulator_shape=list(blender.shape),
        model={
            "name": predictor.model_name,
            "variant": predictor.variant,
            "checkpoint": predictor.checkpoint,
            "classes": n_cls,
            "s2_bands": list(predictor.s2_bands),
            "s2_level": predictor.s2_level,
            "config_hash": predictor.config_hash,
        },
        inputs=_inputs_record(inputs, optical, sar),
    )
