"""C2SP tlog-tiles addressing: which tiles a tree of some size has, and their paths.

A tile of level ``L`` holds up to 256 hashes of tree level ``8·L``: hash ``i`` of tile ``n``
is the perfect node ``NodeId(8·L, n·256 + i)`` (MTH of leaves
``[(n·256+i)·256^L, (n·256+i+1)·256^L)``). A tree of size ``s`` has, at level ``L``,
``⌊s / 256^(L+1)⌋`` full tiles and one partial tile of width ``⌊s / 256^L⌋ mod 256`` if
that is not 0. Paths: ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``, where
``<N>`` is written in 3-digit groups, all but the last prefixed with ``x``
(1234067 → ``x001/x234/067``).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocolo.evidence.errors import ProofError
from protocolo.evidence.merkle import NodeId, require_size

TILE_WIDTH = 256
TILE_HEIGHT = 8


def _index_path(index: int) -> str:
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def tile_path(level: int | str, index: int, width: int | None = None) -> str:
    """``tile/<level>/<index>[.p/<width>]``; ``level="entries"`` for entry bundles."""
    require_size("tile index", index)
    if level != "entries" and (isinstance(level, str) or not 0 <= level <= 63):
        raise ProofError("bad-tile", f"tile level {level!r} must be 0..63 or 'entries'")
    suffix = ""
    if width is not None:
        if not 1 <= width < TILE_WIDTH:
            raise ProofError("bad-tile", f"partial tile width {width} must be 1..255")
        suffix = f".p/{width}"
    return f"tile/{level}/{_index_path(index)}{suffix}"


@dataclass(frozen=True)
class TileLevel:
    level: int
    full_tiles: int
    partial_width: int  # 0: no partial tile at this level


def tiles_for_size(size: int) -> list[TileLevel]:
    """Per tile level, the full tiles and the partial tile's width for a tree of ``size``."""
    require_size("size", size)
    levels: list[TileLevel] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        levels.append(TileLevel(level, hashes // TILE_WIDTH, hashes % TILE_WIDTH))
        level += 1
    return levels


def tile_node(level: int, index: int, position: int) -> NodeId:
    """The perfect node stored at ``position`` of tile ``index`` of tile level ``level``."""
    if not 0 <= position < TILE_WIDTH:
        raise ProofError("bad-tile", f"position {position} must be 0..255")
    return NodeId(TILE_HEIGHT * level, index * TILE_WIDTH + position)
