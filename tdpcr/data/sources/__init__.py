"""Source layouts that the tiler reads: synthetic scenes, LuojiaSET-OSFCR, SEN12MS-CR, scenes.

:data:`SOURCES` is the one registry of layouts (``{cls.name: cls}``): the ``tdpcr tile
--source`` choices derive from it, and a test checks the config schema's enum against it. To
add a layout, write a :class:`Source` subclass with a ``name`` and add it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tdpcr.core.errors import ConfigError
from tdpcr.data.sources.base import PatchData, PatchRef, Source, read_patch
from tdpcr.data.sources.luojiaset import LuojiaSetSource
from tdpcr.data.sources.scenes import SceneSource, SyntheticSource
from tdpcr.data.sources.sen12mscr import Sen12MSCRSource

#: Every source layout by name.
SOURCES: dict[str, type[Source]] = {
    cls.name: cls for cls in (SyntheticSource, LuojiaSetSource, Sen12MSCRSource, SceneSource)
}

__all__ = ["SOURCES", "PatchData", "PatchRef", "Source", "make_source", "read_patch"]


def make_source(kind: str, root: Path, **options: Any) -> Source:
    """Build the reader for ``kind`` over ``root``.

    Options (``patch_size``, ``stride``, ``skip_incomplete``) are the same for every source;
    ``patch_size`` and ``stride`` apply to scene sources (synthetic, scenes), patch datasets
    (LuojiaSET-OSFCR, SEN12MS-CR) keep their own 256x256 patches.
    """
    if kind not in SOURCES:
        raise ConfigError(f"source: unknown kind {kind!r}; expected one of {', '.join(SOURCES)}")
    return SOURCES[kind](Path(root), **options)
