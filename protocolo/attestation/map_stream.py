"""The map tree of docs/evidence-format.md §11 built in one pass over keys in key-hash order.

:class:`protocolo.evidence.vindex.MapTree` builds a tree from a set of keys it holds; a
map of millions of keys (the first index of a ledger checkpointed before the index
existed) would then be held whole. Keys read in increasing key-hash order (an index scan
of ``vindex_entries``, or an external sort) give the same tree with a stack of at most
one node per level: a key's leaf sits one level below its longest common prefix with
either neighbour (where it is first alone), every position above it on its path is an
inner node, and once the next key leaves a subtree that subtree is complete and can be
hashed and written. The nodes come out children first (post-order), each once.
"""

from __future__ import annotations

from collections.abc import Callable

from protocolo.evidence.vindex import EMPTY, KEY_BITS, Node, Position, inner_hash, leaf_node_hash

NodeSink = Callable[[Position, Node], None]


def common_prefix(a: int, b: int) -> int:
    """How many leading bits two 256-bit key hashes share."""
    return KEY_BITS - (a ^ b).bit_length()


class SortedMapBuilder:
    """Feed (key hash, list hash) in strictly increasing key-hash order; each finished node
    goes to ``sink``; :meth:`finish` gives the root."""

    def __init__(self, sink: NodeSink) -> None:
        self._sink = sink
        self._stack: list[tuple[int, int, bytes]] = []  # (depth, prefix, hash), completed subtrees
        self._pending: tuple[int, bytes, int] | None = None  # key, list hash, lcp with the one before
        self.keys = 0

    def add(self, khash: bytes, lhash: bytes) -> None:
        key = int.from_bytes(khash, "big")
        if self._pending is None:
            self._pending = (key, lhash, -1)
        else:
            before, before_list, before_lcp = self._pending
            if key <= before:
                raise ValueError("keys must come in strictly increasing key-hash order")
            lcp = common_prefix(before, key)
            self._leaf(before, before_list, max(before_lcp, lcp) + 1)
            self._fold(lcp + 1)
            self._pending = (key, lhash, lcp)
        self.keys += 1

    def finish(self) -> bytes:
        """The root of the map of every key added (EMPTY for none)."""
        if self._pending is not None:
            key, lhash, lcp = self._pending
            self._leaf(key, lhash, lcp + 1)
            self._pending = None
        self._fold(0)
        return self._stack[0][2] if self._stack else EMPTY

    def _leaf(self, key: int, lhash: bytes, depth: int) -> None:
        khash = key.to_bytes(32, "big")
        node = Node(leaf_node_hash(khash, lhash), khash, lhash)
        prefix = key >> (KEY_BITS - depth)
        self._sink((depth, prefix), node)
        self._stack.append((depth, prefix, node.hash))

    def _fold(self, depth: int) -> None:
        """Close every subtree deeper than ``depth``: no key still to come falls in them."""
        stack = self._stack
        while stack and stack[-1][0] > depth:
            d, prefix, node_hash = stack.pop()
            if prefix & 1 and stack and stack[-1][:2] == (d, prefix ^ 1):
                parent = inner_hash(stack.pop()[2], node_hash)
            elif prefix & 1:
                parent = inner_hash(EMPTY, node_hash)
            else:
                parent = inner_hash(node_hash, EMPTY)
            self._sink((d - 1, prefix >> 1), Node(parent))
            stack.append((d - 1, prefix >> 1, parent))
