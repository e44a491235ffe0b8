"""Restoring a lost ledger topic from the journal, and proving the restored topic.

The journal and the quarantine hold every record of the log verbatim (key, value, headers)
with its leaf index. After ``protocolo verify`` has passed (every leaf recomputed and every
signed checkpoint matched), :func:`republish` sends them again, partition by partition in
leaf order, with their Kafka timestamps, to the same partition numbers of the target topic (idempotent producer,
``acks=all``: per-partition order kept), and records where each landed: the **mapping** of
new offsets to old offsets and leaf indexes, as runs ``[new offset, old offset, leaf index,
length]``. The mapping is a JSON document signed like an export manifest (a C2SP signed note
over its SHA-256, by the log key of the lowest partition) and carries each partition's
newest signed checkpoint.

:func:`check_restored` is the proof: it reads the target topic with a raw consumer,
recomputes every leaf with the *original* topic name and offset (the leaf layout binds
them) and folds the tree; the root at each checkpoint's size must be the signed root. If the
topic is restored under its own name and the old offsets had no gaps, the new offsets are
the old ones and a projector re-reading it rebuilds the same trees.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from protocolo.attestation.checkpointer import latest_checkpoint
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.export import ExportFailure, Head, open_head
from protocolo.evidence.leaf import partition_leaf_hasher
from protocolo.evidence.merkle import CompactRange
from protocolo.evidence.note import NoteSigner, open_note, sign_note
from protocolo.evidence.policy import Policy

FORMAT = "protocolo/restore/v1"


def mapping_note_text(mapping: bytes) -> str:
    return f"{FORMAT}\n{hashlib.sha256(mapping).hexdigest()}\n"


@dataclass
class PartitionMapping:
    partition: int
    runs: list[list[int]] = field(default_factory=list)  # [new offset, old offset, leaf, length]
    leaves: int = 0

    def add(self, new: int, old: int, leaf: int) -> None:
        if self.runs:
            n, o, lf, length = self.runs[-1]
            if (n + length, o + length, lf + length) == (new, old, leaf):
                self.runs[-1][3] += 1
                self.leaves += 1
                return
        self.runs.append([new, old, leaf, 1])
        self.leaves += 1


def _headers(stored: Any) -> list[tuple[str, bytes]]:
    entries = json.loads(stored) if isinstance(stored, str) else stored or []
    out = []
    for key, value in entries:
        name = bytes.fromhex(key["hex"]).decode("utf-8", "surrogateescape") if isinstance(key, dict) else str(key)
        raw = bytes.fromhex(value["hex"]) if isinstance(value, dict) else str(value).encode("utf-8")
        out.append((name, raw))
    return out


def _rows(conn: psycopg.Connection[Any], topic: str, partition: int) -> Iterator[tuple[Any, ...]]:
    with conn.transaction(), conn.cursor(name=f"restore_p{partition}") as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT kafka_offset, leaf_index, record_key, record_value, headers, kafka_timestamp FROM journal"
            " WHERE topic = %(t)s AND kafka_partition = %(p)s"
            " UNION ALL SELECT kafka_offset, leaf_index, record_key, record_value, headers, kafka_timestamp"
            " FROM quarantine"
            " WHERE topic = %(t)s AND kafka_partition = %(p)s ORDER BY leaf_index", {"t": topic, "p": partition})
        yield from cur


def republish(conn: psycopg.Connection[Any], bootstrap: str, source: str, target: str,
              partitions: Sequence[int], progress: Callable[[int, int], None] | None = None,
              ) -> list[PartitionMapping]:
    """Send every journalled and quarantined record again, in leaf order; the mapping."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             max_in_flight_requests_per_connection=1, linger_ms=5)
    mappings = []
    try:
        for partition in partitions:
            mapping = PartitionMapping(partition)
            pending: list[tuple[Any, int, int]] = []
            for offset, leaf, key, value, headers, stamp in _rows(conn, source, partition):
                future = producer.send(target, key=None if key is None else bytes(key),
                                       value=None if value is None else bytes(value),
                                       headers=_headers(headers), partition=partition,
                                       timestamp_ms=None if stamp is None else round(stamp.timestamp() * 1000))
                pending.append((future, int(offset), int(leaf)))
                if len(pending) >= 2000:
                    _settle(pending, mapping)
            _settle(pending, mapping)
            if progress is not None:
                progress(partition, mapping.leaves)
            mappings.append(mapping)
        producer.flush()
    finally:
        producer.close()
    return mappings


def _settle(pending: list[tuple[Any, int, int]], mapping: PartitionMapping) -> None:
    for future, old, leaf in pending:
        mapping.add(int(future.get(timeout=60).offset), old, leaf)
    pending.clear()


def mapping_document(conn: psycopg.Connection[Any], deployment: str, source: str, target: str,
                     mappings: Sequence[PartitionMapping], created_at: str) -> bytes:
    parts = []
    for m in mappings:
        newest = latest_checkpoint(conn, source, m.partition)
        parts.append({"partition": m.partition, "leaves": m.leaves, "runs": m.runs,
                      "checkpoint": None if newest is None else newest.note.decode("utf-8")})
    doc = {"format": FORMAT, "deployment": deployment, "source_topic": source, "target_topic": target,
           "created_at": created_at, "partitions": parts}
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode("utf-8")


def sign_mapping(mapping: bytes, signer: NoteSigner) -> bytes:
    return sign_note(mapping_note_text(mapping), [signer])


@dataclass
class RestoreCheck:
    partitions: list[dict[str, Any]] = field(default_factory=list)


def check_restored(mapping: bytes, signature: bytes, policy: Policy, bootstrap: str,
                   origin_of: Callable[[int], str], stall_s: float = 20.0) -> RestoreCheck:
    """Prove the target topic reproduces the signed roots; raises :class:`ExportFailure`."""
    try:
        opened = open_note(signature, [log.verifier for log in policy.logs])
    except EvidenceError as exc:
        raise ExportFailure("mapping-signature", "mapping.sig", exc.detail) from None
    if opened.text != mapping_note_text(mapping):
        raise ExportFailure("mapping-hash", "mapping.sig", "the signed text does not name this mapping")
    doc = json.loads(mapping)
    result = RestoreCheck()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        for part in doc["partitions"]:
            result.partitions.append(_check_partition(consumer, doc, part, policy, origin_of, stall_s))
    finally:
        consumer.close()
    return result


class MappingRuns:
    """One partition's runs ``[new offset, old offset, leaf index, length]``, looked up by
    new offset with a binary search over the run starts.

    The proof reads every restored record; expanding the runs into one entry per record
    would make its memory grow with the partition (hundreds of bytes per record), while the
    runs are what the signed mapping already holds: one per gap in the old offsets. Runs
    that overlap, or are empty, name no single origin for an offset and are refused."""

    def __init__(self, runs: Sequence[Sequence[int]], where: str) -> None:
        self._runs = sorted((int(new), int(old), int(leaf), int(length)) for new, old, leaf, length in runs)
        self._starts = [run[0] for run in self._runs]
        end: int | None = None
        for new, _, _, length in self._runs:
            if length < 1:
                raise ExportFailure("mapping-malformed", where, f"the run at new offset {new} has length {length}")
            if end is not None and new < end:
                raise ExportFailure("mapping-malformed", where, f"the run at new offset {new} overlaps the "
                                    f"run before it (which ends at {end - 1})")
            end = new + length

    def locate(self, offset: int) -> tuple[int, int] | None:
        """(old offset, leaf index) of the record restored at ``offset``; None if unmapped."""
        at = bisect.bisect_right(self._starts, offset) - 1
        if at < 0:
            return None
        new, old, leaf, length = self._runs[at]
        if offset >= new + length:
            return None
        return old + offset - new, leaf + offset - new


def _check_partition(consumer: KafkaConsumer, doc: dict[str, Any], part: dict[str, Any], policy: Policy,
                     origin_of: Callable[[int], str], stall_s: float) -> dict[str, Any]:
    partition = int(part["partition"])
    where = f"partition {partition}"
    head = Head.empty() if part["checkpoint"] is None else open_head(
        part["checkpoint"].encode("utf-8"), policy, origin_of(partition), where)
    runs = MappingRuns(part["runs"], where)
    leaf_hash = partition_leaf_hasher(doc["source_topic"], partition)
    tree = CompactRange()
    tp = TopicPartition(doc["target_topic"], partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    last = time.monotonic()
    while tree.size < part["leaves"]:
        batch = consumer.poll(timeout_ms=500).get(tp, [])
        if not batch and time.monotonic() - last > stall_s:
            raise ExportFailure("restore-incomplete", where, f"the topic holds {tree.size} of "
                                f"{part['leaves']} records")
        for record in batch:
            last = time.monotonic()
            found = runs.locate(record.offset)
            if found is None:
                raise ExportFailure("restore-unmapped", where, f"offset {record.offset} is not in the mapping")
            old, leaf = found
            if leaf != tree.size:
                raise ExportFailure("restore-order", where, f"offset {record.offset} maps to leaf {leaf}, "
                                    f"expected {tree.size}")
            tree.append(leaf_hash(old, record.key, record.value if record.value is not None else b""))
            if tree.size == head.size and tree.root() != head.root:
                raise ExportFailure("restore-root", where, f"the restored leaves [0, {head.size}) do not "
                                    "give the signed root")
    if tree.size < head.size:
        raise ExportFailure("restore-incomplete", where, f"{tree.size} leaves, the checkpoint signs {head.size}")
    return {"partition": partition, "leaves": tree.size, "checkpoint_size": head.size}
