"""Sub-commands ``tdpcr predict`` and ``tdpcr predict-bench`` (registered by tdpcr.cli)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def _cmd_predict(args: argparse.Namespace) -> None:
    from tdpcr.prediction.predict import PredictOptions, predict_scene

    options = PredictOptions(
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        threads=args.threads,
        force_cpu=args.cpu,
        write_prompt=args.prompt,
        s2_offset=args.s2_offset,
        progress=not args.quiet,
    )
    result = predict_scene(
        Path(args.optical), Path(args.sar), Path(args.checkpoint), Path(args.out), options
    )
    print(
        f"wrote {', '.join(result.files)} to {result.out_dir}: {result.height}x{result.width} "
        f"pixels, {result.windows} windows, {result.seconds:.1f} s on {result.device} "
        f"({result.pixels_per_second:,.0f} pixels/s)"
    )


def _cmd_predict_bench(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.predict import run_predict_benchmark

    result = run_predict_benchmark(
        Path(args.out),
        size=args.size,
        seed=args.seed,
        workdir=Path(args.workdir),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        config=Path(args.config) if args.config else None,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        threads=args.threads,
        repeats=args.repeats,
    )
    print(json.dumps(result, indent=2))


def _add_window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window", type=int, default=256, help="window side in pixels (multiple of 16)"
    )
    parser.add_argument(
        "--overlap", type=int, default=64, help="pixels shared by neighbouring windows (blended)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")


def register(command: Callable[[str, Callable, str], argparse.ArgumentParser]) -> None:
    """Add ``predict`` and ``predict-bench`` to the ``tdpcr`` command line."""
    predict = command(
        "predict",
        _cmd_predict,
        "cloud-free image and land-cover map of a whole scene, as Cloud-Optimized GeoTIFFs",
    )
    predict.add_argument(
        "--optical", required=True, help="cloudy Sentinel-2 L1C GeoTIFF, 13 bands (DN)"
    )
    predict.add_argument("--sar", required=True, help="Sentinel-1 GeoTIFF, 2 bands VV, VH in dB")
    predict.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, e.g. results/models/tdpcr-full"
    )
    predict.add_argument(
        "--out", required=True, help="output folder (cloudfree.tif, landcover.tif, ...)"
    )
    _add_window_options(predict)
    predict.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's)"
    )
    predict.add_argument("--prompt", action="store_true", help="also write prompt.tif")
    predict.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")
    predict.add_argument(
        "--s2-offset",
        type=int,
        default=0,
        help="DN offset to remove from S2 (1000 for processing baseline >= 04.00)",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar")

    bench = command(
        "predict-bench",
        _cmd_predict_bench,
        "whole-scene prediction: blended windows vs plain tiling, pixels/s and peak RSS",
    )
    bench.add_argument("--out", required=True, help="JSON file to write")
    bench.add_argument("--size", type=int, default=5490, help="synthetic scene side in pixels")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--checkpoint", default=None, help="checkpoint folder (default: random init, --config)"
    )
    bench.add_argument(
        "--config",
        default=None,
        help="config whose models.tdpcr sizes the random-init TDP-CR Full (default: built-in "
        "config/config.yaml sizes)",
    )
    bench.add_argument(
        "--workdir",
        default="results/bench/predict-work",
        help="scratch folder (removed afterwards)",
    )
    _add_window_options(bench)
    bench.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    bench.add_argument(
        "--repeats", type=int, default=2, help="runs per side, alternating (fastest reported)"
    )
