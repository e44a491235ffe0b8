"""Writing a batch that PostgreSQL refused because of what one of its rows holds.

The decoder quarantines the content it knows PostgreSQL cannot store; this is the net for
what it does not know. When a batch's write fails with an error caused by a row's content
(a data exception, SQLSTATE class 22, or an integrity violation other than the unique
violation that means another projector got there first), the batch is written again in
one transaction, and the rows that make it fail are found by bisection and quarantined:

1. try the rows still to write, in a savepoint; if that works, done;
2. otherwise find the shortest failing prefix by binary search, each probe in a savepoint
   that is rolled back; its last row is refused content;
3. write the prefix before it (for real, in a savepoint that is kept), quarantine the
   refused row with its raw bytes, and go on from the row after it.

Rows keep their order, so the views see the same sequence as without the refused rows.
The journal's Merkle leaves of a partition must have no gap, so every row after a
refused one takes one leaf index less, and the batch's progress moves by fewer leaves.
The quarantine rows, the written rows and the fenced positions commit together: the
exactly-once discipline of a normal batch, with O(refused x log(rows)) extra statements.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence

import psycopg

from protocolo.projections.journal import JournalRow, QuarantineRow, write_journal, write_quarantine

from .batch import Batch
from .storable import clean_error, storable_json
from .tracking import PartitionProgress, TrackingStore

log = logging.getLogger(__name__)


def refused_content(exc: BaseException) -> bool:
    """The database refused a row for what it holds (not a lost connection, not a conflict)."""
    if isinstance(exc, psycopg.errors.DataError):
        return True
    return isinstance(exc, psycopg.errors.IntegrityError) and not isinstance(exc, psycopg.errors.UniqueViolation)


def quarantine_row(row: JournalRow, error: BaseException) -> QuarantineRow:
    """The quarantine row of a journal row the database refused: raw bytes kept, headers and
    error made storable."""
    message = f"the database refused this record: {type(error).__name__}: {error}"
    return QuarantineRow(
        kafka_partition=row.kafka_partition, kafka_offset=row.kafka_offset,
        kafka_timestamp=row.kafka_timestamp, record_key=row.record_key, record_value=row.record_value,
        headers=storable_json(row.headers), error=clean_error(message),
    )


class RowIsolatingWrite:
    """One isolating write of one batch on ``conn`` (autocommit; this opens the transaction)."""

    def __init__(self, conn: psycopg.Connection, tracking: TrackingStore, batch: Batch) -> None:
        self._conn = conn
        self._tracking = tracking
        self._batch = batch
        self._topic = tracking.topic
        self._dropped: Counter[int] = Counter()  # partition -> refused rows so far

    def write(self) -> Batch:
        """Write the batch without its refused rows; return what was written."""
        with self._conn.transaction(), self._conn.cursor() as cur:
            written, refused = self._write_rows(cur)
            quarantined = [*self._batch.quarantined, *refused]
            write_quarantine(cur, self._topic, quarantined)
            progress = [dataclasses.replace(p, next_leaf_index=p.next_leaf_index - self._dropped[p.partition])
                        for p in self._batch.progress]
            self._tracking.advance(cur, progress)
        for q in refused:
            log.warning("quarantined %s[%d]@%d at write time: %s", self._topic, q.kafka_partition,
                        q.kafka_offset, q.error)
        return Batch(written, quarantined, progress)

    def _renumbered(self, rows: Sequence[JournalRow]) -> list[JournalRow]:
        return [dataclasses.replace(r, leaf_index=r.leaf_index - self._dropped[r.kafka_partition])
                if self._dropped[r.kafka_partition] else r for r in rows]

    def _try(self, cur: psycopg.Cursor, rows: Sequence[JournalRow], *, keep: bool) -> BaseException | None:
        """Write ``rows`` in a savepoint, kept or rolled back; the refusal, if any."""
        try:
            with self._conn.transaction():
                write_journal(cur, self._topic, rows, clear_staging=True)
                if not keep:
                    raise psycopg.Rollback()
        except psycopg.Error as exc:
            if refused_content(exc):
                return exc
            raise
        return None

    def _write_rows(self, cur: psycopg.Cursor) -> tuple[list[JournalRow], list[QuarantineRow]]:
        written: list[JournalRow] = []
        refused: list[QuarantineRow] = []
        remaining = list(self._batch.rows)
        while remaining:
            candidate = self._renumbered(remaining)
            failure = self._try(cur, candidate, keep=True)
            if failure is None:
                written += candidate
                break
            ok, failing = 0, len(candidate)  # prefix lengths: ok writes, failing does not
            while failing - ok > 1:
                middle = (ok + failing) // 2
                probe = self._try(cur, candidate[:middle], keep=False)
                if probe is None:
                    ok = middle
                else:
                    failing, failure = middle, probe
            prefix, bad = candidate[:failing - 1], candidate[failing - 1]
            if prefix:
                again = self._try(cur, prefix, keep=True)
                if again is not None:
                    raise again  # wrote as a probe, refused now: not one row's content
                written += prefix
            refused.append(quarantine_row(bad, failure))
            self._dropped[bad.kafka_partition] += 1
            remaining = remaining[failing:]
        return written, refused


def progress_moved(before: Sequence[PartitionProgress], after: Sequence[PartitionProgress]) -> bool:
    return [p.next_leaf_index for p in before] != [p.next_leaf_index for p in after]
