"""``tdpcr`` sub-commands of the training stage: train, tracking-init."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tdpcr.core.commands import CommandFactory


def _make_tracker(config: dict, enabled: bool = True):
    from tdpcr.core.errors import ConfigError
    from tdpcr.tracking import Tracker
    from tdpcr.training.variants import VARIANTS

    registered = config["tracking"]["registered_variant"]
    if registered not in VARIANTS:  # else nothing would ever be registered, silently
        raise ConfigError(
            f"config key 'tracking.registered_variant' is {registered!r}; expected one of "
            + ", ".join(VARIANTS)
        )
    return Tracker.from_config(config, enabled)


def _cmd_train(args: argparse.Namespace) -> None:
    from tdpcr.core.config import apply_overrides, load_config
    from tdpcr.training.trainer import train_variant

    config = load_config(Path(args.config))
    if args.set:
        config = apply_overrides(config, args.set, f"{args.config} with --set")
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
        teacher_dir=Path(args.teacher) if args.teacher else None,
    )
    print(json.dumps({"variant": args.variant, "best": metrics}, indent=2))


def _cmd_tracking_init(args: argparse.Namespace) -> None:
    from tdpcr.core.config import load_config
    from tdpcr.core.io import write_json_atomic
    from tdpcr.tracking import init_store, resolve_uri

    config = load_config(Path(args.config))
    uri = resolve_uri(config["tracking"]["uri"])
    if config["tracking"]["enabled"]:
        init_store(uri)
    write_json_atomic(Path(args.out), {"uri": uri, "enabled": config["tracking"]["enabled"]})
    print(f"tracking store ready: {uri}")


def register(command: CommandFactory) -> None:
    """Add ``train`` and ``tracking-init``."""
    train = command("train", _cmd_train, "train one variant (phase 1, phase 2, baselines)")
    train.add_argument("--config", required=True, help="workflow config (YAML)")
    train.add_argument("--variant", required=True, help="e.g. tdpcr-cr, tdpcr-full, dsen2cr")
    train.add_argument("--store", required=True, help="tile store to train on")
    train.add_argument("--out", required=True, help="output folder results/models/<variant>")
    train.add_argument("--init", default=None, help="checkpoint folder to start from (phase 2)")
    train.add_argument(
        "--teacher", default=None, help="checkpoint folder of a frozen teacher (CloudSeg)"
    )
    train.add_argument("--threads", type=int, default=1, help="CPU threads (Snakemake threads)")
    train.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")
    train.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key for this run (train.lr=3e-4; repeatable)",
    )

    tracking = command(
        "tracking-init",
        _cmd_tracking_init,
        "create the MLflow tracking store once, before parallel jobs",
    )
    tracking.add_argument(
        "--config", required=True, help="workflow config (YAML): tracking.uri, tracking.enabled"
    )
    tracking.add_argument("--out", required=True, help="marker file to write (JSON)")
