"""How a stage adds sub-commands to ``tdpcr``, and the shared layer's own: ``check-config``.

Every stage has a ``commands`` module with ``register(command)``; :mod:`tdpcr.cli` only builds
the parser and calls each of them. Handlers import their implementation lazily, so building
the parser stays cheap for every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

#: A sub-command handler: gets the parsed arguments, raises TdpcrError for a user's mistake.
Handler = Callable[[argparse.Namespace], None]
#: ``command(name, handler, help) -> parser``, as :func:`tdpcr.cli.build_parser` passes it to
#: every stage's ``register``.
CommandFactory = Callable[[str, Handler, str], argparse.ArgumentParser]


class LazyChoices:
    """``choices=`` for argparse, computed from a registry the first time they are needed.

    argparse reads choices only to check a value or to print help (give the argument a
    ``metavar``: without one argparse formats the choices when the argument is added), so a
    registry whose import is heavy (the source layouts import rasterio) costs nothing to the
    commands that do not use it: building the parser stays at a tenth of a second.
    """

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._values: tuple[str, ...] | None = None

    def _get(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = tuple(self._load())
        return self._values

    def __contains__(self, value: object) -> bool:
        return value in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())


def int_arg(minimum: int = 1, multiple_of: int = 1) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` and a multiple of ``multiple_of``.

    Checked while parsing, so a bad size stops in one line before any work is done.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or value % multiple_of:
            multiple = f", a multiple of {multiple_of}" if multiple_of > 1 else ""
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected an integer >= {minimum}{multiple}"
            )
        return value

    return parse


def s2_offset_arg(text: str) -> int:
    """``--s2-offset``: 0, or the 1000 DN of processing baseline >= 04.00; nothing else.

    Any other value would darken (or, negative, brighten) every band without a word.
    """
    from tdpcr.core.specs import S2_OFFSETS

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value not in S2_OFFSETS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected {' or '.join(map(str, S2_OFFSETS))} (the DN offset of "
            "processing baseline >= 04.00)"
        )
    return int(value)


def _cmd_check_config(args: argparse.Namespace) -> None:
    from tdpcr.core.config import load_config

    load_config(Path(args.config))
    print(f"{args.config}: valid")


def register(command: CommandFactory) -> None:
    """Add ``check-config``."""
    check = command("check-config", _cmd_check_config, "validate a workflow config file")
    check.add_argument("config", help="the config file (YAML) to check against the schema")
