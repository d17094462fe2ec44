"""The ``tdpcr`` command line: builds the parser from every stage's commands and runs one.

Each stage registers its own sub-commands (``register(command)`` in its ``commands`` module,
see :mod:`tdpcr.core.commands`); nothing here knows what a command does. Errors a user can fix
(:class:`~tdpcr.core.errors.TdpcrError`) are printed as one line, ``tdpcr: error: <what and
where>``, with exit status 2; so is a full disk, wherever it is met (one line, not the
library's traceback; the temporary outputs are removed on the way out). Nothing else is caught.
"""

from __future__ import annotations

import _thread
import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

from tdpcr import __version__
from tdpcr.core.commands import Handler
from tdpcr.core.errors import TdpcrError

EXIT_USER_ERROR = 2
#: Exit status after SIGTERM (128 + 15), what shells and SLURM report for it.
EXIT_TERMINATED = 143


class _Terminated(BaseException):
    """SIGTERM as an exception in the main thread: every ``with`` block on the way out runs,
    so temporary outputs are removed (a BaseException, so no ``except Exception`` eats it)."""


#: Set by the SIGTERM handler: an error met after it is a consequence, not the user's input.
_sigterm_received = threading.Event()


def _raise_terminated(signum: int, frame: object) -> None:
    _sigterm_received.set()
    raise _Terminated(signum)


def _swallow_lost_termination(unraisable: object, previous: object) -> None:
    """``sys.unraisablehook`` while a command runs.

    Python runs the SIGTERM handler at the next Python line, which may be inside a C
    callback that cannot pass exceptions on (rasterio's GDAL error logger): there
    :class:`_Terminated` would be printed as "Exception ignored" with a traceback and lost.
    It is dropped silently instead and SIGTERM raised again, to land in ordinary code.
    (Cython prints the traceback first through ``sys.excepthook``: see :func:`_quiet_hook`.)
    """
    if isinstance(getattr(unraisable, "exc_value", None), _Terminated):
        # From another thread, a moment later: raised now, the handler would run inside this
        # hook (threading.Thread.start would wait there too).
        _thread.start_new_thread(_signal_main_again, ())
        return
    previous(unraisable)  # type: ignore[operator]


def _quiet_hook(kind: type, value: BaseException, tb: object, previous: object) -> None:
    """``sys.excepthook`` while a command runs: silent for a :class:`_Terminated` that a C
    callback could not pass on (the command ends with one line, see :func:`main`)."""
    if not isinstance(value, _Terminated):
        previous(kind, value, tb)  # type: ignore[operator]


def _signal_main_again() -> None:
    time.sleep(0.05)
    _thread.interrupt_main(signal.SIGTERM)


@contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` in the main thread while the block runs."""
    _sigterm_received.clear()
    previous = _on_sigterm(_raise_terminated)
    hooks = sys.unraisablehook, sys.excepthook
    sys.unraisablehook = partial(_swallow_lost_termination, previous=hooks[0])
    sys.excepthook = partial(_quiet_hook, previous=hooks[1])
    try:
        yield
    finally:
        sys.unraisablehook, sys.excepthook = hooks
        _on_sigterm(previous)


#: Modules that add sub-commands, in the order ``tdpcr --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "tdpcr.data.commands",
    "tdpcr.core.commands",
    "tdpcr.training.commands",
    "tdpcr.evaluation.commands",
    "tdpcr.prediction.commands",
    "tdpcr.benchmarks.commands",
)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (the full usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _on_sigterm(handler: object) -> object:
    """Install a SIGTERM handler, returning the previous one (a no-op off the main thread)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


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

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(command)
    return parser


def one_line(err: TdpcrError) -> str:
    """The message of ``err`` as one line.

    An error raised in a DataLoader worker comes back re-raised by torch with the worker's
    banner and traceback in its message ("Caught InputDataError in DataLoader worker process
    0. Original Traceback ..."); its last line holds the original message.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]  # "<module.>InputDataError: <message>"
        name = type(err).__name__ + ": "
        text = last.split(name, 1)[1] if name in last else last
    return " ".join(text.split("\n"))


def _disk_full(err: BaseException) -> bool:
    """``err`` or an exception it was raised from is ENOSPC (rasterio and zarr wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _quiet_libraries() -> None:
    """Keep the INFO chatter of libraries off stderr (their warnings stay).

    MLflow (and alembic under it) log at INFO when they open or create a store, and urllib3
    warns at every retry of an unanswered tracking server: beside a refusal that would no longer
    be one line, and a run's log would be theirs more than tdpcr's. MLflow sets its own
    loggers' level from ``MLFLOW_LOGGING_LEVEL`` when it is imported (a user's value stays);
    the levels are also set here in case it was imported already.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The retries end in one error line of their own (tdpcr.tracking names the server).
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tdpcr`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # tdpcr's own INFO messages; the libraries' (GDAL's notes through rasterio, torch's
    # cache statistics at exit) only from WARNING, else they are lines beside tdpcr's own.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("tdpcr").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        _quiet_libraries()
    # The trainer installs its own handler for its loop (save last/, then exit 143).
    try:
        with _terminable():
            args.handler(args)
    except TdpcrError as err:
        if _sigterm_received.is_set():  # e.g. a read cut short by SIGTERM: not bad input
            return _terminated()
        print(f"tdpcr: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:
        if not _disk_full(err):
            raise
        where = getattr(args, "out", None) or "the output"
        print(f"tdpcr: error: {where}: no space left on device; nothing kept, free space or "
              "write elsewhere", file=sys.stderr)  # fmt: skip
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tdpcr: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        return _terminated()
    return 0


def _terminated() -> int:
    print("tdpcr: terminated by SIGTERM; temporary outputs removed", file=sys.stderr)
    return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
