"""Writing one projector batch: staging, journal, quarantine and views (the offsets are the
tracking store's, ``protocolo.consumers.tracking``).

Everything here runs inside the caller's single transaction. Decoded records are copied
(``COPY``) into a temporary staging table, each marked duplicate or not (one index probe
per event id); the journal takes every staged row verbatim; then each view applies its
set-based SQL over the staged rows that are not duplicates. One batch costs a fixed number
of statements, whatever its size.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types

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


#: The staging columns' types, in :data:`STAGING_COLUMNS` order, then is_duplicate: what a
#: binary COPY sends (binary input has no casts, so each value must be of its column's type).
STAGING_TYPES = (
    "int4", "int8", "timestamptz", "bytea", "bytea", "jsonb", "bytea", "text", "int4", "uuid", "text", "text",
    "timestamptz", "jsonb", "int8", "bytea", "bool",
)


class _JsonTextDumper(Dumper):
    """JSON text as jsonb's binary input: a format version byte (1), then the text, which
    PostgreSQL parses exactly as the text input (same rules, same refusals)."""

    format = pq.Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


class _CanonicalUuidDumper(Dumper):
    """An event id in canonical text form (checked before) as uuid's binary input, its 16 bytes."""

    format = pq.Format.BINARY
    oid = pg_types["uuid"].oid

    def dump(self, obj: str) -> bytes:
        return bytes.fromhex(obj.replace("-", ""))


def stage(cur: psycopg.Cursor, rows: Sequence[JournalRow]) -> None:
    """COPY the rows into the staging table, each marked duplicate or not (see
    :func:`duplicate_flags`).

    In binary format: timestamps, integers, bytes and ids go as they are held, with no text
    to render here and parse there. A batch holding an event id that is not canonical
    UUID text goes as text, so PostgreSQL parses (or refuses) that id as it always has."""
    flags = duplicate_flags(cur, rows)
    binary = all(_CANONICAL_UUID.fullmatch(r.event_id) for r in rows)
    statement = f"COPY batch_events ({', '.join(STAGING_COLUMNS)}, is_duplicate) FROM STDIN"
    if binary:
        statement += " (FORMAT BINARY)"
        cur.adapters.register_dumper(None, _JsonTextDumper)  # only used where set_types names jsonb
        cur.adapters.register_dumper(None, _CanonicalUuidDumper)
    with cur.copy(statement) as copy:
        if binary:
            copy.set_types(STAGING_TYPES)
        for r, duplicate in zip(rows, flags, strict=True):
            copy.write_row((
                r.kafka_partition, r.kafka_offset, r.kafka_timestamp, r.record_key, r.record_value,
                r.headers, r.fingerprint, r.event_type, r.schema_version, r.event_id,
                r.protocol_number, r.entity_key, r.occurred_at, r.payload, r.leaf_index, r.leaf_hash,
                duplicate,
            ))


#: The event ids among a batch's that an applied (not duplicate) journal row already holds:
#: one probe of the partial unique index per id, whatever the journal's size. (A set-based
#: ``EXISTS`` over the staged rows let the planner, which has no statistics for the
#: temporary table, hash the whole journal on every batch: O(journal) per batch.)
APPLIED_EVENT_IDS = "SELECT event_id FROM journal WHERE event_id = ANY(%s::uuid[]) AND NOT is_duplicate"

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_key(text: str) -> str:
    """The canonical spelling of an event id, to compare ids as PostgreSQL's uuid does. Text
    that is no UUID is left as it is: PostgreSQL refuses it, and the batch writer then
    quarantines that row."""
    if _CANONICAL_UUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def duplicate_flags(cur: psycopg.Cursor, rows: Sequence[JournalRow]) -> list[bool]:
    """For each row, whether it repeats an event id: one an applied journal row holds, or one
    a row of the same batch at a lower (partition, offset) holds. The first occurrence in
    log order is applied, every later one is journalled as a duplicate and not applied."""
    keys = [_uuid_key(r.event_id) for r in rows]
    applied = {str(e) for (e,) in cur.execute(APPLIED_EVENT_IDS, (keys,))}
    first: dict[str, tuple[int, int]] = {}
    for r, key in zip(rows, keys, strict=True):
        at = (r.kafka_partition, r.kafka_offset)
        if key not in first or at < first[key]:
            first[key] = at
    return [key in applied or first[key] != (r.kafka_partition, r.kafka_offset)
            for r, key in zip(rows, keys, strict=True)]


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
