"""Atomic outputs: what a later step reads is complete or absent, never half-written.

Every stage writes through these helpers (no heavy imports here).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def open_atomic(path: str | os.PathLike[str], newline: str | None = None) -> Iterator[IO[str]]:
    """Open a temporary text file beside ``path``; rename it onto ``path`` when the block ends.

    A later step never sees a half-written file, whatever interrupts the write: on an error
    the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "w", newline=newline) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_or_none(value: Any) -> Any:
    """NaN / inf -> None (JSON has no NaN); recurses into lists, tuples and dicts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return value


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented, valid JSON (NaN / inf as null), atomically."""
    with open_atomic(path) as fh:
        json.dump(finite_or_none(dict(data)), fh, indent=2)
        fh.write("\n")
    return Path(path)


def write_csv_atomic(
    path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], columns: Iterable[str]
) -> Path:
    """Write ``rows`` as CSV with a header of ``columns``, atomically; None -> empty cell."""
    columns = list(columns)
    with open_atomic(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return Path(path)


def replace_folder(new: Path, target: Path) -> Path:
    """Move the finished folder ``new`` to ``target``, replacing a previous one.

    The previous folder is first renamed aside, then removed, so ``target`` is either the old
    complete folder or the new complete one at every moment a reader could look.
    """
    new, target = Path(new), Path(target)
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh hidden folder beside ``target`` to write into; it becomes ``target`` at the end.

    On any error (or interrupt) inside the block the temporary folder is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; results are meant to be shared
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
