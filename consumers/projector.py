"""The projector: a consumer-group member that turns the ledger topic into PostgreSQL views
with an exactly-once effect.

Each batch (one ``poll``) is written in **one** PostgreSQL transaction: journal rows,
quarantine rows, view updates and, per partition, the next offset to read. Where to read
from is decided by PostgreSQL alone: on start and on every partition assignment the
projector seeks to the stored offsets, never to Kafka's committed ones (it still commits to
Kafka after each batch, for lag monitoring only). Kill it anywhere: a batch is either
fully in PostgreSQL, offsets included, or not at all, and is read again.

A stored offset beyond the broker's log end means the topic was recreated or the broker
lost data; the projector stops with :class:`StoredOffsetBeyondLogEnd` instead of
skipping or re-projecting (``auto_offset_reset='none'``: no reset policy ever moves it).
A replaced log that has already grown past the stored offsets is caught too: on every
assignment the projector re-reads the last record it projected on each partition and
stops with :class:`LogReplaced` unless its Merkle leaf equals the journal's.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError, OffsetOutOfRangeError

from protocolo.projections.integrity import leaf_hash
from protocolo.projections.journal import (
    JournalRow,
    OffsetConflict,
    PartitionProgress,
    QuarantineRow,
    ensure_staging,
    last_projected,
    stored_progress,
)
from protocolo.projections.schema import connect
from protocolo.projections.views import install_profiles
from protocolo.schemas.catalogue import SchemaCatalogue

from .batch_writer import Batch, BatchWriter
from .decoding import RecordDecoder

log = logging.getLogger(__name__)

#: Fencing conflicts are normal around a rebalance; this many in a row, with no batch
#: committed in between, means the stored offsets and the journal disagree.
MAX_CONFLICTS_IN_A_ROW = 10


class ProjectorError(RuntimeError):
    pass


#: What to do when the log no longer holds what was projected (both errors below).
_REPLACED_LOG_REMEDY = (
    "Nothing was skipped or projected twice; the projector stopped. Restore the topic's data, "
    "or point the projector at a fresh database (PROTOCOLO_DATABASE_URL) or another topic "
    "(PROTOCOLO_TOPIC) to start a new ledger; the journal in PostgreSQL still holds everything "
    "projected so far."
)


class StoredOffsetBeyondLogEnd(ProjectorError):
    def __init__(self, topic: str, partition: int, stored: int, log_end: int | None) -> None:
        end = "out of range" if log_end is None else f"ends at offset {log_end}"
        super().__init__(
            f"{topic} partition {partition}: PostgreSQL says {stored} records of this partition were "
            f"already projected, but the broker's log {end}. The topic was deleted and recreated, or "
            "the broker lost data (the embedded tansu broker keeps its log in memory: restarting it "
            f"empties every topic). {_REPLACED_LOG_REMEDY}"
        )
        self.topic, self.partition, self.stored, self.log_end = topic, partition, stored, log_end


class LogReplaced(ProjectorError):
    def __init__(self, topic: str, partition: int, offset: int, found: str) -> None:
        super().__init__(
            f"{topic} partition {partition}: the record at offset {offset} is {found}, not the one "
            "projected there (its Merkle leaf differs from the journal's). The topic was deleted and "
            f"recreated, or the broker lost data and was written to again. {_REPLACED_LOG_REMEDY}"
        )
        self.topic, self.partition, self.offset = topic, partition, offset


@dataclass
class ProjectorOptions:
    batch_size: int = 2000
    poll_timeout_ms: int = 500
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 60_000
    commit_to_kafka: bool = True
    kafka: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProjectorStats:
    batches: int = 0
    journaled: int = 0
    quarantined: int = 0
    conflicts: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def records(self) -> int:
        return self.journaled + self.quarantined


class _Positions:
    """What PostgreSQL says for each assigned partition: (next_offset, next_leaf) or None,
    and, until checked, the last projected record each resumed partition must still hold."""

    def __init__(self) -> None:
        self.stored: dict[int, tuple[int, int] | None] = {}
        self.verify: dict[int, tuple[int, bytes]] = {}  # partition -> (offset, leaf hash)


class _SeekToStored(ConsumerRebalanceListener):
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    # kafka-python re-raises a listener's exception from poll() as a generic KafkaError:
    # keep the real one so that step() can raise it instead.

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            # What this member wrote must be committed before another member reads the offsets.
            self.projector._settle()
            for tp in revoked:
                self.projector._positions.stored.pop(tp.partition, None)
                self.projector._positions.verify.pop(tp.partition, None)
        except BaseException as exc:
            self.projector._fatal = self.projector._fatal or exc
            raise

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            self.projector._seek_to_stored(assigned)
        except BaseException as exc:
            self.projector._fatal = self.projector._fatal or exc
            raise


class Projector:
    def __init__(
        self,
        bootstrap_servers: str | list[str],
        database_url: str,
        *,
        topic: str,
        group_id: str,
        options: ProjectorOptions | None = None,
        catalogue: SchemaCatalogue | None = None,
        progress: Callable[[ProjectorStats], None] | None = None,
    ) -> None:
        self.topic = topic
        self.options = options or ProjectorOptions()
        self.stats = ProjectorStats()
        self._progress = progress
        self._stop = threading.Event()
        self._positions = _Positions()
        self._decoder = RecordDecoder(topic, catalogue)
        # What is opened is closed again if a later step fails (a policy mismatch, no broker):
        # the ExitStack idiom of the contextlib docs; on success close() owns it all.
        with contextlib.ExitStack() as undo:
            self._conn = connect(database_url)  # reads offsets; batches go through the writer's
            undo.callback(self._conn.close)
            install_profiles(self._conn)
            self._conn.commit()
            self._writer_conn = connect(database_url, autocommit=True)
            undo.callback(self._writer_conn.close)
            ensure_staging(self._writer_conn)
            self._fatal: BaseException | None = None
            self._conflicts_in_a_row = 0
            self._committed: list[Batch] = []  # appended by the writer thread, drained here
            self._writer = BatchWriter(self._writer_conn, topic, self._on_committed)
            undo.callback(self._writer.close)
            opts = self.options
            batch_bytes = max(opts.batch_size * 2048, 1024 * 1024)
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap_servers,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="none",
                max_poll_records=opts.batch_size,
                # Bound what the client buffers, so memory follows the batch size, not the log.
                fetch_max_bytes=batch_bytes,
                max_partition_fetch_bytes=max(batch_bytes // 4, 1024 * 1024),
                session_timeout_ms=opts.session_timeout_ms,
                heartbeat_interval_ms=opts.heartbeat_interval_ms,
                max_poll_interval_ms=opts.max_poll_interval_ms,
                **opts.kafka,
            )
            self._consumer.subscribe([topic], listener=_SeekToStored(self))
            undo.pop_all()

    # -- positions -------------------------------------------------------------------

    def _seek_to_stored(self, assigned: set[TopicPartition]) -> None:
        # Read the offsets only once every batch handed over is committed or failed.
        self._writer.drain()
        self._acknowledge()
        self._take_write_failure()  # a conflict needs no more than the re-read below
        self._conn.rollback()
        stored = stored_progress(self._conn, self.topic, [tp.partition for tp in assigned])
        last = last_projected(self._conn, self.topic, {p: o for p, (o, _) in stored.items() if o > 0})
        self._conn.rollback()
        for tp in assigned:
            at = stored.get(tp.partition)
            self._positions.stored[tp.partition] = at
            if at is None:
                self._consumer.seek_to_beginning(tp)
            elif tp.partition in last:
                # Resume one record early: that record must be the one projected there, or
                # the log was replaced under us (see _verify_resumed).
                self._positions.verify[tp.partition] = last[tp.partition]
                self._consumer.seek(tp, at[0] - 1)
            else:
                self._consumer.seek(tp, at[0])
        log.info("assigned %s; stored offsets %s", sorted(tp.partition for tp in assigned), stored)

    def _check_log_end(self) -> None:
        """A stored offset past the high watermark: the log lost what we projected."""
        for tp in self._consumer.assignment():
            at = self._positions.stored.get(tp.partition)
            high = self._consumer.highwater(tp)
            if at is not None and high is not None and at[0] > high:
                raise StoredOffsetBeyondLogEnd(self.topic, tp.partition, at[0], high)

    def _verify_resumed(self, partition: int, records: list[Any]) -> None:
        offset, expected = self._positions.verify.pop(partition)
        first = records[0]
        if first.offset != offset:
            raise LogReplaced(self.topic, partition, offset, f"missing (the log resumes at {first.offset})")
        if leaf_hash(self.topic, partition, first.offset, first.key, first.value or b"") != expected:
            raise LogReplaced(self.topic, partition, offset, "a different record")

    def caught_up(self) -> bool:
        """Every assigned partition has been fetched and nothing is left below its high watermark."""
        assignment = self._consumer.assignment()
        if not assignment or self._positions.verify:
            return False
        self._check_log_end()
        for tp in assignment:
            high = self._consumer.highwater(tp)
            at = self._positions.stored.get(tp.partition)
            if high is None:
                return False
            if (at[0] if at else 0) < high:
                return False
        return True

    # -- one batch -------------------------------------------------------------------

    def step(self) -> int:
        """Poll once and project what came; return the number of records handled."""
        if self._fatal is not None:
            raise self._fatal
        try:
            polled = self._consumer.poll(timeout_ms=self.options.poll_timeout_ms,
                                         max_records=self.options.batch_size)
        except OffsetOutOfRangeError as exc:
            tp, offset = next(iter(exc.args[0].items()))
            raise StoredOffsetBeyondLogEnd(self.topic, tp.partition, offset, None) from exc
        except KafkaError:
            if self._fatal is not None:  # raised in a rebalance callback: the real cause
                raise self._fatal from None
            raise
        self._check_log_end()
        if not polled:
            return 0
        rows: list[JournalRow] = []
        quarantined: list[QuarantineRow] = []
        progress: list[PartitionProgress] = []
        for tp, records in polled.items():
            at = self._positions.stored.get(tp.partition)
            if tp.partition not in self._positions.stored:
                continue  # revoked during the poll
            if tp.partition in self._positions.verify:
                self._verify_resumed(tp.partition, records)
            next_offset, next_leaf = at if at else (0, 0)
            for record in records:
                if record.offset < next_offset:
                    continue  # already projected (defensive: never apply twice)
                row = self._decoder.decode(record, next_leaf)
                if isinstance(row, JournalRow):
                    rows.append(row)
                    next_leaf += 1
                else:
                    quarantined.append(row)
                    log.warning("quarantined %s[%d]@%d: %s", self.topic, tp.partition, record.offset, row.error)
                next_offset = record.offset + 1
            if at is None or next_offset != at[0]:
                progress.append(PartitionProgress(tp.partition, at[0] if at else None, next_offset, next_leaf))
        if not progress:
            return 0
        if self._take_write_failure():
            self._seek_to_stored(self._consumer.assignment())
            return 0  # this batch is fetched again from the stored offsets
        self._writer.submit(Batch(rows, quarantined, progress))
        for p in progress:
            self._positions.stored[p.partition] = (p.next_offset, p.next_leaf_index)
        self._acknowledge()
        return len(rows) + len(quarantined)

    def _on_committed(self, batch: Batch) -> None:
        """Called on the writer's thread once a batch is in PostgreSQL."""
        self._conflicts_in_a_row = 0
        self.stats.batches += 1
        self.stats.journaled += len(batch.rows)
        self.stats.quarantined += len(batch.quarantined)
        self._committed.append(batch)
        if self._progress:
            try:
                self._progress(self.stats)
            except Exception:  # noqa: BLE001 - a progress printer must not stop the writer
                log.exception("progress callback failed")

    def _acknowledge(self) -> None:
        """Tell Kafka what PostgreSQL holds (for lag monitoring only; the consumer is not
        thread-safe, so this runs on the projector's thread)."""
        while self._committed:
            batch = self._committed.pop(0)
            if self.options.commit_to_kafka:
                self._consumer.commit_async({
                    TopicPartition(self.topic, p.partition): OffsetAndMetadata(p.next_offset, "", -1)
                    for p in batch.progress
                })

    def _take_write_failure(self) -> bool:
        """Collect a failed write. A fencing conflict (another projector wrote these offsets)
        returns True: the caller re-reads the stored offsets. Anything else stops the projector."""
        if not self._writer.failed():
            return False
        self._writer.drain()  # batches queued behind the failure are skipped, not written
        error = self._writer.take_error()
        assert error is not None
        if isinstance(error, OffsetConflict):
            log.warning("%s; re-reading stored offsets", error)
        elif isinstance(error, psycopg.errors.UniqueViolation):
            # The journal already holds one of these offsets: another projector got there.
            log.warning("journal already has part of a batch (%s); re-reading stored offsets",
                        error.diag.message_primary)
        else:
            # Kept as well as raised: from a rebalance callback kafka-python re-raises it as a
            # generic KafkaError, and step() raises this instead.
            self._fatal = error
            raise error
        self.stats.conflicts += 1
        self._conflicts_in_a_row += 1
        if self._conflicts_in_a_row > MAX_CONFLICTS_IN_A_ROW:
            self._fatal = ProjectorError(
                f"{self._conflicts_in_a_row} batches in a row could not be written although PostgreSQL's "
                f"stored offsets say they are next (last error: {error}). The journal and "
                "projector_offsets disagree (a restore or manual change?); the projector stopped "
                "rather than retry for ever. Compare projector_offsets with max(kafka_offset) per "
                "partition in the journal."
            )
            raise self._fatal from error
        return True

    def _settle(self) -> bool:
        """Wait for the writer; return False when a conflict made it re-read positions."""
        self._writer.drain()
        self._acknowledge()
        if self._take_write_failure():
            self._seek_to_stored(self._consumer.assignment())
            return False
        return True

    # -- the loop --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the batch in flight (safe from a signal handler)."""
        self._stop.set()

    def run(self, until_caught_up: bool = False, idle_timeout_s: float | None = None) -> ProjectorStats:
        """Project until :meth:`stop` (or SIGINT/SIGTERM when called from the main thread),
        or, with ``until_caught_up``, until every assigned partition reaches its log end."""
        restore = self._install_signal_handlers()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                handled = self.step()
                if handled:
                    idle_since = time.monotonic()
                # Only after a poll that brought nothing: high watermarks seen in earlier
                # fetches may predate records published since (a fetch in flight while a
                # producer wrote), so "position >= high watermark" proves nothing then.
                if not handled and until_caught_up and self.caught_up() and self._settle():
                    break
                if not handled and idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    raise ProjectorError(
                        f"no progress for {idle_timeout_s:.0f} s and not caught up "
                        f"(assignment: {sorted(tp.partition for tp in self._consumer.assignment())})"
                    )
            self._settle()
        finally:
            restore()
        return self.stats

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: object) -> None:
            log.info("signal %d: finishing the batch in flight, then stopping", signum)
            self._stop.set()

        for s in previous:
            signal.signal(s, handler)

        def restore() -> None:
            for s, h in previous.items():
                signal.signal(s, h)

        return restore

    def close(self) -> None:
        try:
            try:
                self._consumer.close(autocommit=False)  # leaving the group settles the writer
            finally:
                self._writer.close()
        finally:
            self._conn.close()
            self._writer_conn.close()

    def __enter__(self) -> Projector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
