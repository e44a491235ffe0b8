"""The fuzz corpus itself: its records reach the broker byte for byte, and what it says the
projector must do with each agrees with the contract's own functions.

The end-to-end test (every hostile record on one topic, projection never stops) belongs to
the projector; this checks that the corpus is a faithful input for it.
"""

from __future__ import annotations

from datetime import timedelta

from fuzz_corpus import hostile_records, send_records
from helpers_flow import now_s
from kafka import KafkaConsumer, TopicPartition

from protocolo.core.protocol_number import make_protocol_number
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import DecodeError
from protocolo.schemas.storable import headers_reason, key_reason, unstorable_reason
from protocolo.schemas.validation import entity_key

CATALOGUE = SchemaCatalogue.load()
P = make_protocol_number(2026, 77)


def _contract_verdict(record) -> str:
    """What the contract's functions say of one raw record: journal or quarantine."""
    wire_headers = [(getattr(name, "raw", name), value) for name, value in record.headers]
    if record.value is None or key_reason(record.key) or headers_reason(wire_headers):
        return "quarantine"
    try:
        decoded = CATALOGUE.decode(record.value)
    except DecodeError:
        return "quarantine"
    if entity_key(decoded.event_type, decoded.record).encode() != record.key:
        return "quarantine"
    return "quarantine" if unstorable_reason(decoded.record) else "journal"


def test_the_corpus_says_what_the_contract_says():
    records = hostile_records(CATALOGUE, P, now_s() - timedelta(hours=1), seed=3)
    assert len({r.name for r in records}) == len(records)
    assert {r.expect for r in records} == {"journal", "quarantine"}
    for r in records:
        assert _contract_verdict(r) == r.expect, f"{r.name}: {r.why}"


def test_the_corpus_reaches_the_broker_byte_for_byte(backend, topic):
    records = hostile_records(CATALOGUE, P, now_s() - timedelta(hours=1), seed=3)
    readable = [r for r in records if not r.name.endswith("non-utf8-name")]
    sent = send_records(backend.kafka_bootstrap, topic, readable, partition=0)
    consumer = KafkaConsumer(bootstrap_servers=backend.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=64 * 1024 * 1024)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        got, empty_polls = [], 0
        while len(got) < len(sent) and empty_polls < 20:
            batch = consumer.poll(timeout_ms=500).get(tp, [])
            empty_polls = 0 if batch else empty_polls + 1
            got += batch
    finally:
        consumer.close()
    assert [(g.offset, g.key, g.value, [(k, v) for k, v in g.headers]) for g in got] == [
        (offset, r.key, r.value, [(str(k), v) for k, v in r.headers]) for r, _, offset in sent]
