"""The tracking store: where each partition of the ledger topic stands, as PostgreSQL says.

PostgreSQL, not Kafka, is the authority on what was projected (the idea of
pyeventsourcing's ``TrackingRecorder``/``ProcessRecorder``: the position of the upstream
log is recorded in the same transaction as what was made of it, and an insert of a
position that is not the expected next one fails). Here one row per partition in
``projector_offsets`` holds the next offset to read and the next Merkle leaf index; a
batch moves it with :meth:`TrackingStore.advance`, *fenced* on the value the batch
started from, inside the batch's own transaction. A second projector that wrote the
same partition in between makes the fence fail (:class:`OffsetConflict`) and the whole
batch roll back.

On assignment the run loop asks :meth:`TrackingStore.resume_points` where to read from,
and which last projected record each resumed partition must still hold (its Merkle
leaf), so that a replaced log is noticed before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg

from protocolo.evidence.merkle import CompactRange
from protocolo.projections.integrity import leaf_hash
from protocolo.projections.merkle_store import TreeNode, leaf_hashes, stored_tree, write_nodes

from .errors import TreeDiverged

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Position:
    """What PostgreSQL holds for one partition: the next offset to read, the next leaf index,
    and the partition's Merkle tree (its compact range over ``[0, next_leaf_index)``).

    ``tree`` is None only for a caller that tracks offsets alone (tests of the fencing):
    then batches leave the stored tree as it was. It takes no part in equality."""

    next_offset: int
    next_leaf_index: int
    tree: CompactRange | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LastProjected:
    """The record just below a stored position, as it must still be found on the log."""

    offset: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class ResumePoint:
    partition: int
    stored: Position | None  # None: nothing projected from this partition yet
    check: LastProjected | None  # None: nothing to check (fresh partition, or skipped offsets)

    @property
    def seek_offset(self) -> int | None:
        """Where to start reading; None means the log's beginning. A partition with a record
        to check resumes one record early, at that record."""
        if self.stored is None:
            return None
        return self.check.offset if self.check is not None else self.stored.next_offset


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    partition: int
    expected_offset: int | None  # what PostgreSQL held when the batch started; None: no row yet
    next_offset: int
    next_leaf_index: int
    tree: CompactRange | None = field(default=None, compare=False)  # after the batch's leaves


class OffsetConflict(RuntimeError):
    """Another projector moved this partition's stored offset: the batch is not ours to write."""


class TrackingStore:
    """Reads positions on its own connection; writes them on the batch's cursor."""

    def __init__(self, conn: psycopg.Connection, topic: str) -> None:
        self._conn = conn
        self.topic = topic

    def positions(self, partitions: Iterable[int]) -> dict[int, Position]:
        """partition -> stored position, for the partitions that have one."""
        rows = self._conn.execute(
            "SELECT kafka_partition, next_offset, next_leaf_index, tree_size, compact_range"
            " FROM projector_offsets WHERE topic = %s AND kafka_partition = ANY(%s)",
            (self.topic, list(partitions)),
        ).fetchall()
        return {p: Position(o, leaf, stored_tree(size, hashes) if size == leaf else None)
                for p, o, leaf, size, hashes in rows}

    def last_projected(self, next_offsets: dict[int, int]) -> dict[int, LastProjected]:
        """partition -> the record just below each stored next offset, from the journal or,
        for a quarantined record, computed from its kept raw bytes."""
        if not next_offsets:
            return {}
        parts, offsets = list(next_offsets), [next_offsets[p] - 1 for p in next_offsets]
        rows = self._conn.execute(
            "SELECT w.p, w.o, j.leaf_hash, q.record_key, q.record_value, q.kafka_offset IS NOT NULL"
            "  FROM unnest(%s::int[], %s::bigint[]) AS w(p, o)"
            "  LEFT JOIN journal j ON j.topic = %s AND j.kafka_partition = w.p AND j.kafka_offset = w.o"
            "  LEFT JOIN quarantine q ON q.topic = %s AND q.kafka_partition = w.p AND q.kafka_offset = w.o",
            (parts, offsets, self.topic, self.topic),
        ).fetchall()
        found: dict[int, LastProjected] = {}
        for p, o, leaf, q_key, q_value, quarantined in rows:
            if leaf is not None:
                found[p] = LastProjected(o, bytes(leaf))
            elif quarantined:
                key = bytes(q_key) if q_key is not None else None
                value = bytes(q_value) if q_value is not None else b""
                found[p] = LastProjected(o, leaf_hash(self.topic, p, o, key, value))
            # neither: offsets skipped by the broker (e.g. transaction markers); nothing to check
        return found

    def resume_points(self, partitions: Iterable[int]) -> dict[int, ResumePoint]:
        """Where each partition resumes, read in one snapshot of its own (rolled back after).
        A partition whose tree is behind its leaves (a ledger made before the trees existed)
        gets its tree completed first; one whose tree still differs from its leaves after
        that raises :class:`TreeDiverged` (appending to it would silently leave records
        out of the tree, or sign a tree of records that are not projected)."""
        wanted = list(partitions)
        self.complete_trees(wanted)
        self._conn.rollback()
        try:
            self._check_trees(wanted)
            stored = self.positions(wanted)
            last = self.last_projected({p: at.next_offset for p, at in stored.items() if at.next_offset > 0})
        finally:
            self._conn.rollback()
        return {p: ResumePoint(p, stored.get(p), last.get(p)) for p in wanted}

    def _check_trees(self, partitions: list[int]) -> None:
        """Raise :class:`TreeDiverged` for the first partition whose tree size is not its
        next leaf index (trees behind their leaves were completed just before; one another
        projector is still completing is waited for by completing it again, at most twice)."""
        for attempt in range(3):
            rows = self._conn.execute(
                "SELECT kafka_partition, tree_size, next_leaf_index FROM projector_offsets"
                " WHERE topic = %s AND kafka_partition = ANY(%s) AND tree_size <> next_leaf_index"
                " ORDER BY kafka_partition", (self.topic, partitions)).fetchall()
            self._conn.rollback()
            behind = [p for p, size, leaf in rows if size < leaf]
            if not rows or len(behind) < len(rows) or attempt == 2:
                break
            self.complete_trees(behind)
        if rows:
            partition, size, leaf = rows[0]
            log.error("%s[%d]: stored tree size %d differs from next leaf index %d",
                      self.topic, partition, size, leaf)
            raise TreeDiverged(self.topic, partition, size, leaf)

    def advance(self, cur: psycopg.Cursor, progress: Sequence[PartitionProgress],
                nodes: Sequence[TreeNode] = ()) -> None:
        """Move each partition's stored position (and its tree: the batch's new perfect
        nodes and compact range), fenced on the offset the batch started from. Runs on the
        batch's cursor, inside its transaction; raises :class:`OffsetConflict`."""
        write_nodes(cur, self.topic, nodes)
        for p in progress:
            tree_size = p.tree.size if p.tree is not None else None
            tree_hashes = list(p.tree.hashes) if p.tree is not None else None
            if p.expected_offset is None:
                cur.execute(
                    "INSERT INTO projector_offsets (topic, kafka_partition, next_offset, next_leaf_index,"
                    " tree_size, compact_range) VALUES (%s, %s, %s, %s, coalesce(%s, 0),"
                    " coalesce(%s::bytea[], '{}')) ON CONFLICT DO NOTHING",
                    (self.topic, p.partition, p.next_offset, p.next_leaf_index, tree_size, tree_hashes),
                )
            else:
                cur.execute(
                    "UPDATE projector_offsets SET next_offset = %s, next_leaf_index = %s,"
                    " tree_size = coalesce(%s, tree_size), compact_range = coalesce(%s::bytea[], compact_range),"
                    " updated_at = now()"
                    " WHERE topic = %s AND kafka_partition = %s AND next_offset = %s",
                    (p.next_offset, p.next_leaf_index, tree_size, tree_hashes, self.topic, p.partition,
                     p.expected_offset),
                )
            if cur.rowcount != 1:
                raise OffsetConflict(
                    f"partition {p.partition}: the stored offset is no longer {p.expected_offset}; "
                    "another projector wrote it (rebalance); this batch is rolled back"
                )

    def complete_trees(self, partitions: Iterable[int], chunk: int = 50_000) -> None:
        """Append to each partition's tree the leaves it does not hold yet (``tree_size <
        next_leaf_index``: a ledger journalled before the trees existed, migration 0003),
        in its own transactions of at most ``chunk`` leaves, each fenced on the tree size
        it started from. Idempotent; another projector doing the same is harmless."""
        rows = self._conn.execute(
            "SELECT kafka_partition, next_leaf_index, tree_size, compact_range FROM projector_offsets"
            " WHERE topic = %s AND kafka_partition = ANY(%s) AND tree_size < next_leaf_index",
            (self.topic, list(partitions)),
        ).fetchall()
        self._conn.rollback()
        for partition, target, size, hashes in rows:
            tree = stored_tree(size, hashes)
            log.info("%s[%d]: appending %d leaves to the Merkle tree", self.topic, partition, target - size)
            while tree.size < target:
                start = tree.size
                found = leaf_hashes(self._conn, self.topic, partition, start, min(start + chunk, target))
                if [i for i, _ in found] != list(range(start, start + len(found))) or not found:
                    raise RuntimeError(
                        f"{self.topic} partition {partition}: leaf {start + len(found)} is missing from the "
                        "journal and the quarantine; the ledger was altered (run `protocolo verify`)")
                nodes = [TreeNode(partition, n) for _, h in found for n in tree.append(h)]
                # one transaction (the read above opened it): the nodes and the fenced size
                with self._conn.cursor() as cur:
                    write_nodes(cur, self.topic, nodes)
                    cur.execute(
                        "UPDATE projector_offsets SET tree_size = %s, compact_range = %s"
                        " WHERE topic = %s AND kafka_partition = %s AND tree_size = %s",
                        (tree.size, list(tree.hashes), self.topic, partition, start),
                    )
                    moved_by_us = cur.rowcount == 1
                if not moved_by_us:
                    self._conn.rollback()
                    break  # another process moved it: it is doing the same work
                self._conn.commit()
        self._conn.rollback()
