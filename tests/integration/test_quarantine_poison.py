"""Poison records on the ledger topic: quarantined with their raw bytes, never silently lost,
and projection goes on.

Between the valid events of a simulated day, on the same partitions (same keys), the test
writes raw records no valid producer would: garbage, a too-short header, a truncated and an
over-long valid record, an unknown writer-schema fingerprint, a valid event under the wrong
key and a tombstone; one is the very first record of its partition and one its very last.
The projector (small batches, so some batches hold only poison) must journal every valid
event, quarantine every poison record byte for byte with an error that says what is wrong,
move its stored offsets past all of them, and build the same views as a projection of the
valid events alone.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kafka import KafkaProducer
from ledger_records import Sent, send_in_order
from view_snapshot import (
    VIEW_TABLES,
    describe_difference,
    log_ends,
    project_in_process,
    scratch_database,
    snapshot,
)

from protocolo.producers.ledger_topic import ensure_ledger_topic
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event, PreparedEvent
from protocolo.producers.simulator import CallCentreDay
from protocolo.runtime import Runtime

#: publish and project end to end: also run with librdkafka (CONTRIBUTING, "Kafka client lane")
pytestmark = pytest.mark.kafka_client_lane


def _note(protocol: str) -> Event:
    return Event("NoteAdded", {"agent_id": "agent-007", "agent_name": "Ana Silva", "text": "poison test note"},
                 protocol_number=protocol, occurred_at=datetime.now(UTC) - timedelta(hours=1))


def test_poison_records_are_quarantined_and_projection_goes_on(backend, settings):
    rt = Runtime.start(settings, log=lambda m: None)
    with ProtocolIssuer(rt.database_url) as issuer:
        day = CallCentreDay(issuer.issue, contacts=16, seed=2718).build()
        stranger = issuer.issue()  # a protocol that appears only inside a wrongly keyed record
    publisher = rt.publisher("quarantine-test")
    try:
        valid = [publisher.prepare(e) for e in day.events]
        p1 = valid[0].key

        def fresh(protocol: bytes = p1) -> PreparedEvent:
            return publisher.prepare(_note(protocol.decode()))

        truncated, too_long, unknown_fp = fresh(), fresh(), fresh()
        wrong_key = publisher.prepare(Event(
            "ContactOpened",
            {"channel": "CHAT", "direction": "INBOUND", "service_type": "MOBILE",
             "customer": {"customer_code": "C7777777", "name": "Bruno Lima"}, "agent_id": "agent-001",
             "subject": "plan change", "recorded": False},
            protocol_number=stranger, occurred_at=datetime.now(UTC) - timedelta(hours=2),
        ))
    finally:
        publisher.close()
    random_fp = os.urandom(8)
    poison = [
        Sent("garbage", None, b"\x00\xffthis is not an avro record" + os.urandom(16), [],
             ("magic",)),
        Sent("too short", None, b"\xc3\x01\x12\x34", [("event_type", b"NoteAdded")], ("too short",)),
        Sent("truncated", None, truncated.value[:-7], truncated.headers, ("truncated",), truncated.event_id),
        Sent("trailing bytes", None, too_long.value + b"\x00\x02", too_long.headers, ("trailing",),
             too_long.event_id),
        Sent("unknown fingerprint", None, b"\xc3\x01" + random_fp + unknown_fp.value[10:], unknown_fp.headers,
             ("unknown", random_fp.hex()), unknown_fp.event_id),
        Sent("wrong key", None, wrong_key.value, wrong_key.headers,
             ("wrong key", stranger.lower(), p1.decode().lower()), wrong_key.event_id),
        Sent("tombstone", None, None, [], ("tombstone",)),
    ]

    # The order on the wire: garbage first of p1's partition, the others each right after a
    # valid event of the same key, the tombstone last of p1's partition.
    plan: list[Sent] = [Sent("garbage", p1, poison[0].value, poison[0].headers, poison[0].expect)]
    middle = poison[1:-1]
    gap = len(valid) // (len(middle) + 1)
    for i, event in enumerate(valid):
        plan.append(Sent(event.event_type, event.key, event.value, event.headers, event_id=event.event_id))
        if middle and i > 0 and i % gap == 0:
            p = middle.pop(0)
            # wrong key: a valid event of `stranger`, keyed by the protocol just written
            plan.append(Sent(p.label, event.key if p.label != "wrong key" else p1, p.value, p.headers,
                             p.expect, p.event_id))
    assert not middle
    plan.append(Sent("tombstone", p1, None, [], poison[-1].expect))

    send_in_order(rt.kafka_bootstrap, settings.topic, plan)
    poisoned = [s for s in plan if s.poison]
    goods = [s for s in plan if not s.poison]
    ends = log_ends(plan)
    p1_partition = plan[0].partition
    assert plan[0].offset == 0 and plan[-1].partition == p1_partition and plan[-1].offset == ends[p1_partition] - 1

    with rt.projector(batch_size=2) as projector:
        stats = projector.run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.journaled, stats.quarantined) == (len(goods), len(poisoned))

    with psycopg.connect(settings.database_url) as conn:
        quarantine = {
            (p, o): (key, value, headers, error)
            for p, o, key, value, headers, error in conn.execute(
                "SELECT kafka_partition, kafka_offset, record_key, record_value, headers, error FROM quarantine"
            )
        }
        journal = conn.execute(
            "SELECT kafka_partition, kafka_offset, event_id, record_value, leaf_index FROM journal"
            " ORDER BY kafka_partition, kafka_offset"
        ).fetchall()
        offsets = {p: (o, leaf) for p, o, leaf in conn.execute(
            "SELECT kafka_partition, next_offset, next_leaf_index FROM projector_offsets")}
        # every offset gets a leaf: (partition, offset) -> leaf index, journal and quarantine
        leaf_of = dict(((p, o), leaf) for p, o, leaf in conn.execute(
            "SELECT kafka_partition, kafka_offset, leaf_index FROM journal UNION ALL"
            " SELECT kafka_partition, kafka_offset, leaf_index FROM quarantine"))
        strangers = conn.execute(
            "SELECT count(*) FROM interactions WHERE protocol_number = %s", (stranger,)).fetchone()[0]

    # Every poison record is in quarantine, byte for byte, with an error that says what is wrong.
    assert set(quarantine) == {(s.partition, s.offset) for s in poisoned}
    for s in poisoned:
        key, value, headers, error = quarantine[s.partition, s.offset]
        where = f"{s.label} at {s.partition}@{s.offset}: {error!r}"
        assert (bytes(value) if value is not None else None) == s.value, where
        assert bytes(key) == s.key, where
        assert headers == [[k, v.decode()] for k, v in s.headers], where
        for fragment in s.expect:
            assert fragment in error.lower(), where
    # ... and nothing of it reached the journal or the views.
    assert strangers == 0
    poison_ids = {uuid.UUID(s.event_id) for s in poisoned if s.event_id}
    assert poison_ids and not poison_ids & {row[2] for row in journal}

    # Every valid event is journalled verbatim at its offset, every offset a leaf, numbered without gaps.
    assert [(p, o, str(e), bytes(v)) for p, o, e, v, _ in journal] == sorted(
        (s.partition, s.offset, s.event_id, s.value) for s in goods)
    for p in ends:
        # leaves in offset order over journal and quarantine together, without gaps
        leaves = [leaf_of[k] for k in sorted(k for k in leaf_of if k[0] == p)]
        assert leaves == list(range(len(leaves))), f"partition {p}: leaf indices {leaves}"
        # The stored offsets moved past the poison, up to the log end (a tombstone is last on p1's).
        assert offsets[p] == (ends[p], len(leaves)), f"partition {p}: {offsets[p]}, log end {ends[p]}"

    # The views are those of the valid events alone, projected from a clean topic.
    clean_topic = f"{settings.topic}-clean"
    ensure_ledger_topic(rt.kafka_bootstrap, clean_topic, settings.partitions)
    producer = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap, acks="all")
    try:
        for s in goods:
            producer.send(clean_topic, key=s.key, value=s.value, headers=s.headers)
        producer.flush(timeout=15)
    finally:
        producer.close()
    live = snapshot(settings.database_url)
    with scratch_database(backend.database_url, "poison_ref") as reference_url:
        ref_stats = project_in_process(rt.kafka_bootstrap, reference_url, clean_topic)
        reference = snapshot(reference_url)
    assert ref_stats.journaled == len(goods)
    live_views = {t: live[t] for t in VIEW_TABLES}
    ref_views = {t: reference[t] for t in VIEW_TABLES}
    assert live_views == ref_views, describe_difference(live_views, ref_views)
