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
A refused row keeps its Merkle leaf (index and hash): every offset has a leaf whether it
is journalled or quarantined, so the tree and the batch's progress do not change.
The quarantine rows, the written rows and the fenced positions commit together: the
exactly-once discipline of a normal batch, with O(refused x log(rows)) extra statements.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from protocolo.projections.journal import JournalRow, QuarantineRow, write_journal, write_quarantine

from .batch import Batch
from .storable import clean_error, storable_json
from .tracking import TrackingStore

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
        leaf_index=row.leaf_index, leaf_hash=row.leaf_hash,
    )


class RowIsolatingWrite:
    """One isolating write of one batch on ``conn`` (autocommit; this opens the transaction)."""

    def __init__(self, conn: psycopg.Connection, tracking: TrackingStore, batch: Batch) -> None:
        self._conn = conn
        self._tracking = tracking
        self._batch = batch
        self._topic = tracking.topic

    def write(self) -> Batch:
        """Write the batch without its refused rows; return what was written."""
        with self._conn.transaction(), self._conn.cursor() as cur:
            written, refused = self._write_rows(cur)
            quarantined = [*self._batch.quarantined, *refused]
            write_quarantine(cur, self._topic, quarantined)
            progress = self._batch.progress
            self._tracking.advance(cur, progress, self._batch.nodes)
        for q in refused:
            log.warning("quarantined %s[%d]@%d at write time: %s", self._topic, q.kafka_partition,
                        q.kafka_offset, q.error)
        return Batch(written, quarantined, progress, self._batch.nodes)

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
            candidate = remaining
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
            remaining = remaining[failing:]
        return written, refused
