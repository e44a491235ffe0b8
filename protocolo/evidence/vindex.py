"""The verifiable index of one partition's log: key → every leaf index whose record has it.

The log proves that each record is in it; only a map committed next to the checkpoint can
prove that a set of records is *every* record of a contact or a customer. The design is
transparency-dev's verifiable index (google/trillian-examples ``experimental/vindex``, the
"map sandwich"): a map function turns each leaf of the input log into hashed keys, the map
holds for each key hash the ordered list of leaf indexes, the map's value commitment is the
hash of that list, and the map's root is committed with the input checkpoint. The Merkle
structure is a sparse Merkle tree over the 256-bit key hashes in which a subtree holding one
key collapses to that key's leaf node (the compressed form of AKD's and Diem's sparse
trees), so a map of ``k`` keys has about ``2k`` nodes and paths of about ``log2 k``.

Specified byte by byte in ``docs/evidence-format.md`` §11; standard library only, so the
offline verifier can use it.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocolo.evidence.errors import ProofError
from protocolo.evidence.note import decode_base64, encode_base64

EMPTY = bytes(32)
"""The hash of an empty subtree (and the root of an empty map)."""
LEAF_PREFIX = b"\x10"
INNER_PREFIX = b"\x11"
KEY_BITS = 256
PROOF_FORMAT = "protocolo-vindex-lookup/v1"
EXTENSION_PREFIX = "protocolo-vindex/v1 "
"""Checkpoint extension line that commits the map root: ``protocolo-vindex/v1 <base64>``."""

BLIND_INDEX_FIELDS = {"cpf_index": "cpf-index", "customer_code_index": "customer-code-index"}
_PROTOCOL = re.compile(rb"[0-9]{15}")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SUBJECT = re.compile(rb"[0-9a-f]{64}")


class IndexProofError(ProofError):
    """A lookup proof is malformed or does not verify against the map root."""


@dataclass(frozen=True, order=True)
class MapKey:
    """One key of the map: its kind (``protocol``, ``id``, ``subject``, ``key``,
    ``key-hex``, ``cpf-index``, ``customer-code-index``) and its text."""

    kind: str
    value: str

    @property
    def hash(self) -> bytes:
        return key_hash(self.kind, self.value)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def key_hash(kind: str, value: str) -> bytes:
    """SHA-256 of the UTF-8 text ``kind:value``: the key's position in the map."""
    return hashlib.sha256(f"{kind}:{value}".encode()).digest()


def kafka_key_entry(key: bytes | None) -> MapKey | None:
    """The map key of a record's Kafka key, its kind read from the key's own syntax (so a
    record whose value cannot be decoded still maps): 15 digits a protocol number, a
    canonical UUID an event's own id (request, approval, access), 64 hex digits a subject
    (blind index); any other UTF-8 key ``key``, bytes that are not UTF-8 ``key-hex``."""
    if key is None:
        return None
    if _PROTOCOL.fullmatch(key):
        return MapKey("protocol", key.decode("ascii"))
    if _UUID.fullmatch(key):
        return MapKey("id", key.decode("ascii"))
    if _SUBJECT.fullmatch(key):
        return MapKey("subject", key.decode("ascii"))
    try:
        return MapKey("key", key.decode("utf-8"))
    except UnicodeDecodeError:
        return MapKey("key-hex", key.hex())


def blind_index_entries(record: Any) -> set[MapKey]:
    """Every non-null string field named ``cpf_index`` or ``customer_code_index``, at any
    depth of the decoded record (records, arrays, maps, union branches)."""
    found: set[MapKey] = set()
    stack = [record]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for name, value in item.items():
                kind = BLIND_INDEX_FIELDS.get(name) if isinstance(name, str) else None
                if kind is not None and isinstance(value, str):
                    found.add(MapKey(kind, value))
                else:
                    stack.append(value)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def map_keys(kafka_key: bytes | None, record: Any | None) -> list[MapKey]:
    """The map function: the keys of one leaf, sorted, each once. ``record`` is the value
    decoded with its writer schema, or ``None`` when it does not decode."""
    keys = blind_index_entries(record) if record is not None else set()
    entry = kafka_key_entry(kafka_key)
    if entry is not None:
        keys.add(entry)
    return sorted(keys)


def list_hash(indexes: Sequence[int]) -> bytes:
    """SHA-256 of the leaf indexes, each a u64 big-endian, in increasing order."""
    return hashlib.sha256(b"".join(i.to_bytes(8, "big") for i in indexes)).digest()


def leaf_node_hash(khash: bytes, lhash: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + khash + lhash).digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(INNER_PREFIX + left + right).digest()


def bit_at(khash: int, depth: int) -> int:
    """Bit ``depth`` of a key hash, most significant first (0 chooses the left child)."""
    return (khash >> (KEY_BITS - 1 - depth)) & 1


def prefix_of(khash: int, depth: int) -> int:
    """The first ``depth`` bits of a key hash: which node of that depth holds it."""
    return khash >> (KEY_BITS - depth)


@dataclass(frozen=True)
class Node:
    """A stored node: an inner node (``leaf_key`` None) or the leaf of one key."""

    hash: bytes
    leaf_key: bytes | None = None
    list_hash: bytes | None = None


Position = tuple[int, int]  # (depth, prefix)
NodeFetch = Callable[[Sequence[Position]], Mapping[Position, Node]]


def path_positions(khash: bytes, depth: int) -> list[Position]:
    """The nodes on ``khash``'s path down to ``depth`` and their siblings: what a lookup
    or an update there reads, so a store can fetch them in one query."""
    key = int.from_bytes(khash, "big")
    positions = [(0, 0)]
    for d in range(1, min(depth, KEY_BITS) + 1):
        prefix = prefix_of(key, d)
        positions += [(d, prefix), (d, prefix ^ 1)]
    return positions


class MapTree:
    """The map's nodes, read through ``fetch`` (a database, or nothing for a map held in
    memory) and cached; :meth:`update` adds or grows lists and returns the nodes it wrote."""

    def __init__(self, fetch: NodeFetch | None = None) -> None:
        self._nodes: dict[Position, Node | None] = {}
        self._fetch = fetch

    def reading_from(self, fetch: NodeFetch | None) -> MapTree:
        """Read what is not held through ``fetch`` from now on (a new connection)."""
        self._fetch = fetch
        return self

    def forget_below(self, depth: int, keep: Mapping[Position, Node | None] | None = None) -> None:
        """Drop the nodes deeper than ``depth`` (a cache kept between updates stays small;
        they are read again when needed), but those of ``keep``: nodes an update in
        progress has rewritten and not yet stored."""
        for position in [p for p in self._nodes if p[0] > depth]:
            del self._nodes[position]
        self._nodes.update(keep or {})

    def unfinished(self, pending: Mapping[Position, Node]) -> dict[Position, Node | None]:
        """What a later part of an update in key order still reads of the nodes it left
        ``pending``: those nodes and their children, as held."""
        keep: dict[Position, Node | None] = dict(pending)
        for depth, prefix in pending:
            for child in ((depth + 1, 2 * prefix), (depth + 1, 2 * prefix + 1)):
                if child in self._nodes:
                    keep[child] = self._nodes[child]
        return keep

    def prefetch(self, positions: Iterable[Position]) -> None:
        missing = [p for p in positions if p not in self._nodes]
        if not missing or self._fetch is None:
            return
        found = self._fetch(missing)
        for position in missing:
            self._nodes[position] = found.get(position)

    def prefetch_paths(self, khashes: Iterable[bytes]) -> None:
        """Fetch the nodes on the paths of ``khashes`` and their siblings, one level per
        query, following each path only while it runs through inner nodes: what
        :meth:`update` and :meth:`path` read, in about ``log2(keys)`` queries."""
        frontier = sorted({int.from_bytes(k, "big") for k in khashes})
        self.prefetch([(0, 0)])
        depth = 0
        while frontier and depth < KEY_BITS:
            frontier = [k for k in frontier if _is_inner(self._nodes.get((depth, prefix_of(k, depth))))]
            depth += 1
            wanted: set[Position] = set()
            for k in frontier:
                prefix = prefix_of(k, depth)
                wanted.add((depth, prefix))
                wanted.add((depth, prefix ^ 1))
            self.prefetch(sorted(wanted))

    def get(self, depth: int, prefix: int) -> Node | None:
        position = (depth, prefix)
        if position not in self._nodes:
            self.prefetch([position])
        return self._nodes.get(position)

    def nodes(self) -> dict[Position, Node]:
        """Every node held (for a map built in memory: the whole tree)."""
        return {p: n for p, n in self._nodes.items() if n is not None}

    def root(self) -> bytes:
        node = self.get(0, 0)
        return EMPTY if node is None else node.hash

    def update(self, changes: Mapping[bytes, bytes]) -> dict[Position, Node]:
        """Set the list hash of each key hash in ``changes`` (new keys or longer lists;
        keys are never removed). Returns the nodes written, by position."""
        written: dict[Position, Node] = {}
        if changes:
            items = sorted((int.from_bytes(k, "big"), v) for k, v in changes.items())
            self._update(0, 0, items, written)
        return written

    def _put(self, depth: int, prefix: int, node: Node, written: dict[Position, Node]) -> Node:
        self._nodes[(depth, prefix)] = node
        written[(depth, prefix)] = node
        return node

    def _update(self, depth: int, prefix: int, items: list[tuple[int, bytes]],
                written: dict[Position, Node]) -> Node:
        current = self.get(depth, prefix)
        if current is not None and current.leaf_key is None:
            left_items, right_items = _split(items, depth, prefix)
            left = self._child(depth + 1, 2 * prefix, left_items, written)
            right = self._child(depth + 1, 2 * prefix + 1, right_items, written)
            return self._put(depth, prefix, Node(inner_hash(left, right)), written)
        if current is not None:
            assert current.leaf_key is not None and current.list_hash is not None
            own = int.from_bytes(current.leaf_key, "big")
            if all(k != own for k, _ in items):
                items = sorted([*items, (own, current.list_hash)])
        return self._build(depth, prefix, items, written)

    def _child(self, depth: int, prefix: int, items: list[tuple[int, bytes]],
               written: dict[Position, Node]) -> bytes:
        if items:
            return self._update(depth, prefix, items, written).hash
        node = self.get(depth, prefix)
        return EMPTY if node is None else node.hash

    def _build(self, depth: int, prefix: int, items: list[tuple[int, bytes]],
               written: dict[Position, Node]) -> Node:
        if len(items) == 1:
            khash, lhash = items[0][0].to_bytes(32, "big"), items[0][1]
            return self._put(depth, prefix, Node(leaf_node_hash(khash, lhash), khash, lhash),
                             written)
        left_items, right_items = _split(items, depth, prefix)
        hashes = []
        for child, part in ((2 * prefix, left_items), (2 * prefix + 1, right_items)):
            if part:
                hashes.append(self._build(depth + 1, child, part, written).hash)
            else:
                self._nodes[(depth + 1, child)] = None
                hashes.append(EMPTY)
        return self._put(depth, prefix, Node(inner_hash(hashes[0], hashes[1])), written)

    def path(self, khash: bytes) -> tuple[list[bytes], Node | None]:
        """The siblings from the root down to where ``khash``'s path ends, and the node
        there (``None`` for an empty subtree, else a leaf: this key's or another's)."""
        key = int.from_bytes(khash, "big")
        siblings: list[bytes] = []
        node = self.get(0, 0)
        depth = 0
        while node is not None and node.leaf_key is None:
            child = prefix_of(key, depth + 1)
            self.prefetch([(depth + 1, child), (depth + 1, child ^ 1)])
            sibling = self.get(depth + 1, child ^ 1)
            siblings.append(EMPTY if sibling is None else sibling.hash)
            node = self.get(depth + 1, child)
            depth += 1
        return siblings, node


def _is_inner(node: Node | None) -> bool:
    return node is not None and node.leaf_key is None


def _split(items: list[tuple[int, bytes]], depth: int,
           prefix: int) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    boundary = ((2 * prefix + 1) << (KEY_BITS - 1 - depth),)
    cut = bisect.bisect_left(items, boundary)
    return items[:cut], items[cut:]


def finished_nodes(pending: dict[Position, Node], bound: int | None) -> dict[Position, Node]:
    """Take out of ``pending`` the nodes no key from ``bound`` on (None: no key) falls
    under: an update applied in key order will not rewrite them again."""
    done = {p: n for p, n in pending.items()
            if bound is None or (p[1] + 1) << (KEY_BITS - p[0]) <= bound}
    for position in done:
        del pending[position]
    return done


@dataclass(frozen=True)
class LookupProof:
    """For one key at one map state (the map of the first ``size`` leaves): its list of
    leaf indexes, or ``None`` for absence, and the path that proves it under the root."""

    key: MapKey
    size: int
    indexes: tuple[int, ...] | None
    siblings: tuple[bytes, ...]
    other_leaf: tuple[bytes, bytes] | None = None  # (key hash, list hash) where the path ends

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT,
            "kind": self.key.kind,
            "value": self.key.value,
            "size": self.size,
            "indexes": None if self.indexes is None else list(self.indexes),
            "siblings": [encode_base64(s) for s in self.siblings],
            "other_leaf": None if self.other_leaf is None else {
                "key_hash": encode_base64(self.other_leaf[0]),
                "list_hash": encode_base64(self.other_leaf[1]),
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> LookupProof:
        """Parse a lookup proof; anything malformed is ``malformed-lookup-proof``."""
        def bad(message: str) -> IndexProofError:
            return IndexProofError("malformed-lookup-proof", message)

        if not isinstance(data, dict) or data.get("format") != PROOF_FORMAT:
            raise bad(f"a lookup proof is a JSON object with format {PROOF_FORMAT!r}")
        kind, value, size = data.get("kind"), data.get("value"), data.get("size")
        if not isinstance(kind, str) or not isinstance(value, str):
            raise bad("kind and value must be strings")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
            raise bad("size must be an integer between 0 and 2^63-1")
        raw = data.get("indexes")
        indexes: tuple[int, ...] | None = None
        if raw is not None:
            if not isinstance(raw, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in raw):
                raise bad("indexes must be null or a list of integers")
            indexes = tuple(raw)
        siblings = data.get("siblings")
        if not isinstance(siblings, list) or not all(isinstance(s, str) for s in siblings):
            raise bad("siblings must be a list of base64 strings")
        decoded = tuple(decode_base64(s, "sibling", IndexProofError) for s in siblings)
        other = data.get("other_leaf")
        other_leaf: tuple[bytes, bytes] | None = None
        if other is not None:
            if not isinstance(other, dict) or not all(
                    isinstance(other.get(f), str) for f in ("key_hash", "list_hash")):
                raise bad("other_leaf must be null or {key_hash, list_hash}")
            other_leaf = (decode_base64(other["key_hash"], "other_leaf.key_hash", IndexProofError),
                          decode_base64(other["list_hash"], "other_leaf.list_hash",
                                        IndexProofError))
        return cls(MapKey(kind, value), size, indexes, decoded, other_leaf)


def prove(tree: MapTree, key: MapKey, size: int,
          indexes_of: Callable[[bytes], Sequence[int]]) -> LookupProof:
    """The lookup proof of ``key`` in ``tree`` (the map state of ``size`` leaves);
    ``indexes_of`` gives the stored list of a key hash present in the map."""
    khash = key.hash
    siblings, node = tree.path(khash)
    if node is None:
        return LookupProof(key, size, None, tuple(siblings))
    assert node.leaf_key is not None and node.list_hash is not None
    if node.leaf_key == khash:
        indexes = tuple(indexes_of(khash))
        if list_hash(indexes) != node.list_hash:
            raise IndexProofError("list-mismatch",
                                  f"the stored list of {key} does not hash to its map leaf")
        return LookupProof(key, size, indexes, tuple(siblings))
    return LookupProof(key, size, None, tuple(siblings), (node.leaf_key, node.list_hash))


def verify_lookup(proof: LookupProof, root: bytes, size: int,
                  key: MapKey | None = None) -> tuple[int, ...] | None:
    """Check ``proof`` against the map ``root`` of the state of ``size`` leaves (both from
    a signed checkpoint) and, if given, that it is ``key``'s. Returns the leaf indexes, or
    ``None`` when the key is proved absent. Raises :class:`IndexProofError`."""
    if key is not None and proof.key != key:
        raise IndexProofError("other-key", f"the lookup proof is for {proof.key}, not {key}")
    if proof.size != size:
        raise IndexProofError("other-checkpoint", f"the lookup proof is for the map of size "
                              f"{proof.size}, the checkpoint has size {size}")
    return verify_path(proof, proof.key.hash, root, size)


def verify_path(proof: LookupProof, khash: bytes, root: bytes, size: int) -> tuple[int, ...] | None:
    """:func:`verify_lookup` for the key hash ``khash`` (the proof's key is not hashed):
    the tree-level check, which vectors with chosen key hashes exercise."""
    if len(root) != 32 or any(len(s) != 32 for s in proof.siblings):
        raise IndexProofError("hash-length", "every hash must be 32 bytes")
    if len(proof.siblings) > KEY_BITS:
        raise IndexProofError("proof-length", "a path has at most 256 siblings")
    node = _terminal(proof, khash, size)
    key_int = int.from_bytes(khash, "big")
    depth = len(proof.siblings)
    if depth and proof.siblings[-1] == EMPTY:
        raise IndexProofError("non-canonical", "the path ends next to an empty subtree: the "
                              "map would have stopped one level higher")
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        node = inner_hash(sibling, node) if bit_at(key_int, d) else inner_hash(node, sibling)
    if node != root:
        raise IndexProofError("root-mismatch",
                              f"the lookup proof of {proof.key} does not lead to the map root")
    return proof.indexes


def _terminal(proof: LookupProof, khash: bytes, size: int) -> bytes:
    """The hash where the proof's path ends, after its own rules are checked."""
    if proof.indexes is not None:
        if proof.other_leaf is not None:
            raise IndexProofError("malformed-lookup-proof", "a proof of presence has no other_leaf")
        if not proof.indexes:
            raise IndexProofError("empty-list", "a key in the map has at least one leaf index")
        if any(b <= a for a, b in zip(proof.indexes, proof.indexes[1:], strict=False)):
            raise IndexProofError("list-order", "leaf indexes must be strictly increasing")
        if proof.indexes[0] < 0 or proof.indexes[-1] >= size:
            raise IndexProofError("index-out-of-range",
                                  f"leaf indexes must be in [0, {size})")
        return leaf_node_hash(khash, list_hash(proof.indexes))
    if proof.other_leaf is None:
        return EMPTY
    other_key, other_list = proof.other_leaf
    if len(other_key) != 32 or len(other_list) != 32:
        raise IndexProofError("hash-length", "every hash must be 32 bytes")
    depth = len(proof.siblings)
    mine, theirs = int.from_bytes(khash, "big"), int.from_bytes(other_key, "big")
    if mine == theirs or prefix_of(mine, depth) != prefix_of(theirs, depth):
        raise IndexProofError("other-leaf-off-path", "the leaf where the path ends must be "
                              "another key sharing the path's prefix")
    return leaf_node_hash(other_key, other_list)


class IndexMap:
    """A whole map held in memory (built from the leaves, for verifiers and tests)."""

    def __init__(self) -> None:
        self.size = 0
        self.lists: dict[bytes, list[int]] = {}
        self.keys: dict[bytes, MapKey] = {}
        self.tree = MapTree()
        self._pending: set[bytes] = set()

    def add_leaf(self, index: int, keys: Iterable[MapKey]) -> None:
        """Record leaf ``index`` (the next one) under each of ``keys``."""
        if index != self.size:
            raise ValueError(f"leaf {index} added to a map of size {self.size}")
        for key in keys:
            khash = key.hash
            self.keys[khash] = key
            entries = self.lists.setdefault(khash, [])
            if not entries or entries[-1] != index:
                entries.append(index)
            self._pending.add(khash)
        self.size += 1

    def commit(self) -> bytes:
        """Bring the tree up to date with the leaves added; the root."""
        self.tree.update({k: list_hash(self.lists[k]) for k in self._pending})
        self._pending.clear()
        return self.tree.root()

    def prove(self, key: MapKey) -> LookupProof:
        self.commit()
        return prove(self.tree, key, self.size, lambda k: self.lists[k])
