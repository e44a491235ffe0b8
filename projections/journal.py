"""Writing one projector batch: staging, journal, quarantine, views and offsets.

Everything here runs inside the caller's single transaction. Decoded records are copied
(``COPY``) into a temporary staging table; duplicates of already journalled event ids are
marked there; the journal takes every staged row verbatim; then each view applies its
set-based SQL over the staged rows that are not duplicates. One batch costs a fixed number
of statements, whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from .integrity import leaf_hash
from .views import apply_views

STAGING_COLUMNS = (
    "kafka_partition", "kafka_offset", "kafka_timestamp", "record_key", "record_value", "headers",
    "fingerprint", "event_type", "schema_version", "event_id", "protocol_number", "entity_key",
    "occurred_at", "payload", "leaf_index", "leaf_hash",
)


@dataclass(frozen=True, slots=True)
class JournalRow:
    kafka_partition: int
    kafka_offset: int
    kafka_timestamp: datetime | None
    record_key: bytes | None
    record_value: bytes
    headers: str  # JSON text
    fingerprint: bytes
    event_type: str
    schema_version: int
    event_id: str
    protocol_number: str | None
    entity_key: str
    occurred_at: datetime
    payload: str  # JSON text
    leaf_index: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    kafka_partition: int
    kafka_offset: int
    kafka_timestamp: datetime | None
    record_key: bytes | None
    record_value: bytes | None
    headers: str
    error: str


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    partition: int
    expected_offset: int | None  # what PostgreSQL held when the batch started; None: no row yet
    next_offset: int
    next_leaf_index: int


class OffsetConflict(RuntimeError):
    """Another projector moved this partition's stored offset: the batch is not ours to write."""


def ensure_staging(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS batch_events ("
        " kafka_partition integer, kafka_offset bigint, kafka_timestamp timestamptz,"
        " record_key bytea, record_value bytea, headers jsonb, fingerprint bytea,"
        " event_type text, schema_version integer, event_id uuid, protocol_number text,"
        " entity_key text, occurred_at timestamptz, payload jsonb, leaf_index bigint,"
        " leaf_hash bytea, is_duplicate boolean NOT NULL DEFAULT false"
        ") ON COMMIT DELETE ROWS"
    )


def stage(cur: psycopg.Cursor, rows: Iterable[JournalRow]) -> None:
    with cur.copy(f"COPY batch_events ({', '.join(STAGING_COLUMNS)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row((
                r.kafka_partition, r.kafka_offset, r.kafka_timestamp, r.record_key, r.record_value,
                r.headers, r.fingerprint, r.event_type, r.schema_version, r.event_id,
                r.protocol_number, r.entity_key, r.occurred_at, r.payload, r.leaf_index, r.leaf_hash,
            ))


MARK_DUPLICATES = """
UPDATE batch_events b SET is_duplicate = true
  FROM (SELECT kafka_partition, kafka_offset, event_id,
               row_number() OVER (PARTITION BY event_id ORDER BY kafka_partition, kafka_offset) AS n
          FROM batch_events) d
 WHERE b.kafka_partition = d.kafka_partition AND b.kafka_offset = d.kafka_offset
   AND (d.n > 1 OR EXISTS (SELECT 1 FROM journal j WHERE j.event_id = d.event_id AND NOT j.is_duplicate))
"""

JOURNAL_FROM_STAGING = f"""
INSERT INTO journal (topic, {', '.join(STAGING_COLUMNS)}, is_duplicate)
SELECT %(topic)s, {', '.join(STAGING_COLUMNS)}, is_duplicate FROM batch_events
"""


def write_batch(
    conn: psycopg.Connection,
    topic: str,
    rows: Sequence[JournalRow],
    quarantined: Sequence[QuarantineRow],
    progress: Sequence[PartitionProgress],
) -> None:
    """Write a decoded batch. The caller owns the transaction (commit or roll back)."""
    with conn.cursor() as cur:
        if rows:
            stage(cur, rows)
            cur.execute(MARK_DUPLICATES)
            cur.execute(JOURNAL_FROM_STAGING, {"topic": topic})
            apply_views(cur)
        if quarantined:
            cur.executemany(
                "INSERT INTO quarantine (topic, kafka_partition, kafka_offset, kafka_timestamp,"
                " record_key, record_value, headers, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(topic, q.kafka_partition, q.kafka_offset, q.kafka_timestamp, q.record_key,
                  q.record_value, q.headers, q.error) for q in quarantined],
            )
        store_progress(cur, topic, progress)


def store_progress(cur: psycopg.Cursor, topic: str, progress: Sequence[PartitionProgress]) -> None:
    """Move each partition's stored offset, fenced on the value the batch started from."""
    for p in progress:
        if p.expected_offset is None:
            cur.execute(
                "INSERT INTO projector_offsets (topic, kafka_partition, next_offset, next_leaf_index)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (topic, p.partition, p.next_offset, p.next_leaf_index),
            )
        else:
            cur.execute(
                "UPDATE projector_offsets SET next_offset = %s, next_leaf_index = %s, updated_at = now()"
                " WHERE topic = %s AND kafka_partition = %s AND next_offset = %s",
                (p.next_offset, p.next_leaf_index, topic, p.partition, p.expected_offset),
            )
        if cur.rowcount != 1:
            raise OffsetConflict(
                f"partition {p.partition}: the stored offset is no longer {p.expected_offset}; "
                "another projector wrote it (rebalance); this batch is rolled back"
            )


def stored_progress(conn: psycopg.Connection, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """partition -> (next_offset, next_leaf_index) for partitions that have a stored row."""
    rows = conn.execute(
        "SELECT kafka_partition, next_offset, next_leaf_index FROM projector_offsets"
        " WHERE topic = %s AND kafka_partition = ANY(%s)",
        (topic, list(partitions)),
    ).fetchall()
    return {p: (o, leaf) for p, o, leaf in rows}


def last_projected(conn: psycopg.Connection, topic: str, next_offsets: dict[int, int]) -> dict[int, tuple[int, bytes]]:
    """partition -> (offset, leaf hash) of the record just below each stored next offset,
    from the journal or, for a quarantined record, computed from its kept raw bytes."""
    if not next_offsets:
        return {}
    parts, offsets = list(next_offsets), [next_offsets[p] - 1 for p in next_offsets]
    rows = conn.execute(
        "SELECT w.p, w.o, j.leaf_hash, q.record_key, q.record_value, q.kafka_offset IS NOT NULL"
        "  FROM unnest(%s::int[], %s::bigint[]) AS w(p, o)"
        "  LEFT JOIN journal j ON j.topic = %s AND j.kafka_partition = w.p AND j.kafka_offset = w.o"
        "  LEFT JOIN quarantine q ON q.topic = %s AND q.kafka_partition = w.p AND q.kafka_offset = w.o",
        (parts, offsets, topic, topic),
    ).fetchall()
    found: dict[int, tuple[int, bytes]] = {}
    for p, o, leaf, q_key, q_value, quarantined in rows:
        if leaf is not None:
            found[p] = (o, bytes(leaf))
        elif quarantined:
            key = bytes(q_key) if q_key is not None else None
            found[p] = (o, leaf_hash(topic, p, o, key, bytes(q_value) if q_value is not None else b""))
        # neither: offsets skipped by the broker (e.g. transaction markers); nothing to check
    return found
