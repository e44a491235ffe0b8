"""Writing one projector batch: staging, journal, quarantine and views (the offsets are the
tracking store's, ``protocolo.consumers.tracking``).

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
    leaf_index: int  # every offset gets a leaf, quarantined records included
    leaf_hash: bytes


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


def write_journal(cur: psycopg.Cursor, topic: str, rows: Sequence[JournalRow], *, clear_staging: bool = False) -> None:
    """Journal decoded rows and apply the views over them. The caller owns the transaction.
    ``clear_staging`` empties the staging table afterwards, for a caller that writes several
    parts of a batch in one transaction (it is otherwise emptied at commit)."""
    if not rows:
        return
    stage(cur, rows)
    cur.execute(MARK_DUPLICATES)
    cur.execute(JOURNAL_FROM_STAGING, {"topic": topic})
    apply_views(cur)
    if clear_staging:
        cur.execute("DELETE FROM batch_events")


def write_quarantine(cur: psycopg.Cursor, topic: str, quarantined: Sequence[QuarantineRow]) -> None:
    if quarantined:
        cur.executemany(
            "INSERT INTO quarantine (topic, kafka_partition, kafka_offset, kafka_timestamp,"
            " record_key, record_value, headers, error, leaf_index, leaf_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(topic, q.kafka_partition, q.kafka_offset, q.kafka_timestamp, q.record_key,
              q.record_value, q.headers, q.error, q.leaf_index, q.leaf_hash) for q in quarantined],
        )
