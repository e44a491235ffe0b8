"""A stored tree that disagrees with the projected leaves stops the projector loudly.

Two silent paths existed: a partition whose ``projector_offsets.tree_size`` differs from
its ``next_leaf_index`` resumed with no tree and appended no leaves (nothing logged), and a
stored Merkle node with another hash than the one being written was kept
(``ON CONFLICT DO NOTHING``). Both now raise, write nothing and say what to do.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from helpers_flow import now_s, start_runtime

from protocolo.consumers.errors import TreeDiverged
from protocolo.evidence.merkle import NodeId, StoredNode
from protocolo.producers.publisher import Event
from protocolo.projections.merkle_store import TreeNode, TreeNodeConflict, write_nodes


def _publish_notes(rt, count: int, protocol: str) -> None:  # type: ignore[no-untyped-def]
    events = [Event("NoteAdded", {"agent_id": "ag-1", "agent_name": "Ana", "text": f"note {i}"},
                    protocol_number=protocol, occurred_at=now_s()) for i in range(count)]
    with rt.publisher("divergence-test") as publisher:
        publisher.publish_many(events)


def _counts(database_url: str, topic: str) -> tuple[int, list[tuple[int, int, int]]]:
    with psycopg.connect(database_url) as conn:
        journal = conn.execute("SELECT count(*) FROM journal WHERE topic = %s", (topic,)).fetchone()
        offsets = conn.execute(
            "SELECT kafka_partition, next_leaf_index, tree_size FROM projector_offsets WHERE topic = %s"
            " ORDER BY 1", (topic,)).fetchall()
    assert journal is not None
    return int(journal[0]), [(int(p), int(n), int(s)) for p, n, s in offsets]


def test_a_tree_size_that_differs_from_the_leaves_stops_the_projector_and_writes_nothing(settings) -> None:
    rt = start_runtime(settings)
    from protocolo.producers.protocol_issuer import ProtocolIssuer

    with ProtocolIssuer(rt.registry_url) as issuer:
        protocol = issuer.issue()
    _publish_notes(rt, 5, protocol)  # one protocol number: one partition
    with rt.projector() as projector:
        projector.run(until_caught_up=True, idle_timeout_s=60)
    journal_before, offsets = _counts(rt.database_url, settings.topic)
    (partition, leaves, size), = [row for row in offsets if row[1] > 0]
    assert (journal_before, leaves, size) == (5, 5, 5)
    # Someone with write access moves the tree's size (what a restore of one table, or a
    # hand edit, leaves behind): the tree now claims a leaf that was never projected.
    with psycopg.connect(rt.database_url, autocommit=True) as conn:
        conn.execute("UPDATE projector_offsets SET tree_size = tree_size + 1 WHERE topic = %s"
                     " AND kafka_partition = %s", (settings.topic, partition))
    _publish_notes(rt, 3, protocol)
    with rt.projector() as projector, pytest.raises(TreeDiverged) as caught:
        projector.run(until_caught_up=True, idle_timeout_s=60)
    message = str(caught.value)
    assert f"partition {partition}" in message and "6 leaves" in message and "5 records" in message
    assert "protocolo verify" in message
    journal_after, offsets_after = _counts(rt.database_url, settings.topic)
    assert journal_after == journal_before, "nothing was projected past the divergence"
    assert [r for r in offsets_after if r[0] == partition] == [(partition, 5, 6)]


def test_a_stored_node_with_another_hash_is_refused_and_kept_unchanged(database_url: str) -> None:
    from protocolo.projections.schema import connect

    topic = "ledger"
    stored = hashlib.sha256(b"the stored leaf").digest()
    other = hashlib.sha256(b"another leaf").digest()
    sibling = hashlib.sha256(b"its sibling").digest()
    with connect(database_url) as conn:
        conn.commit()
        with conn.transaction(), conn.cursor() as cur:
            write_nodes(cur, topic, [TreeNode(0, StoredNode(NodeId(0, 0), stored))])
        # the same node again (a retried append) is fine, with a new one beside it
        with conn.transaction(), conn.cursor() as cur:
            write_nodes(cur, topic, [TreeNode(0, StoredNode(NodeId(0, 0), stored)),
                                     TreeNode(0, StoredNode(NodeId(0, 1), sibling))])
        with pytest.raises(TreeNodeConflict, match="partition 0 level 0 index 0"), \
                conn.transaction(), conn.cursor() as cur:
            write_nodes(cur, topic, [TreeNode(0, StoredNode(NodeId(0, 2), sibling)),
                                     TreeNode(0, StoredNode(NodeId(0, 0), other))])
        rows = conn.execute("SELECT level, node_index, hash FROM merkle_nodes WHERE topic = %s ORDER BY 1, 2",
                            (topic,)).fetchall()
    assert [(lv, i, bytes(h)) for lv, i, h in rows] == [(0, 0, stored), (0, 1, sibling)], \
        "the stored hash is kept and nothing of the refused batch was written"
