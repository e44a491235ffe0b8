"""The Kafka client the hot paths use: producing (the publisher) and consuming (the projector).

Two implementations sit behind the small interface below, chosen by
``PROTOCOLO_KAFKA_CLIENT``:

- ``kafka-python`` (the default; :mod:`.kafka_python_client`): pure Python, always installed.
- ``confluent`` (:mod:`.confluent_client`): librdkafka through ``confluent-kafka``, the
  optional extra ``protocolo[confluent]``. Its produce and fetch run in C, on librdkafka's
  own threads, so they overlap the publisher's validation and the projector's decoding
  instead of sharing the GIL with them.

Both keep what the ledger relies on: an idempotent producer with ``acks=all``, the same
bounds and batching, keys partitioned with murmur2 exactly as the Java client does (so a
protocol's events land on the same partition whichever client wrote them), headers as
given, the broker's timestamp, and a consumer whose positions come from PostgreSQL
(nothing auto-commits, nothing auto-resets). Each client's mapping of these settings is in
its module's docstring.

Only the hot paths go through here. Administration (topic creation and settings), the
watermark and lag checks, ``restore-topic``, the Kafka side of ``audit`` and the raw fetch
of records kafka-python cannot parse stay on kafka-python: they run once per command, not
per record.

Errors come out as :class:`KafkaClientError` and its subclasses, whichever client is used.
It derives from kafka-python's ``KafkaError`` on purpose: every caller that turns a Kafka
failure into a clear message (the command line, the API's readiness, the runtime) already
catches that class, and kafka-python is a dependency either way.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka.errors import KafkaError

from protocolo.core.config import ConfigError

ENV_KAFKA_CLIENT = "PROTOCOLO_KAFKA_CLIENT"
KAFKA_PYTHON = "kafka-python"
CONFLUENT = "confluent"
CLIENTS = (KAFKA_PYTHON, CONFLUENT)

__all__ = [
    "CLIENTS", "CONFLUENT", "ENV_KAFKA_CLIENT", "KAFKA_PYTHON", "ConsumedRecord", "ConsumerSettings",
    "Delivered", "Delivery", "KafkaClientError", "KafkaTimedOut", "KafkaUnreachable",
    "OffsetOutOfRange", "ProducerSettings", "RecordConsumer", "RecordProducer", "UnparsableRecords",
    "chosen_client", "open_consumer", "open_producer",
]


# -- errors ------------------------------------------------------------------------------


class KafkaClientError(KafkaError):  # type: ignore[misc]  # kafka-python is untyped
    """A Kafka operation failed. ``retriable``: the same call may succeed later."""

    retriable = False

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class KafkaUnreachable(KafkaClientError):
    """No broker answered: it is down, or the bootstrap address is wrong."""


class KafkaTimedOut(KafkaUnreachable):
    """One of the client's own time bounds expired (metadata, delivery) before a broker
    confirmed; for the publisher this counts as "no broker answered"."""


class OffsetOutOfRange(KafkaClientError):
    """The broker has no record at the position asked (the log is shorter than it)."""

    def __init__(self, partition: int, offset: int | None, message: str) -> None:
        super().__init__(message)
        self.partition = partition
        self.offset = offset


class UnparsableRecords(KafkaClientError):
    """The client could not read a fetched record exactly (a header key that is not UTF-8,
    or, with librdkafka, one it may have cut at a NUL) and will not deliver the records
    after it; the projector reads them with its own parser. ``partition`` and ``offset``
    name the record when the client knows it (None: kafka-python, which only knows that a
    batch of some assigned partition failed)."""

    def __init__(self, message: str, partition: int | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.partition = partition
        self.offset = offset


# -- what the hot paths need -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int


class Delivery(Protocol):
    def get(self, timeout_s: float) -> Delivered:
        """Wait until the broker confirms; raise :class:`KafkaClientError` if it does not."""
        ...


class RecordProducer(Protocol):
    client: str  # one of CLIENTS

    def send(self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Delivery:
        """Queue one record; raise :class:`KafkaClientError` if it cannot even be queued."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Send everything queued; wait at most ``timeout_s`` (the deliveries say what failed)."""
        ...

    def broken(self) -> bool:
        """A fatal error (e.g. of the idempotent producer) fails every later send: replace it."""
        ...

    def close(self, timeout_s: float) -> None: ...


class ConsumedRecord(Protocol):
    """One record as the projector reads it: what both clients' ``poll`` returns
    (kafka-python's ``ConsumerRecord`` has these fields) and what the projector's own
    record-batch parser returns for records a client cannot read exactly
    (``consumers.raw_records.RawRecord``). Header keys are text from a client, and the
    bytes as they are on the log from that parser, which is why it exists: a key that is
    not UTF-8 (or holds a NUL, which librdkafka cuts at) must reach the quarantine row
    byte for byte."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str | bytes, bytes | None]]: ...


class RecordConsumer(Protocol):
    """A consumer-group member on one topic, positioned by the caller (never by Kafka's
    committed offsets). Partitions are numbers: the topic is the consumer's."""

    client: str
    topic: str

    def subscribe(self, on_assigned: Callable[[set[int]], None],
                  on_revoked: Callable[[set[int]], None]) -> None:
        """Join the group; the callbacks run inside :meth:`poll`. ``on_assigned`` must
        position every partition it is given (:meth:`seek` or :meth:`seek_to_beginning`)."""
        ...

    def poll(self, timeout_ms: int, max_records: int) -> Mapping[int, Sequence[ConsumedRecord]]:
        """At most ``max_records`` records, by partition, in offset order."""
        ...

    def assignment(self) -> set[int]: ...
    def seek(self, partition: int, offset: int) -> None: ...
    def seek_to_beginning(self, partition: int) -> None: ...
    def position(self, partition: int) -> int: ...

    def highwater(self, partition: int) -> int | None:
        """The high watermark the last fetch of ``partition`` returned (None before one)."""
        ...

    def end_offset(self, partition: int) -> int | None:
        """The partition's log end, asked of the broker now (None if it does not answer)."""
        ...

    def commit_async(self, offsets: Mapping[int, int]) -> None:
        """Tell Kafka the next offset per partition (lag monitoring only)."""
        ...

    def close(self) -> None: ...


# -- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProducerSettings:
    """The publisher's producer, in the ledger's terms (each client maps them; see its
    module). ``extra``: further settings in the chosen client's own names."""

    bootstrap_servers: str
    linger_ms: int
    batch_size: int
    delivery_timeout_ms: int
    request_timeout_ms: int
    max_block_ms: int
    bootstrap_timeout_ms: int
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsumerSettings:
    bootstrap_servers: str
    topic: str
    group_id: str
    max_poll_records: int
    fetch_max_bytes: int
    max_partition_fetch_bytes: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    max_poll_interval_ms: int
    extra: Mapping[str, Any] = field(default_factory=dict)


# -- choosing ----------------------------------------------------------------------------


def chosen_client(environ: Mapping[str, str] = os.environ) -> str:
    """``PROTOCOLO_KAFKA_CLIENT`` (empty or unset: kafka-python); :class:`ConfigError` on a
    value that names no client, or on ``confluent`` without its library installed."""
    value = environ.get(ENV_KAFKA_CLIENT, "").strip() or KAFKA_PYTHON
    if value not in CLIENTS:
        raise ConfigError(f"{ENV_KAFKA_CLIENT}={value!r} is not a Kafka client Protocolo knows: "
                          f"use one of {', '.join(CLIENTS)} (unset: {KAFKA_PYTHON})")
    if value == CONFLUENT and importlib.util.find_spec("confluent_kafka") is None:
        raise ConfigError(f"{ENV_KAFKA_CLIENT}=confluent needs the confluent-kafka library, which is not "
                          "installed: pip install 'protocolo[confluent]' (or unset the variable to use "
                          f"{KAFKA_PYTHON})")
    return value


def _resolved(client: str | None) -> str:
    return chosen_client() if client is None else chosen_client({ENV_KAFKA_CLIENT: client})


def open_producer(settings: ProducerSettings, client: str | None = None) -> RecordProducer:
    """A connected producer of ``client`` (None: :func:`chosen_client`); raises
    :class:`KafkaUnreachable` when no broker answers within ``bootstrap_timeout_ms``."""
    if _resolved(client) == CONFLUENT:
        from protocolo.core.confluent_client import ConfluentProducer

        return ConfluentProducer(settings)
    from protocolo.core.kafka_python_client import KafkaPythonProducer

    return KafkaPythonProducer(settings)


def open_consumer(settings: ConsumerSettings, client: str | None = None) -> RecordConsumer:
    """A consumer of ``client`` (None: :func:`chosen_client`), not yet subscribed."""
    if _resolved(client) == CONFLUENT:
        from protocolo.core.confluent_client import ConfluentConsumer

        return ConfluentConsumer(settings)
    from protocolo.core.kafka_python_client import KafkaPythonConsumer

    return KafkaPythonConsumer(settings)
