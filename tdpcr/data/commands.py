"""``tdpcr`` sub-commands of the data stage: synth, tile, info, export-patch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tdpcr.core.commands import CommandFactory, LazyChoices, int_arg, s2_offset_arg
from tdpcr.core.config import schema_default
from tdpcr.core.errors import InputDataError, TdpcrError


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
        s2_offset=args.s2_offset,
    )
    summary = tile_source(
        source,
        out,
        shard_patches=args.shard_patches,
        split_seed=args.split_seed,
        split_from=Path(args.split_from) if args.split_from else None,
        split_method=args.split_method,
        split_fractions=args.split_fractions,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(summary.to_json())


def _cmd_info(args: argparse.Namespace) -> None:
    from tdpcr.core.specs import SPLITS
    from tdpcr.data.store import check_readable, open_store

    ds = open_store(Path(args.store))
    checked = check_readable(ds, Path(args.store)) if args.check else None
    splits = {name: int((ds["split"].values == name).sum()) for name in SPLITS}
    info = {
        "store": args.store,
        "patches": int(ds.sizes["patch"]),
        "patch_size": int(ds.attrs["patch_size"]),
        "variables": sorted(v for v in ds.data_vars),
        "splits": splits,
        "source_layout": ds.attrs["source_layout"],
        "mean_cloud_cover": float(ds["cloud_cover"].mean().values),
    }
    if checked is not None:
        info["shards_checked"] = checked
    print(json.dumps(info, indent=2))


def _cmd_export_patch(args: argparse.Namespace) -> None:
    from tdpcr.data.store import open_store, write_patch_geotiff

    ds = open_store(Path(args.store))
    ids = ds["patch"].values.tolist()
    if args.patch not in ids:
        raise InputDataError(f"{args.store}: no patch {args.patch!r} (e.g. {ids[0]!r})")
    path = write_patch_geotiff(ds, ids.index(args.patch), args.variable, Path(args.out))
    print(f"wrote {path}")


def _cmd_realism(args: argparse.Namespace) -> None:
    from tdpcr.data.realism import run_command

    run_command(args)


def _source_names() -> tuple[str, ...]:
    from tdpcr.data.sources import SOURCES

    return tuple(SOURCES)


def register(command: CommandFactory) -> None:
    """Add ``synth``, ``tile``, ``info`` and ``export-patch``."""
    synth = command("synth", _cmd_synth, "write synthetic S1/S2 scenes as GeoTIFF folders")
    synth.add_argument("--out", required=True, help="output folder (one sub-folder per scene)")
    synth.add_argument("--scenes", type=int_arg(1), default=16, help="number of scenes")
    synth.add_argument(
        "--size", type=int_arg(64), default=512, help="scene side in pixels (10 m, >= 64)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed")

    tile = command("tile", _cmd_tile, "cut a source layout into patches in a Zarr tile store")
    tile.add_argument(
        "--source",
        required=True,
        choices=LazyChoices(_source_names),
        metavar="SOURCE",  # an explicit metavar keeps argparse from listing choices at build
        help="source layout: %(choices)s",
    )
    tile.add_argument("--root", required=True, help="folder of the source layout")
    tile.add_argument("--out", required=True, help="tile store to write (STORE.zarr)")
    tile.add_argument(
        "--patch-size",
        type=int_arg(16, multiple_of=16),
        default=256,
        help="patch side, a multiple of 16 (scene sources)",
    )
    tile.add_argument(
        "--stride", type=int_arg(1), default=None, help="patch stride (scene sources)"
    )
    tile.add_argument("--shard-patches", type=int_arg(1), default=16, help="patches per Zarr shard")
    tile.add_argument("--split-seed", type=int, default=0, help="seed of the spatial split")
    tile.add_argument(
        "--split-method",
        choices=("spatial", "official"),
        default=schema_default("tiling", "split_method"),
        help="spatial: whole scenes/ROIs per split, stratified by cloud cover; official: the "
        "layout's published split (SEN12MS-CR)",
    )
    tile.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=schema_default("tiling", "split_fractions"),
        metavar=("TRAIN", "VAL", "TEST"),
        help="shares of the spatial split (by patches, whole groups)",
    )
    tile.add_argument(
        "--split-from", default=None, help="reuse a split: a .zarr store or a patch_id,split CSV"
    )
    tile.add_argument(
        "--skip-incomplete",
        action="store_true",
        help="drop patches missing a required piece (with a warning) instead of failing",
    )
    tile.add_argument(
        "--s2-offset",
        type=s2_offset_arg,
        default=None,
        help="DN offset to remove from S2 of scene folders: 1000 for processing baseline "
        ">= 04.00 scenes, 0 (default) before; patch datasets know their own",
    )
    tile.add_argument("--workers", type=int, default=2, help="reader threads")
    tile.add_argument("--quiet", action="store_true", help="no progress bar")

    info = command("info", _cmd_info, "summarise a tile store")
    info.add_argument("store", help="tile store (.zarr)")
    info.add_argument(
        "--check",
        action="store_true",
        help="read every shard of every pixel variable (finds damaged or truncated ones)",
    )

    realism = command(
        "realism",
        _cmd_realism,
        "measure the synthetic scenes against real Sentinel-1/2 samples (JSON + figure)",
    )
    realism.add_argument("--synthetic", required=True, help="folder of synthetic scene folders")
    realism.add_argument(
        "--realdata", default=None, help="../shared/realdata-style folder (used when it exists)"
    )
    realism.add_argument(
        "--real",
        action="append",
        default=None,
        metavar="KIND=PATH",
        help="a real-data folder of a layout the report reads (tdpcr.data.realism.REAL_KINDS; "
        "repeatable)",
    )
    realism.add_argument("--eval-clear", default=None, help="results/eval/segformer-clear.json")
    realism.add_argument("--eval-cloudy", default=None, help="results/eval/segformer-cloudy.json")
    realism.add_argument("--eval-sar", default=None, help="results/eval/segformer-sar.json")
    realism.add_argument("--out", required=True, help="JSON to write")
    realism.add_argument("--figure", required=True, help="PNG to write")

    export = command("export-patch", _cmd_export_patch, "write one stored patch as a GeoTIFF")
    export.add_argument("store", help="tile store (.zarr)")
    export.add_argument("--patch", required=True, help="patch id")
    export.add_argument("--variable", default="s2_cloudy", help="store variable")
    export.add_argument("--out", required=True, help="GeoTIFF to write")
