"""The stored Merkle trees: one RFC 6962 tree per partition of the ledger topic.

Each partition's tree is kept as its perfect subtrees (``merkle_nodes``: level 0 holds the
leaf hashes) plus the compact range of its right edge (``projector_offsets.compact_range``,
written with the offsets in the projector's batch transaction, so the tree is exactly-once
like the views). Proofs for any leaf and any tree size are assembled from O(log n) stored
nodes read in one query (:func:`node_reader`); nothing re-hashes a partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.evidence.errors import ProofError
from protocolo.evidence.merkle import CompactRange, NodeId, NodeReader, StoredNode

__all__ = ["TreeNode", "TreeNodeConflict", "leaf_hashes", "node_reader", "stored_tree", "write_nodes"]


class TreeNodeConflict(RuntimeError):
    """A node about to be stored is already stored with another hash: the stored tree and
    the leaves being appended disagree, so one of them was altered. Nothing is written."""


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A perfect node of one partition's tree, as a batch writes it."""

    partition: int
    node: StoredNode


def write_nodes(cur: psycopg.Cursor[Any], topic: str, nodes: Iterable[TreeNode]) -> None:
    """Store perfect nodes (inside the caller's transaction). A node is a pure function of
    its leaves, so a node already there must be the same node: kept when its hash is
    equal (a retried or concurrent append), :class:`TreeNodeConflict` when it is not (the
    caller's transaction must then roll back; keeping either hash silently would make
    proofs disagree with checkpoints)."""
    rows = [(topic, n.partition, n.node.node.level, n.node.node.index, n.node.hash) for n in nodes]
    if not rows:
        return
    # Appends store nodes no one stored yet: COPY them straight in, in a savepoint. Only if
    # one is there already (a retried or concurrent append, or an altered tree) does the
    # unique key refuse the COPY, and the nodes are then compared one by one.
    try:
        with cur.connection.transaction(), cur.copy(
                "COPY merkle_nodes (topic, kafka_partition, level, node_index, hash) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    except psycopg.errors.UniqueViolation:
        pass
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS batch_nodes (LIKE merkle_nodes) ON COMMIT DELETE ROWS")
    with cur.copy("COPY batch_nodes (topic, kafka_partition, level, node_index, hash) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute("ANALYZE batch_nodes")  # a few rows: probe the stored nodes' key, never scan them
    clashes = cur.execute(
        "SELECT b.kafka_partition, b.level, b.node_index FROM batch_nodes b JOIN merkle_nodes m"
        " USING (topic, kafka_partition, level, node_index) WHERE m.hash <> b.hash"
        " ORDER BY 1, 2, 3 LIMIT 3").fetchall()
    if clashes:
        cur.execute("DELETE FROM batch_nodes")
        where = ", ".join(f"partition {p} level {lv} index {i}" for p, lv, i in clashes)
        raise TreeNodeConflict(
            f"{topic}: merkle_nodes already holds another hash for {where}: the stored tree "
            "differs from the leaves being appended (the tree or the journal was altered). "
            "Nothing was written; run `protocolo verify` to find which")
    # Only nodes with an equal stored hash conflict now: the same node, kept as it is.
    cur.execute("INSERT INTO merkle_nodes SELECT * FROM batch_nodes ON CONFLICT DO NOTHING")
    cur.execute("DELETE FROM batch_nodes")


def node_reader(conn: psycopg.Connection[Any], topic: str, partition: int) -> NodeReader:
    """A :data:`~protocolo.evidence.merkle.NodeReader` over one partition's stored nodes:
    one query per proof. A node that is missing raises ``ProofError('missing-nodes')``."""

    def read(nodes: Sequence[NodeId]) -> Sequence[bytes]:
        rows = conn.execute(
            "SELECT w.i, n.hash FROM unnest(%s::smallint[], %s::bigint[]) WITH ORDINALITY AS w(l, x, i)"
            "  LEFT JOIN merkle_nodes n ON n.topic = %s AND n.kafka_partition = %s"
            "   AND n.level = w.l AND n.node_index = w.x ORDER BY w.i",
            ([n.level for n in nodes], [n.index for n in nodes], topic, partition),
        ).fetchall()
        missing = [nodes[int(i) - 1] for i, h in rows if h is None]
        if missing:
            raise ProofError("missing-nodes", f"partition {partition}: no stored node for {missing[:3]}")
        return [bytes(h) for _, h in rows]

    return read


def stored_tree(size: int, hashes: Sequence[bytes] | None) -> CompactRange:
    """The compact range a ``projector_offsets`` row holds."""
    return CompactRange(size, [bytes(h) for h in hashes or ()])


def leaf_hashes(conn: psycopg.Connection[Any], topic: str, partition: int, start: int,
                end: int | None = None) -> list[tuple[int, bytes]]:
    """(leaf index, leaf hash) of the journalled and quarantined records of a partition with
    ``start <= leaf index < end``, in leaf order."""
    return [(int(i), bytes(h)) for i, h in conn.execute(
        "SELECT leaf_index, leaf_hash FROM ("
        "  SELECT leaf_index, leaf_hash FROM journal WHERE topic = %(t)s AND kafka_partition = %(p)s"
        "   AND leaf_index >= %(a)s AND (%(b)s::bigint IS NULL OR leaf_index < %(b)s)"
        "  UNION ALL"
        "  SELECT leaf_index, leaf_hash FROM quarantine WHERE topic = %(t)s AND kafka_partition = %(p)s"
        "   AND leaf_index >= %(a)s AND (%(b)s::bigint IS NULL OR leaf_index < %(b)s)"
        ") l ORDER BY leaf_index",
        {"t": topic, "p": partition, "a": start, "b": end},
    )]
