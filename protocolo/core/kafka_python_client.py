"""The kafka-python implementation of :mod:`.kafka_client` (the default client).

The producer and the consumer are configured exactly as the publisher and the projector
configured them before the interface existed; this module only translates kafka-python's
futures, partitions and exceptions into the interface's.

Producer: ``acks='all'``, ``enable_idempotence=True``,
``max_in_flight_requests_per_connection=5``, ``linger_ms``, ``batch_size``,
``delivery_timeout_ms``, ``request_timeout_ms``, ``max_block_ms`` (how long ``send`` may
wait for metadata), ``bootstrap_timeout_ms``; kafka-python's default partitioner is
murmur2 of the key, as Java's.
Consumer: ``enable_auto_commit=False``, ``auto_offset_reset='none'``, ``max_poll_records``,
``fetch_max_bytes``, ``max_partition_fetch_bytes``, the group timeouts; CRCs are checked
(kafka-python's default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import (
    CorruptRecordError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OffsetOutOfRangeError,
)

from protocolo.core.kafka_client import (
    KAFKA_PYTHON,
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

__all__ = ["KafkaPythonConsumer", "KafkaPythonProducer", "client_error", "consumer_config", "producer_config"]


def client_error(exc: BaseException) -> KafkaClientError:
    """kafka-python's exception as the interface's (its message kept, class name first)."""
    if isinstance(exc, KafkaClientError):
        return exc
    if isinstance(exc, KafkaTimeoutError):
        return KafkaTimedOut(str(exc), retriable=True)
    if isinstance(exc, KafkaConnectionError):
        return KafkaUnreachable(str(exc), retriable=True)
    text = str(exc) if isinstance(exc, KafkaError) else f"{type(exc).__name__}: {exc}"
    return KafkaClientError(text, retriable=bool(getattr(exc, "retriable", False)))


def producer_config(settings: ProducerSettings) -> dict[str, Any]:
    """kafka-python's ``KafkaProducer`` arguments for the ledger's settings."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": settings.linger_ms,
        "batch_size": settings.batch_size,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "request_timeout_ms": settings.request_timeout_ms,
        "max_block_ms": settings.max_block_ms,
        "bootstrap_timeout_ms": settings.bootstrap_timeout_ms,
        **settings.extra,
    }


def consumer_config(settings: ConsumerSettings) -> dict[str, Any]:
    """kafka-python's ``KafkaConsumer`` arguments for the projector's settings."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "none",
        "max_poll_records": settings.max_poll_records,
        "fetch_max_bytes": settings.fetch_max_bytes,
        "max_partition_fetch_bytes": settings.max_partition_fetch_bytes,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        **settings.extra,
    }


class _Delivery:
    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def get(self, timeout_s: float) -> Delivered:
        try:
            md = self._future.get(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - every failure is the caller's to report
            raise client_error(exc) from exc
        return Delivered(md.topic, md.partition, md.offset)


class KafkaPythonProducer:
    client = KAFKA_PYTHON

    def __init__(self, settings: ProducerSettings) -> None:
        try:
            self.producer = KafkaProducer(**producer_config(settings))
        except KafkaTimeoutError as exc:
            raise KafkaUnreachable(str(exc), retriable=True) from exc

    def send(self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> _Delivery:
        try:
            return _Delivery(self.producer.send(topic, key=key, value=value, headers=list(headers)))
        except KafkaError as exc:  # KafkaTimeoutError: no metadata within max_block_ms
            raise client_error(exc) from exc

    def flush(self, timeout_s: float) -> None:
        # kafka-python's flush raises the error of a batch it split after the broker refused
        # it as too large (e.g. UnknownError 'Future not done'); the deliveries report it.
        with contextlib.suppress(KafkaError):
            self.producer.flush(timeout=timeout_s)

    def broken(self) -> bool:
        manager = getattr(self.producer, "_transaction_manager", None)
        return manager is not None and bool(manager.has_fatal_error())

    def close(self, timeout_s: float) -> None:
        self.producer.close(timeout=timeout_s)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, on_assigned: Callable[[set[int]], None], on_revoked: Callable[[set[int]], None]) -> None:
        self.assigned, self.revoked = on_assigned, on_revoked

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked({tp.partition for tp in revoked})

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned({tp.partition for tp in assigned})


class KafkaPythonConsumer:
    client = KAFKA_PYTHON

    def __init__(self, settings: ConsumerSettings) -> None:
        self.topic = settings.topic
        self._tps: dict[int, TopicPartition] = {}
        try:
            self.consumer = KafkaConsumer(**consumer_config(settings))
        except KafkaTimeoutError as exc:  # "Unable to bootstrap": no broker answered
            raise KafkaUnreachable(str(exc), retriable=True) from exc

    def _tp(self, partition: int) -> TopicPartition:
        tp = self._tps.get(partition)
        if tp is None:
            tp = self._tps[partition] = TopicPartition(self.topic, partition)
        return tp

    def subscribe(self, on_assigned: Callable[[set[int]], None],
                  on_revoked: Callable[[set[int]], None]) -> None:
        try:
            self.consumer.subscribe([self.topic], listener=_Listener(on_assigned, on_revoked))
        except BaseException:
            self.close()
            raise

    def poll(self, timeout_ms: int, max_records: int) -> Mapping[int, Sequence[ConsumedRecord]]:
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except OffsetOutOfRangeError as exc:
            tp, offset = next(iter(exc.args[0].items()))
            raise OffsetOutOfRange(tp.partition, offset, str(exc)) from exc
        except CorruptRecordError as exc:
            if "UnicodeDecodeError" in str(exc):
                raise UnparsableRecords(str(exc)) from exc
            raise client_error(exc) from exc
        except KafkaError as exc:
            raise client_error(exc) from exc
        return {tp.partition: records for tp, records in polled.items()}

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(self._tp(partition), offset)

    def seek_to_beginning(self, partition: int) -> None:
        self.consumer.seek_to_beginning(self._tp(partition))

    def position(self, partition: int) -> int:
        return int(self.consumer.position(self._tp(partition)))

    def highwater(self, partition: int) -> int | None:
        high = self.consumer.highwater(self._tp(partition))
        return None if high is None else int(high)

    def end_offset(self, partition: int) -> int | None:
        tp = self._tp(partition)
        try:
            end = self.consumer.end_offsets([tp]).get(tp)
        except KafkaError:
            return None
        return int(end) if end is not None else None

    def commit_async(self, offsets: Mapping[int, int]) -> None:
        self.consumer.commit_async({self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})

    def close(self) -> None:
        self.consumer.close(autocommit=False)
