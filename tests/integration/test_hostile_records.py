"""No single record, whatever its bytes, can stop projection.

Between the valid events of a simulated day, on the same partitions (same keys), a raw
``KafkaProducer`` (not the publisher, which refuses such events) writes records whose
content PostgreSQL's ``text``/``jsonb`` cannot store or that no valid producer would write:
a NUL character (U+0000) inside string fields of a valid Avro single-object encoding
(encoded here with fastavro and the single-object header, independently of the project's
encoder), NUL and invalid UTF-8 in header values, a NUL in a header key, a key that is not
UTF-8, random bytes, hundreds of kilobytes of headers with a NUL in them, and a recording
whose retention (2^31 - 1 days) passes every decode-time rule but makes the views compute a
deadline beyond PostgreSQL's timestamps (refused at write time). Alongside them,
records that are odd but storable (hundreds of kilobytes of clean headers) must be
journalled like any valid event.

One projector run (small batches, so batches mix hostile and valid records) must reach the
log end without stopping, quarantine every hostile record with its raw key, value and
headers (a header that is not storable text is kept as ``{"hex": ...}``), journal every
valid one, and a second run must add nothing.
"""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastavro import schemaless_writer
from ledger_records import Sent, send_in_order
from view_snapshot import log_ends, snapshot

from protocolo.core.config import Settings
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event, LedgerPublisher, PreparedEvent
from protocolo.producers.simulator import CallCentreDay
from protocolo.runtime import Runtime
from protocolo.schemas.catalogue import SchemaCatalogue

#: publish and project end to end: also run with librdkafka (CONTRIBUTING, "Kafka client lane")
pytestmark = pytest.mark.kafka_client_lane

MAGIC = b"\xc3\x01"  # Avro single-object encoding (schemas/codec.py)


def avro_single_object(catalogue: SchemaCatalogue, value: bytes, change: dict[str, Any]) -> bytes:
    """``value`` decoded, ``change`` applied (dotted paths), encoded again with fastavro."""
    decoded = catalogue.decode(value)
    record = decoded.record
    for path, new in change.items():
        *parents, leaf = path.split(".")
        target = record
        for name in parents:
            target = target[name]
        target[leaf] = new
    schema = catalogue.version(decoded.event_type, decoded.writer_version)
    body = io.BytesIO()
    schemaless_writer(body, schema.schema, record)
    return MAGIC + schema.fingerprint + body.getvalue()


def _note(protocol: str, text: str = "hostile records test") -> Event:
    return Event("NoteAdded", {"agent_id": "agent-007", "agent_name": "Ana Silva", "text": text},
                 protocol_number=protocol, occurred_at=datetime.now(UTC) - timedelta(hours=1))


def hostile_records(publisher: LedgerPublisher, catalogue: SchemaCatalogue, protocol: str,
                    recording: PreparedEvent) -> list[Sent]:
    def fresh() -> PreparedEvent:
        return publisher.prepare(_note(protocol))

    def with_payload(label: str, change: dict[str, Any], *expect: str) -> Sent:
        e = fresh()
        return Sent(label, e.key, avro_single_object(catalogue, e.value, change), e.headers, expect, e.event_id)

    def with_headers(label: str, extra: list[tuple[str, bytes]], *expect: str) -> Sent:
        e = fresh()
        return Sent(label, e.key, e.value, [*e.headers, *extra], expect, e.event_id)

    big_clean = [(f"x-note-{i}", ("é" * 4000).encode()) for i in range(40)]  # ~320 KB of headers
    big_nul = [(f"x-blob-{i}", b"A" * 8000) for i in range(40)] + [("x-blob-end", b"end\x00")]
    non_utf8_key = fresh()
    return [
        with_payload("NUL in a string field", {"text": "before\x00after"}, "nul", "text"),
        with_payload("NUL in a nested string field", {"meta.producer": "\x00"}, "nul", "meta.producer"),
        with_payload("NUL in two fields", {"agent_name": "A\x00", "agent_id": "\x00b"}, "nul", "agent_"),
        with_headers("NUL in a header value", [("x-trace", b"ab\x00cd")], "header", "x-trace"),
        with_headers("invalid UTF-8 in a header value", [("x-trace", b"\xff\xfe\xc3(")], "header", "utf-8"),
        with_headers("NUL in a header key", [("x-\x00key", b"v")], "header"),
        with_headers("huge headers with a NUL", big_nul, "header", "x-blob-end"),
        Sent("key not UTF-8", b"\xff" + non_utf8_key.key, non_utf8_key.value, non_utf8_key.headers,
             ("wrong key",), non_utf8_key.event_id),
        Sent("random bytes", os.urandom(16), os.urandom(300), [("x-\u00e9", os.urandom(40))], ("",)),
        # Passes every decode-time rule, but its retention deadline is beyond PostgreSQL's
        # timestamps: the views refuse it at write time (the writer's net, row_isolation).
        Sent("retention beyond any timestamp", recording.key, avro_single_object(
            catalogue, recording.value, {"meta.event_id": str(uuid.uuid4()), "recording_id": "rec-beyond-time",
                                         "retention_days": 2**31 - 1}),
             recording.headers, ("refused", "out of range")),
        # Odd but storable: journalled like any valid event.
        with_headers("huge clean headers", big_clean),
    ]


def project_until_caught_up(rt: Runtime) -> tuple[int, int]:
    with rt.projector(batch_size=3) as projector:
        stats = projector.run(until_caught_up=True, idle_timeout_s=60)
    return stats.journaled, stats.quarantined


def header_bytes(entry: Any) -> bytes:
    """A stored header key or value back to bytes (text, or {"hex": ...} for what text cannot hold)."""
    return bytes.fromhex(entry["hex"]) if isinstance(entry, dict) else entry.encode()


def test_hostile_records_are_quarantined_and_projection_never_stops(settings: Settings) -> None:
    rt = Runtime.start(settings, log=lambda m: None)
    catalogue = SchemaCatalogue.load()
    with ProtocolIssuer(rt.database_url) as issuer:
        day = CallCentreDay(issuer.issue, contacts=12, seed=4242).build()
    publisher = rt.publisher("hostile-test")
    try:
        valid = [publisher.prepare(e) for e in day.events]
        recording = next(e for e in valid if e.event_type == "RecordingCaptured")
        hostile = hostile_records(publisher, catalogue, valid[0].key.decode(), recording)
    finally:
        publisher.close()

    # Each hostile record right after a valid event of the same protocol (same partition).
    plan: list[Sent] = []
    gap = len(valid) // (len(hostile) + 1)
    pending = list(hostile)
    for i, event in enumerate(valid):
        plan.append(Sent(event.event_type, event.key, event.value, event.headers, event_id=event.event_id))
        if pending and i % gap == 0:
            plan.append(pending.pop(0))
    plan += pending

    send_in_order(rt.kafka_bootstrap, settings.topic, plan, max_request_size=8 * 1024 * 1024)
    bad = [s for s in plan if s.hostile]
    goods = [s for s in plan if not s.hostile]
    ends = log_ends(plan)

    # One run reaches the end without stopping ...
    assert project_until_caught_up(rt) == (len(goods), len(bad))

    with psycopg.connect(settings.database_url) as conn:
        quarantine = {
            (p, o): (key, value, headers, error)
            for p, o, key, value, headers, error in conn.execute(
                "SELECT kafka_partition, kafka_offset, record_key, record_value, headers, error FROM quarantine")
        }
        journal = conn.execute(
            "SELECT kafka_partition, kafka_offset, event_id, record_value, leaf_index FROM journal"
            " ORDER BY kafka_partition, kafka_offset").fetchall()
        offsets = {p: (o, leaf) for p, o, leaf in conn.execute(
            "SELECT kafka_partition, next_offset, next_leaf_index FROM projector_offsets")}
        # every offset gets a leaf: (partition, offset) -> leaf index, journal and quarantine
        leaf_of = dict(((p, o), leaf) for p, o, leaf in conn.execute(
            "SELECT kafka_partition, kafka_offset, leaf_index FROM journal UNION ALL"
            " SELECT kafka_partition, kafka_offset, leaf_index FROM quarantine"))

    # ... every hostile record is in quarantine with its raw bytes and a reason ...
    assert set(quarantine) == {(s.partition, s.offset) for s in bad}
    for s in bad:
        key, value, headers, error = quarantine[s.partition, s.offset]
        where = f"{s.label} at {s.partition}@{s.offset}: {error[:300]!r}"
        assert bytes(value) == s.value and bytes(key) == s.key, where
        assert [(header_bytes(k).decode("utf-8", "surrogateescape"), header_bytes(v)) for k, v in headers] == [
            (k, v) for k, v in s.headers], where
        assert "\x00" not in error, where
        for fragment in s.expect:
            assert fragment in error.lower(), where
    hostile_ids = {uuid.UUID(s.event_id) for s in bad if s.event_id}
    assert not hostile_ids & {row[2] for row in journal}

    # ... every valid (or odd but storable) one is journalled at its offset, every offset a leaf ...
    assert [(p, o, str(e), bytes(v)) for p, o, e, v, _ in journal] == sorted(
        (s.partition, s.offset, s.event_id, s.value) for s in goods)
    for p in ends:
        # leaves in offset order over journal and quarantine together, without gaps
        leaves = [leaf_of[k] for k in sorted(k for k in leaf_of if k[0] == p)]
        assert leaves == list(range(len(leaves))), f"partition {p}: leaf indices {leaves}"
        assert offsets[p] == (ends[p], len(leaves)), f"partition {p}: {offsets[p]}, log end {ends[p]}"

    # ... and a second run finds nothing left to do.
    before = snapshot(settings.database_url)
    assert project_until_caught_up(rt) == (0, 0)
    assert snapshot(settings.database_url) == before
