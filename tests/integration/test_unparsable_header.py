"""A record kafka-python cannot parse (a header key that is not UTF-8) does not stop projection.

kafka-python decodes header keys as strict UTF-8 while it parses a fetch; such a record
made ``poll()`` raise, and every later poll loop for ever inside the client, before the
projector saw the record. Another client can write one (the protocol says "string", the
broker does not check); kafka-python's own producer does when handed a ``str`` whose
``encode`` returns other bytes, which is how this test writes it.

The record and a neighbour written in the same batch, before and after it, must be
projected (the unparsable one quarantined with its raw key, value and header bytes, its
Merkle leaf computed over those bytes as the spec says), and valid events published
afterwards must be journalled, in one run with a timeout.
"""

from __future__ import annotations

import psycopg
import pytest
from helpers_flow import now_s, start_runtime
from kafka import KafkaProducer
from test_merkle_tree import spec_leaf

from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

#: publish and project end to end: also run with librdkafka (CONTRIBUTING, "Kafka client lane")
pytestmark = pytest.mark.kafka_client_lane

BAD_KEY = b"\xff\xfe-not-utf-8"


class NotUtf8(str):
    """A header key whose bytes on the wire are not UTF-8."""

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return BAD_KEY


@pytest.mark.timeout(180)
def test_a_header_key_that_is_not_utf8_is_quarantined_and_projection_goes_on(settings) -> None:
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url) as issuer:
        protocol = issuer.issue()
    notes = [Event("NoteAdded", {"agent_id": "ag-1", "agent_name": "Ana", "text": f"note {i}"},
                   protocol_number=protocol, occurred_at=now_s()) for i in range(4)]
    with rt.publisher("unparsable-test") as publisher:
        publisher.publish_many(notes[:2])
    raw = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap, linger_ms=200, acks="all")
    key = protocol.encode()  # same partition as the notes
    sent = [raw.send(settings.topic, key=key, value=b"before", headers=[("h", b"1")]),
            raw.send(settings.topic, key=key, value=b"the unparsable one", headers=[(NotUtf8("x"), b"v")]),
            raw.send(settings.topic, key=key, value=b"after", headers=[("h", b"2")])]
    raw.flush()
    offsets = [f.get(timeout=10).offset for f in sent]
    raw.close()
    with rt.publisher("unparsable-test") as publisher:
        publisher.publish_many(notes[2:])

    with rt.projector(batch_size=50) as projector:
        stats = projector.run(until_caught_up=True, idle_timeout_s=60)
    assert stats.journaled == 4 and stats.quarantined == 3

    with psycopg.connect(rt.database_url) as conn:
        rows = conn.execute(
            "SELECT kafka_partition, kafka_offset, record_key, record_value, headers, leaf_hash FROM quarantine"
            " WHERE topic = %s ORDER BY kafka_offset", (settings.topic,)).fetchall()
        journalled = conn.execute("SELECT count(*) FROM journal WHERE topic = %s AND event_type = 'NoteAdded'",
                                  (settings.topic,)).fetchone()
        tree = conn.execute("SELECT tree_size, next_leaf_index, next_offset FROM projector_offsets"
                            " WHERE topic = %s AND kafka_partition = %s", (settings.topic, rows[0][0])).fetchone()
    assert journalled == (4,)
    assert [r[1] for r in rows] == offsets
    partition, offset, record_key, value, headers, leaf = rows[1]
    assert (bytes(record_key), bytes(value)) == (key, b"the unparsable one")
    assert headers == [[{"hex": BAD_KEY.hex()}, "v"]]
    assert bytes(leaf) == spec_leaf(settings.topic, partition, offset, key, b"the unparsable one")
    # every offset of the partition (2 + 3 + 2 records) is a leaf of its tree, this one included
    assert tree is not None and tree[0] == tree[1] == tree[2] == 7
