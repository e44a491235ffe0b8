"""RFC 6962 / RFC 9162 Merkle trees: hashing, compact ranges, proof generation.

The tree over leaves ``D[0:n]`` is the one of RFC 9162 §2.1.1 (SHA-256, no padding, no
duplicated nodes)::

    MTH({})   = SHA-256("")
    MTH({d})  = SHA-256(0x00 || d)                                   (leaf hash)
    MTH(D_n)  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of 2 < n

A *perfect node* ``NodeId(level, index)`` is the root of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are leaf hashes. Perfect
nodes never change once complete, so a store keeps them (they are what
:meth:`CompactRange.append` reports) and every proof is assembled from them: a subtree at
the right edge of a tree that is not perfect (an "ephemeral" node in transparency-dev's
words) is folded from the perfect nodes covering it. Proof generation therefore reads
O(log n) stored hashes in one request, never re-hashes a partition.

Design taken from transparency-dev/merkle (``compact`` ranges, ``proof.Nodes`` +
``Rehash``) and RFC 9162 §2.1.2-2.1.4, written here so that the verifier depends only on
the standard library.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from protocolo.evidence.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = (1 << 64) - 1
"""Sizes and indices are uint64 on the wire (checkpoints, proofs): larger ones are refused."""


def leaf_hash(leaf_bytes: bytes) -> bytes:
    """``SHA-256(0x00 || leaf_bytes)``: the hash of one entry, level 0 of the tree."""
    return hashlib.sha256(LEAF_PREFIX + leaf_bytes).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A perfect subtree: leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


class StoredNode(NamedTuple):
    """A perfect node and its hash, as a store keeps it."""

    node: NodeId
    hash: bytes


def require_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_TREE_SIZE:
        raise ProofError("bad-size", f"{name} must be an integer in [0, 2^64-1], got {value!r}")


def require_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        length = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError("hash-length", f"{name} must be {HASH_SIZE} bytes, got {length}")


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The compact range of ``[begin, end)``: the fewest perfect nodes covering exactly it.

    Left to right. For ``begin == 0`` (or any ``begin`` aligned to the range's size) the
    levels strictly decrease: one node per set bit of ``end - begin``, largest first.
    """
    require_size("begin", begin)
    require_size("end", end)
    if begin > end:
        raise ProofError("bad-range", f"range [{begin}, {end}) has begin > end")
    nodes: list[NodeId] = []
    while begin < end:
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while (1 << level) > end - begin:
            level -= 1
        nodes.append(NodeId(level, begin >> level))
        begin += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Root of a compact range given largest subtree first: hash right to left.

    For the compact range ``[0, n)`` this is ``MTH(D[0:n])`` (RFC 9162 §2.1.2 final merge);
    ``fold([])`` is the empty tree's root ``SHA-256("")``.
    """
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


class CompactRange:
    """The right edge of a tree of ``size`` leaves: O(log n) state to append and to root.

    ``hashes`` holds one perfect subtree hash per set bit of ``size``, largest first (the
    stack of RFC 9162 §2.1.2 after ``size`` leaves). ``CompactRange(size, hashes)`` rebuilds
    the state a store persisted; :meth:`append` returns every perfect node it completed,
    the leaf itself (level 0) included, so the store can keep them for proofs.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        require_size("size", size)
        if len(hashes) != size.bit_count():
            raise ProofError(
                "compact-range-length",
                f"a compact range of size {size} has {size.bit_count()} hashes, got {len(hashes)}",
            )
        for position, value in enumerate(hashes):
            require_hash(f"compact range hash {position}", value)
        self._size = size
        self._hashes = [bytes(value) for value in hashes]

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def nodes(self) -> list[StoredNode]:
        """The stored form: each hash with its perfect node (level, index), largest first."""
        return [
            StoredNode(node, value)
            for node, value in zip(range_nodes(0, self._size), self._hashes, strict=True)
        ]

    def append(self, leaf: bytes) -> list[StoredNode]:
        """Add one leaf hash; return the perfect nodes completed, lowest level first."""
        require_hash("leaf hash", leaf)
        if self._size == MAX_TREE_SIZE:
            raise ProofError("bad-size", "the tree is full (2^64-1 leaves)")
        index = self._size
        value = bytes(leaf)
        completed = [StoredNode(NodeId(0, index), value)]
        level = 0
        while (index >> level) & 1:
            value = node_hash(self._hashes.pop(), value)
            level += 1
            completed.append(StoredNode(NodeId(level, index >> level), value))
        self._hashes.append(value)
        self._size += 1
        return completed

    def extend(self, leaves: Sequence[bytes]) -> list[StoredNode]:
        completed: list[StoredNode] = []
        for leaf in leaves:
            completed.extend(self.append(leaf))
        return completed

    def root(self) -> bytes:
        return fold(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, hashes={len(self._hashes)})"


def tree_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a whole list of leaf hashes (the stack algorithm, O(n))."""
    state = CompactRange()
    for leaf in leaf_hashes:
        state.append(leaf)
    return state.root()


# ---------------------------------------------------------------------------------------
# Proof generation


NodeReader = Callable[[Sequence[NodeId]], Sequence[bytes]]
"""Given perfect nodes, return their hashes in the same order (e.g. one SQL query)."""


@dataclass(frozen=True)
class ProofPlan:
    """Which stored nodes a proof needs, and how to assemble it from their hashes.

    ``parts`` has one entry per proof hash, in proof order (leaf side first); each entry
    is the compact range whose fold is that hash: a single node when the sibling subtree
    is perfect, several when it is the right edge of a tree that is not.
    """

    parts: tuple[tuple[NodeId, ...], ...]

    @property
    def nodes(self) -> list[NodeId]:
        """Distinct nodes to fetch, in first-use order."""
        seen: dict[NodeId, None] = {}
        for part in self.parts:
            for node in part:
                seen.setdefault(node, None)
        return list(seen)

    def assemble(self, hashes: Sequence[bytes]) -> list[bytes]:
        """The proof, given the hashes of :attr:`nodes` in that order."""
        wanted = self.nodes
        if len(hashes) != len(wanted):
            raise ProofError(
                "missing-nodes", f"proof needs {len(wanted)} stored nodes, got {len(hashes)}"
            )
        by_node: dict[NodeId, bytes] = {}
        for node, value in zip(wanted, hashes, strict=True):
            require_hash(f"stored node (level {node.level}, index {node.index})", value)
            by_node[node] = bytes(value)
        return [fold([by_node[node] for node in part]) for part in self.parts]

    def build(self, read_nodes: NodeReader) -> list[bytes]:
        """Fetch the nodes with ``read_nodes`` (once) and assemble the proof."""
        wanted = self.nodes
        return self.assemble(read_nodes(wanted) if wanted else [])


def _path(index: int, size: int) -> tuple[tuple[NodeId, ...], ...]:
    # RFC 9162 §2.1.3.1 PATH(m, D[0:size]), emitting sibling subtrees as compact ranges.
    # Iterative from the root down; parts are collected root side first, then reversed.
    found: list[tuple[NodeId, ...]] = []
    begin, end = 0, size
    while end - begin > 1:
        split = 1 << ((end - begin - 1).bit_length() - 1)
        if index < begin + split:
            found.append(tuple(range_nodes(begin + split, end)))
            end = begin + split
        else:
            found.append(tuple(range_nodes(begin, begin + split)))
            begin += split
    return tuple(reversed(found))


def inclusion_nodes(index: int, size: int) -> ProofPlan:
    """The stored nodes an inclusion proof of leaf ``index`` in a tree of ``size`` needs."""
    require_size("index", index)
    require_size("size", size)
    if index >= size:
        raise ProofError(
            "index-out-of-range", f"leaf index {index} is not in a tree of size {size}"
        )
    return ProofPlan(_path(index, size))


def consistency_nodes(size1: int, size2: int) -> ProofPlan:
    """The stored nodes a consistency proof from ``size1`` to ``size2`` needs.

    ``size1 == size2`` needs none (empty proof); ``size1 == 0`` is refused, as the
    verifier refuses it (a witness handles size 0 at the protocol level).
    """
    require_size("size1", size1)
    require_size("size2", size2)
    if size1 > size2:
        raise ProofError("size-order", f"first size {size1} is larger than second size {size2}")
    if size1 == 0:
        raise ProofError("empty-tree", "a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        return ProofPlan(())
    # RFC 9162 §2.1.4.1 SUBPROOF(m, D[begin:end], b), iterative from the root down.
    found: list[tuple[NodeId, ...]] = []
    m, begin, end, complete = size1, 0, size2, True
    while True:
        n = end - begin
        if m == n:
            if not complete:
                found.append(tuple(range_nodes(begin, end)))
            break
        split = 1 << ((n - 1).bit_length() - 1)
        if m <= split:
            found.append(tuple(range_nodes(begin + split, end)))
            end = begin + split
        else:
            found.append(tuple(range_nodes(begin, begin + split)))
            m -= split
            begin += split
            complete = False
    return ProofPlan(tuple(reversed(found)))


def inclusion_proof(index: int, size: int, read_nodes: NodeReader) -> list[bytes]:
    """Inclusion proof (RFC 9162 PATH) of leaf ``index`` in the tree of ``size`` leaves."""
    return inclusion_nodes(index, size).build(read_nodes)


def consistency_proof(size1: int, size2: int, read_nodes: NodeReader) -> list[bytes]:
    """Consistency proof (RFC 9162 PROOF) between tree sizes ``size1`` and ``size2``."""
    return consistency_nodes(size1, size2).build(read_nodes)


def expected_inclusion_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of ``index`` in a tree of ``size`` leaves."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def expected_consistency_length(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof ``0 < size1 < size2``."""
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    trailing_zeros = (size1 & -size1).bit_length() - 1
    power_of_two = size1 & (size1 - 1) == 0
    return (0 if power_of_two else 1) + inner - trailing_zeros + border
