"""Schema evolution on the live topic: ContactOpened v1 and v2 records side by side.

Old producers keep writing v1 (no ``language``), new ones v2. Both project; the journal
keeps each record's raw bytes and writer version (the evidence is what was sent, not a
re-encoding), while the payload and the interactions view see one shape: the v1 record
resolved into v2, so its language is v2's default ``pt-BR``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from kafka import KafkaProducer

from protocolo.consumers.decoding import to_json
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.projections.integrity import leaf_hash
from protocolo.runtime import Runtime
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import HEADER_SIZE, read_body

RAW_EVENT_ID = "5b0f3c1e-8d7a-4b7e-9a51-3f1c2d4e5a60"

OPENED = {
    "channel": "PHONE", "direction": "INBOUND", "service_type": "BROADBAND",
    "customer": {"customer_code": "C1234567", "name": "Carla Souza"}, "agent_id": "agent-042",
    "subject": "slow connection", "recorded": False,
}


def test_v1_v2_and_v3_records_project_side_by_side(settings):
    catalogue = SchemaCatalogue.load()
    v1 = catalogue.version("ContactOpened", 1)
    v2 = catalogue.version("ContactOpened", 2)
    v3 = catalogue.version("ContactOpened", 3)
    assert catalogue.current("ContactOpened") is v3, "this test is about v1 and v2 next to the current v3"

    rt = Runtime.start(settings, log=lambda m: None)
    with ProtocolIssuer(rt.database_url) as issuer:
        old, new, default, raw_old, small = (issuer.issue() for _ in range(5))
    at = datetime.now(UTC) - timedelta(hours=3)
    events = [
        Event("ContactOpened", OPENED, protocol_number=old, occurred_at=at, schema_version=1),
        Event("ContactOpened", {**OPENED, "language": "en-US"}, protocol_number=new, occurred_at=at),
        Event("ContactOpened", OPENED, protocol_number=default, occurred_at=at, schema_version=2),
        Event("ContactOpened", {**OPENED, "policy_profile": "br-anatel-rgc-small"}, protocol_number=small,
              occurred_at=at),
    ] + [
        Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p, occurred_at=at + timedelta(minutes=5))
        for p in (old, new, default, small)
    ]
    with rt.publisher("evolution-test") as publisher:
        prepared = [publisher.prepare(e) for e in events]
        receipts = publisher.send_prepared(prepared)
    # A producer in another language writes v1 with nothing but the v1 schema file: here, the
    # first v1 record read back with its own schema, given a new id and protocol, re-encoded.
    raw_record = read_body(prepared[0].value, v1.schema, None, start=HEADER_SIZE)
    assert "language" not in raw_record
    raw_record["meta"] = {**raw_record["meta"], "event_id": RAW_EVENT_ID, "protocol_number": raw_old,
                          "producer": "legacy-ivr"}
    raw_value = catalogue.encode("ContactOpened", raw_record, version=1)
    producer = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap, acks="all")
    try:
        md = producer.send(settings.topic, key=raw_old.encode(), value=raw_value).get(timeout=15)
    finally:
        producer.close()

    with rt.projector(batch_size=100) as projector:
        stats = projector.run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.journaled, stats.quarantined) == (len(events) + 1, 0)

    with psycopg.connect(settings.database_url) as conn:
        journal = {
            str(event_id): (p, o, bytes(key), bytes(value), bytes(fp), version, payload, bytes(leaf))
            for event_id, p, o, key, value, fp, version, payload, leaf in conn.execute(
                "SELECT event_id, kafka_partition, kafka_offset, record_key, record_value, fingerprint,"
                " schema_version, payload, leaf_hash FROM journal WHERE event_type = 'ContactOpened'"
            )
        }
        languages = dict(conn.execute(
            "SELECT protocol_number, language FROM interactions"))
        profiles = dict(conn.execute(
            "SELECT protocol_number, policy_profile FROM interactions"))

    expected = {
        prepared[0].event_id: (receipts[0], prepared[0].value, v1, "pt-BR"),
        prepared[1].event_id: (receipts[1], prepared[1].value, v3, "en-US"),
        prepared[2].event_id: (receipts[2], prepared[2].value, v2, "pt-BR"),
        prepared[3].event_id: (receipts[3], prepared[3].value, v3, "pt-BR"),
    }
    for event_id, (receipt, sent, version, language) in expected.items():
        p, o, key, value, fp, writer, payload, leaf = journal[event_id]
        assert (p, o) == (receipt.partition, receipt.offset)
        assert value == sent, f"journal does not hold the bytes sent for {event_id} (v{version.version})"
        assert value[2:10] == fp == version.fingerprint
        assert writer == version.version
        assert payload["language"] == language
        assert leaf == leaf_hash(settings.topic, p, o, key, sent)
        # The payload is the raw bytes resolved into the current schema, nothing else.
        assert payload == json.loads(to_json(catalogue.decode(value).record))
    assert languages == {old: "pt-BR", new: "en-US", default: "pt-BR", raw_old: "pt-BR", small: "pt-BR"}
    # a contact that names its profile (v3) gets it; the others take their service type's
    assert profiles == {old: "br-anatel-rgc@1", new: "br-anatel-rgc@1", default: "br-anatel-rgc@1",
                        raw_old: "br-anatel-rgc@1", small: "br-anatel-rgc-small@1"}
    assert journal[prepared[0].event_id][6]["subject"] == OPENED["subject"]

    raw = journal[RAW_EVENT_ID]
    assert (raw[0], raw[1]) == (md.partition, md.offset)
    assert raw[3] == raw_value and raw[4] == v1.fingerprint and raw[5] == 1
    assert raw[6]["language"] == "pt-BR" and raw[6]["meta"]["producer"] == "legacy-ivr"
