"""The one-pass map builder gives the tree of §11: the same root as the transcription of
the spec (vindex_oracle) and the very nodes MapTree writes for the same keys."""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest

from protocolo.attestation.map_stream import SortedMapBuilder, common_prefix
from protocolo.evidence.vindex import EMPTY, MapTree, Node, Position, list_hash

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evidence"))
import vindex_oracle as oracle  # noqa: E402


def _lists(count: int, seed: int, shared_prefix_bits: int = 0) -> dict[bytes, list[int]]:
    rng = random.Random(seed)
    lists: dict[bytes, list[int]] = {}
    for n in range(count):
        khash = hashlib.sha256(f"key {seed} {n}".encode()).digest()
        if shared_prefix_bits:  # keys crowded under one long prefix: long chains of inner nodes
            mask = (1 << (256 - shared_prefix_bits)) - 1
            khash = ((0xA5 << 248) & ~mask | int.from_bytes(khash, "big") & mask).to_bytes(32, "big")
        lists[khash] = sorted(rng.sample(range(1000), rng.randint(1, 4)))
    return lists


def _streamed(lists: dict[bytes, list[int]]) -> tuple[bytes, dict[Position, Node], list[Position]]:
    nodes: dict[Position, Node] = {}
    order: list[Position] = []

    def sink(position: Position, node: Node) -> None:
        assert position not in nodes, f"{position} written twice"
        nodes[position] = node
        order.append(position)

    builder = SortedMapBuilder(sink)
    for khash in sorted(lists):
        builder.add(khash, list_hash(lists[khash]))
    return builder.finish(), nodes, order


@pytest.mark.parametrize(("count", "seed", "crowd"), [(0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 4, 0),
                                                      (257, 5, 0), (2000, 6, 0), (300, 7, 40)])
def test_the_streamed_map_is_the_map(count: int, seed: int, crowd: int) -> None:
    lists = _lists(count, seed, crowd)
    root, nodes, order = _streamed(lists)
    assert root == (oracle.root(lists) if lists else EMPTY)
    written = MapTree().update({k: list_hash(v) for k, v in lists.items()})
    assert nodes == written
    depth_of = {p: p[0] for p in order}
    for i, (depth, prefix) in enumerate(order):  # children first: a parent after both children
        for child in ((depth + 1, 2 * prefix), (depth + 1, 2 * prefix + 1)):
            if child in depth_of:
                assert order.index(child) < i


def test_keys_out_of_order_are_refused() -> None:
    builder = SortedMapBuilder(lambda p, n: None)
    builder.add(bytes([2]) * 32, EMPTY)
    with pytest.raises(ValueError, match="increasing"):
        builder.add(bytes([1]) * 32, EMPTY)
    with pytest.raises(ValueError, match="increasing"):
        builder.add(bytes([2]) * 32, EMPTY)


def test_common_prefix() -> None:
    assert common_prefix(0, 1) == 255
    assert common_prefix(0, 1 << 255) == 0
    assert common_prefix(5, 5) == 256


def test_pairs_sorted_on_disk_come_back_per_key_in_key_order() -> None:
    from protocolo.attestation.sorted_pairs import SortedPairs
    from protocolo.evidence.vindex import MapKey

    rng = random.Random(9)
    keys = [MapKey("protocol", f"2026{n:011d}") for n in range(300)]
    pairs = [(key, leaf) for leaf in range(2000) for key in rng.sample(keys, 2)]
    rng.shuffle(pairs)
    expected: dict[bytes, tuple[MapKey, list[int]]] = {}
    for key, leaf in pairs:
        expected.setdefault(key.hash, (key, []))[1].append(leaf)
    with SortedPairs() as store:
        for low in range(0, len(pairs), 777):
            store.add(pairs[low:low + 777])
        got = [(k, key, leaves) for k, key, leaves in store.by_key()]
    assert [k for k, _, _ in got] == sorted(expected)
    assert all(key == expected[k][0] and leaves == sorted(expected[k][1]) for k, key, leaves in got)
