"""``protocolo verify``'s engine: recompute every leaf and every tree from the rows.

For each partition of the ledger topic, inside one read-only REPEATABLE READ transaction
(one snapshot: a projector running meanwhile commits rows, nodes and offsets together, so
the audit sees a consistent ledger), the walk:

1. streams the journal and quarantine rows in leaf order through a server-side cursor and
   recomputes each leaf from the raw record (topic, partition, offset, key, value ->
   :func:`protocolo.evidence.leaf.record_leaf_hash`);
2. compares each with the row's stored ``leaf_hash`` and with the tree's leaf at that index
   (``merkle_nodes`` level 0), and checks the index sequence (every index once, 0..n-1)
   and the offsets (strictly increasing along the indexes);
3. rebuilds the tree chunk by chunk (``CHUNK`` leaves, aligned) and compares every stored
   perfect node with the recomputed one (missing and surplus nodes too), the stored tree
   size and compact range, and hands the compact range at each checkpoint's size to the
   :class:`~protocolo.attestation.audit_checkpoints.CheckpointAudit`.

Memory is bounded per partition: one chunk of rows and nodes, the right edge of the tree
above the chunks (a :class:`~protocolo.evidence.merkle.CompactRange` of chunk roots), and
at most ``PENDING_LIMIT`` unexplained rows/leaves awaiting classification.

Classifying a difference: a row whose recomputed leaf is the tree's leaf at its index is
sound. Otherwise the row and the tree's leaf are held back; at the end of the partition a
held row whose leaf is a held tree leaf at another index is **reordered**; a held row left
at an index whose tree leaf is held is **modified**; any other held row is **inserted**
(no leaf of the tree: beyond it, or a second row for an index); a held tree leaf left
without a row is **missing**. The tree of record is the stored one (level 0 of
``merkle_nodes``), itself checked against the rows and, above all, against the signed
checkpoints; differences in nodes that a leaf finding does not explain are
**tree-mismatch**.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import hashlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo, sql

from protocolo.attestation.audit_checkpoints import (
    CHECKPOINT_COLUMNS,
    CheckpointAudit,
    CheckpointRow,
    LogKeys,
    checkpoint_from_row,
)
from protocolo.attestation.audit_findings import (
    INSERTED,
    MISSING,
    MODIFIED,
    REORDERED,
    TREE_MISMATCH,
    Finding,
    FindingLog,
)
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.leaf import partition_leaf_hasher, record_leaf_hash
from protocolo.evidence.merkle import CompactRange, NodeId, range_nodes

CHUNK_LEVEL = 12
CHUNK = 1 << CHUNK_LEVEL
#: Unexplained rows and tree leaves held for classification, per partition; past this,
#: they are classified by index alone (modified / missing / inserted).
PENDING_LIMIT = 10_000
#: Candidate offsets tried to name the original offset of a row whose offset was edited.
OFFSET_CANDIDATES = 64
FETCH_ROWS = 2000

Progress = Callable[[int, int, float], None]
"""progress(partition, leaves walked so far, seconds since the partition's start)."""


@dataclass(frozen=True, slots=True)
class LedgerRow:
    leaf_index: int
    offset: int
    key: bytes | None
    value: bytes
    leaf_hash: bytes
    source: str  # journal | quarantine

    @classmethod
    def of(cls, raw: RawRow) -> LedgerRow:
        index, offset, key, value, leaf, journalled = raw
        return cls(index, offset, key, value, leaf, "journal" if journalled else "quarantine")


RawRow = tuple[int, int, bytes | None, bytes, bytes, bool]
"""(leaf index, offset, key, value, stored leaf hash, journalled) as fetched."""


class _LeafOrderedRows:
    """The journal and quarantine rows of one partition in leaf-index order: one server-side
    cursor per table (each an index scan on its leaf index), fetched in batches and merged."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, partition: int) -> None:
        self._streams = []
        for table, value, journalled in (("journal", "record_value", "true"),
                                         ("quarantine", "coalesce(record_value, ''::bytea)", "false")):
            cur = conn.cursor(name=f"verify_{table}_{partition}", binary=True)
            cur.execute(f"SELECT leaf_index, kafka_offset, record_key, {value}, leaf_hash, {journalled}"
                        f" FROM {table} WHERE topic = %s AND kafka_partition = %s ORDER BY leaf_index",
                        (topic, partition))
            self._streams.append(_Batches(cur))

    def below(self, limit: int) -> list[RawRow]:
        journal, quarantine = (stream.below(limit) for stream in self._streams)
        if not quarantine:
            return journal
        if not journal:
            return quarantine
        merged = journal + quarantine
        merged.sort(key=_leaf_index)
        return merged

    def rest(self) -> Iterator[RawRow]:
        while True:
            batch = self.below(1 << 63)
            if not batch:
                return
            yield from batch


def _leaf_index(row: RawRow) -> int:
    return row[0]


class _Batches:
    """A server-side cursor read ``FETCH_ROWS`` at a time, handed out up to a leaf index."""

    def __init__(self, cur: psycopg.ServerCursor[Any]) -> None:
        self._cur = cur
        self._buffer: list[RawRow] = []
        self._done = False

    def below(self, limit: int) -> list[RawRow]:
        taken: list[RawRow] = []
        while True:
            buffer = self._buffer
            if buffer and buffer[-1][0] < limit:
                taken += buffer
                self._buffer = []
            elif buffer:
                cut = bisect.bisect_left(buffer, limit, key=_leaf_index)
                taken += buffer[:cut]
                self._buffer = buffer[cut:]
                return taken
            if self._done:
                return taken
            self._buffer = self._cur.fetchmany(FETCH_ROWS)
            if len(self._buffer) < FETCH_ROWS:
                self._done = True
                self._cur.close()


@dataclass(slots=True)
class _Bracket:
    """The sound rows around a held item: (leaf index, offset) before and after it."""

    before: tuple[int, int] | None
    after: tuple[int, int] | None = None

    def offset_of(self, index: int) -> int | None:
        """The offset leaf ``index`` must have had, when the offsets around it leave no doubt."""
        lo = self.before or (-1, -1)
        if self.after is None:
            return None
        hi = self.after
        if hi[1] - lo[1] == hi[0] - lo[0] and lo[0] < index < hi[0]:
            return lo[1] + (index - lo[0])
        return None

    def describe(self) -> str:
        lo = f"offset {self.before[1]}" if self.before else "the start"
        hi = f"offset {self.after[1]}" if self.after else "the end"
        return f"between {lo} and {hi}"


@dataclass(slots=True)
class _HeldRow:
    row: LedgerRow
    leaf: bytes | None  # recomputed; None when the row's fields are not a valid leaf
    bracket: _Bracket
    why: str


@dataclass(slots=True)
class _HeldLeaf:
    index: int
    leaf: bytes
    bracket: _Bracket
    claimed: bool = False


@dataclass
class _Held:
    rows: list[_HeldRow] = field(default_factory=list)
    leaves: dict[int, _HeldLeaf] = field(default_factory=dict)
    by_hash: dict[bytes, list[int]] = field(default_factory=dict)
    awaiting: list[_Bracket] = field(default_factory=list)  # brackets still without their "after"

    def full(self) -> bool:
        return len(self.rows) + len(self.leaves) >= PENDING_LIMIT


class PartitionWalk:
    """Audits one partition's rows and tree (and, through ``checkpoints``, its checkpoints)."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, partition: int, findings: FindingLog,
                 checkpoints: CheckpointAudit, progress: Progress | None = None,
                 chunk_level: int = CHUNK_LEVEL) -> None:
        self.conn = conn
        self.chunk_level = chunk_level  # smaller in tests, to exercise the tree above the chunks
        self.chunk = 1 << chunk_level
        self.prefetch = True
        self.topic = topic
        self.partition = partition
        self.findings = findings
        self.summary = findings.summary(partition)
        self.checkpoints = checkpoints
        self.progress = progress
        self._held = _Held()
        self._tainted_first: int | None = None  # lowest leaf index with a leaf finding
        self._tainted_chunks: set[int] = set()
        self._last_sound: tuple[int, int] | None = None  # (leaf index, offset) of the last sound row
        self._upper = CompactRange()  # the tree above the chunks: one leaf per full chunk
        self._stored_range: CompactRange | None = None
        self._recomputed_at_stored_size: CompactRange | None = None
        self._hasher = partition_leaf_hasher(topic, partition)
        self._cps: Iterator[CheckpointRow] = iter(())
        self._next_cp: CheckpointRow | None = None  # the next checkpoint to check, in size order

    # -- reading -----------------------------------------------------------------------

    def _rows(self) -> _LeafOrderedRows:
        return _LeafOrderedRows(self.conn, self.topic, self.partition)

    def _checkpoint_rows(self) -> Iterator[CheckpointRow]:
        cur = self.conn.cursor(name=f"verify_checkpoints_{self.partition}")
        cur.itersize = 200
        cur.execute(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE topic = %s AND kafka_partition = %s"
                    " ORDER BY tree_size", (self.topic, self.partition))
        try:
            for row in cur:
                yield checkpoint_from_row(row)
        finally:
            cur.close()

    def _stored_nodes(self, ranges: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored nodes with ``level == l and lo <= node_index < hi`` for each (l, lo, hi)."""
        if not ranges:
            return {}
        rows = self.conn.execute(
            "SELECT n.level, n.node_index, n.hash FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[])"
            " AS w(l, lo, hi) JOIN merkle_nodes n ON n.topic = %s AND n.kafka_partition = %s"
            " AND n.level = w.l AND n.node_index >= w.lo AND n.node_index < w.hi",
            ([r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges], self.topic,
             self.partition), binary=True,
        ).fetchall()
        return {(int(level), int(index)): bytes(value) for level, index, value in rows}

    def _stored_leaves(self, start: int, end: int) -> list[bytes | None]:
        """The tree's leaves ``[start, end)`` (level 0 of merkle_nodes), None where missing."""
        rows = self.conn.execute(
            "SELECT node_index, hash FROM merkle_nodes WHERE topic = %s AND kafka_partition = %s"
            " AND level = 0 AND node_index >= %s AND node_index < %s ORDER BY node_index",
            (self.topic, self.partition, start, end), binary=True).fetchall()
        if len(rows) == end - start:  # every index once, in order (the primary key)
            return [h for _, h in rows]
        found: list[bytes | None] = [None] * (end - start)
        for index, value in rows:
            found[index - start] = value
        return found

    def _stored_digests(self, start: int, end: int) -> dict[int, tuple[int, bytes]]:
        """Per level 0..CHUNK_LEVEL: (count, SHA-256 of the concatenated hashes in index order)
        of the stored nodes inside ``[start, end)``; the server concatenates, this side
        compares with the recomputed nodes and fetches a level node by node only if they differ."""
        levels = [level for level in range(self.chunk_level + 1) if (end >> level) > (start >> level)]
        if not levels:
            return {}
        rows = self.conn.execute(
            "SELECT w.l, d.c, d.h FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS w(l, lo, hi)"
            " CROSS JOIN LATERAL (SELECT count(*) AS c, sha256(coalesce(string_agg(hash, ''::bytea"
            " ORDER BY node_index), ''::bytea)) AS h FROM merkle_nodes WHERE topic = %s AND kafka_partition = %s"
            " AND level = w.l AND node_index >= w.lo AND node_index < w.hi) d",
            (levels, [start >> level for level in levels], [end >> level for level in levels],
             self.topic, self.partition), binary=True).fetchall()
        return {int(level): (int(count), bytes(digest)) for level, count, digest in rows}

    # -- findings ----------------------------------------------------------------------

    def _finding(self, kind: str, index: int | None, offset: int | None, source: str, detail: str,
                 node: NodeId | None = None) -> None:
        self.findings.add(Finding(kind, self.partition, index, offset, source, detail,
                                  level=node.level if node else None, node_index=node.index if node else None))

    def _taint(self, index: int) -> None:
        if index >= 0:
            if self._tainted_first is None or index < self._tainted_first:
                self._tainted_first = index
            self._tainted_chunks.add(index >> self.chunk_level)

    def _hold_row(self, row: LedgerRow, leaf: bytes | None, why: str) -> None:
        bracket = _Bracket(self._last_sound)
        self._held.awaiting.append(bracket)
        self._taint(row.leaf_index)
        if self._held.full():
            self._classify_row(_HeldRow(row, leaf, bracket, why), by_hash=False)
        else:
            self._held.rows.append(_HeldRow(row, leaf, bracket, why))

    def _hold_leaf(self, index: int, leaf: bytes) -> None:
        bracket = _Bracket(self._last_sound)
        self._held.awaiting.append(bracket)
        self._taint(index)
        if self._held.full():
            self._finding(MISSING, index, None, "tree", f"leaf {index} of the tree has no row ({bracket.describe()})")
            return
        self._held.leaves[index] = _HeldLeaf(index, leaf, bracket)
        self._held.by_hash.setdefault(leaf, []).append(index)

    def _sound(self, index: int, offset: int) -> None:
        self._last_sound = (index, offset)
        for bracket in self._held.awaiting:
            bracket.after = (index, offset)
        self._held.awaiting.clear()

    # -- the walk ----------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        stored = self._stored_position()
        next_offset, next_leaf, tree_size = stored or (0, 0, 0)
        last_checkpoint = self.conn.execute(
            "SELECT max(tree_size) FROM checkpoints WHERE topic = %s AND kafka_partition = %s",
            (self.topic, self.partition)).fetchone()
        end = max(tree_size, next_leaf, int(last_checkpoint[0] or 0) if last_checkpoint else 0)
        rows = self._rows()
        for raw in rows.below(0):
            row = LedgerRow.of(raw)
            self._read(row)
            self._hold_row(row, self._leaf_of(row), f"leaf index {row.leaf_index} is negative")
        self._cps = self._checkpoint_rows()
        self._next_cp = next(self._cps, None)
        while self._next_cp is not None and self._next_cp.tree_size == 0:
            self.checkpoints.check(self._next_cp, CompactRange(), True)
            self._next_cp = next(self._cps, None)
        if tree_size == 0 and self._stored_range is not None:
            self._recomputed_at_stored_size = CompactRange()
        self._walk_chunks(rows, end, tree_size, started)
        while self._next_cp is not None:  # only if `end` missed it; kept for safety
            self.checkpoints.check(self._next_cp, None, False)
            self._next_cp = next(self._cps, None)
        for raw in rows.rest():  # rows beyond every size the ledger states
            row = LedgerRow.of(raw)
            self._read(row)
            self._hold_row(row, self._leaf_of(row), f"leaf index {row.leaf_index} is beyond the tree (size {end})")
        for bracket in self._held.awaiting:
            bracket.after = (next_leaf, next_offset) if stored is not None else None
        self._held.awaiting.clear()
        self._classify_held()
        self._surplus_nodes(end)
        self._check_stored_state(tree_size, next_offset)
        if self.progress is not None and time.monotonic() - started >= 2.0:
            self.progress(self.partition, end, time.monotonic() - started)

    def _stored_position(self) -> tuple[int, int, int] | None:
        """(next offset, next leaf index, tree size) as ``projector_offsets`` states them,
        with its compact range kept for the end; None when the partition has no row there."""
        position = self.conn.execute(
            "SELECT next_offset, next_leaf_index, tree_size, compact_range FROM projector_offsets"
            " WHERE topic = %s AND kafka_partition = %s", (self.topic, self.partition)).fetchone()
        if position is None:
            return None
        next_offset, next_leaf, tree_size = int(position[0]), int(position[1]), int(position[2])
        self.summary.tree_size = tree_size
        try:
            self._stored_range = CompactRange(tree_size, [bytes(h) for h in position[3] or ()])
        except EvidenceError as exc:
            self._finding(TREE_MISMATCH, None, None, "tree", f"projector_offsets.compact_range is not a "
                          f"compact range of size {tree_size}: {exc}")
        if tree_size != next_leaf:
            self._finding(TREE_MISMATCH, None, None, "tree", f"projector_offsets says tree_size "
                          f"{tree_size} but next_leaf_index {next_leaf}")
        return next_offset, next_leaf, tree_size

    def _walk_chunks(self, rows: _LeafOrderedRows, end: int, tree_size: int, started: float) -> None:
        """Every chunk of ``[0, end)`` in order. The next chunk is read while this one is
        hashed: PostgreSQL's share of the work (index scans, digests) runs meanwhile in its
        own process. One reader thread, in chunk order; the connection serialises its use
        (psycopg connections are thread-safe)."""
        def read_chunk(chunk_start: int) -> tuple[list[RawRow], dict[int, tuple[int, bytes]]]:
            chunk_end = min(chunk_start + self.chunk, end)
            return rows.below(chunk_end), self._stored_digests(chunk_start, chunk_end)

        last_report = started
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-read") if self.prefetch else None
        upcoming = reader.submit(read_chunk, 0) if reader is not None and end > 0 else None
        try:
            for chunk_start in range(0, end, self.chunk):
                chunk_end = min(chunk_start + self.chunk, end)
                if reader is not None and upcoming is not None:
                    chunk_rows, digests = upcoming.result()
                    upcoming = reader.submit(read_chunk, chunk_end) if chunk_end < end else None
                else:
                    chunk_rows, digests = read_chunk(chunk_start)
                self._chunk(chunk_start, chunk_end, chunk_rows, digests, tree_size)
                now = time.monotonic()
                if self.progress is not None and now - last_report >= 2.0:
                    self.progress(self.partition, chunk_end, now - started)
                    last_report = now
        finally:
            if reader is not None:
                reader.shutdown(wait=True)

    def _chunk(self, chunk_start: int, chunk_end: int, chunk_rows: list[RawRow],
               digests: dict[int, tuple[int, bytes]], tree_size: int) -> None:
        """One chunk: its leaves and nodes, the tree above it, the checkpoints it ends."""
        levels = self._walk_chunk(chunk_start, chunk_end, chunk_rows, digests)
        upper_before = self._upper.copy()
        if chunk_end - chunk_start == self.chunk:
            self._append_upper(chunk_start >> self.chunk_level, levels[self.chunk_level][0])
        while self._next_cp is not None and self._next_cp.tree_size <= chunk_end:
            at = self._range_at(self._next_cp.tree_size, chunk_start, levels, upper_before)
            self.checkpoints.check(self._next_cp, at, self._reproduced_below(self._next_cp.tree_size))
            self._next_cp = next(self._cps, None)
        if chunk_start < tree_size <= chunk_end:
            self._recomputed_at_stored_size = self._range_at(tree_size, chunk_start, levels, upper_before)
        self.summary.leaves = chunk_end

    def _read(self, row: LedgerRow) -> None:
        self.summary.rows += 1
        if row.source == "quarantine":
            self.summary.quarantined += 1

    def _leaf_of(self, row: LedgerRow) -> bytes | None:
        try:
            return self._hasher(row.offset, row.key, row.value)
        except EvidenceError:
            return None

    def _walk_chunk(self, start: int, end: int, rows: list[RawRow],
                    digests: dict[int, tuple[int, bytes]]) -> list[list[bytes]]:
        """Check the leaves ``[start, end)`` against ``rows`` (those with a leaf index in it,
        in order) and return the chunk's recomputed perfect nodes per level (level 0 = the
        leaves), each compared with the stored one."""
        self.summary.rows += len(rows)
        self.summary.quarantined += sum(1 for row in rows if not row[5])
        levels = self._sound_chunk(start, end, rows, digests)
        if levels is not None:
            return levels
        tree_leaves = self._stored_leaves(start, end)
        leaves: list[bytes] = []
        tainted: list[int] = []
        count, at = len(rows), 0
        for index in range(start, end):
            here: list[LedgerRow] = []
            while at < count and rows[at][0] == index:
                here.append(LedgerRow.of(rows[at]))
                at += 1
            leaves.append(self._check_leaf(index, here, tree_leaves[index - start], tainted))
        return self._levels(start, leaves, tainted, digests)

    def _sound_chunk(self, start: int, end: int, rows: list[RawRow],
                     digests: dict[int, tuple[int, bytes]]) -> list[list[bytes]] | None:
        """The common case, checked a chunk at a time: one row per index, each row's leaf
        its stored leaf hash, offsets increasing, and every level of recomputed nodes (the
        leaves included) equal to the stored ones by digest. None if anything differs:
        then the chunk is checked leaf by leaf."""
        size = end - start
        if len(rows) != size or any(row[0] != index for index, row in enumerate(rows, start)):
            return None
        leaf_of = self._hasher
        try:
            leaves = [leaf_of(offset, key, value) for _, offset, key, value, _, _ in rows]
        except EvidenceError:
            return None
        if leaves != [row[4] for row in rows]:
            return None
        offsets = [row[1] for row in rows]
        if self._last_sound is not None and offsets[0] <= self._last_sound[1]:
            return None
        if any(a >= b for a, b in zip(offsets, offsets[1:], strict=False)):
            return None
        levels = _chunk_levels(leaves, self.chunk_level)
        for level, nodes in enumerate(levels):
            count, digest = digests.get(level, (0, _EMPTY_DIGEST))
            if count != len(nodes) or hashlib.sha256(b"".join(nodes)).digest() != digest:
                return None
        if self._held.awaiting:
            self._sound(start, offsets[0])
        self._last_sound = (end - 1, offsets[-1])
        return levels

    def _check_leaf(self, index: int, here: list[LedgerRow], tree_leaf: bytes | None,
                    tainted: list[int]) -> bytes:
        """Every case but the sound one, for leaf ``index``: hold what does not match for
        classification; return the leaf the recomputed tree gets at this index."""
        sound: LedgerRow | None = None
        sound_leaf: bytes | None = None
        suspects: list[tuple[LedgerRow, bytes | None]] = []
        for row in here:
            leaf = self._leaf_of(row)
            if leaf is None:
                suspects.append((row, None))
            elif sound is None and (leaf == tree_leaf or (tree_leaf is None and leaf == row.leaf_hash)):
                sound, sound_leaf = row, leaf
            else:
                suspects.append((row, leaf))
        result: bytes
        if sound is not None and sound_leaf is not None:
            result = sound_leaf
            previous = self._last_sound
            if sound.leaf_hash != sound_leaf:
                tainted.append(index)
                self._taint(index)
                self._finding(MODIFIED, index, sound.offset, sound.source, "the row's leaf_hash column "
                              f"is not the hash of its content (the content is the tree's leaf {index})")
            if previous is not None and sound.offset <= previous[1]:
                tainted.append(index)
                self._taint(index)
                self._finding(REORDERED, index, sound.offset, sound.source, f"offset {sound.offset} is "
                              f"not above offset {previous[1]} of leaf {previous[0]}")
            self._sound(index, sound.offset)
            if tree_leaf is None:
                tainted.append(index)
                self._finding(TREE_MISMATCH, index, sound.offset, "tree",
                              f"merkle_nodes has no leaf {index} (level 0)", NodeId(0, index))
        else:
            tainted.append(index)
            first_leaf = suspects[0][1] if suspects else None
            result = first_leaf or tree_leaf or bytes(32)
            if tree_leaf is not None:
                self._hold_leaf(index, tree_leaf)
            elif not suspects:
                self._taint(index)
                self._finding(MISSING, index, None, "tree", f"leaf {index} is below the tree's size but "
                              "has neither a row nor a stored node")
        for row, suspect_leaf in suspects:
            why = ("a second row for this index" if sound is not None else
                   "not a leaf of the tree" if tree_leaf is None else "differs from the tree's leaf")
            self._hold_row(row, suspect_leaf, why)
        return result

    def _levels(self, start: int, leaves: list[bytes], tainted: list[int],
                digests: dict[int, tuple[int, bytes]]) -> list[list[bytes]]:
        """Levels 1..CHUNK_LEVEL of the chunk from its leaves, compared with the stored nodes
        by digest; a level whose digest differs is compared node by node."""
        levels = _chunk_levels(leaves, self.chunk_level)
        end = start + len(leaves)
        for level in range(1, len(levels)):
            nodes = levels[level]
            count, digest = digests.get(level, (0, _EMPTY_DIGEST))
            if count == len(nodes) and hashlib.sha256(b"".join(nodes)).digest() == digest:
                continue
            first = start >> level
            stored = self._stored_nodes([(level, first, end >> level)])
            for position, value in enumerate(nodes):
                index = first + position
                found = stored.get((level, index))
                if found == value:
                    continue
                span_lo, span_hi = index << level, (index + 1) << level
                at = bisect.bisect_left(tainted, span_lo)
                if at < len(tainted) and tainted[at] < span_hi:
                    continue  # a leaf finding below explains it
                self._finding(TREE_MISMATCH, span_lo, None, "tree",
                              f"stored node ({level}, {index}) " + ("is missing" if found is None else
                              "is not the hash of its children recomputed from the rows"), NodeId(level, index))
        return levels

    def _append_upper(self, chunk: int, top: bytes) -> None:
        completed = [n for n in self._upper.append(top) if n.node.level > 0]
        if not completed:
            return
        wanted = [(n.node.level + self.chunk_level, n.node.index) for n in completed]
        stored = self._stored_nodes([(level, index, index + 1) for level, index in wanted])
        for (level, index), n in zip(wanted, completed, strict=True):
            found = stored.get((level, index))
            if found == n.hash:
                continue
            first_chunk, last_chunk = index << (level - self.chunk_level), (index + 1) << (level - self.chunk_level)
            if any(first_chunk <= c < last_chunk for c in self._tainted_chunks):
                continue
            self._finding(TREE_MISMATCH, index << level, None, "tree", f"stored node ({level}, {index}) "
                          + ("is missing" if found is None else "is not the hash recomputed from the rows"),
                          NodeId(level, index))

    def _range_at(self, size: int, chunk_start: int, levels: list[list[bytes]],
                  upper_before: CompactRange) -> CompactRange:
        """The recomputed compact range [0, size), for ``chunk_start < size <= chunk end``:
        the range above the chunks before this one, then the chunk's own nodes (all smaller,
        so nothing merges) — or, at the end of a full chunk, the range above the chunks."""
        if size - chunk_start == self.chunk:
            return CompactRange(size, self._upper.hashes)
        hashes = list(upper_before.hashes)
        for node in range_nodes(chunk_start, size):
            hashes.append(levels[node.level][node.index - (chunk_start >> node.level)])
        return CompactRange(size, hashes)

    def _reproduced_below(self, size: int) -> bool:
        return self._tainted_first is None or self._tainted_first >= size

    # -- classification ----------------------------------------------------------------

    def _classify_held(self) -> None:
        held = self._held
        later: list[_HeldRow] = []
        for item in held.rows:
            if not self._classify_row(item, by_hash=True, final=False):
                later.append(item)
        for item in later:
            self._classify_row(item, by_hash=False)
        for leaf in sorted(held.leaves.values(), key=lambda h: h.index):
            if not leaf.claimed:
                offset = leaf.bracket.offset_of(leaf.index)
                where = "" if offset is not None else f" (its offset is {leaf.bracket.describe()})"
                self._finding(MISSING, leaf.index, offset, "tree", f"leaf {leaf.index} of the tree has no row{where}")
        self._held = _Held()

    def _claim(self, index: int) -> _HeldLeaf | None:
        leaf = self._held.leaves.get(index)
        if leaf is None or leaf.claimed:
            return None
        leaf.claimed = True
        return leaf

    def _classify_row(self, item: _HeldRow, by_hash: bool, final: bool = True) -> bool:
        row = item.row
        if by_hash and item.leaf is not None:
            for index in self._held.by_hash.get(item.leaf, []):
                if index != row.leaf_index and self._claim(index) is not None:
                    self._finding(REORDERED, row.leaf_index, row.offset, row.source,
                                  f"the row stored as leaf {row.leaf_index} is leaf {index} of the tree")
                    return True
            if not final:
                return False
        tree_leaf = self._claim(row.leaf_index)
        if tree_leaf is not None:
            offset, detail = self._explain_modified(row, tree_leaf)
            self._finding(MODIFIED, row.leaf_index, offset, row.source, detail)
            return True
        self._finding(INSERTED, row.leaf_index, row.offset, row.source, f"offset {row.offset}: {item.why}")
        return True

    def _explain_modified(self, row: LedgerRow, tree_leaf: _HeldLeaf) -> tuple[int, str]:
        """Which field changed, when that can be told: an edited offset is found by trying
        the offsets between the sound rows around it."""
        lo = (tree_leaf.bracket.before or (-1, -1))[1] + 1
        hi = tree_leaf.bracket.after[1] if tree_leaf.bracket.after else lo + OFFSET_CANDIDATES
        for candidate in range(lo, min(hi, lo + OFFSET_CANDIDATES)):
            if candidate != row.offset and record_leaf_hash(
                    self.topic, self.partition, candidate, row.key, row.value) == tree_leaf.leaf:
                return candidate, (f"the offset was changed: the tree's leaf {row.leaf_index} is this "
                                   f"record at offset {candidate}, the row says {row.offset}")
        stored = " (its leaf_hash column still holds the tree's leaf)" if row.leaf_hash == tree_leaf.leaf else ""
        return row.offset, (f"the row's content (key, value, offset, partition) does not give the "
                            f"tree's leaf {row.leaf_index}{stored}")

    # -- the stored state --------------------------------------------------------------

    def _surplus_nodes(self, end: int) -> None:
        """Stored nodes over leaves at or beyond ``end``: no recomputed node matches them."""
        levels = list(range(64))
        rows = self.conn.execute(
            "SELECT n.level, n.node_index FROM unnest(%s::smallint[], %s::bigint[]) AS w(l, lo)"
            " JOIN merkle_nodes n ON n.topic = %s AND n.kafka_partition = %s AND n.level = w.l"
            " AND n.node_index >= w.lo ORDER BY n.node_index, n.level LIMIT %s",
            (levels, [end >> level for level in levels], self.topic, self.partition, self.findings.limit + 1),
        ).fetchall()
        for level, index in rows:
            level, index = int(level), int(index)
            if level == 0 and index >= end:
                detail = f"merkle_nodes holds leaf {index}, beyond the tree's size {end}"
            else:
                detail = f"merkle_nodes holds node ({level}, {index}), which spans leaves beyond the tree's size {end}"
            self._finding(TREE_MISMATCH, index << level, None, "tree", detail, NodeId(level, index))

    def _check_stored_state(self, tree_size: int, next_offset: int) -> None:
        recomputed = self._recomputed_at_stored_size
        if recomputed is not None:
            self.summary.root = recomputed.root().hex()
        if self._stored_range is not None and self._last_sound is not None \
                and self._last_sound[1] >= next_offset:
            self._finding(TREE_MISMATCH, None, None, "tree", f"projector_offsets.next_offset {next_offset} "
                          f"is not above the last leaf's offset {self._last_sound[1]}")
        stored = self._stored_range
        if stored is None or recomputed is None or stored == recomputed:
            return
        if not self._reproduced_below(tree_size):
            return  # explained by the leaf findings
        self._finding(TREE_MISMATCH, None, None, "tree", f"projector_offsets.compact_range (size {tree_size}) "
                      "is not the compact range recomputed from the rows")


_EMPTY_DIGEST = hashlib.sha256(b"").digest()


def _chunk_levels(leaves: list[bytes], chunk_level: int) -> list[list[bytes]]:
    """The perfect nodes over a chunk's leaves (aligned on the chunk), level by level; a
    level ends where its next pair would reach past the last leaf."""
    sha256 = hashlib.sha256
    levels = [leaves]
    for _ in range(chunk_level):
        below = levels[-1]
        if len(below) < 2:
            break
        levels.append([sha256(b"\x01" + left + right).digest() for left, right in zip(below[::2], below[1::2], strict=False)])
    return levels


def ledger_partitions(conn: psycopg.Connection[Any], topic: str) -> list[int]:
    """Every partition anything of ``topic`` is stored for (offsets, rows, nodes, checkpoints),
    each table read by a loose index scan (one probe per partition, not per row)."""
    found: set[int] = set()
    for table in ("projector_offsets", "journal", "quarantine", "merkle_nodes", "checkpoints"):
        found.update(int(p) for (p,) in conn.execute(
            f"WITH RECURSIVE p(k) AS (SELECT min(kafka_partition) FROM {table} WHERE topic = %(t)s"
            f" UNION ALL SELECT (SELECT min(kafka_partition) FROM {table} WHERE topic = %(t)s"
            f" AND kafka_partition > p.k) FROM p WHERE p.k IS NOT NULL) SELECT k FROM p WHERE k IS NOT NULL",
            {"t": topic}))
    return sorted(found)


def audit_ledger(conn: psycopg.Connection[Any], topic: str, keys: LogKeys, findings: FindingLog,
                 partitions: Sequence[int] | None = None, progress: Progress | None = None,
                 chunk_level: int = CHUNK_LEVEL, workers: int | None = 1) -> None:
    """Audit every partition of ``topic`` (or those given) in one read-only snapshot.

    ``workers``: processes auditing partitions side by side (each partition's walk is
    serial; partitions are independent). ``None`` chooses: one per core, up to one per
    partition, when the ledger holds at least :data:`PARALLEL_MIN_LEAVES` leaves. The
    default is 1, the walk in this process: on a machine whose cores are busy anyway the
    processes only add their start-up (bench/README.md measures both). The findings are
    the same either way, in the same order."""
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with conn.transaction(), _collector_paused():
        chosen = ledger_partitions(conn, topic) if partitions is None else list(partitions)
        count = _worker_count(conn, topic, chosen, workers)
        if count > 1:
            _audit_in_processes(conn, topic, keys, findings, chosen, progress, chunk_level, count)
            return
        for partition in chosen:
            audit = CheckpointAudit(topic, partition, keys, findings)
            PartitionWalk(conn, topic, partition, findings, audit, progress, chunk_level).run()


#: Leaves (all partitions) from which ``audit_ledger`` spreads partitions over processes by
#: default: starting a process (a fresh interpreter importing the package) costs about a
#: second, the walk of 200,000 leaves several.
PARALLEL_MIN_LEAVES = 200_000


def _worker_count(conn: psycopg.Connection[Any], topic: str, chosen: Sequence[int], workers: int | None) -> int:
    if workers is not None:
        return max(1, min(workers, len(chosen)))
    if len(chosen) < 2:
        return 1
    row = conn.execute("SELECT coalesce(sum(tree_size), 0) FROM projector_offsets WHERE topic = %s"
                       " AND kafka_partition = ANY(%s)", (topic, list(chosen))).fetchone()
    if row is None or int(row[0]) < PARALLEL_MIN_LEAVES:
        return 1
    return max(1, min(len(chosen), os.cpu_count() or 1))


def _audit_in_processes(conn: psycopg.Connection[Any], topic: str, keys: LogKeys, findings: FindingLog,
                        chosen: Sequence[int], progress: Progress | None, chunk_level: int, count: int) -> None:
    """One partition per job, ``count`` processes, every one in this transaction's snapshot
    (``pg_export_snapshot``: the ledger they read is the one this connection sees, whatever a
    projector commits meanwhile). Rows are fetched and hashed in parallel, which is where the
    walk spends its time (bench/README.md). Findings are merged in partition order, so the
    kept ones and the counts are those a serial walk gives."""
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    snapshot = str(row[0]) if row else ""
    info = conn.info
    dsn = conninfo.make_conninfo(info.dsn, password=info.password) if info.password else info.dsn
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")  # no fork of a process holding a connection and threads
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        jobs = [(partition, pool.submit(audit_partition_in_snapshot, dsn, snapshot, topic, keys, partition,
                                        chunk_level, findings.limit)) for partition in chosen]
        for partition, job in jobs:
            _merge(findings, job.result())
            if progress is not None:
                progress(partition, findings.summary(partition).leaves, time.monotonic() - started)


def audit_partition_in_snapshot(dsn: str, snapshot: str, topic: str, keys: LogKeys, partition: int,
                                chunk_level: int, limit: int) -> FindingLog:
    """One partition's walk in another process, in the snapshot ``snapshot`` exported by
    the connection that started the audit."""
    findings = FindingLog(limit=limit)
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction(), _collector_paused():
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            audit = CheckpointAudit(topic, partition, keys, findings)
            PartitionWalk(conn, topic, partition, findings, audit, None, chunk_level).run()
    return findings


def _merge(into: FindingLog, part: FindingLog) -> None:
    """Add one partition's findings as if they had been found here, after the earlier ones."""
    kept: Counter[str] = Counter()
    for finding in part.kept:
        kept[finding.kind] += 1
        into.add(finding)
    for kind, total in part.counts.items():
        into.counts[kind] += total - kept[kind]
    into.partitions.update(part.partitions)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The walk allocates a tuple per row and makes no reference cycles: Python's cyclic
    garbage collector, triggered by those allocations, cost a quarter of the run
    (bench/README.md). Memory stays bounded by the chunk; the collector runs again after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
