"""The verifiable index of each partition in PostgreSQL, maintained at checkpoint time.

The checkpointer calls :func:`commit_index` in the transaction (and under the advisory
lock) in which it signs a checkpoint: the map is brought from its last signed size to the
checkpoint's size by reading the new leaves' rows, the new (key, leaf) entries and the
rewritten tree nodes are stored (nodes are versioned by map size, so a lookup proof can be
made at any earlier index checkpoint), and the index checkpoint (the checkpoint plus the
``protocolo-vindex/v1`` extension line) is signed with the partition's log key. Keeping it
at checkpoint time keeps it out of the projector's hot path; its cost is measured by
``bench/index_bench.py``. Formats: docs/evidence-format.md §11; why this commitment:
docs/checkpoints.md.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.attestation.map_stream import SortedMapBuilder
from protocolo.evidence.checkpoint import Checkpoint, sign_checkpoint
from protocolo.evidence.note import Ed25519NoteSigner, encode_base64
from protocolo.evidence.vindex import (
    BLIND_INDEX_FIELDS,
    EMPTY,
    EXTENSION_PREFIX,
    KEY_BITS,
    LookupProof,
    MapKey,
    MapTree,
    Node,
    NodeFetch,
    Position,
    finished_nodes,
    inner_hash,
    leaf_node_hash,
    list_hash,
    map_keys,
    path_positions,
    prefix_of,
    prove,
)
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import HEADER_SIZE, DecodeError, read_body, split


class IndexRefused(Exception):
    """The index cannot be brought to the checkpoint's size (leaf rows missing)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def leaf_keys(catalogue: SchemaCatalogue, key: bytes | None, value: bytes) -> list[MapKey]:
    """The map function (§11.1) of one leaf: the value decoded with its *writer* schema
    (not resolved into the current one: the fields are the ones the producer wrote).
    A value whose writer schema has no blind-index field is not decoded: it cannot carry
    one, so the result is the same, and most events are spared the decoder."""
    record: Any = None
    try:
        fingerprint, _ = split(value)
        version = catalogue.by_fingerprint(fingerprint)
        if _may_hold_blind_index(version.fingerprint, version.schema):
            record = read_body(value, version.schema, None, start=HEADER_SIZE)
    except DecodeError:
        record = None
    return map_keys(key, record)


_BLIND_FIELDS: dict[bytes, bool] = {}


def _may_hold_blind_index(fingerprint: bytes, schema: Any) -> bool:
    known = _BLIND_FIELDS.get(fingerprint)
    if known is None:
        text = json.dumps(schema)
        known = _BLIND_FIELDS[fingerprint] = any(f'"{name}"' in text for name in BLIND_INDEX_FIELDS)
    return known


def _prefix_bytes(depth: int, prefix: int) -> bytes:
    return prefix.to_bytes((depth + 7) // 8, "big")


def leaf_rows(conn: psycopg.Connection[Any], topic: str, partition: int, start: int,
              end: int, window: int = 20000,
              decodable: Sequence[bytes] | None = None) -> Iterable[tuple[int, bytes | None, bytes]]:
    """The rows of leaves [start, end) in leaf order (journal and quarantine): index, key,
    value; read ``window`` leaves at a time so a first catch-up stays in bounded memory.
    With ``decodable`` (writer-schema fingerprints), a value whose fingerprint is not one
    of them comes back as its 10-byte header only: all the map function looks at."""
    whole = "record_value" if decodable is None else (
        "CASE WHEN substring(record_value from 3 for 8) = ANY(%(f)s) THEN record_value"
        " ELSE substring(record_value from 1 for 10) END")
    for low in range(start, end, window):
        high = min(end, low + window)
        rows = conn.execute(
            f"SELECT leaf_index, record_key, {whole} FROM journal"
            " WHERE topic = %(t)s AND kafka_partition = %(p)s"
            " AND leaf_index >= %(a)s AND leaf_index < %(b)s"
            " UNION ALL SELECT leaf_index, record_key, coalesce(record_value, ''::bytea)"
            " FROM quarantine WHERE topic = %(t)s AND kafka_partition = %(p)s"
            " AND leaf_index >= %(a)s AND leaf_index < %(b)s ORDER BY 1",
            {"t": topic, "p": partition, "a": low, "b": high,
             "f": list(decodable or ())}).fetchall()
        for index, key, value in rows:
            yield int(index), None if key is None else bytes(key), bytes(value)


def blind_index_fingerprints(catalogue: SchemaCatalogue) -> list[bytes]:
    """The writer schemas that have a blind-index field (the values worth reading whole)."""
    return [v.fingerprint for t in catalogue.event_types() for v in catalogue.versions(t)
            if _may_hold_blind_index(v.fingerprint, v.schema)]


ENTRY_BATCH = 50000
"""Entries (and nodes of a first build) written per COPY: what the checkpointer holds."""
KEY_BATCH = 5000
UPDATE_KEYS = 20000
"""Keys of a checkpoint's stretch applied at a time, in key order (a stretch after an
outage can hold millions): the map is the same, memory is one chunk."""
CACHED_DEPTH = 14
"""Levels of each partition's tree kept in memory between checkpoints (at most 2^15 nodes):
a long-running checkpointer then reads only the deeper nodes of the paths it updates."""
_TREES: dict[tuple[Any, ...], tuple[int, bytes, MapTree]] = {}
"""Per database and partition: (map size, map root, tree) after the last update. Used only
while the database's newest index checkpoint has that size and root (a rolled-back
transaction or another checkpointer makes it stale: it is dropped)."""


@dataclass(frozen=True)
class IndexCheckpoint:
    topic: str
    partition: int
    size: int
    root: bytes
    map_root: bytes
    origin: str
    note: bytes


class StoredIndex:
    """One partition's index in the database."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, partition: int) -> None:
        self.conn = conn
        self.topic = topic
        self.partition = partition

    def map_size(self) -> int:
        return self.latest()[0]

    def latest(self) -> tuple[int, bytes]:
        """(size, map root) of the newest index checkpoint; (0, EMPTY) before the first."""
        row = self.conn.execute(
            "SELECT tree_size, map_root FROM vindex_checkpoints WHERE topic = %s"
            " AND kafka_partition = %s ORDER BY tree_size DESC LIMIT 1",
            (self.topic, self.partition)).fetchone()
        return (0, EMPTY) if row is None else (int(row[0]), bytes(row[1]))

    def _cache_key(self) -> tuple[Any, ...]:
        info = self.conn.info
        return (info.host, info.port, info.dbname, self.topic, self.partition)

    def tree(self, size: int) -> MapTree:
        """The tree of map state ``size``, read on demand."""
        return MapTree(self.fetcher(size))

    def fetcher(self, size: int) -> NodeFetch:
        """Reads nodes of map state ``size``."""
        def fetch(positions: Sequence[Position]) -> Mapping[Position, Node]:
            return {p: Node(h, k, lh) for p, (h, k, lh) in self._probe(positions, size, False).items()}
        return fetch

    def written_at(self, positions: Sequence[Position],
                   size: int) -> dict[Position, tuple[bytes, bytes | None, bytes | None]]:
        """The rows written at exactly map size ``size`` at ``positions``: (hash, leaf key,
        list hash) by position."""
        return self._probe(positions, size, True)

    def _probe(self, positions: Sequence[Position], size: int,
               exact: bool) -> dict[Position, tuple[bytes, bytes | None, bytes | None]]:
        """The node at each of ``positions`` written at map size ``size`` (``exact``) or in
        force at map state ``size`` (the newest written at or below it)."""
        # one primary-key probe per position (LATERAL): a join the planner may turn into a
        # scan of every node made the cost grow with the map
        version = "map_size = %s" if exact else "map_size <= %s ORDER BY map_size DESC LIMIT 1"
        rows = self.conn.execute(
            "SELECT q.depth, q.prefix, n.hash, n.leaf_key, n.list_hash"
            " FROM unnest(%s::smallint[], %s::bytea[]) AS q(depth, prefix)"
            " CROSS JOIN LATERAL (SELECT hash, leaf_key, list_hash FROM vindex_nodes"
            " WHERE topic = %s AND kafka_partition = %s AND depth = q.depth"
            f" AND prefix = q.prefix AND {version}) n",
            ([d for d, _ in positions], [_prefix_bytes(d, p) for d, p in positions],
             self.topic, self.partition, size)).fetchall()
        return {(int(d), int.from_bytes(p, "big")): (h, k, lh) for d, p, h, k, lh in rows}

    def indexes(self, khash: bytes, size: int) -> list[int]:
        return [int(i) for (i,) in self.conn.execute(
            "SELECT leaf_index FROM vindex_entries WHERE topic = %s AND kafka_partition = %s"
            " AND key_hash = %s AND leaf_index < %s ORDER BY leaf_index",
            (self.topic, self.partition, khash, size))]

    def prove(self, key: MapKey, size: int) -> LookupProof:
        """The lookup proof of ``key`` at the index checkpoint of ``size`` leaves."""
        tree = self.tree(size)
        tree.prefetch(path_positions(key.hash, max(8, size.bit_length() + 4)))  # one query
        return prove(tree, key, size, lambda k: self.indexes(k, size))

    def advance(self, catalogue: SchemaCatalogue, size: int) -> bytes:
        """Bring the stored map from its last signed size to ``size``; its root."""
        start, start_root = self.latest()
        cached = _TREES.pop(self._cache_key(), None)
        if cached is not None and cached[:2] == (start, start_root):
            tree = cached[2].reading_from(self.fetcher(size))
        else:
            tree = self.tree(size)
        if start >= size:
            return tree.root()
        written, total = self._store_entries(catalogue, start, size, keep_keys=start > 0)
        if start == 0:  # the first index of a partition: built in key order, never held whole
            return self._build_in_key_order(size, total)
        touched = sorted(written)
        pending: dict[Position, Node] = {}
        for low in range(0, len(touched), UPDATE_KEYS):  # in key order: memory is one chunk
            chunk = touched[low:low + UPDATE_KEYS]
            later = touched[low + UPDATE_KEYS:low + UPDATE_KEYS + 1]
            lists = {bytes(k): [int(i) for i in v] for k, v in self.conn.execute(
                "SELECT key_hash, array_agg(leaf_index ORDER BY leaf_index) FROM vindex_entries"
                " WHERE topic = %s AND kafka_partition = %s AND key_hash = ANY(%s)"
                " GROUP BY key_hash", (self.topic, self.partition, chunk))}
            tree.prefetch_paths(chunk)
            _refuse_unfit(tree, lists, start, start_root if low == 0 else tree.root(), written)
            pending.update(tree.update({k: list_hash(v) for k, v in lists.items()}))
            bound = int.from_bytes(later[0], "big") if later else None
            self._store_nodes(finished_nodes(pending, bound).items(), size)
            if later:
                tree.forget_below(CACHED_DEPTH, tree.unfinished(pending))
        root = tree.root()
        tree.forget_below(CACHED_DEPTH)
        _TREES[self._cache_key()] = (size, root, tree)
        return root

    def _store_entries(self, catalogue: SchemaCatalogue, start: int, size: int,
                       keep_keys: bool) -> tuple[dict[bytes, int], int]:
        """Store the (key, leaf) entries of leaves [start, size), ENTRY_BATCH at a time;
        how many each key hash touched got (when ``keep_keys``) and how many in all."""
        entries: list[tuple[bytes, int, str, str]] = []
        touched: dict[bytes, int] = {}
        total = 0
        expected = start
        for index, key, value in leaf_rows(self.conn, self.topic, self.partition, start, size,
                                           decodable=blind_index_fingerprints(catalogue)):
            if index != expected:
                break
            entries += [(k.hash, index, k.kind, k.value) for k in leaf_keys(catalogue, key, value)]
            expected += 1
            if len(entries) >= ENTRY_BATCH:  # leaf_rows has fetched its window: the connection is free
                total += self._copy_entries(entries, touched if keep_keys else None)
                entries = []
        if expected != size:
            raise IndexRefused("index-leaves-missing",
                               f"leaf {expected} has no journal or quarantine row (the index "
                               "is made from the rows; run protocolo verify)")
        total += self._copy_entries(entries, touched if keep_keys else None)
        return touched, total

    def _copy_entries(self, entries: list[tuple[bytes, int, str, str]],
                      touched: dict[bytes, int] | None) -> int:
        """Write ``entries``, counting them per key hash in ``touched``; how many."""
        try:
            with self.conn.cursor() as cur, cur.copy(
                    "COPY vindex_entries (topic, kafka_partition, key_hash, leaf_index, kind,"
                    " key_value) FROM STDIN") as copy:
                for entry in entries:
                    copy.write_row((self.topic, self.partition, *entry))
        except psycopg.errors.UniqueViolation:
            raise IndexRefused("index-entries-altered", "an entry of a leaf past the last index "
                               "checkpoint is stored already (run protocolo verify)") from None
        if touched is not None:
            for entry in entries:
                touched[entry[0]] = touched.get(entry[0], 0) + 1
        return len(entries)

    def _store_nodes(self, nodes: Iterable[tuple[Position, Node]], size: int) -> None:
        with self.conn.cursor() as cur, cur.copy(
                "COPY vindex_nodes (topic, kafka_partition, depth, prefix, map_size, hash,"
                " leaf_key, list_hash) FROM STDIN") as copy:
            for (d, p), node in nodes:
                copy.write_row((self.topic, self.partition, d, _prefix_bytes(d, p), size,
                                node.hash, node.leaf_key, node.list_hash))

    def _build_in_key_order(self, size: int, written: int) -> bytes:
        """Build the map of the stored entries below ``size`` in one pass over the keys in
        key-hash order (the primary key's order: no sort), writing nodes as they are done;
        refused unless they are the ``written`` entries the rows just gave."""
        done: list[tuple[Position, Node]] = []
        seen = 0
        builder = SortedMapBuilder(lambda position, node: done.append((position, node)))
        with self.conn.cursor(name=f"vindex_build_{self.partition}") as cur:
            cur.execute("SELECT key_hash, array_agg(leaf_index ORDER BY leaf_index)"
                        " FROM vindex_entries WHERE topic = %s AND kafka_partition = %s"
                        " AND leaf_index < %s GROUP BY key_hash ORDER BY key_hash",
                        (self.topic, self.partition, size))
            while rows := cur.fetchmany(KEY_BATCH):
                for khash, indexes in rows:
                    builder.add(bytes(khash), list_hash([int(i) for i in indexes]))
                    seen += len(indexes)
                if len(done) >= ENTRY_BATCH:  # between fetches: the cursor stays open
                    self._store_nodes(done, size)
                    done.clear()
        if seen != written:
            raise IndexRefused("index-entries-altered", f"{seen - written} entries below leaf "
                               f"{size} are stored though the partition has no index checkpoint "
                               "(run protocolo verify)")
        root = builder.finish()
        self._store_nodes(done, size)
        return root


def _refuse_unfit(tree: MapTree, lists: Mapping[bytes, list[int]], start: int,
                  root: bytes, written: Mapping[bytes, int]) -> None:
    """Refuse to build on a stored map that is not the one last signed: the nodes on the
    paths of the keys about to change must hash up to ``root`` (the map root of size
    ``start``, or the root the update has reached), and each key's entries below ``start``
    must be the list its map leaf holds, and from ``start`` on just the ``written`` entries
    the rows gave. Otherwise the next index checkpoint would sign a map that leaves records
    out of a key's list (an entry deleted), or puts another's in (an entry slipped in),
    while every lookup proof against it verifies. Raises :class:`IndexRefused`."""
    unfit = unfit_path_node(tree, lists, root)
    if unfit is not None:
        raise IndexRefused("index-nodes-altered", f"the stored map node {unfit} of map size "
                           f"{start} does not hash up to its signed map root (run protocolo "
                           "verify)")
    for khash, indexes in lists.items():
        earlier = [i for i in indexes if i < start]
        if len(indexes) - len(earlier) != written.get(khash, 0):
            raise IndexRefused("index-entries-altered", f"entries are stored for key hash "
                               f"{khash.hex()} from leaf {start} on that no row gives (run "
                               "protocolo verify)")
        if not leaf_holds(tree, khash, earlier):
            raise IndexRefused("index-entries-altered", f"the entries stored for key hash "
                               f"{khash.hex()} below leaf {start} are not the list its map "
                               "leaf holds (run protocolo verify)")


def leaf_holds(tree: MapTree, khash: bytes, indexes: Sequence[int]) -> bool:
    """Whether the map leaf of ``khash`` in ``tree`` commits to ``indexes``: its list hash,
    or no leaf of that key when the list is empty."""
    _, node = tree.path(khash)
    held = node.list_hash if node is not None and node.leaf_key == khash else None
    return list_hash(indexes) == held if held is not None else not indexes


def unfit_path_node(tree: MapTree, khashes: Iterable[bytes], root: bytes,
                    checked: set[Position] | None = None) -> Position | None:
    """The first node held on the paths of ``khashes`` (or beside them) that does not fit
    under ``root``: an inner node whose children do not hash to it, a leaf that is not its
    own key's; None when every one fits. ``checked``: positions already known to fit (not
    hashed again), to which those found fitting are added."""
    known = set() if checked is None else checked
    if (0, 0) not in known:
        if tree.root() != root:
            return (0, 0)
        known.add((0, 0))
    frontier = sorted({int.from_bytes(k, "big") for k in khashes})
    depth = 0
    while frontier and depth < KEY_BITS:
        inner: dict[int, Node] = {}
        for k in frontier:
            prefix = prefix_of(k, depth)
            node = tree.get(depth, prefix)
            if node is not None and node.leaf_key is None:
                inner[prefix] = node
            elif node is not None and not _own_leaf(node, depth, prefix):
                return (depth, prefix)
        for prefix, node in inner.items():
            children = ((depth + 1, 2 * prefix), (depth + 1, 2 * prefix + 1))
            if children[0] in known and children[1] in known:
                continue
            left, right = tree.get(*children[0]), tree.get(*children[1])
            if inner_hash(EMPTY if left is None else left.hash,
                          EMPTY if right is None else right.hash) != node.hash:
                return (depth, prefix)
            known.update(children)
        frontier = [k for k in frontier if prefix_of(k, depth) in inner]
        depth += 1
    return None


def _own_leaf(node: Node, depth: int, prefix: int) -> bool:
    """A leaf at (depth, prefix) of its own key and list."""
    key = node.leaf_key or b""
    return (node.list_hash is not None and len(key) == 32
            and prefix_of(int.from_bytes(key, "big"), depth) == prefix
            and leaf_node_hash(key, node.list_hash) == node.hash)


def index_checkpoint_text(origin: str, size: int, root: bytes, map_root: bytes) -> Checkpoint:
    return Checkpoint(origin, size, root, (EXTENSION_PREFIX + encode_base64(map_root),))


@functools.cache
def published_catalogue() -> SchemaCatalogue:
    """The published schemas (the map function decodes with the writer schema)."""
    return SchemaCatalogue.load()


def commit_index(conn: psycopg.Connection[Any], catalogue: SchemaCatalogue,
                 signer: Ed25519NoteSigner, topic: str, partition: int, origin: str, size: int,
                 root: bytes) -> IndexCheckpoint:
    """Advance the map to the checkpoint of ``size`` leaves and ``root`` and sign the index
    checkpoint. Call inside the checkpoint's transaction."""
    index = StoredIndex(conn, topic, partition)
    map_root = index.advance(catalogue, size)
    note = sign_checkpoint(index_checkpoint_text(origin, size, root, map_root), [signer])
    conn.execute(
        "INSERT INTO vindex_checkpoints (topic, kafka_partition, tree_size, root_hash, map_root,"
        " origin, note, key_name, key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (topic, kafka_partition, tree_size) DO NOTHING",
        (topic, partition, size, root, map_root, origin, note.decode(), signer.name,
         f"{signer.key_id:08x}"))
    return IndexCheckpoint(topic, partition, size, root, map_root, origin, note)


def index_checkpoints(conn: psycopg.Connection[Any], topic: str,
                      partition: int) -> list[IndexCheckpoint]:
    """The stored index checkpoints of a partition, oldest first."""
    return [IndexCheckpoint(topic, partition, int(s), bytes(r), bytes(m), o, n.encode())
            for s, r, m, o, n in conn.execute(
                "SELECT tree_size, root_hash, map_root, origin, note FROM vindex_checkpoints"
                " WHERE topic = %s AND kafka_partition = %s ORDER BY tree_size",
                (topic, partition))]
