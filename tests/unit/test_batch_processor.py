"""The batch processor alone: records in, journal/quarantine rows and positions out.

No broker, no database: the records are kafka-python ``ConsumerRecord`` values built from
the committed vectors (``ledger_records``), the positions are what a tracking store would
have returned.
"""

from __future__ import annotations

import pytest
from ledger_records import record, valid_record

from protocolo.consumers.batch import BatchProcessor, Positions
from protocolo.consumers.decoding import RecordDecoder
from protocolo.consumers.errors import LogReplaced
from protocolo.consumers.tracking import LastProjected, PartitionProgress, Position, ResumePoint
from protocolo.evidence.merkle import tree_root
from protocolo.projections.integrity import leaf_hash

TOPIC = "ledger"


@pytest.fixture(scope="module")
def processor() -> BatchProcessor:
    return BatchProcessor(RecordDecoder(TOPIC))


def fresh(*partitions: int) -> Positions:
    positions = Positions()
    positions.resume({p: ResumePoint(p, None, None) for p in partitions})
    return positions


def test_a_fresh_partition_journals_from_leaf_zero(processor: BatchProcessor) -> None:
    records = [valid_record(0, offset) for offset in range(3)]
    batch = processor.process({0: records}, fresh(0))
    assert batch is not None
    assert [(r.kafka_offset, r.leaf_index) for r in batch.rows] == [(0, 0), (1, 1), (2, 2)]
    assert [r.record_value for r in batch.rows] == [r.value for r in records]
    assert [r.leaf_hash for r in batch.rows] == [
        leaf_hash(TOPIC, 0, r.offset, r.key, r.value) for r in records]
    assert not batch.quarantined
    assert batch.progress == [PartitionProgress(0, None, 3, 3)]


def test_a_quarantined_record_takes_its_leaf_like_any_other(processor: BatchProcessor) -> None:
    records = [valid_record(1, 0), record(1, 1, b"k", b"not avro"), valid_record(1, 2)]
    batch = processor.process({1: records}, fresh(1))
    assert batch is not None
    assert [(r.kafka_offset, r.leaf_index) for r in batch.rows] == [(0, 0), (2, 2)]
    assert [(q.kafka_offset, q.leaf_index, q.record_value) for q in batch.quarantined] == [(1, 1, b"not avro")]
    assert batch.quarantined[0].leaf_hash == leaf_hash(TOPIC, 1, 1, b"k", b"not avro")
    assert batch.progress == [PartitionProgress(1, None, 3, 3)]
    # the batch carries the partition's tree over its three leaves, and the nodes it completed
    (progress,) = batch.progress
    leaves = [leaf_hash(TOPIC, 1, r.offset, r.key, r.value) for r in records]
    assert progress.tree is not None and progress.tree.root() == tree_root(leaves)
    assert sorted((n.node.node.level, n.node.node.index) for n in batch.nodes) == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_a_resumed_partition_checks_its_last_record_and_skips_it(processor: BatchProcessor) -> None:
    last = valid_record(2, 6)
    positions = Positions()
    check = LastProjected(6, leaf_hash(TOPIC, 2, 6, last.key, last.value))
    positions.resume({2: ResumePoint(2, Position(7, 4), check)})
    batch = processor.process({2: [last, valid_record(2, 7), valid_record(2, 8)]}, positions)
    assert batch is not None
    assert [(r.kafka_offset, r.leaf_index) for r in batch.rows] == [(7, 4), (8, 5)]
    assert batch.progress == [PartitionProgress(2, 7, 9, 6)]
    assert not positions.verify, "checked once, then forgotten"


def test_a_different_record_where_the_last_one_was_is_a_replaced_log(processor: BatchProcessor) -> None:
    positions = Positions()
    positions.resume({0: ResumePoint(0, Position(7, 7), LastProjected(6, b"\x00" * 32))})
    with pytest.raises(LogReplaced, match="offset 6 is a different record"):
        processor.process({0: [valid_record(0, 6)]}, positions)


def test_a_log_that_resumes_later_than_the_last_record_is_a_replaced_log(processor: BatchProcessor) -> None:
    positions = Positions()
    positions.resume({0: ResumePoint(0, Position(7, 7), LastProjected(6, b"\x00" * 32))})
    with pytest.raises(LogReplaced, match="missing"):
        processor.process({0: [valid_record(0, 9)]}, positions)


def test_nothing_moves_for_revoked_or_already_projected_records(processor: BatchProcessor) -> None:
    positions = Positions()
    positions.resume({0: ResumePoint(0, Position(5, 5), None)})
    # partition 3 was revoked during the poll; partition 0 only brought what is projected
    assert processor.process({3: [valid_record(3, 0)], 0: [valid_record(0, 4)]}, positions) is None


def test_positions_advance_by_the_batch(processor: BatchProcessor) -> None:
    positions = fresh(0, 1)
    batch = processor.process({0: [valid_record(0, 0)], 1: [valid_record(1, 0), valid_record(1, 1)]}, positions)
    assert batch is not None
    positions.advance(batch.progress)
    assert positions.stored == {0: Position(1, 1), 1: Position(2, 2)}
    assert positions.next_offset(0) == 1 and positions.next_offset(5) == 0
