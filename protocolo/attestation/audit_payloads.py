"""``protocolo verify``'s check of the decoded copy: ``journal.payload`` and the decoded
columns against the record's own bytes.

The leaves prove ``record_value``; the views, ``history``, the API and the bundles read
``payload`` and the columns decoded from it (``event_type``, ``occurred_at``,
``protocol_number``...). An edit of those would be read as the truth while every leaf
still verified. So every journal row's ``record_value`` is decoded again with the schema
catalogue, put in its JSON form (:func:`protocolo.schemas.json_form.to_json`, the very
function the projector wrote it with) and compared with the stored copy; each difference
is a ``payload-mismatch`` naming the partition, leaf, offset and the field or column.

Rows are streamed per partition through a server-side cursor in leaf order: memory is one
fetch batch, whatever the journal's size. A row whose bytes no longer decode is left to
the leaf check (its leaf differs from the tree's): it is counted here but not reported
twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.attestation.audit_findings import PAYLOAD_MISMATCH, Finding, FindingLog
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import DecodeError
from protocolo.schemas.json_form import to_json
from protocolo.schemas.validation import entity_key

FETCH_ROWS = 2000

_COLUMNS = ("kafka_offset", "leaf_index", "record_value", "payload::text", "event_type", "schema_version",
            "fingerprint", "event_id::text", "protocol_number", "entity_key", "occurred_at")


@dataclass
class PayloadStats:
    """What the check read: rows compared, rows whose bytes did not decode, seconds."""

    rows: int = 0
    undecodable: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rate = round(self.rows / self.seconds) if self.seconds > 0 else None
        return {"rows": self.rows, "undecodable": self.undecodable, "seconds": round(self.seconds, 3),
                "rows_per_s": rate}


def first_difference(stored: Any, decoded: Any, path: str = "payload") -> str | None:
    """Where two JSON values first differ, as ``path: stored X, the record says Y``."""
    if isinstance(stored, dict) and isinstance(decoded, dict):
        for key in sorted(set(stored) | set(decoded)):
            if key not in stored:
                return f"{path}.{key}: absent from the stored copy, the record says {_short(decoded[key])}"
            if key not in decoded:
                return f"{path}.{key}: stored {_short(stored[key])}, absent from the record"
            found = first_difference(stored[key], decoded[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(decoded, list) and len(stored) == len(decoded):
        for n, (a, b) in enumerate(zip(stored, decoded, strict=True)):
            found = first_difference(a, b, f"{path}[{n}]")
            if found:
                return found
        return None
    if stored == decoded and type(stored) is type(decoded):
        return None
    if stored == decoded and {type(stored), type(decoded)} <= {int, float}:
        return None  # jsonb keeps numbers as decimals: 1.0 may come back as 1
    return f"{path}: stored {_short(stored)}, the record says {_short(decoded)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class PayloadAudit:
    """Compares one partition's decoded copies with their records."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, findings: FindingLog,
                 catalogue: SchemaCatalogue) -> None:
        self.conn = conn
        self.topic = topic
        self.findings = findings
        self.catalogue = catalogue
        self.stats = PayloadStats()

    def run(self, partitions: Sequence[int]) -> PayloadStats:
        started = time.monotonic()
        for partition in partitions:
            self._partition(partition)
        self._duplicate_marks(partitions)
        self.stats.seconds += time.monotonic() - started
        return self.stats

    def _duplicate_marks(self, partitions: Sequence[int]) -> None:
        """``is_duplicate`` decides what the views apply: exactly one row of each event id is
        applied, and within a partition (read in offset order) it is the first. A row marked
        the other way would hide an event from every view, or apply one twice, while the
        views recomputed from the journal agree with it."""
        cur = self.conn.cursor(name="verify_duplicates")
        cur.itersize = FETCH_ROWS
        cur.execute(
            "SELECT kafka_partition, leaf_index, kafka_offset, event_id::text, is_duplicate, applied FROM ("
            " SELECT kafka_partition, leaf_index, kafka_offset, event_id, is_duplicate,"
            "  count(*) FILTER (WHERE NOT is_duplicate) OVER (PARTITION BY event_id) AS applied,"
            "  row_number() OVER (PARTITION BY event_id, kafka_partition ORDER BY kafka_offset) AS n,"
            "  bool_or(NOT is_duplicate) OVER (PARTITION BY event_id, kafka_partition) AS here"
            " FROM journal WHERE topic = %s) j"
            " WHERE kafka_partition = ANY(%s) AND (applied <> 1 OR (here AND (n = 1) = is_duplicate))"
            " ORDER BY kafka_partition, leaf_index", (self.topic, list(partitions)))
        try:
            for partition, leaf_index, offset, event_id, duplicate, applied in cur:
                detail = (f"column is_duplicate: event {event_id} has {applied} applied rows, the log "
                          "gives exactly one" if applied != 1 else
                          f"column is_duplicate: stored {str(duplicate).lower()}, the log gives "
                          f"{str(not duplicate).lower()} (the first row of event {event_id} in this "
                          "partition is the applied one)")
                self.findings.add(Finding(PAYLOAD_MISMATCH, partition, leaf_index, offset, "journal", detail))
        finally:
            cur.close()

    def _partition(self, partition: int) -> None:
        cur = self.conn.cursor(name=f"verify_payload_{partition}")
        cur.itersize = FETCH_ROWS
        cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM journal WHERE topic = %s AND kafka_partition = %s"
                    " ORDER BY leaf_index", (self.topic, partition))
        try:
            for row in cur:
                self.stats.rows += 1
                self._row(partition, row)
        finally:
            cur.close()

    def _row(self, partition: int, row: tuple[Any, ...]) -> None:
        offset, leaf_index, value, payload_text = row[:4]
        try:
            decoded = self.catalogue.decode(bytes(value))
        except (DecodeError, KeyError, ValueError):
            self.stats.undecodable += 1  # the leaf check reports the altered bytes
            return
        problem = _column_difference(row[4:], decoded)
        if problem is None:
            # Python's json reads jsonb's text back exactly; re-parse the record's JSON form
            # rather than compare texts (jsonb orders keys its own way).
            stored, recomputed = json.loads(payload_text), json.loads(to_json(decoded.record))
            # Equality first (in C); the walk that names the field only for a difference.
            # (== counts true and 1 alike: the views read both as the same boolean.)
            problem = None if stored == recomputed else first_difference(stored, recomputed)
        if problem is not None:
            self.findings.add(Finding(PAYLOAD_MISMATCH, partition, leaf_index, offset, "journal", problem))


def _column_difference(columns: Sequence[Any], decoded: Any) -> str | None:
    """The decoded columns the views filter and order by, against the record's own values."""
    event_type, schema_version, fingerprint, event_id, protocol_number, key, occurred_at = columns
    meta = decoded.record["meta"]
    try:
        expected_key = entity_key(decoded.event_type, decoded.record)
    except (KeyError, ValueError, TypeError):
        expected_key = key
    expected = (
        ("event_type", event_type, decoded.event_type),
        ("schema_version", schema_version, decoded.writer_version),
        ("fingerprint", bytes(fingerprint).hex(), decoded.fingerprint.hex()),
        ("event_id", event_id, str(meta["event_id"])),
        ("protocol_number", protocol_number, meta.get("protocol_number")),
        ("entity_key", key, expected_key),
        ("occurred_at", occurred_at, meta["occurred_at"]),
    )
    for column, stored, recomputed in expected:
        if stored != recomputed:
            return f"column {column}: stored {_short(stored)}, the record says {_short(recomputed)}"
    return None


def audit_payloads(conn: psycopg.Connection[Any], topic: str, partitions: Sequence[int],
                   findings: FindingLog, catalogue: SchemaCatalogue | None = None) -> PayloadStats:
    """Check every journal row's decoded copy of ``topic`` (the partitions given) in one
    read-only REPEATABLE READ snapshot."""
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with conn.transaction():
        return PayloadAudit(conn, topic, findings, catalogue or SchemaCatalogue.load()).run(partitions)
