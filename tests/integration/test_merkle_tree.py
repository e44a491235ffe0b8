"""The projector keeps one RFC 6962 tree per partition, exactly once, in its batch
transaction: every offset a leaf (quarantined records too), proofs from stored nodes.

The oracle is independent of the code under test: leaf bytes and the tree hash are
transcribed here from the spec (RFC 6962 §2.1, docs/evidence-format.md leaf layout v1)
and computed from the records as a raw consumer reads them from the topic.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import psycopg
from helpers_flow import drain, now_s, start_runtime
from kafka import KafkaProducer

from protocolo.evidence.merkle import CompactRange, consistency_proof, inclusion_proof
from protocolo.evidence.proof import verify_consistency, verify_inclusion
from protocolo.producers.publisher import Event
from protocolo.projections.merkle_store import node_reader


def spec_leaf(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    t = topic.encode()
    body = struct.pack(">H", len(t)) + t + struct.pack(">IQ", partition, offset)
    body += struct.pack(">i", -1) if key is None else struct.pack(">i", len(key)) + key
    body += struct.pack(">I", len(value)) + value
    return hashlib.sha256(b"\x00" + body).digest()


def spec_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + spec_root(leaves[:k]) + spec_root(leaves[k:])).digest()


def publish_mixed(rt: Any, count: int) -> None:
    """``count`` valid events over a handful of contacts, and a few records the projector
    must quarantine (garbage value, wrong key), sent with a raw producer."""
    from protocolo.producers.protocol_issuer import ProtocolIssuer

    with ProtocolIssuer(rt.registry_url) as issuer:
        protocols = [issuer.issue() for _ in range(7)]
    events = [Event("NoteAdded", {"agent_id": "ag-1", "agent_name": "Ana", "text": f"note {i}"},
                    protocol_number=protocols[i % len(protocols)], occurred_at=now_s()) for i in range(count)]
    with rt.publisher("tree-test") as publisher:
        publisher.publish_many(events[: count // 2])
        raw = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap)
        for i, protocol in enumerate(protocols[:3]):
            raw.send(rt.settings.topic, key=protocol.encode(), value=b"\xc3\x01 not an event %d" % i)
        raw.send(rt.settings.topic, key=b"\xff\xfe", value=b"")  # not a key, empty value
        raw.flush()
        raw.close()
        publisher.publish_many(events[count // 2:])


def stored_state(database_url: str, topic: str) -> dict[int, tuple[int, int, CompactRange]]:
    with psycopg.connect(database_url) as conn:
        return {p: (leaves, size, CompactRange(size, [bytes(h) for h in hashes]))
                for p, leaves, size, hashes in conn.execute(
                    "SELECT kafka_partition, next_leaf_index, tree_size, compact_range FROM projector_offsets"
                    " WHERE topic = %s", (topic,))}


def test_every_offset_is_a_leaf_and_the_stored_tree_is_the_rfc_tree(settings) -> None:
    rt = start_runtime(settings)
    publish_mixed(rt, 60)
    with rt.projector(batch_size=7) as projector:  # many small batches: the tree grows across them
        stats = projector.run(until_caught_up=True, idle_timeout_s=60)
    assert stats.quarantined == 4
    records = drain(rt.kafka_bootstrap, settings.topic)
    by_partition: dict[int, list[bytes]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(r.partition, []).append(
            spec_leaf(settings.topic, r.partition, r.offset, r.key, r.value or b""))
    state = stored_state(rt.database_url, settings.topic)
    assert set(state) == set(by_partition)
    for partition, leaves in by_partition.items():
        next_leaf, tree_size, tree = state[partition]
        assert next_leaf == tree_size == len(leaves), partition
        assert tree.root() == spec_root(leaves), f"partition {partition}: stored root is not the RFC root"

    with psycopg.connect(rt.database_url) as conn:
        for partition, leaves in by_partition.items():
            read = node_reader(conn, settings.topic, partition)
            size = len(leaves)
            root = spec_root(leaves)
            for index, leaf in enumerate(leaves):
                verify_inclusion(leaf, index, size, inclusion_proof(index, size, read), root)
            for old in range(1, size):
                verify_consistency(old, size, spec_root(leaves[:old]), root, consistency_proof(old, size, read))


def test_a_tree_lost_from_an_old_ledger_is_rebuilt_identically_on_start(settings) -> None:
    """A ledger journalled before the trees existed (migration 0003 leaves tree_size 0):
    the projector appends the missing leaves before it projects anything new."""
    rt = start_runtime(settings)
    publish_mixed(rt, 30)
    with rt.projector(batch_size=5) as projector:
        projector.run(until_caught_up=True, idle_timeout_s=60)
    before = stored_state(rt.database_url, settings.topic)
    with psycopg.connect(rt.database_url) as conn:
        nodes_before = conn.execute("SELECT * FROM merkle_nodes ORDER BY 1, 2, 3, 4").fetchall()
        conn.execute("DELETE FROM merkle_nodes")
        conn.execute("UPDATE projector_offsets SET tree_size = 0, compact_range = '{}'")
    with rt.projector() as projector:
        projector.run(until_caught_up=True, idle_timeout_s=60)
    after = stored_state(rt.database_url, settings.topic)
    assert {p: (a, b, c.hashes) for p, (a, b, c) in after.items()} == \
           {p: (a, b, c.hashes) for p, (a, b, c) in before.items()}
    with psycopg.connect(rt.database_url) as conn:
        assert conn.execute("SELECT * FROM merkle_nodes ORDER BY 1, 2, 3, 4").fetchall() == nodes_before
