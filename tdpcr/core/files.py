"""Inputs must be plain files or folders: a named pipe, device or socket is refused unopened.

Opening a named pipe blocks until something writes to it, and a device can be read forever;
``os.stat`` never blocks, so every stage that opens a user's file asks its type first.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tdpcr.core.errors import InputDataError

_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def require_plain_file(path: Path, where: Path | str, what: str) -> None:
    """Refuse ``path`` when it exists and is a named pipe, device or socket.

    A missing path is left to the caller, whose message says what was expected there.

    Raises:
        InputDataError: naming ``where`` (the input the user gave) and ``path``.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable, or a NUL in the name
        return
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            named = f"{where}" if Path(where) == Path(path) else f"{where}: {path}"
            raise InputDataError(
                f"{named}: {kind}, not a regular file; expected {what} (special files are "
                "refused: reading them could block forever)"
            )
