"""``tdpcr`` sub-commands of the prediction stage: predict, before-after."""

from __future__ import annotations

import argparse
from pathlib import Path

from tdpcr.core.commands import CommandFactory


def _options(args: argparse.Namespace):
    from tdpcr.prediction.options import PredictOptions

    return PredictOptions(
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        threads=args.threads,
        force_cpu=args.cpu,
        write_prompt=getattr(args, "prompt", False),
        s2_offset=args.s2_offset,
        progress=not args.quiet,
        precision=args.precision,
        channels_last=args.channels_last,
        backend=args.backend,
        pipeline=args.pipeline,
        malloc_reuse=args.malloc_reuse,
    )


def _cmd_predict(args: argparse.Namespace) -> None:
    from tdpcr.prediction.engine import predict_scene

    result = predict_scene(
        Path(args.optical), Path(args.sar), Path(args.checkpoint), Path(args.out), _options(args)
    )
    print(
        f"wrote {', '.join(result.files)} to {result.out_dir}: {result.height}x{result.width} "
        f"pixels, {result.windows} windows, {result.seconds:.1f} s on {result.device} "
        f"({result.pixels_per_second:,.0f} pixels/s)"
    )


def _cmd_before_after(args: argparse.Namespace) -> None:
    from tdpcr.prediction.figures import before_after_figure

    path = before_after_figure(
        Path(args.optical),
        Path(args.sar),
        Path(args.checkpoint),
        Path(args.out),
        reference=Path(args.reference) if args.reference else None,
        title=args.title,
        options=_options(args),
    )
    print(f"wrote {path}")


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


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """How the model runs: precision, memory format, backend, I/O threads, allocator."""
    from tdpcr.prediction.options import BACKENDS, PRECISIONS

    defaults = _defaults()
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="auto = bf16 on CUDA and on CPUs with native bf16 (AVX-512-BF16, AMX), else "
        f"fp32 (default {defaults.precision})",
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
        help="eager PyTorch, or torch.compile (a warm-up, cached on disk, that pays off on "
        f"large scenes) (default {defaults.backend})",
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
        "--optical", required=True, help="cloudy Sentinel-2 L1C GeoTIFF, 13 bands (DN)"
    )
    parser.add_argument("--sar", required=True, help="Sentinel-1 GeoTIFF, 2 bands VV, VH in dB")
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, e.g. results/models/tdpcr-full"
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
        type=int,
        default=0,
        help="DN offset to remove from S2 (1000 for processing baseline >= 04.00)",
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
