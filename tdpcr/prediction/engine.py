"""Whole-scene prediction: the engine that wires inputs, windows, the model and the writers.

:func:`predict_scene` reads the scene in row strips (:mod:`.inputs`), runs batches of windows
through the model, blends them in a row-band accumulator (:mod:`.windows`) and writes every
finished row to the outputs (:mod:`.writers`), which become Cloud-Optimized GeoTIFFs in
``--out`` only when everything is written.

Device: batches of windows run under ``torch.inference_mode`` on CUDA when a GPU is usable
(``force_cpu`` to opt out), else on the CPU; precision, memory format and backend are the
:class:`~tdpcr.prediction.execution.ModelRunner`'s (bf16 autocast on CUDA and on CPUs with
native bf16, channels-last). A reader thread reads the next row strip and a writer thread
writes finished rows while the model computes (:mod:`.pipeline`). On glibc the process keeps
freed memory for reuse (:func:`tdpcr.core.runtime.reuse_freed_cpu_memory`): without it every
multi-MB activation is a fresh mmap and the page faults cost more than the convolutions.
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
from tdpcr.core.io import OWNER_KEY, atomic_folder
from tdpcr.core.runtime import (
    available_cpus,
    reuse_freed_cpu_memory,
    select_device,
    set_threads,
)
from tdpcr.core.specs import S2_BANDS, S2_LEVEL, quality_band_names
from tdpcr.models import create_model_from
from tdpcr.prediction.execution import ModelRunner
from tdpcr.prediction.inputs import OpenInputs, open_inputs, read_row_strip, window_batch
from tdpcr.prediction.options import (
    ExecutionOptions,
    PredictOptions,
    parse_local_stats,
    resolve_backend,
)
from tdpcr.prediction.pipeline import BackgroundWriter, PhaseTimes, Prefetcher
from tdpcr.prediction.stac import ItemModel, write_item
from tdpcr.prediction.windows import RowBandBlender, WindowPlan, check_window_options
from tdpcr.prediction.writers import SceneWriter, check_out

#: Architectures that produce a cloud-free image (segmenters alone cannot be used here).
#: Models that output a cloud-free image (CloudSeg and TDP-CR with a head also land cover).
PREDICTABLE_MODELS: tuple[str, ...] = ("tdpcr", "dsen2cr", "glfcr", "hpncr", "emrdm", "cloudseg")
#: Variants of a predictable model that read cloud-free input (their image head is untrained).
TEACHER_VARIANTS: tuple[str, ...] = ("cloudseg-teacher",)


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
    #: Effective model execution (precision, memory format, backend, warm-up seconds).
    execution: dict[str, Any] = field(default_factory=dict)
    #: Threads, pipeline and allocator settings the run used.
    runtime: dict[str, Any] = field(default_factory=dict)
    #: Seconds per phase (read, prepare, inference, blend, write, cog); with the pipeline on,
    #: read and write run beside inference, so the phases add up to more than ``seconds``.
    phase_seconds: dict[str, float] = field(default_factory=dict)


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
    #: The training tile store of the checkpoint (``int8`` calibrates on it), if known.
    training_store: Path | None = None
    #: Side of the random crops the checkpoint trained on (``train.crop`` of its recorded
    #: config), what ``local_stats: train`` uses; None when not recorded.
    train_crop: int | None = None

    @property
    def quality_names(self) -> tuple[str, ...]:
        """Bands of ``quality.tif`` this model produces."""
        return quality_band_names(self.pgf_stages, self.prompt_degradation)

    def item_model(self) -> ItemModel:
        """What the STAC Item of a prediction says about this model."""
        return ItemModel(
            name=self.model_name,
            variant=self.variant,
            checkpoint=self.checkpoint,
            config_hash=self.config_hash,
            s2_bands=tuple(self.s2_bands),
            s2_level=self.s2_level,
            num_classes=self.num_classes,
            prompt_channels=self.prompt_channels,
            quality_names=self.quality_names,
        )

    runner: ModelRunner | None = field(default=None, repr=False)

    def prepare(self, execution: ExecutionOptions, windows: int | None = None) -> ModelRunner:
        """Set how the model runs (precision, memory format, backend); kept until changed.

        ``windows``: of the scene to come, for ``backend: auto``.
        """
        runner = self.runner
        backend = resolve_backend(execution.backend, self.device.type, windows)
        if runner is None or runner.options != execution or runner.backend != backend:
            quantize = self._int8_recipe(execution) if execution.precision == "int8" else None
            local_window = self.local_window(execution.local_stats)
            self.runner = ModelRunner(
                self.model, self.device, execution, windows, quantize, local_window
            )
        return self.runner

    def _int8_recipe(self, execution: ExecutionOptions) -> Any:
        """The int8 builder of this model (:mod:`tdpcr.prediction.quantize`), or one error."""
        from tdpcr.prediction.quantize import INT8_MODELS, check_store, quantize_tdpcr

        if self.model_name not in INT8_MODELS:
            raise TdpcrError(
                f"--precision int8 supports TDP-CR checkpoints only, not {self.model_name!r}"
            )
        given = execution.calibration_store
        store = check_store(Path(given) if given else self.training_store, self.checkpoint)
        folder = Path(self.checkpoint) if self.checkpoint else None
        cache_dir = folder if folder is not None and folder.is_dir() else None

        def quantize(optical: torch.Tensor, sar: torch.Tensor) -> Any:
            return quantize_tdpcr(self.model, optical, sar, store, cache_dir)

        return quantize

    def local_window(self, local_stats: str | int) -> int | None:
        """The local-statistics window in pixels of ``local_stats`` (None for ``off``).

        Raises:
            TdpcrError: a bad value, or ``train`` for a checkpoint without a training crop.
        """
        value = parse_local_stats(local_stats)
        if value == "off":
            return None
        if value == "train":
            if self.train_crop is None:
                raise TdpcrError(
                    f"--local-stats train: the checkpoint {self.checkpoint or self.model_name} "
                    "records no training crop (train.crop); give a window in pixels"
                )
            return self.train_crop
        return int(value)

    def __call__(
        self,
        optical: np.ndarray,
        sar: np.ndarray,
        want_prompt: bool = False,
        want_quality: bool = False,
    ) -> dict[str, np.ndarray]:
        """Forward a batch of normalised (B, C, h, w) float32 arrays; float32 numpy outputs.

        ``quality`` (with ``want_quality``): (B, len(quality_names), h, w), see
        :func:`quality_maps`. Runs with the settings of the last :meth:`prepare` (default
        :class:`ExecutionOptions`).
        """
        runner = self.runner or self.prepare(ExecutionOptions())
        kwargs = {}
        if want_prompt or (want_quality and self.prompt_degradation):
            kwargs["return_prompt"] = True
        if want_quality and self.pgf_stages:
            kwargs["return_weights"] = True
        derive = None
        if want_quality:

            def derive(out: dict[str, Any], opt: torch.Tensor) -> dict[str, torch.Tensor]:
                return {"quality": quality_maps(self, out, opt)}

        keys = ["image"]
        if self.num_classes is not None:
            keys.append("logits")
        if want_prompt:
            keys.append("prompt")
        if want_quality:
            keys.append("quality")
        return runner(optical, sar, tuple(keys), derive=derive, **kwargs)


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
    if meta.variant in TEACHER_VARIANTS:
        raise InputDataError(
            f"{folder}: variant {meta.variant!r} is a distillation teacher trained on cloud-free "
            "input for land cover only; predict with its student instead"
        )
    device = select_device(force_cpu)
    model = create_model_from(loaded).eval().to(device=device)
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
        training_store=_training_store(folder, meta.config),
        train_crop=_train_crop(meta.config),
    )


def _training_store(folder: Path, config: dict[str, Any]) -> Path | None:
    """The checkpoint's training tile store where the workflow's layout puts it, if there."""
    from tdpcr.prediction.quantize import default_store

    store = default_store(folder, config or {})
    return store if store is not None and store.exists() else None


def _train_crop(config: dict[str, Any]) -> int | None:
    """``train.crop`` of a checkpoint's recorded config, None when absent or not a size."""
    crop = (config.get("train") or {}).get("crop")
    return crop if isinstance(crop, int) and not isinstance(crop, bool) and crop > 0 else None


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
    options.execution.check()
    # Before the model exists: its first allocations already profit.
    malloc_reuse = bool(options.malloc_reuse and reuse_freed_cpu_memory())
    threads = set_threads(options.threads or available_cpus())
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
    predictor.local_window(options.local_stats)  # refuse `train` without a crop before reading
    if options.write_prompt and predictor.prompt_channels is None:
        raise TdpcrError(
            f"--prompt: the checkpoint {predictor.checkpoint or predictor.model_name} has no "
            "prompt generator (TDP-CR with PGF local or both only)"
        )
    t0 = time.perf_counter()
    check_out(out, (optical, sar))
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
        result.runtime = {
            "torch_threads": threads,
            "pipeline": options.pipeline,
            "malloc_reuse": malloc_reuse,
        }
        result.out_dir = str(out)
        result.seconds = round(time.perf_counter() - t0, 3)
        result.pixels_per_second = round(result.height * result.width / result.seconds, 1)
        record = {OWNER_KEY: "prediction", **asdict(result)}  # marks the folder as ours
        (tmp / "prediction.json").write_text(json.dumps(record, indent=2) + "\n")
        model = predictor.item_model()
        optical_given = result.inputs["optical"]
        write_item(tmp, inputs, model, options.window, options.overlap, optical_given, result.files)
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


@dataclass
class _Strip:
    """One row strip of the scene as read (by the reader thread)."""

    row: int
    rows: int
    s2: np.ndarray
    s1: np.ndarray
    invalid: np.ndarray


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
    predictor.prepare(options.execution, windows=plan.count)
    n_img = predictor.image_channels
    n_cls = predictor.num_classes or 0
    n_prm = (predictor.prompt_channels or 0) if options.write_prompt else 0
    quality = predictor.quality_names if options.write_quality else ()
    blender = RowBandBlender(n_img + n_cls + n_prm + len(quality), plan.win_y, width)
    col_weights = [plan.col_weights(c) for c in plan.cols]
    times = PhaseTimes()
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

    def read(row: int) -> _Strip:
        """Reader thread: the row strip of windows starting at scene row ``row``."""
        with times.timed("read"):
            rows = min(plan.win_y, height - row)
            s2, s1, invalid = read_row_strip(inputs, optical, sar, row, rows)
        return _Strip(row, rows, s2, s1, invalid)

    with writer, BackgroundWriter(depth=1, threads=options.pipeline) as background:

        def emit(start: int, stop: int) -> None:
            """Quantise the final rows ``start .. stop`` here, write them in the background."""
            with times.timed("blend"):
                values, invalid = blender.take(start, stop)
                encoded = writer.encode(values, invalid)
            window = Window(0, start, width, stop - start)

            def write() -> None:
                with times.timed("write"):
                    writer.write_encoded(encoded, window)

            background.submit(write)

        bar = tqdm(total=plan.count, desc="predict", unit="window", disable=not options.progress)
        written = 0
        strips = Prefetcher(read, plan.rows, depth=1, threads=options.pipeline)
        with bar, strips:
            for strip in strips:
                row, rows = strip.row, strip.rows
                # Every row above `row` has received all of its windows: write it, shift.
                if row > written:
                    emit(written, row)
                    written = row
                with times.timed("blend"):
                    blender.shift_to(row)
                    blender.invalid[:rows] = strip.invalid
                row_w = plan.row_weights(row)
                for start in range(0, len(plan.cols), options.batch_size):
                    cols = plan.cols[start : start + options.batch_size]
                    with times.timed("prepare"):
                        opt_batch, sar_batch = window_batch(
                            strip.s2, strip.s1, strip.invalid, cols, plan.win_y, plan.win_x
                        )
                    with times.timed("inference"):
                        out = predictor(
                            opt_batch,
                            sar_batch,
                            want_prompt=bool(n_prm),
                            want_quality=bool(quality),
                        )
                    with times.timed("blend"):
                        parts = [out["image"]]
                        if n_cls:
                            parts.append(out["logits"])
                        if n_prm:
                            parts.append(out["prompt"])
                        if quality:
                            parts.append(out["quality"])
                        for i, col in enumerate(cols):
                            valid_cols = min(plan.win_x, width - col)
                            weights = np.outer(row_w, col_weights[start + i])
                            weights = weights[:rows, :valid_cols]
                            values = [part[i, :, :rows, :valid_cols] for part in parts]
                            blender.add(values, row, col, weights)
                    bar.update(len(cols))
            emit(written, height)
        background.close()
        with times.timed("cog"):
            files = writer.to_cogs(threads=torch.get_num_threads())
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
        execution=predictor.runner.description if predictor.runner else {},
        phase_seconds=times.as_dict(),
    )
