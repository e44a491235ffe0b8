"""The librdkafka implementation of :mod:`.kafka_client` (``PROTOCOLO_KAFKA_CLIENT=confluent``).

librdkafka builds batches, compresses, sends, fetches and checks CRCs on its own C
threads; Python sees a queued ``produce`` and a ``consume`` of ready messages. That is
what lets the publisher's validation and the projector's decoding overlap Kafka's work.

The producer is configured as the kafka-python one (:mod:`.kafka_python_client`):

=============================================  ==========================================
kafka-python (the publisher's settings)        librdkafka
=============================================  ==========================================
``acks='all'``                                 ``acks=all``
``enable_idempotence=True``                    ``enable.idempotence=true``
``max_in_flight_requests_per_connection=5``    ``max.in.flight.requests.per.connection=5``
``linger_ms``                                  ``linger.ms``
``batch_size`` (bytes)                         ``batch.size`` (bytes)
``delivery_timeout_ms``                        ``delivery.timeout.ms``
``request_timeout_ms``                         ``request.timeout.ms``
``max_request_size`` (default 1 MiB)           ``message.max.bytes=1048576``
default partitioner: murmur2 of the key        ``partitioner=murmur2_random`` (librdkafka's
                                               default, crc32, would put a protocol's events
                                               on other partitions than kafka-python/Java)
``bootstrap_timeout_ms``                       a metadata request at construction, bounded
                                               by it (librdkafka connects lazily)
``max_block_ms`` (send waits for metadata      librdkafka's produce never waits for
or buffer space)                               metadata; a full local queue is waited out
                                               for at most ``max_block_ms``
=============================================  ==========================================

The consumer: ``enable.auto.commit=false`` and ``enable.auto.offset.store=false`` (the
projector's positions live in PostgreSQL), ``auto.offset.reset=error`` (kafka-python's
``'none'``: never move a position silently), ``check.crcs=true`` (kafka-python checks them;
librdkafka does not by default), ``isolation.level=read_uncommitted`` (kafka-python's
default), ``fetch.max.bytes``, ``max.partition.fetch.bytes``, the group timeouts, and
``queued.max.messages.kbytes`` set to the fetch bound so that the prefetch queue, like
kafka-python's buffers, follows the batch size and not the log.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from protocolo.core.kafka_client import (
    CONFLUENT,
    ConsumedRecord,
    ConsumerSettings,
    Delivered,
    KafkaClientError,
    KafkaTimedOut,
    KafkaUnreachable,
    OffsetOutOfRange,
    ProducerSettings,
    UnparsableRecords,
)

__all__ = ["ConfluentConsumer", "ConfluentProducer", "client_error", "consumer_config", "producer_config"]


#: librdkafka's own log lines (it writes them to stderr otherwise), under kafka-python's
#: "kafka" logger, which the command line already quiets: failures that matter reach the
#: user as errors.
_LIBRDKAFKA_LOG = logging.getLogger("kafka.librdkafka")

#: The header keys the wire contract defines (schemas.validation.record_headers). librdkafka
#: hands a consumer header keys as C strings: a key with a NUL in it arrives cut short, and
#: nothing says so. A record with any other key is therefore re-read byte-exact by the
#: projector's own parser (UnparsableRecords naming it): valid events never carry one, a
#: hostile or foreign record is stored as it is on the log, as with kafka-python.
CONTRACT_HEADERS = frozenset({"event_type", "event_id"})


def _codes(*names: str) -> frozenset[int]:
    """Error codes by name. librdkafka's local (client-side) codes start with an underscore:
    public constants of confluent-kafka, not private members."""
    return frozenset(int(getattr(KafkaError, name)) for name in names)


_TIMED_OUT = _codes("_MSG_TIMED_OUT", "_TIMED_OUT", "_TIMED_OUT_QUEUE")
_UNREACHABLE = _codes("_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE")
_OUT_OF_RANGE = _codes("OFFSET_OUT_OF_RANGE", "_AUTO_OFFSET_RESET")
_PARTITION_EOF = _codes("_PARTITION_EOF")


def client_error(error: KafkaError) -> KafkaClientError:
    """librdkafka's error as the interface's."""
    code = error.code()
    text = f"{error.name()}: {error.str()}"
    if code in _TIMED_OUT:
        return KafkaTimedOut(text, retriable=True)
    if code in _UNREACHABLE:
        return KafkaUnreachable(text, retriable=True)
    return KafkaClientError(text, retriable=error.retriable())


def _error_of(exc: KafkaException) -> KafkaClientError:
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, KafkaError):
        return client_error(arg)
    return KafkaClientError(f"KafkaException: {exc}")


def producer_config(settings: ProducerSettings) -> dict[str, Any]:
    """librdkafka's producer properties for the ledger's settings (the table above)."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.batch_size,
        "delivery.timeout.ms": settings.delivery_timeout_ms,
        "request.timeout.ms": settings.request_timeout_ms,
        "message.max.bytes": 1_048_576,
        "partitioner": "murmur2_random",
        **settings.extra,
    }


def consumer_config(settings: ConsumerSettings) -> dict[str, Any]:
    """librdkafka's consumer properties for the projector's settings (the docstring above)."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "fetch.max.bytes": settings.fetch_max_bytes,
        "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
        "queued.max.messages.kbytes": max(settings.fetch_max_bytes // 1024, 1024),
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "check.crcs": True,
        "isolation.level": "read_uncommitted",
        "enable.partition.eof": False,
        **settings.extra,
    }


class _Delivery:
    """Filled by librdkafka's delivery report, which runs inside ``poll``/``flush``."""

    __slots__ = ("_done", "_error", "_offset", "_partition", "_producer", "_topic")

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._done = False
        self._error: KafkaError | None = None
        self._topic, self._partition, self._offset = "", -1, -1

    def report(self, error: KafkaError | None, message: Message) -> None:
        self._done, self._error = True, error
        partition, offset = message.partition(), message.offset()
        self._topic = message.topic() or ""
        self._partition = -1 if partition is None else partition
        self._offset = -1 if offset is None else offset

    def get(self, timeout_s: float) -> Delivered:
        deadline = time.monotonic() + timeout_s
        while not self._done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaTimedOut(f"no delivery report within {timeout_s:.1f} s", retriable=True)
            self._producer.poll(min(remaining, 0.1))
        if self._error is not None:
            raise client_error(self._error)
        return Delivered(self._topic, int(self._partition), int(self._offset))


class ConfluentProducer:
    client = CONFLUENT

    def __init__(self, settings: ProducerSettings) -> None:
        self._fatal: KafkaError | None = None
        self._max_block_s = settings.max_block_ms / 1000
        config = {**producer_config(settings), "error_cb": self._on_error, "logger": _LIBRDKAFKA_LOG}
        self.producer = Producer(config)
        try:
            self.producer.list_topics(timeout=settings.bootstrap_timeout_ms / 1000)
        except KafkaException as exc:
            self.producer.purge()
            self.producer.flush(0)
            raise KafkaUnreachable(f"no broker answered within {settings.bootstrap_timeout_ms} ms "
                                   f"({_error_of(exc)})", retriable=True) from None

    def _on_error(self, error: KafkaError) -> None:
        """Client-level errors (librdkafka reconnects by itself); a fatal one breaks it."""
        if error.fatal():
            self._fatal = error

    def send(self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> _Delivery:
        delivery = _Delivery(self.producer)
        deadline: float | None = None
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=list(headers),
                                      on_delivery=delivery.report)
                return delivery
            except BufferError:  # the local queue is full: wait for deliveries, boundedly
                now = time.monotonic()
                deadline = deadline or now + self._max_block_s
                if now >= deadline:
                    raise KafkaTimedOut(f"the producer's queue stayed full for {self._max_block_s:.1f} s "
                                        "(max_block_ms)", retriable=True) from None
                self.producer.poll(0.05)
            except KafkaException as exc:
                raise _error_of(exc) from None

    def flush(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)

    def broken(self) -> bool:
        return self._fatal is not None

    def close(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)
        self.producer.close()


@dataclass(frozen=True, slots=True)
class _Record:
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


def _headers(message: Message) -> list[tuple[str, bytes | None]] | None:
    """A consumed message's headers as (key, value bytes) pairs, or None when a header key
    is not UTF-8.

    confluent-kafka (2.16) builds each header as a (str, bytes) tuple and, when the key does
    not decode, leaves a NULL where the str should be and returns the list with the
    UnicodeDecodeError still pending: CPython raises it (or a SystemError) at the call or at
    a later C call, and anything that touches the NULL crashes the interpreter (SIGSEGV,
    seen: a traceback's repr of the list). So the list is first read without taking
    references, as CPython lays a list and a tuple out (ctypes, whose first call also
    surfaces a pending error here rather than somewhere else), and every NULL is filled
    with a placeholder before anything can reach it. The message keeps the list it built,
    so asking again after the error returns the same list, and no error.
    """
    try:
        raw = message.headers()
        holes = isinstance(raw, list) and _fill_holes(raw)
    except (SystemError, UnicodeDecodeError):
        cached = message.headers()
        if isinstance(cached, list):
            _fill_holes(cached)
        return None
    if holes:
        return None
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw  # a producer may build a dict
    return [(key, value.encode() if isinstance(value, str) else value) for key, value in pairs]


#: Where CPython keeps a list's item array pointer and a tuple's inline items (the size of
#: their object headers); read with ctypes so that a NULL item is seen, not dereferenced.
_LIST_ITEMS = list.__basicsize__ - 2 * ctypes.sizeof(ctypes.c_void_p)  # ob_item, then allocated
_TUPLE_ITEMS = tuple.__basicsize__  # the items follow the header (tuple.__itemsize__ each)
#: What fills a hole: a header key that could not be decoded, shown as U+FFFD.
_HOLE = "\ufffd"


def _fill_holes(pairs: list[Any]) -> bool:
    """Replace every NULL in ``pairs`` (and in the pairs in it) with :data:`_HOLE`;
    return whether there was one."""
    array = ctypes.c_void_p.from_address(id(pairs) + _LIST_ITEMS).value
    if array is None or not pairs:
        return False
    found = False
    slots = (ctypes.c_void_p * len(pairs)).from_address(array)
    for i, pointer in enumerate(slots):
        if pointer is None:
            slots[i] = _owned((_HOLE, None))
            found = True
            continue
        items = (ctypes.c_void_p * 2).from_address(pointer + _TUPLE_ITEMS)
        for j in (0, 1):
            if items[j] is None:
                items[j] = _owned(_HOLE if j == 0 else None)
                found = True
    return found


def _owned(obj: object) -> int:
    """The address of ``obj`` with one more reference, owned by the slot it is written to."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    return id(obj)


class ConfluentConsumer:
    client = CONFLUENT

    def __init__(self, settings: ConsumerSettings) -> None:
        self.topic = settings.topic
        self._pending: KafkaClientError | None = None  # an error met after records returned first
        self._rewound: dict[int, int] = {}  # partitions sought back by poll, and to where
        self._assigned: frozenset[int] = frozenset()
        self._assigning: dict[int, int] | None = None  # seeks asked inside on_assigned
        self._on_assigned: Callable[[set[int]], None] = lambda parts: None
        self._on_revoked: Callable[[set[int]], None] = lambda parts: None
        self._broker_error: KafkaError | None = None
        config = {**consumer_config(settings), "logger": _LIBRDKAFKA_LOG, "error_cb": self._on_error}
        self.consumer = Consumer(config)

    def _tp(self, partition: int, offset: int | None = None) -> TopicPartition:
        return TopicPartition(self.topic, partition) if offset is None else TopicPartition(self.topic, partition, offset)

    # -- the group -----------------------------------------------------------------------

    def subscribe(self, on_assigned: Callable[[set[int]], None],
                  on_revoked: Callable[[set[int]], None]) -> None:
        self._on_assigned, self._on_revoked = on_assigned, on_revoked
        try:
            self.consumer.subscribe([self.topic], on_assign=self._assign, on_revoke=self._revoke,
                                    on_lost=self._revoke)
        except KafkaException as exc:
            self.close()
            raise _error_of(exc) from None

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka reconnects by itself and reports a lost broker only here (logged; a
        fatal error is raised by the next poll)."""
        if error.fatal():
            self._broker_error = error
        else:
            _LIBRDKAFKA_LOG.warning("%s: %s", error.name(), error.str())

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Positions asked by ``on_assigned`` are given to ``assign`` itself: librdkafka
        cannot seek a partition before it is assigned."""
        self._assigning = {}
        try:
            self._on_assigned({tp.partition for tp in partitions})
        finally:
            chosen, self._assigning = self._assigning, None
            consumer.assign([self._tp(tp.partition, chosen.get(tp.partition, OFFSET_BEGINNING))
                             for tp in partitions])
            self._assigned = frozenset(tp.partition for tp in partitions)

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._on_revoked({tp.partition for tp in partitions})
        finally:
            self._assigned = frozenset()  # the binding unassigns them after this callback

    # -- reading -------------------------------------------------------------------------

    def poll(self, timeout_ms: int, max_records: int) -> Mapping[int, Sequence[ConsumedRecord]]:
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error
        if self._broker_error is not None:
            raise client_error(self._broker_error)
        try:
            messages = self.consumer.consume(num_messages=max_records, timeout=timeout_ms / 1000)
        except KafkaException as exc:
            raise _error_of(exc) from None
        polled: dict[int, list[ConsumedRecord]] = {}
        for i, message in enumerate(messages):
            failed = message.error()
            partition, offset = message.partition(), message.offset()
            if failed is None and partition is not None and offset is not None:
                headers = _headers(message)
                if headers is not None and all(key in CONTRACT_HEADERS for key, _ in headers):
                    kind, ts = message.timestamp()
                    self._rewound.pop(partition, None)
                    polled.setdefault(partition, []).append(
                        _Record(partition, offset, ts if kind else None, message.key(), message.value(), headers))
                    continue
                failure: KafkaClientError = UnparsableRecords(
                    f"{self.topic}[{partition}]@{offset}: " + ("a header key that is not UTF-8" if headers is None
                                                               else "a header key outside the contract"),
                    partition, offset)
                self._rewind(messages[i:])
            elif failed is None or failed.code() in _PARTITION_EOF:
                continue
            else:
                failure = self._failure(failed, message)
                self._rewind(messages[i + 1:])
            # Records read before the failure go to the caller first; the failure comes
            # with the next poll, and nothing after it is skipped (its partitions rewound).
            if not polled:
                raise failure
            self._pending = failure
            break
        return polled

    def _failure(self, error: KafkaError, message: Message) -> KafkaClientError:
        if error.code() in _OUT_OF_RANGE:
            partition = message.partition()
            return OffsetOutOfRange(partition if partition is not None else -1, message.offset(),
                                    f"{error.name()}: {error.str()}")
        return client_error(error)

    def _rewind(self, unread: Sequence[Message]) -> None:
        """Seek each partition back to the first of ``unread`` records: they were taken from
        librdkafka's queue but not returned."""
        first: dict[int, int] = {}
        for message in unread:
            partition, offset = message.partition(), message.offset()
            if message.error() is None and partition is not None and offset is not None:
                first.setdefault(partition, offset)
        for partition, offset in first.items():
            self.seek(partition, offset)
            self._rewound[partition] = offset

    # -- positions -----------------------------------------------------------------------

    def assignment(self) -> set[int]:
        """As the rebalance callbacks left it. Not librdkafka's ``assignment()``: that call
        holds the GIL while it waits for the group thread, which may itself be waiting for
        a rebalance callback that needs the GIL (a deadlock, seen when another thread asks
        during a rebalance)."""
        return set(self._assigned)

    def seek(self, partition: int, offset: int) -> None:
        self._rewound.pop(partition, None)
        if self._assigning is not None:
            self._assigning[partition] = offset
            return
        try:
            self.consumer.seek(self._tp(partition, offset))
        except KafkaException as exc:
            raise _error_of(exc) from None

    def seek_to_beginning(self, partition: int) -> None:
        self.seek(partition, OFFSET_BEGINNING)

    def position(self, partition: int) -> int:
        """The next offset :meth:`poll` returns (librdkafka's own position runs ahead of a
        partition rewound after a failure until it fetches again)."""
        rewound = self._rewound.get(partition)
        if rewound is not None:
            return rewound
        (tp,) = self.consumer.position([self._tp(partition)])
        return int(tp.offset)

    def highwater(self, partition: int) -> int | None:
        _, high = self.consumer.get_watermark_offsets(self._tp(partition), cached=True)
        return int(high) if high >= 0 else None

    def end_offset(self, partition: int) -> int | None:
        try:
            _, high = self.consumer.get_watermark_offsets(self._tp(partition), timeout=10, cached=False)
        except KafkaException:
            return None
        return int(high) if high >= 0 else None

    def commit_async(self, offsets: Mapping[int, int]) -> None:
        # Kafka's offsets are for lag monitoring only; PostgreSQL holds the positions.
        with contextlib.suppress(KafkaException):
            self.consumer.commit(offsets=[self._tp(p, o) for p, o in offsets.items()], asynchronous=True)

    def close(self) -> None:
        self.consumer.close()
