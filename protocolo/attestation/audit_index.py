"""`protocolo verify` for the verifiable index: the map rebuilt from the rows, compared.

Anyone holding the log can rebuild the index (docs/evidence-format.md §11), so the
verifier does: it reads each partition's rows in leaf order, applies the map function,
and at each index checkpoint opens the signed note with the pinned log keys and compares
its map root with the rebuilt one. Then it compares every key's stored list of leaf
indexes and every stored node of the newest map state with the rebuilt map, naming the
partition and the key (``kind:value``) or the node (depth, prefix) that differs. The
rebuilt map is held in memory (about 2 nodes and one list per key).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.audit_findings import INDEX_FORGED, INDEX_MISMATCH, Finding, FindingLog
from protocolo.attestation.index_store import (
    IndexCheckpoint,
    index_checkpoints,
    leaf_keys,
    leaf_rows,
    published_catalogue,
)
from protocolo.evidence.checkpoint import open_checkpoint
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.note import decode_base64
from protocolo.evidence.vindex import EXTENSION_PREFIX, IndexMap, MapKey, Node, Position
from protocolo.schemas.catalogue import SchemaCatalogue


def audit_index(conn: psycopg.Connection[Any], topic: str, keys: LogKeys, findings: FindingLog,
                partitions: list[int]) -> dict[str, Any]:
    """Check the index of each partition (those with index checkpoints) in one snapshot;
    what was checked: index checkpoints, keys, nodes, seconds."""
    catalogue = published_catalogue()
    started = time.monotonic()
    totals = {"index_checkpoints": 0, "keys": 0, "nodes": 0}
    with conn.transaction():
        if conn.execute("SELECT to_regclass('vindex_checkpoints')").fetchone() == (None,):
            return totals | {"seconds": 0.0}  # a ledger from before the index
        for partition in partitions:
            audit = IndexAudit(conn, topic, partition, keys, findings, catalogue)
            audit.run()
            totals["index_checkpoints"] += audit.checkpoints
            totals["keys"] += len(audit.rebuilt.lists)
            totals["nodes"] += len(audit.rebuilt.tree.nodes())
    return totals | {"seconds": round(time.monotonic() - started, 3)}


def signed_map_root(cp: IndexCheckpoint, keys: LogKeys) -> bytes:
    """The map root the index checkpoint's note states, after its signature is checked
    with the pinned key of its origin and its columns with its text. Raises EvidenceError."""
    signed = open_checkpoint(cp.note, keys.for_origin(cp.origin), origin=cp.origin).checkpoint
    lines = [e for e in signed.extensions if e.startswith(EXTENSION_PREFIX)]
    if len(lines) != 1:
        raise EvidenceError("no-map-root", "the note has no single protocolo-vindex/v1 line")
    map_root = decode_base64(lines[0][len(EXTENSION_PREFIX):], "map root")
    if (signed.size, signed.root, map_root) != (cp.size, cp.root, cp.map_root):
        raise EvidenceError("columns-differ", "its row's size, root or map root differs from "
                            "its signed note")
    return map_root


class IndexAudit:
    def __init__(self, conn: psycopg.Connection[Any], topic: str, partition: int, keys: LogKeys,
                 findings: FindingLog, catalogue: SchemaCatalogue) -> None:
        self.conn, self.topic, self.partition = conn, topic, partition
        self.keys, self.findings, self.catalogue = keys, findings, catalogue
        self.rebuilt = IndexMap()
        self.checkpoints = 0

    def _add(self, kind: str, size: int | None, detail: str) -> None:
        self.findings.add(Finding(kind, self.partition, None, None, "index", detail,
                                  tree_size=size))

    def run(self) -> None:
        checkpoints = index_checkpoints(self.conn, self.topic, self.partition)
        if not checkpoints:
            return
        self.checkpoints = len(checkpoints)
        for cp in checkpoints:
            if not self._grow(cp.size):
                self._add(INDEX_MISMATCH, cp.size, "the rows do not reach this index "
                          "checkpoint's size (see the leaf findings)")
                return
            rebuilt = self.rebuilt.commit()
            try:
                signed = signed_map_root(cp, self.keys)
            except EvidenceError as exc:
                self._add(INDEX_FORGED, cp.size, f"index checkpoint: {exc.detail}")
                continue
            if signed != rebuilt:
                self._add(INDEX_MISMATCH, cp.size, "the signed map root is not the root of the "
                          "map rebuilt from the rows")
        self._compare_lists(checkpoints[-1].size)
        self._compare_nodes(checkpoints[-1].size)

    def _grow(self, size: int) -> bool:
        for index, key, value in leaf_rows(self.conn, self.topic, self.partition,
                                           self.rebuilt.size, size):
            if index != self.rebuilt.size:
                return False
            self.rebuilt.add_leaf(index, leaf_keys(self.catalogue, key, value))
        return self.rebuilt.size == size

    def _compare_lists(self, size: int) -> None:
        stored: dict[bytes, tuple[MapKey, list[int]]] = {}
        for khash, kind, value, indexes in self.conn.execute(
                "SELECT key_hash, min(kind), min(key_value), array_agg(leaf_index ORDER BY"
                " leaf_index) FROM vindex_entries WHERE topic = %s AND kafka_partition = %s"
                " AND leaf_index < %s GROUP BY key_hash", (self.topic, self.partition, size)):
            stored[bytes(khash)] = (MapKey(kind, value), [int(i) for i in indexes])
        for khash, indexes in self.rebuilt.lists.items():
            key = self.rebuilt.keys[khash]
            entry = stored.pop(khash, None)
            if entry is None:
                self._add(INDEX_MISMATCH, size, f"key {key}: no stored entries; the rows give "
                          f"leaves {_short(indexes)}")
            elif entry[1] != indexes or entry[0] != key:
                self._add(INDEX_MISMATCH, size, f"key {key}: stored as {entry[0]} with leaves "
                          f"{_short(entry[1])}; the rows give {_short(indexes)}")
        for key, indexes in stored.values():
            self._add(INDEX_MISMATCH, size, f"key {key}: stored with leaves {_short(indexes)} "
                      "but no row has it")

    def _compare_nodes(self, size: int) -> None:
        stored: dict[Position, Node] = {}
        for depth, prefix, khash, leaf_key, lhash in self.conn.execute(
                "SELECT DISTINCT ON (depth, prefix) depth, prefix, hash, leaf_key, list_hash"
                " FROM vindex_nodes WHERE topic = %s AND kafka_partition = %s AND map_size <= %s"
                " ORDER BY depth, prefix, map_size DESC", (self.topic, self.partition, size)):
            stored[(int(depth), int.from_bytes(bytes(prefix), "big"))] = Node(
                bytes(khash), None if leaf_key is None else bytes(leaf_key),
                None if lhash is None else bytes(lhash))
        rebuilt = self.rebuilt.tree.nodes()
        differing = [p for p in sorted(set(stored) | set(rebuilt))
                     if stored.get(p) != rebuilt.get(p)]
        for depth, prefix in differing:
            node = rebuilt.get((depth, prefix))
            if node is not None and node.leaf_key is not None:
                what = f"the leaf of key {self.rebuilt.keys[node.leaf_key]}"
            elif node is None:
                what = "a node the rebuilt map does not have"
            else:
                what = "an inner node"
            self._add(INDEX_MISMATCH, size, f"map node (depth {depth}, prefix "
                      f"{prefix:0{max(depth, 1)}b}), {what}, differs from the rebuilt map")


def _short(indexes: list[int]) -> str:
    text = ", ".join(str(i) for i in indexes[:8])
    return f"[{text}{', ...' if len(indexes) > 8 else ''}] ({len(indexes)})"
