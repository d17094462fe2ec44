"""How predict reaches its inputs: plain files and folders only, URLs with finite timeouts.

* A named pipe, device or socket given as an input (``--optical``, ``--sar``, a STAC asset
  href or a file inside a SAFE folder) is refused unopened
  (:func:`tdpcr.core.files.require_plain_file`).
* Assets read over the network (``http(s)://``, ``s3://`` ..., GDAL ``/vsicurl/`` ...) are
  streamed by GDAL through curl, which by default waits forever for a server that accepted
  the connection and never answers. :func:`input_gdal_env` gives GDAL finite connect and
  stall timeouts and a few retries, so such a read fails in bounded time with one line naming
  the href. Settings the user already made (environment variables ``GDAL_HTTP_*`` or an
  enclosing ``rasterio.Env``) are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import rasterio
from rasterio.env import getenv, hasenv

#: GDAL options for assets read over the network (GDAL's own defaults are no timeouts at
#: all). A transfer that moves less than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME seconds
#: is a stalled server, not a slow one: that bounds a hang without capping large reads.
REMOTE_GDAL_OPTIONS: dict[str, str] = {
    "GDAL_HTTP_CONNECT_TIMEOUT": "15",
    "GDAL_HTTP_LOW_SPEED_TIME": "30",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "GDAL_HTTP_MAX_RETRY": "2",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # A VRT asset must never run code: GDAL can evaluate Python pixel functions in VRTs.
    "GDAL_VRT_ENABLE_PYTHON": "NO",
}

#: Prefixes of GDAL's network file systems (a href may name one directly).
_GDAL_NETWORK_PREFIXES = (
    "/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
    "/vsiwebhdfs", "/vsihdfs",
)  # fmt: skip


def is_remote(href: str) -> bool:
    """``href`` is read over the network (a URL other than ``file:``, or a GDAL network path)."""
    if href.startswith(_GDAL_NETWORK_PREFIXES):
        return True
    scheme = urlparse(href).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive, C:\...


def local_path(href: str) -> Path:
    """The file a local href (a path or a ``file:`` URL) names."""
    parsed = urlparse(href)
    return Path(parsed.path) if parsed.scheme == "file" else Path(href)


def input_gdal_env() -> Any:
    """A ``rasterio.Env`` with the :data:`REMOTE_GDAL_OPTIONS` the user has not set themselves.

    Enter it for as long as the inputs stay open: GDAL reads the options at every request,
    and the windowed reads of a remote asset are requests too. (They are process-wide GDAL
    settings, so the reads of background threads get them as well.)
    """
    active = getenv() if hasenv() else {}
    unset = {
        key: value
        for key, value in REMOTE_GDAL_OPTIONS.items()
        if key not in os.environ and key not in active
    }
    return rasterio.Env(**unset)
