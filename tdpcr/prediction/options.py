"""Options of a prediction: windows, batches, threads and how the model runs.

Kept free of torch and rasterio so that ``tdpcr --help`` and the command parsers can read the
defaults without loading them; :class:`PredictOptions` holds the defaults of the Python API
and of ``tdpcr predict`` alike (the workflow's come from the config schema, ``predict.*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tdpcr.core.errors import TdpcrError

#: ``--precision`` values (see :mod:`tdpcr.prediction.execution`).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "bf16-full", "int8")
#: ``--backend`` values (``auto``: see :func:`resolve_backend`).
BACKENDS: tuple[str, ...] = ("auto", "eager", "compile")
#: Scenes of at least this many windows get ``torch.compile`` under ``backend: auto`` on a
#: CPU. Measured at paper size on 2 Zen 5 cores: alone, frozen inductor took 2.16 s
#: per batch of 8 windows against eager's 2.98 s (0.10 s less per window), for a compilation
#: of 87 s with an empty inductor cache and 49 s with a warm one, which pays off from ~500-850
#: windows (a whole tile has 3249). Inside ``tdpcr predict`` the whole-tile benchmark did not
#: confirm the gain (36.6 vs 34.3 min extrapolated, within its noise), so ``auto`` is offered,
#: not the default.
AUTO_COMPILE_MIN_WINDOWS = 1000
#: ``--local-stats`` values besides a window in pixels (see :func:`parse_local_stats`).
LOCAL_STATS_WORDS: tuple[str, ...] = ("off", "train")
#: Smallest local-statistics window: TDP-CR's coarsest feature map is 1/16 of the input.
MIN_LOCAL_STATS_WINDOW = 16


def parse_local_stats(value: str | int) -> str | int:
    """``off``, ``train`` or a window in pixels (an int, or its digits) from ``value``.

    Raises:
        TdpcrError: anything else (one line naming ``--local-stats`` / ``predict.local_stats``).
    """
    if isinstance(value, str) and value in LOCAL_STATS_WORDS:
        return value
    window: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        window = value
    elif isinstance(value, str) and value.strip().isdigit():
        window = int(value)
    if window is None or window < MIN_LOCAL_STATS_WINDOW:
        raise TdpcrError(
            f"--local-stats (predict.local_stats) {value!r}: expected off, train (the "
            f"checkpoint's training crop) or a window of at least {MIN_LOCAL_STATS_WINDOW} "
            "pixels"
        )
    return window


@dataclass(frozen=True)
class ExecutionOptions:
    """How the model runs on a batch (see :mod:`tdpcr.prediction.execution`)."""

    precision: str = "auto"
    channels_last: bool = True
    backend: str = "eager"
    #: Tile store ``int8`` calibrates on (``None``: the checkpoint's own training store).
    calibration_store: str | None = None
    local_stats: str | int = "off"

    def check(self) -> None:
        """Refuse unknown values (one line, TdpcrError)."""
        parse_local_stats(self.local_stats)
        if self.precision not in PRECISIONS:
            raise TdpcrError(
                f"--precision {self.precision}: expected one of {', '.join(PRECISIONS)}"
            )
        if self.backend not in BACKENDS:
            raise TdpcrError(f"--backend {self.backend}: expected one of {', '.join(BACKENDS)}")


def resolve_backend(backend: str, device_type: str, windows: int | None) -> str:
    """``eager`` or ``compile`` for ``backend`` on a ``device_type`` scene of ``windows``.

    ``auto`` compiles on a CPU when the scene has at least :data:`AUTO_COMPILE_MIN_WINDOWS`
    windows (where the warm-up pays off); otherwise, on CUDA (not measured yet) and when the
    number of windows is unknown, it runs eager.
    """
    if backend != "auto":
        return backend
    large = windows is not None and windows >= AUTO_COMPILE_MIN_WINDOWS
    return "compile" if device_type == "cpu" and large else "eager"


@dataclass(frozen=True)
class PredictOptions:
    """How :func:`predict_scene` runs.

    Attributes:
        window: window side in pixels; a multiple of the model's size divisor (16 for TDP-CR).
        overlap: pixels shared by neighbouring windows, at most ``window // 2``; also the
            length of the blending taper. 0 gives plain tiling (the last window still overlaps).
        batch_size: windows per forward pass (8: measured ~20 % less CPU time per window
            than 4 at paper size, for 0.9 GB more peak memory).
        threads: CPU threads for torch (capped by the CPUs available); ``None`` = every CPU
            this process may use.
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
        precision: ``auto``, ``fp32``, ``bf16``, ``bf16-full`` or ``int8``
            (:mod:`tdpcr.prediction.execution`, :mod:`tdpcr.prediction.quantize`).
        channels_last: NHWC memory format for model and inputs.
        backend: ``auto``, ``eager`` or ``compile`` (``torch.compile`` with frozen weights;
            a warm-up that pays off on large scenes). ``auto`` compiles on a CPU for scenes
            of at least :data:`AUTO_COMPILE_MIN_WINDOWS` windows (:func:`resolve_backend`).
        pipeline: read the next row strip and write finished rows in background threads
            while the model computes.
        malloc_reuse: make glibc keep freed memory for reuse (process-wide and lasting, see
            :func:`tdpcr.core.runtime.reuse_freed_cpu_memory`).
        calibration_store: the training tile store ``int8`` calibrates on; ``None``: the
            checkpoint's (``results/tiles/<dataset>.zarr`` beside ``results/models``).
        local_stats: test-time local statistics (:mod:`tdpcr.models.local_stats`): ``off``
            (global poolings see the whole window), a window in pixels that every global
            pooling averages instead, or ``train`` = the checkpoint's training crop
            (``train.crop`` of its recorded config). Lets windows larger than the training
            crop pool what the model saw in training.
    """

    window: int = 256
    overlap: int = 64
    batch_size: int = 8
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
    precision: str = "auto"
    channels_last: bool = True
    backend: str = "eager"
    pipeline: bool = True
    malloc_reuse: bool = True
    calibration_store: str | None = None
    local_stats: str | int = "off"

    @property
    def execution(self) -> ExecutionOptions:
        """The model-execution part of these options."""
        return ExecutionOptions(
            precision=self.precision,
            channels_last=self.channels_last,
            backend=self.backend,
            calibration_store=self.calibration_store,
            local_stats=parse_local_stats(self.local_stats),
        )
