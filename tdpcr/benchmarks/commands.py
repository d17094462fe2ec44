"""``tdpcr`` sub-commands of the benchmarks: ``complexity`` and ``bench <name>``.

Every benchmark writes one JSON file under ``results/bench/`` (a Snakemake target each, see
``workflow/rules/bench.smk``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tdpcr.core.commands import CommandFactory


def _print(result: dict) -> None:
    print(json.dumps(result, indent=2))


def _cmd_complexity(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.complexity import write_complexity_csv
    from tdpcr.core.config import load_config

    config = load_config(Path(args.config))
    rows = write_complexity_csv(config["models"], Path(args.out))
    print(f"wrote {len(rows)} rows to {args.out}")


def _cmd_tiling(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.tiling import run_tiling_benchmark

    _print(
        run_tiling_benchmark(
            Path(args.out),
            size=args.size,
            seed=args.seed,
            workdir=Path(args.workdir),
            workers=args.workers,
        )
    )


def _cmd_inference(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.inference import write_inference_benchmark

    _print(write_inference_benchmark(Path(args.out), repeats=args.repeats))


def _cmd_training(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.training import run_training_benchmark
    from tdpcr.core.config import load_config

    config = load_config(Path(args.config))
    _print(run_training_benchmark(config, Path(args.store), Path(args.out), threads=args.threads))


def _cmd_predict(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.predict import run_predict_benchmark

    _print(
        run_predict_benchmark(
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
    )


def register(command: CommandFactory) -> None:
    """Add ``complexity`` and ``bench`` with one sub-command per benchmark."""
    from tdpcr.prediction.commands import add_window_options

    complexity = command(
        "complexity",
        _cmd_complexity,
        "parameters and MACs of every model (configured and paper size)",
    )
    complexity.add_argument("--config", required=True, help="workflow config (models: sizes)")
    complexity.add_argument("--out", required=True, help="CSV to write")

    bench = command("bench", lambda args: None, "benchmarks writing JSON under results/bench/")
    benchmarks = bench.add_subparsers(
        dest="bench", required=True, metavar="BENCHMARK", parser_class=type(bench)
    )

    def benchmark(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = benchmarks.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--out", required=True, help="JSON file to write")
        return sub

    tiling = benchmark("tiling", _cmd_tiling, "tiling throughput vs a plain baseline")
    tiling.add_argument("--size", type=int, default=5490, help="scene side in pixels")
    tiling.add_argument("--seed", type=int, default=0)
    tiling.add_argument(
        "--workdir", default="results/bench/tiling-work", help="scratch folder (removed afterwards)"
    )
    tiling.add_argument("--workers", type=int, default=2, help="reader threads")

    inference = benchmark(
        "inference", _cmd_inference, "TDP-CR vs DSen2-CR inference (paper sizes) side by side"
    )
    inference.add_argument("--repeats", type=int, default=2, help="timed repeats per case")

    training = benchmark(
        "training",
        _cmd_training,
        "phase-1 / phase-2 step and loader throughput, default and paper size",
    )
    training.add_argument("--config", required=True, help="workflow config")
    training.add_argument("--store", required=True, help="tile store the loader reads")
    training.add_argument("--threads", type=int, default=2, help="CPU threads")

    predict = benchmark(
        "predict",
        _cmd_predict,
        "whole-scene prediction: blended windows vs plain tiling, pixels/s and peak RSS",
    )
    predict.add_argument("--size", type=int, default=5490, help="synthetic scene side in pixels")
    predict.add_argument("--seed", type=int, default=0)
    predict.add_argument(
        "--checkpoint", default=None, help="checkpoint folder (default: random init, --config)"
    )
    predict.add_argument(
        "--config",
        default=None,
        help="config whose models.tdpcr sizes the random-init TDP-CR Full (default: the "
        "shipped config/config.yaml)",
    )
    predict.add_argument(
        "--workdir", default="results/bench/predict-work", help="scratch folder (removed after)"
    )
    add_window_options(predict)
    predict.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    predict.add_argument(
        "--repeats", type=int, default=2, help="runs per side, alternating (fastest reported)"
    )
