"""The batch processor: what one poll's records become, without Kafka or PostgreSQL.

Given the records of a poll and where each partition stands, :class:`BatchProcessor` decodes
every record into a journal row or a quarantine row, each with the next Merkle leaf index
of its partition (every offset gets a leaf), appends those leaves to the partition's tree
(its compact range; the perfect nodes completed go with the batch), skips what was
already projected, checks that a resumed partition still
holds the record last projected there, and says how far each partition moves. It is pure
(no I/O): the run loop feeds it, the batch writer stores what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocolo.core.kafka_client import ConsumedRecord
from protocolo.evidence.merkle import CompactRange
from protocolo.projections.integrity import leaf_hash
from protocolo.projections.journal import JournalRow, QuarantineRow
from protocolo.projections.merkle_store import TreeNode

from .decoding import RecordDecoder
from .errors import LogReplaced
from .tracking import LastProjected, PartitionProgress, Position, ResumePoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    rows: Sequence[JournalRow]
    quarantined: Sequence[QuarantineRow]
    progress: Sequence[PartitionProgress]
    nodes: Sequence[TreeNode] = ()  # perfect Merkle nodes the batch's leaves complete

    @property
    def records(self) -> int:
        return len(self.rows) + len(self.quarantined)


@dataclass
class Positions:
    """The run loop's picture of its assigned partitions: the stored position of each
    (None: nothing stored yet) and, until checked, the last projected record each resumed
    partition must still hold. Advanced optimistically when a batch is handed to the
    writer; reset from the tracking store when a write fails."""

    stored: dict[int, Position | None] = field(default_factory=dict)
    verify: dict[int, LastProjected] = field(default_factory=dict)

    def resume(self, points: Mapping[int, ResumePoint]) -> None:
        for p, point in points.items():
            self.stored[p] = point.stored
            if point.check is not None:
                self.verify[p] = point.check
            else:
                self.verify.pop(p, None)

    def forget(self, partition: int) -> None:
        self.stored.pop(partition, None)
        self.verify.pop(partition, None)

    def advance(self, progress: Sequence[PartitionProgress]) -> None:
        for p in progress:
            self.stored[p.partition] = Position(p.next_offset, p.next_leaf_index, p.tree)

    def next_offset(self, partition: int) -> int:
        at = self.stored.get(partition)
        return at.next_offset if at is not None else 0


class BatchProcessor:
    def __init__(self, decoder: RecordDecoder) -> None:
        self.decoder = decoder
        self.topic = decoder.topic

    def process(self, polled: Mapping[int, Sequence[ConsumedRecord]], positions: Positions) -> Batch | None:
        """partition -> records (in offset order) of one poll; None when nothing moves.
        Raises :class:`LogReplaced` when a resumed partition no longer holds its last record."""
        rows: list[JournalRow] = []
        quarantined: list[QuarantineRow] = []
        progress: list[PartitionProgress] = []
        nodes: list[TreeNode] = []
        for partition, records in polled.items():
            if partition not in positions.stored or not records:
                continue  # revoked during the poll
            check = positions.verify.pop(partition, None)
            if check is not None:
                self.verify_resumed(partition, check, records[0])
            at = positions.stored[partition]
            first_row, first_quarantined = len(rows), len(quarantined)
            moved = self._decode_partition(records, at, rows, quarantined)
            if moved is None:
                continue
            tree = CompactRange() if at is None else at.tree
            if tree is not None:
                tree = tree.copy()
                leaves = sorted([(r.leaf_index, r.leaf_hash) for r in rows[first_row:]]
                                + [(q.leaf_index, q.leaf_hash) for q in quarantined[first_quarantined:]])
                for _, leaf in leaves:
                    nodes.extend(TreeNode(partition, n) for n in tree.append(leaf))
            progress.append(PartitionProgress(
                partition, at.next_offset if at else None, moved.next_offset, moved.next_leaf_index, tree,
            ))
        return Batch(rows, quarantined, progress, nodes) if progress else None

    def _decode_partition(self, records: Sequence[ConsumedRecord], at: Position | None,
                          rows: list[JournalRow], quarantined: list[QuarantineRow]) -> Position | None:
        """Decode one partition's records into ``rows``/``quarantined``; its new position, or
        None when it does not move."""
        next_offset, next_leaf = (at.next_offset, at.next_leaf_index) if at else (0, 0)
        for record in records:
            if record.offset < next_offset:
                continue  # already projected (the resume check's record; never apply twice)
            row = self.decoder.decode(record, next_leaf)
            next_leaf += 1  # every offset gets a leaf, quarantined records included
            if isinstance(row, JournalRow):
                rows.append(row)
            else:
                quarantined.append(row)
                log.warning("quarantined %s[%d]@%d: %s", self.topic, record.partition, record.offset, row.error)
            next_offset = record.offset + 1
        if at is not None and next_offset == at.next_offset:
            return None
        return Position(next_offset, next_leaf, None)

    def verify_resumed(self, partition: int, check: LastProjected, first: ConsumedRecord) -> None:
        if first.offset != check.offset:
            raise LogReplaced(self.topic, partition, check.offset, f"missing (the log resumes at {first.offset})")
        if leaf_hash(self.topic, partition, first.offset, first.key, first.value or b"") != check.leaf_hash:
            raise LogReplaced(self.topic, partition, check.offset, "a different record")
