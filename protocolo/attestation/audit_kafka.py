"""``verify --against-kafka``: the topic, re-read with a raw consumer, against the rows.

The rows are evidence only as long as they are what the broker holds: a row whose value
was changed *and* whose leaf, tree nodes and compact range were rewritten to match
(before any checkpoint covered it) passes every check of the ledger alone. Re-reading
the topic catches it. Per partition, the records from the log start up to the projector's
stored next offset are merged by offset with the journal and quarantine rows (one server-
side cursor, constant memory): a record without a row is **missing**, a row without a
record **inserted**, a pair whose key or value differ **modified** (``source: kafka``).
Rows below the log start (deleted by retention) cannot be compared and are counted.
Nothing is committed: the consumer has no group.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from protocolo.attestation.audit_findings import INSERTED, MISSING, MODIFIED, Finding, FindingLog

#: Without a record for this long while records are still expected, the broker is
#: considered unreachable.
STALL_S = 30.0


class KafkaUnreachable(RuntimeError):
    """The broker did not answer or stopped delivering the partition."""


@dataclass(frozen=True, slots=True)
class _Row:
    offset: int
    key: bytes | None
    value: bytes
    leaf_index: int


def _rows(conn: psycopg.Connection[Any], topic: str, partition: int, start: int) -> Iterator[_Row]:
    cur = conn.cursor(name=f"verify_kafka_{partition}", binary=True)
    cur.itersize = 2000
    cur.execute(
        "SELECT kafka_offset, record_key, record_value, leaf_index FROM journal"
        " WHERE topic = %(t)s AND kafka_partition = %(p)s AND kafka_offset >= %(s)s"
        " UNION ALL SELECT kafka_offset, record_key, coalesce(record_value, ''::bytea), leaf_index"
        " FROM quarantine WHERE topic = %(t)s AND kafka_partition = %(p)s AND kafka_offset >= %(s)s"
        " ORDER BY 1", {"t": topic, "p": partition, "s": start})
    try:
        for offset, key, value, leaf in cur:
            yield _Row(offset, key, value, leaf)
    finally:
        cur.close()


def _records(consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int) -> Iterator[Any]:
    consumer.assign([tp])
    consumer.seek(tp, start)
    position, last_progress = start, time.monotonic()
    while position < end:
        batch = consumer.poll(timeout_ms=500).get(tp, [])
        if not batch:
            if time.monotonic() - last_progress > STALL_S:
                raise KafkaUnreachable(f"partition {tp.partition}: no record from offset {position} "
                                       f"within {STALL_S:.0f}s (the topic ends at {end})")
            position = max(position, consumer.position(tp))
            continue
        last_progress = time.monotonic()
        for record in batch:
            if record.offset >= end:
                return
            yield record
        position = consumer.position(tp)


def compare_with_kafka(conn: psycopg.Connection[Any], bootstrap: str, topic: str, partitions: list[int],
                       findings: FindingLog) -> None:
    """Compare every partition's rows with the topic, record by record."""
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
    except KafkaError as exc:
        raise KafkaUnreachable(f"Kafka at {bootstrap} did not answer ({type(exc).__name__})") from exc
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        known = consumer.partitions_for_topic(topic) or set()
        with conn.transaction():
            for partition in partitions:
                summary = findings.summary(partition)
                summary.kafka_records = 0
                if partition not in known:
                    findings.add(Finding(INSERTED, partition, None, None, "kafka",
                                         f"the topic {topic} has no partition {partition}"))
                    continue
                position = conn.execute(
                    "SELECT next_offset FROM projector_offsets WHERE topic = %s AND kafka_partition = %s",
                    (topic, partition)).fetchone()
                tp = TopicPartition(topic, partition)
                log_start = int(consumer.beginning_offsets([tp])[tp])
                log_end = int(consumer.end_offsets([tp])[tp])
                projected = int(position[0]) if position else 0
                _compare_partition(conn, consumer, tp, log_start, min(log_end, projected), log_end,
                                   findings)
    except KafkaError as exc:
        raise KafkaUnreachable(f"Kafka at {bootstrap} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        consumer.close()


def _compare_partition(conn: psycopg.Connection[Any], consumer: KafkaConsumer, tp: TopicPartition,
                       log_start: int, end: int, log_end: int, findings: FindingLog) -> None:
    partition = tp.partition
    summary = findings.summary(partition)
    below = conn.execute(
        "SELECT (SELECT count(*) FROM journal WHERE topic = %(t)s AND kafka_partition = %(p)s AND kafka_offset < %(s)s)"
        " + (SELECT count(*) FROM quarantine WHERE topic = %(t)s AND kafka_partition = %(p)s AND kafka_offset < %(s)s)",
        {"t": tp.topic, "p": partition, "s": log_start}).fetchone()
    summary.kafka_unverifiable = int(below[0]) if below else 0
    rows = _rows(conn, tp.topic, partition, log_start)
    row = next(rows, None)
    rank = 0  # records read: the leaf index when the log starts at 0
    for record in _records(consumer, tp, log_start, end):
        summary.kafka_records = (summary.kafka_records or 0) + 1
        while row is not None and row.offset < record.offset:
            findings.add(Finding(INSERTED, partition, row.leaf_index, row.offset, "kafka",
                                 f"the topic has no record at offset {row.offset}"))
            row = next(rows, None)
        value = record.value if record.value is not None else b""
        expected_index = rank if log_start == 0 else None
        rank += 1
        if row is None or row.offset != record.offset:
            findings.add(Finding(MISSING, partition, expected_index, record.offset, "kafka",
                                 "the topic's record has no row in the journal or the quarantine"))
            continue
        changed = [name for name, ours, theirs in (("key", row.key, record.key), ("value", row.value, value))
                   if (bytes(ours) if ours is not None else None) != theirs]
        if changed:
            findings.add(Finding(MODIFIED, partition, row.leaf_index, row.offset, "kafka",
                                 f"the row's {' and '.join(changed)} differ(s) from the topic's record"))
        row = next(rows, None)
    while row is not None:
        if row.offset < log_end:
            findings.add(Finding(INSERTED, partition, row.leaf_index, row.offset, "kafka",
                                 f"offset {row.offset} is at or beyond the projector's next offset {end}"
                                 if row.offset >= end else f"the topic has no record at offset {row.offset}"))
        else:
            findings.add(Finding(INSERTED, partition, row.leaf_index, row.offset, "kafka",
                                 f"offset {row.offset} is beyond the topic's end {log_end}"))
        row = next(rows, None)
