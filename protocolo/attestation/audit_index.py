"""`protocolo verify` for the verifiable index: the map replayed from the rows, index
checkpoint by index checkpoint, against what is stored and signed.

Anyone holding the log can rebuild the index (docs/evidence-format.md §11), so the verifier
does, the way the checkpointer built it: from one index checkpoint to the next it reads the
new leaves' rows, applies the map function and updates the map. What it does not hold (the
nodes off the paths it rewrites, the earlier leaf indexes of the keys it touches) it reads
from the stored map state of the previous index checkpoint, and checks before use: each
node read against its parent, whose hash is already established, up to the root rebuilt at
the previous checkpoint; each key's earlier list against the list hash its map leaf holds.
The stored map is never trusted; it only spares the verifier from holding the whole map.
At each index checkpoint it then

- opens the signed note with the pinned log key and compares its map root with the rebuilt
  one;
- compares the entries stored for the new leaves with the keys the rows give, key by key;
- compares each node the update wrote with the node stored at that map size.

A stored node or list found wrong is replaced by the rebuilt one for the rest of the replay
(only the differences are held), so one difference is named once. At the end the stored
entries and the stored nodes of each map size are counted against what the replay met,
which finds rows added where no key or node changed. The replay stops at the log's own
checkpoints too, from the first to the last map size the index has rows for: the
checkpointer signs a checkpoint and its index checkpoint together, so an index checkpoint
deleted is named once there (not once per node its stretch would fold into the next), and
an unsigned row at a size the log never signed is named and not used as a stop.

Memory is what one checkpoint's update touches (its keys, the paths it rewrites) plus the
top ``CACHED_DEPTH`` levels of the tree: bounded by the checkpointer's cadence
(``--every-leaves``), not by the log. The cost is about the checkpointer's own, without its
writes. Where a stored node or an earlier list is found wrong *before* it is used (so that
the rebuilt map cannot be continued from it), the finding says so and that partition's
later index checkpoints are not checked.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.audit_findings import INDEX_FORGED, INDEX_MISMATCH, Finding, FindingLog
from protocolo.attestation.index_store import (
    CACHED_DEPTH,
    IndexCheckpoint,
    StoredIndex,
    blind_index_fingerprints,
    index_checkpoints,
    leaf_holds,
    leaf_keys,
    leaf_rows,
    published_catalogue,
    unfit_path_node,
)
from protocolo.attestation.map_stream import SortedMapBuilder
from protocolo.attestation.sorted_pairs import SortedPairs
from protocolo.evidence.checkpoint import open_checkpoint, parse_log_origin
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.note import decode_base64
from protocolo.evidence.vindex import (
    EMPTY,
    EXTENSION_PREFIX,
    MapKey,
    MapTree,
    Node,
    Position,
    finished_nodes,
    list_hash,
)
from protocolo.schemas.catalogue import SchemaCatalogue

IndexProgress = Callable[[int, int, float], None]
"""Called with (partition, leaves replayed, seconds) now and then during a long replay."""
PROBE_CHUNK = 20000
"""Stored nodes compared per query."""
SPILL_PAIRS = 60000
"""(key, leaf) pairs of one stretch held in memory; beyond, the stretch is sorted on disk."""
CHUNK_KEYS = 20000
"""Keys applied at a time from a stretch sorted on disk."""
DIFFERENCES_HELD = 200000
"""Rebuilt nodes and lists held where the stored ones differ (they stand in for the rest of
the replay): past this many, a partition's index is too far from its rows to go on in
bounded memory, and its later index checkpoints are not checked."""


def audit_index(conn: psycopg.Connection[Any], topic: str, keys: LogKeys, findings: FindingLog,
                partitions: list[int], progress: IndexProgress | None = None) -> dict[str, Any]:
    """Check the index of each partition (those with index checkpoints) in one snapshot;
    what was checked: index checkpoints, keys, node versions, seconds."""
    catalogue = published_catalogue()
    started = time.monotonic()
    totals = {"index_checkpoints": 0, "keys": 0, "nodes": 0}
    with conn.transaction():
        if conn.execute("SELECT to_regclass('vindex_checkpoints')").fetchone() == (None,):
            return totals | {"seconds": 0.0}  # a ledger from before the index
        for partition in partitions:
            audit = IndexAudit(conn, topic, partition, keys, findings, catalogue, progress)
            audit.run()
            totals["index_checkpoints"] += audit.checkpoints
            totals["keys"] += audit.keys
            totals["nodes"] += audit.nodes
    return totals | {"seconds": round(time.monotonic() - started, 3)}


def signed_map_root(cp: IndexCheckpoint, keys: LogKeys) -> bytes:
    """The map root the index checkpoint's note states, after its origin is checked to be
    its partition's log, its signature with the pinned key of that origin and its columns
    with its text. Raises EvidenceError."""
    _, topic, partition = parse_log_origin(cp.origin)
    if (topic, partition) != (cp.topic, cp.partition):
        raise EvidenceError("other-log", f"its note is of {cp.origin}, not of {cp.topic} "
                            f"partition {cp.partition}")
    signed = open_checkpoint(cp.note, keys.for_origin(cp.origin), origin=cp.origin).checkpoint
    lines = [e for e in signed.extensions if e.startswith(EXTENSION_PREFIX)]
    if len(lines) != 1:
        raise EvidenceError("no-map-root", "the note has no single protocolo-vindex/v1 line")
    map_root = decode_base64(lines[0][len(EXTENSION_PREFIX):], "map root")
    if (signed.size, signed.root, map_root) != (cp.size, cp.root, cp.map_root):
        raise EvidenceError("columns-differ", "its row's size, root or map root differs from "
                            "its signed note")
    return map_root


class StoredMapUnusable(Exception):
    """A stored node or list the replay would build on is not the one the rebuilt map
    commits to: the replay cannot go on from it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _position_text(depth: int, prefix: int) -> str:
    return f"(depth {depth}, prefix {prefix:0{max(depth, 1)}b})"


class ReplayTree(MapTree):
    """The map tree as the replay holds it: nodes read from the store are checked against
    their parents before they are used, and rebuilt nodes stand in, for good, where the
    stored ones were found wrong (``corrections``)."""

    def __init__(self) -> None:
        super().__init__()
        self.root_hash = EMPTY
        self.corrections: dict[Position, Node] = {}
        self._checked: set[Position] = set()

    def check_paths(self, khashes: Iterable[bytes], size: int) -> None:
        """Check the nodes held on the paths of ``khashes`` (and their siblings) down from
        the root of map state ``size``, which must be ``root_hash``. Raises
        :class:`StoredMapUnusable` naming the first node that does not fit."""
        unfit = unfit_path_node(self, khashes, self.root_hash, self._checked)
        if unfit == (0, 0):
            raise StoredMapUnusable(f"the stored map root at map size {size} is not the "
                                    "root rebuilt from the rows")
        if unfit is not None:
            raise StoredMapUnusable(f"the stored map node {_position_text(*unfit)} at map size "
                                    f"{size} does not fit under the root rebuilt from the rows")

    def rebuilt(self, written: Iterable[Position]) -> None:
        """The update wrote ``written``: those nodes are the rebuilt map's own."""
        self._checked.update(written)
        self.root_hash = self.root()

    def forget_below(self, depth: int, keep: Mapping[Position, Node | None] | None = None) -> None:
        """Drop the nodes deeper than ``depth`` but the corrections and ``keep``."""
        super().forget_below(depth, {**(keep or {}), **self.corrections})
        self._checked = {p for p in self._checked if p[0] <= depth}
        self._checked.update(keep or {})
        self._checked.update(self.corrections)


@dataclass
class Step:
    """What the rows give for one stretch of leaves: each key's new leaf indexes."""

    keys: dict[bytes, MapKey] = field(default_factory=dict)
    indexes: dict[bytes, list[int]] = field(default_factory=dict)


class StretchKeys:
    """The keys of one stretch of leaves with their new leaf indexes: held in memory while
    they are few, sorted on disk (SortedPairs) past SPILL_PAIRS."""

    def __init__(self, pairs: Iterable[tuple[MapKey, int]]) -> None:
        self._held: Step | None = Step()
        self._disk: SortedPairs | None = None
        held, count = self._held, 0
        batch: list[tuple[MapKey, int]] = []
        for key, index in pairs:
            if self._disk is not None:
                batch.append((key, index))
                if len(batch) >= SPILL_PAIRS:
                    self._disk.add(batch)
                    batch = []
                continue
            khash = key.hash
            held.keys[khash] = key
            held.indexes.setdefault(khash, []).append(index)
            count += 1
            if count > SPILL_PAIRS:
                self._disk = SortedPairs()
                self._disk.add((held.keys[k], i) for k, indexes in held.indexes.items()
                               for i in indexes)
                self._held = None
        if self._disk is not None:
            self._disk.add(batch)

    def __enter__(self) -> StretchKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._disk is not None:
            self._disk.__exit__(None, None, None)

    def chunks(self) -> Iterator[Step]:
        """Steps of at most CHUNK_KEYS keys, in key-hash order (one step when held)."""
        if self._disk is None:
            if self._held is not None and self._held.indexes:
                yield self._held
            return
        step = Step()
        for khash, key, indexes in self._disk.by_key():
            step.keys[khash] = key
            step.indexes[khash] = indexes
            if len(step.indexes) >= CHUNK_KEYS:
                yield step
                step = Step()
        if step.indexes:
            yield step


class IndexAudit:
    """The replay of one partition's index."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, partition: int, keys: LogKeys,
                 findings: FindingLog, catalogue: SchemaCatalogue,
                 progress: IndexProgress | None = None) -> None:
        self.conn, self.topic, self.partition = conn, topic, partition
        self.log_keys, self.findings, self.catalogue = keys, findings, catalogue
        self.progress = progress
        self.store = StoredIndex(conn, topic, partition)
        self.tree = ReplayTree()
        self.decodable = blind_index_fingerprints(catalogue)
        self.fixed_lists: dict[bytes, list[int]] = {}
        self.entries_seen: dict[int, int] = {}
        self.stretch = 0
        self.node_rows: dict[int, int] = {}
        self.checkpoints = self.keys = self.nodes = 0
        self.unsigned: dict[int, int] = {}
        """Map sizes replayed without an index checkpoint: differences met there."""

    def _add(self, kind: str, size: int | None, detail: str) -> None:
        self.findings.add(Finding(kind, self.partition, None, None, "index", detail,
                                  tree_size=size))

    def _differs(self, size: int, detail: Callable[[], str]) -> None:
        """A stored node or a key's entries differ at map size ``size``: named, or only
        counted where no index checkpoint has that size (nothing is proved at it; a row
        slipped in at an older checkpoint's size would otherwise be named once per node),
        or past the findings kept with their details (the detail may cost a query)."""
        if size in self.unsigned:
            self.unsigned[size] += 1
        elif self.findings.counts[INDEX_MISMATCH] >= self.findings.limit:
            self._add(INDEX_MISMATCH, size, "")
        else:
            self._add(INDEX_MISMATCH, size, detail())

    def run(self) -> None:
        plan = self._plan()
        if plan is None:
            return
        self.checkpoints = len(plan.sizes)
        self.unsigned = {size: 0 for size in plan.sizes if size not in plan.signed}
        try:
            self._replay(plan)
        finally:
            self._name_unsigned(plan.sizes)

    def _replay(self, plan: ReplayPlan) -> None:
        started = reported = time.monotonic()
        previous = 0
        for done, size in enumerate(plan.sizes):
            try:
                # by stretch, not by size: an index checkpoint of size 0 (an empty
                # partition checkpointed with --force) is a stretch of its own
                root = self._first(size) if self.stretch == 0 else self._next(previous, size)
            except RowsShort:
                self._add(INDEX_MISMATCH, size, "the rows do not reach this index "
                          "checkpoint's size (see the leaf findings)")
                self._count_replayed(plan, done)
                return
            except StoredMapUnusable as exc:
                self._add(INDEX_MISMATCH, size, f"{exc.detail}; the index checkpoints from "
                          "this one on were not checked")
                self._count_replayed(plan, done)
                return
            self._compare_signed(size, plan.signed.get(size), root)
            previous = size
            if self.progress is not None and time.monotonic() - reported >= 10:
                reported = time.monotonic()
                self.progress(self.partition, previous, reported - started)
        self._count_entries(plan.sizes)
        self._count_nodes(set(plan.sizes), plan.node_counts)

    def _name_unsigned(self, sizes: list[int]) -> None:
        """One finding per run of consecutive replayed sizes without an index checkpoint,
        with the differences counted there."""
        runs: list[list[int]] = []
        for before, size in zip([None, *sizes], sizes, strict=False):
            if size not in self.unsigned:
                continue
            if runs and before == runs[-1][-1]:
                runs[-1].append(size)
            else:
                runs.append([size])
        for run in runs:
            which = "the log's checkpoint of this size has" if len(run) == 1 else \
                f"{len(run)} checkpoints of the log, sizes {run[0]} to {run[-1]}, have"
            differ = sum(self.unsigned[s] for s in run)
            more = f"; replayed, {differ} stored map nodes or keys' entries there differ from " \
                "the rebuilt map" if differ else ""
            self._add(INDEX_MISMATCH, run[0], f"{which} no index checkpoint{more}")

    def _plan(self) -> ReplayPlan | None:
        """The map sizes to replay: every index checkpoint whose row is not forged at a
        size the log never signed, and every checkpoint of the log from the first to the
        last map size the index has rows for (those without an index checkpoint are named,
        one finding per run of them, their stretches still replayed: _name_unsigned).
        Checkpoints of the log past the index are named once. None: nothing to replay
        (rows left without any index checkpoint are named)."""
        log_roots = {int(s): bytes(r) for s, r in self.conn.execute(
            "SELECT tree_size, root_hash FROM checkpoints WHERE topic = %s AND"
            " kafka_partition = %s", (self.topic, self.partition))}
        log_sizes = set(log_roots)
        node_counts = {int(s): int(n) for s, n in self.conn.execute(
            "SELECT map_size, count(*) FROM vindex_nodes WHERE topic = %s AND"
            " kafka_partition = %s GROUP BY map_size", (self.topic, self.partition))}
        signed: dict[int, tuple[IndexCheckpoint, bytes | EvidenceError]] = {}
        for cp in index_checkpoints(self.conn, self.topic, self.partition):
            try:
                signed[cp.size] = (cp, signed_map_root(cp, self.log_keys))
                if log_roots.get(cp.size, cp.root) != cp.root:
                    raise EvidenceError("other-root", "its note names another log root than "
                                        "the log's checkpoint of this size")
            except EvidenceError as exc:
                if cp.size in log_sizes:
                    signed[cp.size] = (cp, exc)
                else:  # nothing of the log at that size: not a stretch boundary
                    self._add(INDEX_FORGED, cp.size, f"index checkpoint: {exc.detail} (and no "
                              "checkpoint of the log has this size: it was not replayed)")
        indexed = set(signed) | (set(node_counts) & log_sizes)
        if not indexed:
            self._count_unindexed(node_counts)
            return None
        first, last = min(indexed), max(indexed)
        after = sorted(s for s in log_sizes if s > last)
        if after:
            self._add(INDEX_MISMATCH, after[0], f"the index stops at map size {last}: "
                      f"{len(after)} later checkpoint(s) of the log, from size {after[0]} on, "
                      "have no index checkpoint")
        sizes = sorted(set(signed) | {s for s in log_sizes if first <= s <= last})
        return ReplayPlan(sizes, signed, node_counts)

    def _count_unindexed(self, node_counts: dict[int, int]) -> None:
        """Index rows of a partition with no index checkpoint at a size the log signed."""
        self._count_nodes(set(), node_counts)
        row = self.conn.execute("SELECT count(*) FROM vindex_entries WHERE topic = %s AND"
                                " kafka_partition = %s", (self.topic, self.partition)).fetchone()
        if row is not None and row[0]:
            self._add(INDEX_MISMATCH, None, f"{row[0]} stored entries, which no index "
                      "checkpoint covers")

    def _pairs(self, start: int, end: int) -> Iterator[tuple[MapKey, int]]:
        """(key, leaf index) of every key of leaves [start, end), in leaf order. Raises
        :class:`RowsShort` when a leaf has no row."""
        expected = start
        for index, key, value in leaf_rows(self.conn, self.topic, self.partition, start, end,
                                           decodable=self.decodable):
            if index != expected:
                raise RowsShort
            for k in leaf_keys(self.catalogue, key, value):
                yield k, index
            expected += 1
        if expected != end:
            raise RowsShort

    def _first(self, size: int) -> bytes:
        """The first map state, built in key order (map_stream) from the rows' pairs sorted
        on disk, merged with the stored entries read in key order: memory stays bounded
        whatever the first stretch's length (a ledger checkpointed before the index)."""
        with SortedPairs() as pairs:
            batch: list[tuple[MapKey, int]] = []
            for pair in self._pairs(0, size):
                batch.append(pair)
                if len(batch) >= PROBE_CHUNK:
                    pairs.add(batch)
                    batch = []
            pairs.add(batch)
            done: dict[Position, Node] = {}
            builder = SortedMapBuilder(done.__setitem__)
            seen = 0
            with self.conn.cursor(name=f"vindex_audit_{self.partition}") as cur:
                cur.execute("SELECT key_hash, array_agg(leaf_index ORDER BY leaf_index),"
                            " array_agg(kind ORDER BY leaf_index), array_agg(key_value ORDER BY"
                            " leaf_index) FROM vindex_entries WHERE topic = %s AND kafka_partition"
                            " = %s AND leaf_index < %s GROUP BY key_hash ORDER BY key_hash",
                            (self.topic, self.partition, size))
                stored = ((bytes(k), [int(i) for i in idx], kinds, values)
                          for k, idx, kinds, values in cur)
                for rebuilt, held in _merged(pairs.by_key(), stored):
                    if rebuilt is None:
                        continue  # a key no row gives: counted with the entries at the end
                    khash, key, indexes = rebuilt
                    later, kinds, values = (held[1], held[2], held[3]) if held else ([], [], [])
                    seen += len(later)
                    self._check_entries(key, indexes, later, kinds, values, 0, size)
                    builder.add(khash, list_hash(indexes))
                    self.keys += 1
                    if len(done) >= PROBE_CHUNK:  # between fetches: the cursor stays open
                        self._compare_nodes(Step(), done, size)
                        done.clear()
            root = builder.finish()
        self._compare_nodes(Step(), done, size)
        self.entries_seen[0] = seen
        self.stretch = 1
        self.tree.root_hash = root
        self.tree.forget_below(CACHED_DEPTH)  # holds nothing but the corrections
        return root

    def _next(self, previous: int, size: int) -> bytes:
        """The map state of ``size`` from the one of ``previous``, updated in place. A
        stretch with more than SPILL_PAIRS keys of leaves is sorted on disk and applied
        CHUNK_KEYS keys at a time in key order, so memory does not grow with the stretch:
        a chunk's nodes are compared once no later key can rewrite them (their key range
        ends before the next chunk's first key); only the path between the chunks and its
        children stay held."""
        self.tree.reading_from(self.store.fetcher(previous))
        self.entries_seen[self.stretch] = 0
        with StretchKeys(self._pairs(previous, size)) as keys:
            chunks = keys.chunks()
            pending: dict[Position, Node] = {}
            current = next(chunks, None)
            while current is not None:
                following = next(chunks, None)
                bound = None if following is None else int.from_bytes(min(following.indexes), "big")
                self._apply(current, previous, size, pending, bound)
                current = following
        self.stretch += 1
        return self.tree.root_hash

    def _apply(self, step: Step, previous: int, size: int, pending: dict[Position, Node],
               bound: int | None) -> None:
        """Apply one chunk of keys; compare the nodes no key from ``bound`` on can change."""
        tree = self.tree
        tree.prefetch_paths(step.indexes)
        tree.check_paths(step.indexes, previous)
        lists = self._lists(step, previous, size)
        pending.update(tree.update({k: list_hash(v) for k, v in lists.items()}))
        tree.rebuilt(pending)
        self._compare_nodes(step, finished_nodes(pending, bound), size)
        tree.forget_below(CACHED_DEPTH, tree.unfinished(pending))

    def _lists(self, step: Step, previous: int, size: int) -> dict[bytes, list[int]]:
        """Each touched key's whole list at ``size``: its earlier list (stored, checked
        against its map leaf) and the rows' new indexes; the stored new entries compared."""
        touched = sorted(step.indexes)
        stored: dict[bytes, tuple[list[int], list[str], list[str]]] = {
            bytes(k): ([int(i) for i in idx], list(kinds or ()), list(values or ()))
            for k, idx, kinds, values in self.conn.execute(
                "SELECT key_hash, array_agg(leaf_index ORDER BY leaf_index),"
                " array_agg(kind ORDER BY leaf_index) FILTER (WHERE leaf_index >= %(a)s),"
                " array_agg(key_value ORDER BY leaf_index) FILTER (WHERE leaf_index >= %(a)s)"
                " FROM vindex_entries WHERE topic = %(t)s AND kafka_partition = %(p)s"
                " AND key_hash = ANY(%(k)s) AND leaf_index < %(b)s GROUP BY key_hash",
                {"t": self.topic, "p": self.partition, "k": touched, "a": previous, "b": size})}
        lists: dict[bytes, list[int]] = {}
        self.entries_seen[self.stretch] += sum(
            sum(1 for i in stored[k][0] if i >= previous) for k in stored)
        for khash in touched:
            key, new = step.keys[khash], step.indexes[khash]
            indexes, kinds, values = stored.get(khash, ([], [], []))
            earlier = self._earlier(key, [i for i in indexes if i < previous], previous)
            if not earlier:
                self.keys += 1
            whole = earlier + new
            later = [i for i in indexes if i >= previous]
            self._check_entries(key, whole, later, kinds, values, previous, size, new)
            lists[khash] = whole
        return lists

    def _check_entries(self, key: MapKey, whole: list[int], later: list[int], kinds: list[str],
                       values: list[str], previous: int, size: int,
                       new: list[int] | None = None) -> None:
        """Compare the entries stored for ``key`` from leaf ``previous`` on (``later``, with
        their texts) with the rows' (``new``, by default ``whole``); a difference is named
        and the key's rebuilt list (``whole``) stands in for the stored one from then on."""
        new = whole if new is None else new
        khash = key.hash
        if later != new or any(k != key.kind or v != key.value for k, v in zip(kinds, values,
                                                                              strict=False)):
            shown = sorted({f"{k}:{v}" for k, v in zip(kinds, values, strict=False)} - {str(key)})
            alias = f" (also stored as {', '.join(shown[:3])})" if shown else ""
            self._differs(size, lambda: f"key {key}: stored with leaves {_short(later)} "
                          f"from leaf {previous} on{alias}; the rows give {_short(new)}")
            self.fixed_lists[khash] = whole
            self._hold_bounded(size)
        elif khash in self.fixed_lists:
            self.fixed_lists[khash] = whole

    def _hold_bounded(self, size: int) -> None:
        held = len(self.tree.corrections) + len(self.fixed_lists)
        if held > DIFFERENCES_HELD:
            raise StoredMapUnusable(f"more than {DIFFERENCES_HELD} stored map nodes and keys' "
                                    f"lists differ from the rebuilt map by map size {size}")

    def _earlier(self, key: MapKey, stored: list[int], previous: int) -> list[int]:
        """The key's list before ``previous``: the stored one, once it hashes to the key's
        leaf in the checked map (or the rebuilt one where a difference was already found)."""
        khash = key.hash
        fixed = self.fixed_lists.get(khash)
        if fixed is not None:
            return fixed
        if not leaf_holds(self.tree, khash, stored):
            raise StoredMapUnusable(f"key {key}: the entries stored before leaf {previous} "
                                    f"({_short(stored)}) are not the list its map leaf holds")
        return stored

    def _compare_nodes(self, step: Step, written: dict[Position, Node], size: int) -> None:
        positions = sorted(written)
        matched = 0
        for low in range(0, len(positions), PROBE_CHUNK):
            chunk = positions[low:low + PROBE_CHUNK]
            stored = self.store.written_at(chunk, size)
            for position in chunk:
                node, found = written[position], stored.get(position)
                if found is not None:
                    matched += 1
                    if found == (node.hash, node.leaf_key, node.list_hash):
                        self.tree.corrections.pop(position, None)
                        continue
                self.tree.corrections[position] = node
                how = "is not stored at this map size" if found is None else \
                    "differs from the rebuilt map"
                self._differs(size, functools.partial(self._node_detail, step, position, node,
                                                      how))
                self._hold_bounded(size)
        self.node_rows[size] = self.node_rows.get(size, 0) + matched
        self.nodes += len(positions)

    def _node_detail(self, step: Step, position: Position, node: Node, how: str) -> str:
        return f"map node {_position_text(*position)}, {self._what(step, node)}, {how}"

    def _what(self, step: Step, node: Node) -> str:
        if node.leaf_key is None:
            return "an inner node"
        key = step.keys.get(node.leaf_key)
        if key is None:  # a key that moved down, its list unchanged: named by its entries
            row = self.conn.execute(
                "SELECT kind, key_value FROM vindex_entries WHERE topic = %s AND"
                " kafka_partition = %s AND key_hash = %s LIMIT 1",
                (self.topic, self.partition, node.leaf_key)).fetchone()
            key = MapKey(row[0], row[1]) if row is not None else None
        return f"the leaf of key {key if key is not None else node.leaf_key.hex()}"

    def _compare_signed(self, size: int,
                        signed: tuple[IndexCheckpoint, bytes | EvidenceError] | None,
                        root: bytes) -> None:
        if signed is None:
            return  # named with the run it belongs to (_name_unsigned)
        if isinstance(signed[1], EvidenceError):
            self._add(INDEX_FORGED, size, f"index checkpoint: {signed[1].detail}")
        elif signed[1] != root:
            self._add(INDEX_MISMATCH, size, "the signed map root is not the root of the "
                      "map rebuilt from the rows")

    def _count_replayed(self, plan: ReplayPlan, done: int) -> None:
        """The counts of the first ``done`` stretches, where the replay stopped before the
        end: rows slipped into them (often what it stopped on) are still named."""
        sizes = plan.sizes[:done]
        if sizes:
            self._count_entries(sizes, beyond=False)
            self._count_nodes(set(sizes), {s: n for s, n in plan.node_counts.items() if s in sizes})

    def _count_entries(self, sizes: list[int], beyond: bool = True) -> None:
        """Stored entries the replay did not meet (under a key that no leaf of their stretch
        has, or, with ``beyond``, past the last index checkpoint), stretch by stretch."""
        for bucket, count in self.conn.execute(
                "SELECT width_bucket(leaf_index, %s::bigint[]) AS stretch, count(*)"
                " FROM vindex_entries WHERE topic = %s AND kafka_partition = %s"
                " GROUP BY stretch ORDER BY stretch", (sizes, self.topic, self.partition)):
            b = int(bucket)
            extra = int(count) - self.entries_seen.get(b, 0)
            if extra > 0 and (beyond or b < len(sizes)):
                low = 0 if b == 0 else sizes[b - 1]
                where = f"leaves [{low}, {sizes[b]})" if b < len(sizes) else \
                    f"leaves from {low} on, beyond the last index checkpoint"
                self._add(INDEX_MISMATCH, sizes[min(b, len(sizes) - 1)], f"{extra} stored "
                          f"entries for {where} that no row there gives")

    def _count_nodes(self, sizes: set[int], node_counts: dict[int, int]) -> None:
        """Stored nodes the replay did not write: at a map size with more rows than the
        update wrote there, or at a map size no index checkpoint has."""
        for size, count in sorted(node_counts.items()):
            extra = count - self.node_rows.get(size, 0)
            if size not in sizes:
                self._add(INDEX_MISMATCH, None, f"{count} stored map nodes at map size {size}, "
                          "which no index checkpoint has")
            elif extra > 0:
                self._add(INDEX_MISMATCH, size, f"{extra} stored map nodes at this map size that "
                          "the rebuilt map does not write there")


@dataclass
class ReplayPlan:
    """The map sizes a partition's replay stops at, the index checkpoint rows there (with
    the map root their note signs, or why it does not open), stored nodes per map size."""

    sizes: list[int]
    signed: dict[int, tuple[IndexCheckpoint, bytes | EvidenceError]]
    node_counts: dict[int, int]


class RowsShort(Exception):
    """A leaf below the index checkpoint's size has no row."""


Rebuilt = tuple[bytes, MapKey, list[int]]
Held = tuple[bytes, list[int], list[str], list[str]]


def _merged(rebuilt: Iterator[Rebuilt], held: Iterator[Held]) -> Iterator[tuple[Rebuilt | None, Held | None]]:
    """Two streams in increasing key-hash order, paired by key hash."""
    a, b = next(rebuilt, None), next(held, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            yield a, None
            a = next(rebuilt, None)
        elif a is None or b[0] < a[0]:
            yield None, b
            b = next(held, None)
        else:
            yield a, b
            a, b = next(rebuilt, None), next(held, None)


def _short(indexes: list[int]) -> str:
    text = ", ".join(str(i) for i in indexes[:8])
    return f"[{text}{', ...' if len(indexes) > 8 else ''}] ({len(indexes)})"
