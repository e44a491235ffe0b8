"""The tracking store against a real PostgreSQL: stored positions, the fence, resume points."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from ledger_records import record, valid_record

from protocolo.consumers.decoding import RecordDecoder
from protocolo.consumers.tracking import (
    LastProjected,
    OffsetConflict,
    PartitionProgress,
    Position,
    ResumePoint,
    TrackingStore,
)
from protocolo.projections.integrity import leaf_hash
from protocolo.projections.journal import (
    JournalRow,
    QuarantineRow,
    ensure_staging,
    write_journal,
    write_quarantine,
)
from protocolo.projections.schema import connect
from protocolo.projections.views import install_profiles

TOPIC = "ledger"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as c:
        install_profiles(c)
        c.commit()
        yield c


def advance(conn: psycopg.Connection, store: TrackingStore, *progress: PartitionProgress) -> None:
    with conn.transaction(), conn.cursor() as cur:
        store.advance(cur, progress)


def test_a_fresh_partition_resumes_at_the_log_beginning(conn: psycopg.Connection) -> None:
    store = TrackingStore(conn, TOPIC)
    assert store.resume_points([0, 1]) == {0: ResumePoint(0, None, None), 1: ResumePoint(1, None, None)}
    assert store.resume_points([0])[0].seek_offset is None


def test_advance_is_fenced_on_the_offset_the_batch_started_from(conn: psycopg.Connection, database_url: str) -> None:
    store = TrackingStore(conn, TOPIC)
    advance(conn, store, PartitionProgress(0, None, 3, 3))
    assert store.positions([0, 1]) == {0: Position(3, 3)}
    conn.rollback()
    # a second projector that read the same starting point loses: first row and later moves alike
    with connect(database_url) as other:
        other_store = TrackingStore(other, TOPIC)
        with pytest.raises(OffsetConflict, match="partition 0"):
            advance(other, other_store, PartitionProgress(0, None, 2, 2))
        advance(other, other_store, PartitionProgress(0, 3, 5, 4))
    with pytest.raises(OffsetConflict, match="no longer 3"):
        advance(conn, store, PartitionProgress(0, 3, 6, 6))
    assert store.positions([0]) == {0: Position(5, 4)}, "the loser's batch changed nothing"


def test_a_resumed_partition_checks_the_last_journalled_or_quarantined_record(conn: psycopg.Connection) -> None:
    store = TrackingStore(conn, TOPIC)
    ensure_staging(conn)
    conn.commit()
    decoder = RecordDecoder(TOPIC)
    journalled = decoder.decode(valid_record(0, 0), 0)
    poison = record(1, 0, b"key", b"garbage")
    quarantined = decoder.decode(poison, 0)
    assert isinstance(journalled, JournalRow) and isinstance(quarantined, QuarantineRow)
    with conn.transaction(), conn.cursor() as cur:
        write_journal(cur, TOPIC, [journalled])
        write_quarantine(cur, TOPIC, [quarantined])
        store.advance(cur, [PartitionProgress(0, None, 1, 1), PartitionProgress(1, None, 1, 0),
                            PartitionProgress(2, None, 4, 0)])  # 2: offsets the broker skipped
    points = store.resume_points([0, 1, 2, 3])
    assert points[0] == ResumePoint(0, Position(1, 1), LastProjected(0, journalled.leaf_hash))
    assert points[1] == ResumePoint(1, Position(1, 0), LastProjected(0, leaf_hash(TOPIC, 1, 0, b"key", b"garbage")))
    assert points[2] == ResumePoint(2, Position(4, 0), None)
    assert points[3] == ResumePoint(3, None, None)
    assert [points[p].seek_offset for p in range(4)] == [0, 0, 4, None], "one record early where there is one to check"
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, "reads leave no transaction open"
