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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg

from protocolo.projections.integrity import leaf_hash


@dataclass(frozen=True, slots=True)
class Position:
    """What PostgreSQL holds for one partition: the next offset to read, the next leaf index."""

    next_offset: int
    next_leaf_index: int


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
            "SELECT kafka_partition, next_offset, next_leaf_index FROM projector_offsets"
            " WHERE topic = %s AND kafka_partition = ANY(%s)",
            (self.topic, list(partitions)),
        ).fetchall()
        return {p: Position(o, leaf) for p, o, leaf in rows}

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
        """Where each partition resumes, read in one snapshot of its own (rolled back after)."""
        wanted = list(partitions)
        self._conn.rollback()
        try:
            stored = self.positions(wanted)
            last = self.last_projected({p: at.next_offset for p, at in stored.items() if at.next_offset > 0})
        finally:
            self._conn.rollback()
        return {p: ResumePoint(p, stored.get(p), last.get(p)) for p in wanted}

    def advance(self, cur: psycopg.Cursor, progress: Sequence[PartitionProgress]) -> None:
        """Move each partition's stored position, fenced on the offset the batch started from.
        Runs on the batch's cursor, inside its transaction; raises :class:`OffsetConflict`."""
        for p in progress:
            if p.expected_offset is None:
                cur.execute(
                    "INSERT INTO projector_offsets (topic, kafka_partition, next_offset, next_leaf_index)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (self.topic, p.partition, p.next_offset, p.next_leaf_index),
                )
            else:
                cur.execute(
                    "UPDATE projector_offsets SET next_offset = %s, next_leaf_index = %s, updated_at = now()"
                    " WHERE topic = %s AND kafka_partition = %s AND next_offset = %s",
                    (p.next_offset, p.next_leaf_index, self.topic, p.partition, p.expected_offset),
                )
            if cur.rowcount != 1:
                raise OffsetConflict(
                    f"partition {p.partition}: the stored offset is no longer {p.expected_offset}; "
                    "another projector wrote it (rebalance); this batch is rolled back"
                )
