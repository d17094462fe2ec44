"""The ``tdpcr`` command line: a thin layer that parses arguments and calls the package.

Errors a user can fix (:class:`~tdpcr.errors.TdpcrError`) are printed as one line,
``tdpcr: error: <what and where>``, with exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tdpcr import __version__
from tdpcr.errors import TdpcrError

EXIT_USER_ERROR = 2

#: Modules that add their own sub-commands: each defines ``register(command)`` where
#: ``command(name, handler, help) -> argparse.ArgumentParser`` creates one sub-command.
COMMAND_MODULES: tuple[str, ...] = ("tdpcr.evaluation.commands", "tdpcr.prediction.commands")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (the full usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _cmd_synth(args: argparse.Namespace) -> None:
    from tdpcr.data.synthetic import write_synthetic_scenes

    folders = write_synthetic_scenes(Path(args.out), args.scenes, args.size, args.seed)
    print(f"wrote {len(folders)} synthetic scenes of {args.size}x{args.size} to {args.out}")


def _cmd_tile(args: argparse.Namespace) -> None:
    from tdpcr.data.sources import make_source
    from tdpcr.data.tiling import tile_source

    out = Path(args.out)
    if out.suffix != ".zarr":
        raise TdpcrError(f"--out {out}: expected a path ending in .zarr")
    source = make_source(
        args.source,
        Path(args.root),
        patch_size=args.patch_size,
        stride=args.stride,
        skip_incomplete=args.skip_incomplete,
    )
    summary = tile_source(
        source,
        out,
        shard_patches=args.shard_patches,
        split_seed=args.split_seed,
        split_from=Path(args.split_from) if args.split_from else None,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(summary.to_json())


def _cmd_info(args: argparse.Namespace) -> None:
    from tdpcr.data.store import open_store

    ds = open_store(Path(args.store))
    splits = {name: int((ds["split"].values == name).sum()) for name in ("train", "val", "test")}
    info = {
        "store": args.store,
        "patches": int(ds.sizes["patch"]),
        "patch_size": int(ds.attrs["patch_size"]),
        "variables": sorted(v for v in ds.data_vars),
        "splits": splits,
        "source_layout": ds.attrs["source_layout"],
        "mean_cloud_cover": float(ds["cloud_cover"].mean().values),
    }
    print(json.dumps(info, indent=2))


def _cmd_export_patch(args: argparse.Namespace) -> None:
    from tdpcr.data.store import open_store, write_patch_geotiff
    from tdpcr.errors import InputDataError

    ds = open_store(Path(args.store))
    ids = ds["patch"].values.tolist()
    if args.patch not in ids:
        raise InputDataError(f"{args.store}: no patch {args.patch!r} (e.g. {ids[0]!r})")
    path = write_patch_geotiff(ds, ids.index(args.patch), args.variable, Path(args.out))
    print(f"wrote {path}")


def _cmd_check_config(args: argparse.Namespace) -> None:
    from tdpcr.config import load_config

    load_config(Path(args.config))
    print(f"{args.config}: valid")


def _cmd_bench_tiling(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.tiling import run_tiling_benchmark

    result = run_tiling_benchmark(
        Path(args.out),
        size=args.size,
        seed=args.seed,
        workdir=Path(args.workdir),
        workers=args.workers,
    )
    print(json.dumps(result, indent=2))


def _make_tracker(config: dict, enabled: bool = True):
    from tdpcr.tracking import Tracker, resolve_uri

    tracking = config["tracking"]
    return Tracker(
        enabled and tracking["enabled"], resolve_uri(tracking.get("uri")), config["name"]
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from tdpcr.config import load_config
    from tdpcr.training.trainer import train_variant

    config = load_config(Path(args.config))
    metrics = train_variant(
        config,
        args.variant,
        Path(args.store),
        Path(args.out),
        init_dir=Path(args.init) if args.init else None,
        threads=args.threads,
        progress=not args.quiet,
        force_cpu=args.cpu,
        tracker=_make_tracker(config, not args.no_tracking),
    )
    print(json.dumps({"variant": args.variant, "best": metrics}, indent=2))


def _cmd_tracking_init(args: argparse.Namespace) -> None:
    from tdpcr.config import load_config
    from tdpcr.tracking import init_store, resolve_uri

    config = load_config(Path(args.config))
    uri = resolve_uri(config["tracking"].get("uri"))
    if config["tracking"]["enabled"]:
        init_store(uri)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps({"uri": uri, "enabled": config["tracking"]["enabled"]}) + "\n")
    os.replace(tmp, out)
    print(f"tracking store ready: {uri}")


def _cmd_complexity(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.complexity import write_complexity_csv
    from tdpcr.config import load_config

    config = load_config(Path(args.config))
    rows = write_complexity_csv(config["models"], Path(args.out))
    print(f"wrote {len(rows)} rows to {args.out}")


def _cmd_bench_inference(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.inference import write_inference_benchmark

    result = write_inference_benchmark(Path(args.out), repeats=args.repeats)
    print(json.dumps(result, indent=2))


def _cmd_bench_training(args: argparse.Namespace) -> None:
    from tdpcr.benchmarks.training import run_training_benchmark
    from tdpcr.config import load_config

    result = run_training_benchmark(
        load_config(Path(args.config)), Path(args.store), Path(args.out), threads=args.threads
    )
    print(json.dumps(result, indent=2))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _OneLineParser(
        prog="tdpcr",
        description="TDP-CR: joint cloud removal and land-cover segmentation (S2 + S1).",
    )
    parser.add_argument("--version", action="version", version=f"tdpcr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )

    def command(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    synth = command("synth", _cmd_synth, "write synthetic S1/S2 scenes as GeoTIFF folders")
    synth.add_argument("--out", required=True, help="output folder (one sub-folder per scene)")
    synth.add_argument("--scenes", type=int, default=16, help="number of scenes")
    synth.add_argument("--size", type=int, default=512, help="scene side in pixels (10 m)")
    synth.add_argument("--seed", type=int, default=0, help="random seed")

    tile = command("tile", _cmd_tile, "cut a source layout into patches in a Zarr tile store")
    tile.add_argument(
        "--source", required=True, choices=("synthetic", "luojiaset", "sen12mscr", "scenes")
    )
    tile.add_argument("--root", required=True, help="folder of the source layout")
    tile.add_argument("--out", required=True, help="tile store to write (STORE.zarr)")
    tile.add_argument("--patch-size", type=int, default=256, help="patch side (scene sources)")
    tile.add_argument("--stride", type=int, default=None, help="patch stride (scene sources)")
    tile.add_argument("--shard-patches", type=int, default=16, help="patches per Zarr shard")
    tile.add_argument("--split-seed", type=int, default=0, help="seed of the 8:1:1 split")
    tile.add_argument(
        "--split-from", default=None, help="reuse a split: a .zarr store or a patch_id,split CSV"
    )
    tile.add_argument(
        "--skip-incomplete",
        action="store_true",
        help="drop patches missing a required piece (with a warning) instead of failing",
    )
    tile.add_argument("--workers", type=int, default=2, help="reader threads")
    tile.add_argument("--quiet", action="store_true", help="no progress bar")

    info = command("info", _cmd_info, "summarise a tile store")
    info.add_argument("store")

    export = command("export-patch", _cmd_export_patch, "write one stored patch as a GeoTIFF")
    export.add_argument("store")
    export.add_argument("--patch", required=True, help="patch id")
    export.add_argument("--variable", default="s2_cloudy", help="store variable")
    export.add_argument("--out", required=True, help="GeoTIFF to write")

    check = command("check-config", _cmd_check_config, "validate a workflow config file")
    check.add_argument("config")

    train = command("train", _cmd_train, "train one variant (phase 1, phase 2, baselines)")
    train.add_argument("--config", required=True, help="workflow config (YAML)")
    train.add_argument("--variant", required=True, help="e.g. tdpcr-cr, tdpcr-full, dsen2cr")
    train.add_argument("--store", required=True, help="tile store to train on")
    train.add_argument("--out", required=True, help="output folder results/models/<variant>")
    train.add_argument("--init", default=None, help="checkpoint folder to start from (phase 2)")
    train.add_argument("--threads", type=int, default=1, help="CPU threads (Snakemake threads)")
    train.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")
    train.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    tracking = command(
        "tracking-init",
        _cmd_tracking_init,
        "create the MLflow tracking store once, before parallel jobs",
    )
    tracking.add_argument("--config", required=True)
    tracking.add_argument("--out", required=True, help="marker file to write (JSON)")

    complexity = command(
        "complexity",
        _cmd_complexity,
        "parameters and MACs of every model (configured and paper size)",
    )
    complexity.add_argument("--config", required=True, help="workflow config (models: sizes)")
    complexity.add_argument("--out", required=True, help="CSV to write")

    bench = command("bench", lambda a: None, "benchmarks writing JSON under results/bench/")
    bench_commands = bench.add_subparsers(
        dest="bench", required=True, metavar="BENCHMARK", parser_class=_OneLineParser
    )
    tiling = bench_commands.add_parser("tiling", help="tiling throughput vs a plain baseline")
    tiling.set_defaults(handler=_cmd_bench_tiling)
    tiling.add_argument("--out", required=True, help="JSON file to write")
    tiling.add_argument("--size", type=int, default=5490, help="scene side in pixels")
    tiling.add_argument("--seed", type=int, default=0)
    tiling.add_argument(
        "--workdir", default="results/bench/tiling-work", help="scratch folder (removed afterwards)"
    )
    tiling.add_argument("--workers", type=int, default=2, help="reader threads")
    inference = bench_commands.add_parser(
        "inference", help="TDP-CR vs DSen2-CR inference (paper sizes) side by side"
    )
    inference.set_defaults(handler=_cmd_bench_inference)
    inference.add_argument("--out", required=True, help="JSON file to write")
    inference.add_argument("--repeats", type=int, default=2, help="timed repeats per case")
    training = bench_commands.add_parser(
        "training", help="phase-1 / phase-2 step and loader throughput, default and paper size"
    )
    training.set_defaults(handler=_cmd_bench_training)
    training.add_argument("--config", required=True, help="workflow config")
    training.add_argument("--store", required=True, help="tile store the loader reads")
    training.add_argument("--out", required=True, help="JSON file to write")
    training.add_argument("--threads", type=int, default=2, help="CPU threads")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tdpcr`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        args.handler(args)
    except TdpcrError as err:
        print(f"tdpcr: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tdpcr: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
