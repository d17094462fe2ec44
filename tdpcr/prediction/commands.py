"""``tdpcr`` sub-commands of the prediction stage: predict, before-after."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from tdpcr.core.commands import CommandFactory, s2_offset_arg
from tdpcr.core.specs import S1_UNITS

#: What argparse must read as a negative number, not an option: -5, -5.5, -.5, -1e308, -inf,
#: -nan (the last two to be refused by :func:`finite_float` with a message saying why).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)


def finite_float(text: str) -> float:
    """A finite number for argparse (``float`` alone takes "inf" and "nan")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def _local_stats_arg(text: str) -> str | int:
    """``--local-stats``: off, train or a window in pixels (argparse names the flag)."""
    from tdpcr.core.errors import TdpcrError
    from tdpcr.prediction.options import parse_local_stats

    try:
        return parse_local_stats(text)
    except TdpcrError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected off, train or a window in pixels (at least 16)"
        ) from None


def _options(args: argparse.Namespace):
    from tdpcr.prediction.options import PredictOptions

    return PredictOptions(
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        threads=args.threads,
        force_cpu=args.cpu,
        write_prompt=getattr(args, "prompt", False),
        write_quality=not getattr(args, "no_quality", False),
        s2_offset=args.s2_offset,
        s1_units=args.s1_units,
        bbox=tuple(args.bbox) if args.bbox else None,
        bbox_crs=args.bbox_crs,
        progress=not args.quiet,
        tracking_uri=args.tracking_uri,
        precision=args.precision,
        channels_last=args.channels_last,
        backend=args.backend,
        pipeline=args.pipeline,
        malloc_reuse=args.malloc_reuse,
        calibration_store=args.calibration_store,
        local_stats=args.local_stats,
    )


def _checkpoint(args: argparse.Namespace) -> Path | str:
    """A folder, or an MLflow model URI kept as text (a Path would fold its ``:/``)."""
    from tdpcr.tracking import is_model_uri

    return args.checkpoint if is_model_uri(args.checkpoint) else Path(args.checkpoint)


def _cmd_predict(args: argparse.Namespace) -> None:
    from tdpcr.prediction.engine import predict_scene

    result = predict_scene(
        Path(args.optical), Path(args.sar), _checkpoint(args), Path(args.out), _options(args)
    )
    print(
        f"wrote {', '.join(result.files)}, item.json to {result.out_dir}: "
        f"{result.height}x{result.width} "
        f"pixels, {result.windows} windows, {result.seconds:.1f} s on {result.device} "
        f"({result.pixels_per_second:,.0f} pixels/s)"
    )


def _cmd_before_after(args: argparse.Namespace) -> None:
    from tdpcr.prediction.figures import before_after_figure

    path = before_after_figure(
        Path(args.optical),
        Path(args.sar),
        _checkpoint(args),
        Path(args.out),
        reference=Path(args.reference) if args.reference else None,
        title=args.title,
        options=_options(args),
    )
    print(f"wrote {path}")


def _cmd_quality_figure(args: argparse.Namespace) -> None:
    from tdpcr.prediction.engine import PredictOptions
    from tdpcr.prediction.figures import quality_figure

    options = PredictOptions(
        window=args.window, overlap=args.overlap, batch_size=args.batch_size,
        threads=args.threads, progress=False,
    )  # fmt: skip
    path = quality_figure(Path(args.scene), Path(args.checkpoint), Path(args.out), options=options)
    print(f"wrote {path} and {path.with_suffix('.json')}")


def add_window_options(parser: argparse.ArgumentParser) -> None:
    """``--window``, ``--overlap`` and ``--batch-size`` (predict and its benchmark)."""
    defaults = _defaults()
    parser.add_argument(
        "--window", type=int, default=256, help="window side in pixels (multiple of 16)"
    )
    parser.add_argument(
        "--overlap", type=int, default=64, help="pixels shared by neighbouring windows (blended)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"windows per forward pass (default {defaults.batch_size})",
    )


def _defaults():
    # PredictOptions holds the defaults of the library and the CLI alike (no torch import).
    from tdpcr.prediction.options import PredictOptions

    return PredictOptions()


#: What int8 measured against fp32 (the Benchmarks page).
INT8_HELP = (
    "a whole Sentinel-2 tile at paper size (quiet 2-core CPU) took 32 min against 36 min for "
    "the fp32 default (1.12x), a ~4 min compilation per run included, after a one-time ~5 min "
    "calibration per checkpoint; with --backend eager it runs the reference graph, 2.7-3.5x "
    "slower than fp32. Outside the accuracy guard on every scene measured (0.3-1.2 %% of "
    "land-cover pixels changed, PSNR within 0.14 dB; guard 0.05 dB, 0.1 %%): for experiments only"
)


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """How the model runs: precision, memory format, backend, I/O threads, allocator."""
    from tdpcr.prediction.options import AUTO_COMPILE_MIN_WINDOWS, BACKENDS, PRECISIONS

    defaults = _defaults()
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="auto = bf16 on CUDA, fp32 on CPUs (there bf16 changed more land-cover pixels "
        "than the accuracy guard allows); int8 = TDP-CR's encoder, decoder and fusion "
        "convolutions in int8 (CPU, compiled; calibrated on the training tile store, cached in "
        f"the checkpoint folder): {INT8_HELP} (default {defaults.precision})",
    )
    parser.add_argument(
        "--calibration-store",
        default=defaults.calibration_store,
        help="training tile store (.zarr) that --precision int8 calibrates on (default: the "
        "checkpoint's, results/tiles/<dataset>.zarr)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=defaults.channels_last,
        help="NHWC memory format for the model and its inputs",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=defaults.backend,
        help="eager PyTorch, or torch.compile with frozen weights (a warm-up of 1-2 "
        "minutes, that pays off on large scenes); auto = compile on a CPU for scenes of at "
        f"least {AUTO_COMPILE_MIN_WINDOWS} windows (default {defaults.backend})",
    )
    parser.add_argument(
        "--local-stats",
        type=_local_stats_arg,
        default=defaults.local_stats,
        metavar="{off,train,PIXELS}",
        help="test-time local statistics: every global pooling of the model averages a window "
        "of this many pixels around each pixel (train = the checkpoint's training crop), so "
        "windows larger than in training pool what the model was trained on; off = the whole "
        f"window (default {defaults.local_stats}). Measured at paper size on 2 CPU cores: "
        "--window 1024 --local-stats 256 takes 57 min per Sentinel-2 tile against 38 for the "
        "default (the integral images cost more than the overlap saves) and changes 0.15 %% of "
        "land-cover pixels (guard: 0.1 %%); --local-stats train changes 0.49 %%",
    )
    parser.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=defaults.pipeline,
        help="read and write in background threads while the model computes",
    )
    parser.add_argument(
        "--malloc-reuse",
        action=argparse.BooleanOptionalAction,
        default=defaults.malloc_reuse,
        help="keep freed memory for reuse (glibc; avoids a page-fault storm per batch)",
    )


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--optical",
        required=True,
        help="cloudy Sentinel-2 (L1C): a GeoTIFF (13 bands, DN), a SAFE folder or .zip, or a "
        "STAC Item JSON",
    )
    parser.add_argument(
        "--sar",
        required=True,
        help="Sentinel-1 VV, VH: a GeoTIFF (dB or linear power) or a STAC Item with vv / vh "
        "assets (e.g. S1 RTC)",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint folder (results/models/tdpcr-full) or MLflow model "
        "(models:/tdpcr-full@champion, runs:/<run id>/tdpcr-full)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store of a models:/ or runs:/ checkpoint (default: $MLFLOW_TRACKING_URI, "
        "else sqlite:///results/mlflow.db)",
    )
    add_window_options(parser)
    add_execution_options(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: every CPU this process may use)",
    )
    parser.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")
    parser.add_argument(
        "--s2-offset",
        type=s2_offset_arg,
        default=None,
        help="DN offset to remove from every S2 band (0 or 1000), overriding the product's "
        "metadata "
        "(RADIO_ADD_OFFSET / BOA_ADD_OFFSET, STAC raster offset; none for a plain GeoTIFF)",
    )
    parser.add_argument(
        "--s1-units",
        choices=S1_UNITS,
        default="auto",
        help="S1 backscatter units; auto: as the product declares, else from the values "
        "(ambiguous values are refused)",
    )
    # A west or south edge such as -1e308 or -inf reads as a number, not as an unknown option
    # (argparse's own pattern only knows -5 and -5.5).
    parser._negative_number_matcher = NEGATIVE_NUMBER  # type: ignore[attr-defined]
    parser.add_argument(
        "--bbox",
        type=finite_float,
        nargs=4,
        metavar=("MINX", "MINY", "MAXX", "MAXY"),
        default=None,
        help="predict only this area (in --bbox-crs)",
    )
    parser.add_argument(
        "--bbox-crs", default="EPSG:4326", help="CRS of --bbox (default EPSG:4326, lon / lat)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(command: CommandFactory) -> None:
    """Add ``predict`` and ``before-after``."""
    predict = command(
        "predict",
        _cmd_predict,
        "cloud-free image and land-cover map of a whole scene, as Cloud-Optimized GeoTIFFs",
    )
    _add_inputs(predict)
    predict.add_argument(
        "--out", required=True, help="output folder (cloudfree.tif, landcover.tif, ...)"
    )
    predict.add_argument("--prompt", action="store_true", help="also write prompt.tif")
    predict.add_argument(
        "--no-quality", action="store_true", help="do not write quality.tif (PGF SAR weights, ...)"
    )

    figure = command(
        "before-after",
        _cmd_before_after,
        "predict a scene and draw cloudy input, cloud-free output (reference) and land cover",
    )
    _add_inputs(figure)
    figure.add_argument("--out", required=True, help="PNG to write")
    figure.add_argument(
        "--reference", default=None, help="cloud-free S2 GeoTIFF on the same grid (optional)"
    )
    figure.add_argument("--title", default=None, help="figure title")

    quality = command(
        "quality-figure",
        _cmd_quality_figure,
        "predict a synthetic scene folder and plot quality.tif next to its true cloud mask",
    )
    quality.add_argument(
        "--scene", required=True, help="scene folder (s2_cloudy.tif, s1.tif, cloudmask.tif)"
    )
    quality.add_argument("--checkpoint", required=True, help="TDP-CR checkpoint folder")
    quality.add_argument("--out", required=True, help="PNG to write (correlations in .json)")
    add_window_options(quality)
    quality.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
