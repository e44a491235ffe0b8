"""The batch writer against a real PostgreSQL, given rows the database refuses.

The decoder quarantines what it knows PostgreSQL cannot store; this is the net under it.
Rows are handed to the writer as if the decoder had let them through (a JSON payload or
headers holding the ``\\u0000`` escape, which jsonb refuses). The writer must find those
rows, quarantine them with their raw bytes in the same transaction as the rest of the
batch, renumber the Merkle leaves of the rows after them (no gap), move the stored
positions, and tell the run loop that its positions moved (so that a batch handed over
with the old numbering is not written).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import psycopg
import pytest
from ledger_records import valid_record

from protocolo.consumers.batch import Batch
from protocolo.consumers.batch_writer import BatchWriter
from protocolo.consumers.decoding import RecordDecoder
from protocolo.consumers.tracking import OffsetConflict, PartitionProgress, Position, TrackingStore
from protocolo.projections.journal import JournalRow, ensure_staging
from protocolo.projections.schema import connect
from protocolo.projections.views import install_profiles

TOPIC = "ledger"


class Writer:
    def __init__(self, database_url: str) -> None:
        self.reader = connect(database_url)
        install_profiles(self.reader)
        self.reader.commit()
        self.conn = connect(database_url, autocommit=True)
        ensure_staging(self.conn)
        self.tracking = TrackingStore(self.reader, TOPIC)
        self.committed: list[Batch] = []
        self.writer = BatchWriter(self.conn, self.tracking, self.committed.append)

    def close(self) -> None:
        self.writer.close()
        self.conn.close()
        self.reader.close()


@pytest.fixture
def w(database_url: str) -> Iterator[Writer]:
    writer = Writer(database_url)
    yield writer
    writer.close()


def rows(partition: int, first_offset: int, first_leaf: int, n: int) -> list[JournalRow]:
    decoder = RecordDecoder(TOPIC)
    out = []
    for i in range(n):
        row = decoder.decode(valid_record(partition, first_offset + i), first_leaf + i)
        assert isinstance(row, JournalRow)
        out.append(row)
    return out


def poisoned_payload(row: JournalRow) -> JournalRow:
    payload = json.loads(row.payload)
    payload["text"] = "slipped \x00 through"
    return dataclasses.replace(row, payload=json.dumps(payload))


def poisoned_headers(row: JournalRow) -> JournalRow:
    return dataclasses.replace(row, headers=json.dumps([["x-trace", "a\x00b"]]))


def test_rows_the_database_refuses_are_quarantined_and_the_rest_written(w: Writer, database_url: str) -> None:
    p0 = rows(0, 0, 0, 6)
    p1 = rows(1, 10, 4, 4)  # partition 1 resumes at offset 10, leaf 4
    with w.reader.transaction(), w.reader.cursor() as cur:
        w.tracking.advance(cur, [PartitionProgress(1, None, 10, 4)])
    p0[1], p0[4] = poisoned_payload(p0[1]), poisoned_headers(p0[4])
    p1[0] = poisoned_payload(p1[0])
    batch = Batch([*p0, *p1], [], [PartitionProgress(0, None, 6, 6), PartitionProgress(1, 10, 14, 8)])
    w.writer.submit(batch)
    w.writer.drain()
    assert w.writer.take_error() is None, "the batch is written, without its refused rows"

    poison = {(r.kafka_partition, r.kafka_offset): r for r in (p0[1], p0[4], p1[0])}
    good = [r for r in batch.rows if (r.kafka_partition, r.kafka_offset) not in poison]
    with psycopg.connect(database_url) as conn:
        quarantine = {(p, o): (k, v, h, e) for p, o, k, v, h, e in conn.execute(
            "SELECT kafka_partition, kafka_offset, record_key, record_value, headers, error FROM quarantine")}
        journal = conn.execute(
            "SELECT kafka_partition, kafka_offset, leaf_index, leaf_hash FROM journal"
            " ORDER BY kafka_partition, kafka_offset").fetchall()
        quarantine_leaves = {(p, o): (i, bytes(h)) for p, o, i, h in conn.execute(
            "SELECT kafka_partition, kafka_offset, leaf_index, leaf_hash FROM quarantine")}
    assert set(quarantine) == set(poison)
    for place, row in poison.items():
        key, value, headers, error = quarantine[place]
        assert (bytes(key), bytes(value)) == (row.record_key, row.record_value), place
        assert "\x00" not in error and "unicode" in error.lower(), error
        assert "\\u0000" not in json.dumps(headers), headers
    assert quarantine[0, 4][2] == [["x-trace", {"hex": "610062"}]], "the raw header bytes are kept"
    # The rest is journalled; every record keeps its leaf, journalled or quarantined.
    assert [(p, o) for p, o, _, _ in journal] == [(r.kafka_partition, r.kafka_offset) for r in good]
    assert [leaf for p, _, leaf, _ in journal if p == 0] == [0, 2, 3, 5]
    assert [leaf for p, _, leaf, _ in journal if p == 1] == [5, 6, 7]
    assert [bytes(h) for _, _, _, h in journal] == [r.leaf_hash for r in good]
    assert quarantine_leaves == {place: (r.leaf_index, r.leaf_hash) for place, r in poison.items()}
    assert w.tracking.positions([0, 1]) == {0: Position(6, 6), 1: Position(14, 8)}
    w.reader.rollback()
    # The run loop hears what was written.
    (written,) = w.committed
    assert len(written.rows) == len(good) and len(written.quarantined) == 3
    assert [p.next_leaf_index for p in written.progress] == [6, 8]


def test_a_batch_handed_over_behind_one_with_refused_rows_is_written_too(w: Writer) -> None:
    first = rows(0, 0, 0, 3)
    first[0] = poisoned_payload(first[0])
    after = rows(0, 3, 3, 2)  # leaves do not move when a row is refused
    w.writer.submit(Batch(first, [], [PartitionProgress(0, None, 3, 3)]))
    w.writer.submit(Batch(after, [], [PartitionProgress(0, 3, 5, 5)]))
    w.writer.drain()
    assert w.writer.take_error() is None
    assert w.tracking.positions([0]) == {0: Position(5, 5)}, "both batches are in"
    w.reader.rollback()
    assert len(w.committed) == 2


def test_a_fencing_conflict_is_not_taken_for_poison(w: Writer) -> None:
    with w.reader.transaction(), w.reader.cursor() as cur:
        w.tracking.advance(cur, [PartitionProgress(0, None, 2, 2)])
    batch_rows = rows(0, 0, 0, 2)
    batch_rows[1] = poisoned_payload(batch_rows[1])
    w.writer.submit(Batch(batch_rows, [], [PartitionProgress(0, None, 2, 2)]))  # stale fence
    w.writer.drain()
    assert isinstance(w.writer.take_error(), OffsetConflict)
    with w.reader.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM journal").fetchone() == (0,)
        assert cur.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
    w.reader.rollback()
    assert not w.committed


def test_the_journal_holds_every_column_exactly_as_decoded(w: Writer, database_url: str) -> None:
    """The staging COPY (binary) neither shifts a timestamp nor alters a byte or a JSON value:
    the journal read back equals what the decoder produced, column by column."""
    batch = rows(0, 0, 0, 5)
    batch[1] = dataclasses.replace(batch[1], record_key=None, kafka_timestamp=None)
    w.writer.submit(Batch(batch, [], [PartitionProgress(0, None, 5, 5)]))
    w.writer.drain()
    assert w.writer.take_error() is None
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT kafka_partition, kafka_offset, kafka_timestamp, record_key, record_value, headers, fingerprint,"
            " event_type, schema_version, event_id::text, protocol_number, entity_key, occurred_at, payload,"
            " leaf_index, leaf_hash, is_duplicate FROM journal ORDER BY kafka_offset").fetchall()
    w.reader.rollback()
    expected = [(r.kafka_partition, r.kafka_offset, r.kafka_timestamp, r.record_key, r.record_value,
                 json.loads(r.headers), r.fingerprint, r.event_type, r.schema_version, r.event_id, r.protocol_number,
                 r.entity_key, r.occurred_at, json.loads(r.payload), r.leaf_index, r.leaf_hash, False) for r in batch]
    got = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in stored]
    assert got == expected


def test_event_ids_in_other_spellings_are_read_as_postgresql_reads_them(w: Writer, database_url: str) -> None:
    """An id in upper case or braces is the same UUID (journalled, and a repeat of it is a
    duplicate); text that is no UUID is refused by the database and quarantined, alone."""
    batch = rows(0, 0, 0, 4)
    same = batch[0].event_id
    batch[1] = dataclasses.replace(batch[1], event_id="{" + batch[1].event_id.upper() + "}")
    batch[2] = dataclasses.replace(batch[2], event_id="not-a-uuid")
    batch[3] = dataclasses.replace(batch[3], event_id=same.upper())
    w.writer.submit(Batch(batch, [], [PartitionProgress(0, None, 4, 4)]))
    w.writer.drain()
    assert w.writer.take_error() is None
    with psycopg.connect(database_url) as conn:
        journal = conn.execute("SELECT kafka_offset, event_id::text, is_duplicate FROM journal ORDER BY 1").fetchall()
        quarantine = conn.execute("SELECT kafka_offset, error FROM quarantine").fetchall()
    w.reader.rollback()
    assert journal == [(0, same, False), (1, batch[1].event_id.strip("{}").lower(), False), (3, same, True)]
    assert [o for o, _ in quarantine] == [2] and "uuid" in quarantine[0][1], quarantine
