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

This module is the run loop only (the Kafka consumer, rebalances, seeks, stop conditions).
What a poll's records become is :mod:`.batch`'s job; where each partition stands,
:mod:`.tracking`'s; writing, :mod:`.batch_writer`'s (see ``docs/projector.md``).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg

from protocolo.core.kafka_client import (
    ConsumedRecord,
    ConsumerSettings,
    KafkaClientError,
    OffsetOutOfRange,
    RecordConsumer,
    UnparsableRecords,
    open_consumer,
)
from protocolo.core.topic_settings import UnsafeSetting, UnsafeTopic, admin_client, check_topic
from protocolo.projections.journal import ensure_staging
from protocolo.projections.schema import connect
from protocolo.projections.views import install_profiles
from protocolo.schemas.catalogue import SchemaCatalogue

from .batch import Batch, BatchProcessor, Positions
from .batch_writer import BatchWriter
from .decoding import RecordDecoder
from .errors import LogReplaced, ProjectorError, StoredOffsetBeyondLogEnd
from .raw_fetch import fetch_raw
from .raw_records import RawRecord, read_batches
from .tracking import OffsetConflict, TrackingStore

__all__ = [
    "LogReplaced", "Projector", "ProjectorError", "ProjectorOptions", "ProjectorStats",
    "StoredOffsetBeyondLogEnd", "UnsafeTopic",
]

log = logging.getLogger(__name__)

#: Fencing conflicts are normal around a rebalance; this many in a row, with no batch
#: committed in between, means the stored offsets and the journal disagree.
MAX_CONFLICTS_IN_A_ROW = 10


@dataclass
class ProjectorOptions:
    batch_size: int = 2000
    poll_timeout_ms: int = 500
    # Short group timeouts: a tansu workaround first (tansu 0.6 completes a group join in
    # about 20 s with kafka-python's defaults, 3 s with these); on Apache Kafka they only
    # make a dead member's partitions move sooner.
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 60_000
    commit_to_kafka: bool = True
    #: Project from a topic whose settings let the broker delete records (finite retention,
    #: compaction, unclean leader election): refused unless this is set, and logged when it is.
    accept_unsafe_topic: bool = False
    #: How long the projector keeps polling through errors Kafka marks retriable (a broker
    #: of the cluster went away, a leader moved) before it gives up and stops: nothing is
    #: lost either way (positions live in PostgreSQL), but one broker's death in a cluster
    #: must not stop projection.
    broker_retry_s: float = 120.0
    #: Further consumer settings, in the chosen client's own names (kafka-python's keyword
    #: arguments, or librdkafka's dotted properties with PROTOCOLO_KAFKA_CLIENT=confluent).
    #: The topic check and the raw fetch use kafka-python's admin client, which gets the
    #: kafka-python settings among these (those it knows).
    kafka: dict[str, Any] = field(default_factory=dict)
    #: The Kafka client (protocolo.core.kafka_client.CLIENTS); None: PROTOCOLO_KAFKA_CLIENT.
    client: str | None = None


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


def _unread_end(records: Sequence[RawRecord], position: int, error: UnparsableRecords) -> int:
    """The offset after the last record to read with our own parser."""
    if error.offset is not None:  # the client named the one record it cannot read
        return error.offset + 1
    # kafka-python parses a batch whole, records below the fetch position too: no record of
    # a batch holding such a record is delivered after it.
    unparsable = [r for r in records if not r.header_keys_are_text()]
    return unparsable[-1].batch_end if unparsable else position


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
        self._positions = Positions()
        self._processor = BatchProcessor(RecordDecoder(topic, catalogue))
        self._fatal: BaseException | None = None
        self._conflicts_in_a_row = 0
        self._committed: list[Batch] = []  # appended by the writer thread, drained here
        self._bootstrap = bootstrap_servers
        self.unsafe_settings = self._check_topic(bootstrap_servers)
        # Whatever is opened here is closed again if a later step fails (a broker that
        # cannot be reached, a database that refuses the migrations).
        with ExitStack() as opened:
            self._conn = connect(database_url)  # reads offsets; batches go through the writer's
            opened.callback(self._conn.close)
            self._tracking = TrackingStore(self._conn, topic)
            install_profiles(self._conn)
            self._conn.commit()
            self._writer_conn = connect(database_url, autocommit=True)
            opened.callback(self._writer_conn.close)
            ensure_staging(self._writer_conn)
            self._writer = BatchWriter(self._writer_conn, self._tracking, self._on_committed)
            opened.callback(self._writer.close)
            self._consumer = self._new_consumer(bootstrap_servers, group_id)
            opened.pop_all()

    def _check_topic(self, bootstrap_servers: str | list[str]) -> list[UnsafeSetting]:
        """Before anything is opened: refuse a topic that could lose evidence (topic_settings)."""
        admin = admin_client(bootstrap_servers, self.options.kafka)
        try:
            return check_topic(admin, self.topic, accept_unsafe=self.options.accept_unsafe_topic)
        finally:
            admin.close()

    def _new_consumer(self, bootstrap_servers: str | list[str], group_id: str) -> RecordConsumer:
        """The chosen client's consumer (protocolo.core.kafka_client): no auto-commit, no
        offset reset, fetches bounded by the batch size."""
        opts = self.options
        batch_bytes = max(opts.batch_size * 2048, 1024 * 1024)
        consumer = open_consumer(ConsumerSettings(
            bootstrap_servers=(bootstrap_servers if isinstance(bootstrap_servers, str)
                               else ",".join(bootstrap_servers)),
            topic=self.topic,
            group_id=group_id,
            max_poll_records=opts.batch_size,
            # Bound what the client buffers, so memory follows the batch size, not the log.
            fetch_max_bytes=batch_bytes,
            max_partition_fetch_bytes=max(batch_bytes // 4, 1024 * 1024),
            session_timeout_ms=opts.session_timeout_ms,
            heartbeat_interval_ms=opts.heartbeat_interval_ms,
            max_poll_interval_ms=opts.max_poll_interval_ms,
            extra=opts.kafka,
        ), opts.client)
        consumer.subscribe(self.partitions_assigned, self.partitions_revoked)
        return consumer

    @property
    def kafka_client(self) -> str:
        """Which Kafka client this projector consumes with (kafka-python or confluent)."""
        return self._consumer.client

    # -- positions -------------------------------------------------------------------

    # -- rebalances (called by the Kafka client from inside poll) --------------------------
    # kafka-python re-raises a listener's exception from poll() as a generic KafkaError:
    # the real one is kept so that step() can raise it instead.

    def partitions_revoked(self, revoked: set[int]) -> None:
        try:
            # What this member wrote must be committed before another member reads the offsets.
            self._settle()
            for partition in revoked:
                self._positions.forget(partition)
        except BaseException as exc:
            self._fatal = self._fatal or exc
            raise

    def partitions_assigned(self, assigned: set[int]) -> None:
        try:
            self._seek_to_stored(assigned)
        except BaseException as exc:
            self._fatal = self._fatal or exc
            raise

    def assigned_partitions(self) -> set[int]:
        """The partitions this member holds now (may raise RuntimeError while a rebalance
        changes them under another thread's read)."""
        return self._consumer.assignment()

    @property
    def writer_backend_pid(self) -> int:
        """PostgreSQL backend pid of the connection batches are written on (to find it in
        pg_stat_activity / pg_locks)."""
        return int(self._writer_conn.info.backend_pid)

    def _seek_to_stored(self, assigned: set[int]) -> None:
        # Read the offsets only once every batch handed over is committed or failed.
        self._writer.drain()
        self._acknowledge()
        self._take_write_failure()  # a conflict needs no more than the re-read below
        points = self._tracking.resume_points(assigned)
        self._positions.resume(points)
        for partition in assigned:
            at = points[partition].seek_offset
            if at is None:
                self._consumer.seek_to_beginning(partition)
            else:
                self._consumer.seek(partition, at)
        log.info("assigned %s; stored positions %s", sorted(points),
                 {p: point.stored for p, point in points.items()})

    def _check_log_end(self) -> None:
        """A stored offset past the high watermark: the log lost what we projected.

        Needed for tansu (a tansu workaround): it answers a fetch past the log end with no
        records and no error. Apache Kafka answers OFFSET_OUT_OF_RANGE, handled in _poll().
        """
        for partition in self._consumer.assignment():
            at = self._positions.stored.get(partition)
            high = self._consumer.highwater(partition)
            if at is not None and high is not None and at.next_offset > high:
                raise StoredOffsetBeyondLogEnd(self.topic, partition, at.next_offset, high)

    def caught_up(self) -> bool:
        """Every assigned partition has been fetched and nothing is left below its high watermark."""
        assignment = self._consumer.assignment()
        if not assignment or self._positions.verify:
            return False
        self._check_log_end()
        for partition in assignment:
            high = self._consumer.highwater(partition)
            if high is None or self._positions.next_offset(partition) < high:
                return False
        return True

    # -- one batch -------------------------------------------------------------------

    def step(self) -> int:
        """Poll once and project what came; return the number of records handled."""
        polled = self._poll()
        self._check_log_end()
        if not polled:
            return 0
        batch = self._processor.process(polled, self._positions)
        if batch is None:
            return 0
        if self._take_write_failure():
            self._seek_to_stored(self._consumer.assignment())
            return 0  # this batch is fetched again from the stored offsets
        self._writer.submit(batch)
        self._positions.advance(batch.progress)
        self._acknowledge()
        return batch.records

    def _poll(self) -> Mapping[int, Sequence[ConsumedRecord]]:
        """One poll; retriable Kafka errors are retried for ``options.broker_retry_s``."""
        failing_since: float | None = None
        while True:
            try:
                polled = self._poll_once()
            except KafkaClientError as exc:
                if not exc.retriable or self._fatal is not None:
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.options.broker_retry_s:
                    raise
                log.warning("Kafka: %s (retriable); polling again", exc)
                time.sleep(min(1.0, self.options.poll_timeout_ms / 1000))
                continue
            if failing_since is not None:
                log.warning("Kafka answers again after %.1f s", time.monotonic() - failing_since)
            return polled

    def _poll_once(self) -> Mapping[int, Sequence[ConsumedRecord]]:
        if self._fatal is not None:
            raise self._fatal
        try:
            return self._consumer.poll(self.options.poll_timeout_ms, self.options.batch_size)
        except OffsetOutOfRange as exc:
            if self._fatal is not None:
                raise self._fatal from None
            # Apache Kafka's answer to a fetch past the log end (tansu answers nothing; see
            # _check_log_end). The fetch position may be one record before the stored offset
            # (a resumed partition re-reads its last record), so report what PostgreSQL holds:
            # read again when the partition was revoked or lost since (librdkafka still hands
            # over the error it met before the group took the partition back).
            at = (self._positions.stored.get(exc.partition)
                  or self._tracking.positions([exc.partition]).get(exc.partition))
            raise StoredOffsetBeyondLogEnd(
                self.topic, exc.partition, at.next_offset if at else (exc.offset or 0),
                self._consumer.end_offset(exc.partition),
            ) from exc
        except UnparsableRecords as exc:
            if self._fatal is not None:
                raise self._fatal from None
            self._read_unparsable(exc)
            return {}
        except Exception:
            if self._fatal is not None:  # raised in a rebalance callback: the real cause
                raise self._fatal from None
            raise

    def _read_unparsable(self, error: UnparsableRecords) -> None:
        """The Kafka client could not read a fetched record exactly: kafka-python cannot
        parse a header key that is not UTF-8 (and would raise on every later poll),
        librdkafka gives header keys as C strings (cut at a NUL, or not decodable). Read
        the partition's batches with our own parser, project its records up to that one
        (which the decoder quarantines with its raw bytes if it must, like any record it
        cannot read) and seek past it."""
        admin = admin_client(self._bootstrap, self.options.kafka)
        try:
            for partition in sorted(self._consumer.assignment()):
                if error.partition is not None and partition != error.partition:
                    continue
                position = self._consumer.position(partition)
                data = fetch_raw(admin, self.topic, partition, position, max(self.options.batch_size * 2048, 1 << 20))
                records = list(read_batches(data, partition))
                taken = [r for r in records if position <= r.offset < _unread_end(records, position, error)]
                if not taken:
                    continue
                log.warning("%s[%d]@%d: the Kafka client cannot read it exactly (%s); read with the projector's "
                            "own record-batch parser", self.topic, partition, taken[-1].offset, error)
                self._project_now({partition: taken})
                self._consumer.seek(partition, taken[-1].offset + 1)
                return
        finally:
            admin.close()
        raise error  # no partition holds such a record: not the failure this handles

    def _project_now(self, polled: Mapping[int, Sequence[ConsumedRecord]]) -> None:
        """Hand records read outside poll() to the writer, as :meth:`step` does."""
        batch = self._processor.process(polled, self._positions)
        if batch is None:
            return
        if self._take_write_failure():
            self._seek_to_stored(self._consumer.assignment())
            return
        self._writer.submit(batch)
        self._positions.advance(batch.progress)
        self._acknowledge()

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
                self._consumer.commit_async({p.partition: p.next_offset for p in batch.progress})

    def _take_write_failure(self) -> bool:
        """Collect a failed write. A fencing conflict (another projector wrote these offsets),
        or a batch written without rows the database refused (its leaves moved), returns
        True: the caller re-reads the stored offsets. Anything else stops the projector."""
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

    @property
    def stop_requested(self) -> bool:
        """True once :meth:`stop` (or a signal) asked the loop to end: a later :meth:`run`
        returns at once, so a caller that loops over runs stops too."""
        return self._stop.is_set()

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
                        f"(assignment: {sorted(self._consumer.assignment())})"
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
                self._consumer.close()  # leaving the group settles the writer
            finally:
                self._writer.close()
        finally:
            self._conn.close()
            self._writer_conn.close()

    def __enter__(self) -> Projector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
