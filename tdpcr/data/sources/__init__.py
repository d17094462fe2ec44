"""Source layouts that the tiler reads: synthetic scenes, LuojiaSET-OSFCR, SEN12MS-CR, scenes."""

from __future__ import annotations

from pathlib import Path

from tdpcr.data.sources.base import PatchData, PatchRef, Source, read_patch
from tdpcr.errors import ConfigError

SOURCE_KINDS: tuple[str, ...] = ("synthetic", "luojiaset", "sen12mscr", "scenes")

__all__ = ["SOURCE_KINDS", "PatchData", "PatchRef", "Source", "make_source", "read_patch"]


def make_source(
    kind: str,
    root: Path,
    *,
    patch_size: int = 256,
    stride: int | None = None,
    skip_incomplete: bool = False,
) -> Source:
    """Build the reader for ``kind`` over ``root``.

    ``patch_size`` and ``stride`` apply to scene sources (synthetic, scenes); patch datasets
    (LuojiaSET-OSFCR, SEN12MS-CR) keep their own 256x256 patches.
    """
    if kind in ("synthetic", "scenes"):
        from tdpcr.data.sources.scenes import SceneSource, SyntheticSource

        cls = SyntheticSource if kind == "synthetic" else SceneSource
        return cls(root, patch_size=patch_size, stride=stride, skip_incomplete=skip_incomplete)
    if kind == "luojiaset":
        from tdpcr.data.sources.luojiaset import LuojiaSetSource

        return LuojiaSetSource(root, skip_incomplete=skip_incomplete)
    if kind == "sen12mscr":
        from tdpcr.data.sources.sen12mscr import Sen12MSCRSource

        return Sen12MSCRSource(root, skip_incomplete=skip_incomplete)
    raise ConfigError(f"source: unknown kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
