"""Atomic outputs: what a later step reads is complete or absent, never half-written.

Every stage writes through these helpers (no heavy imports here).
"""

from __future__ import annotations

import csv
import ctypes
import errno
import glob
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from tdpcr.core.errors import TdpcrError


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


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it (see :func:`open_atomic`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


#: Key that marks a JSON record as written by tdpcr (a tile store's ``zarr.json`` attributes,
#: a prediction's ``prediction.json``); only folders carrying it are ever replaced.
OWNER_KEY = "tdpcr_output"
#: Older tile stores carry only their format version; they were written by tdpcr too.
LEGACY_OWNER_KEYS = ("tdpcr_store_version",)
#: Linux renameat2(2) flag: swap two paths in one step.
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def carries_owner_mark(folder: str | os.PathLike[str], record: str) -> bool:
    """True when ``folder/record`` is JSON that tdpcr wrote (top level or its ``attributes``)."""
    try:
        data = json.loads((Path(folder) / record).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    for table in (data, data.get("attributes")):
        if isinstance(table, dict) and any(k in table for k in (OWNER_KEY, *LEGACY_OWNER_KEYS)):
            return True
    return False


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies under it (both resolved, so links and ``..`` cannot hide it)."""
    return a == b or a.is_relative_to(b)


def check_writable(target: str | os.PathLike[str], flag: str = "--out") -> None:
    """Refuse, before any work, a ``target`` whose nearest existing parent is not writable.

    ``os.access`` sees a read-only mount (EROFS) even for root.
    """
    target = Path(target)
    nearest = next(p for p in (target.parent, *target.parent.parents) if p.exists())
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise TdpcrError(f"{flag} {target}: {nearest} is not writable (read-only or no permission)")


def check_output_path(
    target: str | os.PathLike[str],
    record: str,
    *,
    flag: str = "--out",
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse, before any work, an output that would overwrite something tdpcr did not write.

    ``target`` may be absent, an empty folder, or a folder whose ``record`` carries
    :data:`OWNER_KEY`; anything else (a file, a user's folder, another dataset) is refused, and
    so is an output that is, contains or lies inside one of ``inputs``.
    """
    target = Path(target)
    resolved = target.resolve()
    for source in inputs:
        source_path = Path(source).resolve()
        if _inside(resolved, source_path) or _inside(source_path, resolved):
            raise TdpcrError(
                f"{flag} {target}: overlaps the input {source}; write the output elsewhere"
            )
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise TdpcrError(f"{flag} {target}: {parent} is a file, not a folder")
    check_writable(target, flag)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise TdpcrError(f"{flag} {target}: exists and is not a folder tdpcr wrote; not replaced")
    if any(target.iterdir()) and not carries_owner_mark(target, record):
        raise TdpcrError(
            f"{flag} {target}: exists and was not written by tdpcr (no {OWNER_KEY} in "
            f"{record}); not replaced, choose a new or empty folder"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_folder(new: Path, target: Path) -> Path:
    """Move the finished folder ``new`` to ``target``, replacing a previous one.

    Where the system can, the two are swapped in one step, so ``target`` exists at every
    moment, also while another run replaces it; elsewhere the previous folder is renamed aside
    first (``target`` is then briefly absent, never half-written).
    """
    new, target = Path(new), Path(target)
    try:
        os.rename(new, target)  # no previous folder (or an empty one)
        return target
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the previous folder
        return target
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _temp_prefix(target: Path) -> str:
    """Hidden temporary names carry host and process, so stale ones can be told from live."""
    return f".{target.name}.{socket.gethostname()}-{os.getpid()}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporaries of ``target`` left by a tdpcr process of this host that has died.

    A SIGKILL leaves them behind; temporaries of live processes (a concurrent run) and of
    other hosts (a shared file system) are left alone.
    """
    removed = []
    host = socket.gethostname()
    for path in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        # .NAME.HOST-PID.RANDOM.tmp; host names may hold dots, mkdtemp's RANDOM never does.
        owner = path.name[len(target.name) + 2 : -len(".tmp")].rpartition(".")[0]
        name, _, pid = owner.rpartition("-")
        if name == host and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh hidden folder beside ``target`` to write into; it becomes ``target`` at the end.

    On any error (or interrupt) inside the block the temporary folder is removed and
    ``target`` is left as it was. Stale temporaries of dead runs are swept first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; results are meant to be shared
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def folder_kept_only_if_used(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``folder`` for the block; if the block fails and left it empty, remove it again.

    A run that fails before writing anything (bad store, bad config) then leaves no empty
    output folder behind. Only an empty folder this block created is ever removed.
    """
    folder = Path(folder)
    existed = folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if not existed:
            with suppress(OSError):
                folder.rmdir()  # fails, and keeps it, unless it is empty
        raise
