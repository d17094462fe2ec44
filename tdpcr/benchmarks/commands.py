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


def parse_side(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key=value`` -> (NAME, options); values are JSON (bare words: strings)."""
    from tdpcr.core.errors import TdpcrError

    name, _, body = text.partition(":")
    options: dict = {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise TdpcrError(f"--side {text}: expected NAME:key=value,... (got {item!r})")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    if not name:
        raise TdpcrError(f"--side {text}: expected NAME:key=value,...")
    return name, options


def _cmd_predict_tile(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.predict_tile import (
        PREVIOUS,
        TODAY,
        product_options,
        run_predict_tile_benchmark,
    )
    from tdpcr.core.config import load_config, shipped_config
    from tdpcr.core.errors import TdpcrError

    config = load_config(Path(args.config))
    models = shipped_config(args.model_size)["models"] if args.model_size else config["models"]
    product = product_options(config["predict"])
    sides = {"today": dict(TODAY), "previous": dict(PREVIOUS)}
    for text in args.side:
        name, options = parse_side(text)
        sides[name] = {**product, **options}
    sides["product"] = product
    guard = None
    if args.guard_checkpoint:
        from tdpcr.benchmarks.guard import first_test_scene

        if not (args.guard_store and args.guard_scenes):
            raise TdpcrError("--guard-checkpoint: needs --guard-store and --guard-scenes")
        scene = first_test_scene(Path(args.guard_store), Path(args.guard_scenes))
        guard = (Path(args.guard_checkpoint), scene)
    _print(
        run_predict_tile_benchmark(
            Path(args.out),
            workdir=Path(args.workdir),
            model_kwargs=models["tdpcr"],
            sides=sides,
            tile_width=config["bench"]["tile_width"],
            strip_rows=tuple(config["bench"]["tile_strip_rows"]),
            seed=config["bench"]["seed"],
            repeats=args.repeats,
            guard=guard,
            guard_extra=dict(parse_side(text) for text in args.guard_path),
        )
    )


def _cmd_scaling(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.scaling import run_scaling_benchmark
    from tdpcr.core.config import load_config, shipped_config

    config = load_config(Path(args.config))
    models = shipped_config(args.model_size)["models"] if args.model_size else config["models"]
    result = run_scaling_benchmark(
        Path(args.out),
        Path(args.figure),
        workdir=Path(args.workdir),
        sides=config["bench"]["scaling_sides"],
        model_kwargs=models["tdpcr"],
        predict_config=config["predict"],
        seed=config["bench"]["seed"],
        workers=args.workers,
        patch_size=config["tiling"]["patch_size"],
    )
    _print({k: result[k] for k in ("sides", "predict", "tile")})


def _cmd_tile_table(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.tile_report import update_page

    print(update_page(Path(args.json), Path(args.page)))


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
    tiling.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
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
    predict.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
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

    tile = benchmark(
        "predict-tile",
        _cmd_predict_tile,
        "a whole Sentinel-2 tile through tdpcr predict at paper size: time, pixels/s, peak "
        "RSS, phase shares, GFLOP/s vs the CPU's peak, speed-up over the earlier fp32 eager "
        "settings",
    )
    tile.add_argument(
        "--config",
        required=True,
        help="workflow config: predict.* are the product's options, bench.tile_* the strips",
    )
    tile.add_argument(
        "--model-size",
        default="paper",
        help="shipped config whose models.tdpcr sizes the model (default paper; '' = --config)",
    )
    tile.add_argument(
        "--side",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra candidate, e.g. bf16c:precision=bf16,backend=compile (repeatable)",
    )
    tile.add_argument(
        "--workdir", default="results/bench/predict-tile-work", help="scratch (removed after)"
    )
    tile.add_argument("--repeats", type=int, default=1, help="runs per side and strip")
    tile.add_argument(
        "--guard-checkpoint",
        default=None,
        help="trained checkpoint folder: adds each side's accuracy against the reference path",
    )
    tile.add_argument(
        "--guard-path",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="a path whose accuracy only is measured, e.g. bf16:precision=bf16 (repeatable)",
    )
    tile.add_argument(
        "--guard-store",
        default=None,
        help="tile store whose first test-split scene the accuracy guard predicts",
    )
    tile.add_argument(
        "--guard-scenes",
        default=None,
        help="folder of that store's scenes (each with s2_cloudy.tif, s1.tif, s2_clear.tif)",
    )

    scaling = benchmark(
        "scaling",
        _cmd_scaling,
        "time and peak RSS of tdpcr tile and tdpcr predict against scene side (JSON + figure)",
    )
    scaling.add_argument(
        "--config", required=True, help="workflow config: bench.scaling_sides, predict.*"
    )
    scaling.add_argument("--figure", required=True, help="PNG to write")
    scaling.add_argument(
        "--model-size",
        default="",
        help="shipped config whose models.tdpcr sizes the model (default: --config's)",
    )
    scaling.add_argument("--workers", type=int, default=2, help="tiling reader threads")
    scaling.add_argument(
        "--workdir", default="results/bench/scaling-work", help="scratch (removed after)"
    )

    text = "render a whole-tile benchmark JSON as the table of a documentation page"
    table = benchmarks.add_parser("tile-table", help=text, description=text)
    table.set_defaults(handler=_cmd_tile_table)
    table.add_argument("--json", required=True, help="predict_tile JSON to render")
    table.add_argument(
        "--page", required=True, help="Markdown page whose generated tile-table block is rewritten"
    )
