"""Tile addressing against C2SP tlog-tiles examples and tlog-scales' path cases."""

from __future__ import annotations

from typing import Any

import pytest
from evidence_vectors import load

from protocolo.evidence.merkle import NodeId
from protocolo.evidence.tiles import tile_node, tile_path, tiles_for_size

TILES = load("tiles/tlog-tiles.json")


@pytest.mark.parametrize("case", TILES["paths"], ids=lambda c: c["path"])
def test_tile_paths(case: dict[str, Any]) -> None:
    assert tile_path(case["level"], case["index"], case["width"]) == case["path"]


@pytest.mark.parametrize("size", sorted(TILES["tiles_for_size"], key=lambda s: int(s)))
def test_tiles_for_size(size: str) -> None:
    expected = TILES["tiles_for_size"][size]
    levels = tiles_for_size(int(size))
    assert [(t.level, t.full_tiles, t.partial_width) for t in levels] == [
        (e["level"], e["full_tiles"], e["partial_width"]) for e in expected
    ]
    for level, e in zip(levels, expected, strict=True):
        last_full = tile_path(level.level, level.full_tiles - 1) if level.full_tiles else None
        partial = (
            tile_path(level.level, level.full_tiles, level.partial_width)
            if level.partial_width
            else None
        )
        assert (last_full, partial) == (e["last_full_path"], e["partial_path"])


def test_tile_hash_is_the_perfect_node_of_level_eight_l() -> None:
    # level-l tile n hash i = MTH(D[(n*256+i)*256^l : (n*256+i+1)*256^l])
    node = tile_node(1, 2, 3)
    assert node == NodeId(8, 2 * 256 + 3)
    assert (node.begin, node.end) == ((2 * 256 + 3) * 256, (2 * 256 + 4) * 256)
