"""``LedgerPublisher``: how internal Python services put facts on the ledger.

Every event is validated (structure from the Avro schema, then domain rules) before
anything is sent; a rejection raises :class:`EventRejected` naming the field and the rule,
and nothing of the call is published. Accepted events are Avro single-object encoded,
keyed by protocol number (or their own id, see the wire contract) and produced with
``acks=all`` and idempotence, so a broker retry never writes a record twice. Delivery is
awaited: ``publish`` returns a :class:`Receipt` only once the broker has the record, and a
broker that stays away raises :class:`PublishFailed` after bounded retries; nothing is
dropped silently.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from protocolo.core.config import DEFAULT_TOPIC
from protocolo.core.errors import EventRejected, shown_value
from protocolo.core.kafka_client import (
    Delivery,
    KafkaClientError,
    KafkaUnreachable,
    ProducerSettings,
    RecordProducer,
    open_producer,
)
from protocolo.core.personal_data import IdentifiedCustomer, PersonalDataSealer
from protocolo.core.uuids import canonical_uuid
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.storable import MAX_RECORD_BYTES, check_storable, largest_field
from protocolo.schemas.validation import (
    StructureValidator,
    check_domain_rules,
    entity_key,
    record_headers,
)

#: Failures that mean "no broker answered", as opposed to a broker refusing the records
#: (a timeout of the client's own bounds is one of them, whichever client is used).
_BROKER_DOWN = (KafkaUnreachable,)


@dataclass(frozen=True)
class Event:
    """One fact to publish. ``fields`` are the event's own fields (everything but ``meta``)."""

    event_type: str
    fields: Mapping[str, Any]
    protocol_number: str | None = None
    occurred_at: datetime | None = None
    correlation_id: str | None = None
    event_id: str | None = None  # any UUID spelling; published canonical. None: a new one
    schema_version: int | None = None  # None: the current version
    producer: str | None = None  # meta.producer; None: the publisher's own name (an API
    # relaying a caller's event names the caller: "protocolo-api/<user>")


@dataclass(frozen=True)
class Receipt:
    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    key: str


@dataclass(frozen=True)
class PreparedEvent:
    event_type: str
    event_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class PublishFailed(RuntimeError):
    """The broker did not confirm some events. ``delivered`` lists the receipts of those it
    did; ``failed`` maps each event id that may not have been stored to its error. Publishing
    a failed event again with the same event id is safe: the projector applies an event id
    once."""

    def __init__(self, message: str, delivered: list[Receipt], failed: dict[str, str]) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.failed = failed


class BrokerUnavailable(PublishFailed):
    pass


@dataclass
class PublisherOptions:
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    delivery_timeout_ms: int = 30_000
    request_timeout_ms: int = 10_000
    max_block_ms: int = 15_000
    bootstrap_timeout_ms: int = 10_000
    #: Further producer settings, in the chosen client's own names (kafka-python's
    #: keyword arguments, or librdkafka's dotted properties with PROTOCOLO_KAFKA_CLIENT=confluent).
    kafka: dict[str, Any] = field(default_factory=dict)
    #: The Kafka client (protocolo.core.kafka_client.CLIENTS); None: PROTOCOLO_KAFKA_CLIENT.
    client: str | None = None


class LedgerPublisher:
    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        producer_name: str,
        topic: str = DEFAULT_TOPIC,
        sealer: PersonalDataSealer | None = None,
        catalogue: SchemaCatalogue | None = None,
        options: PublisherOptions | None = None,
        clock: Callable[[], datetime] | None = None,
        policy_profile: str | None = None,
    ) -> None:
        """``policy_profile``: the profile name this deployment imposes on the contacts it
        opens (``PROTOCOLO_POLICY``); written into every ContactOpened that names none, so
        the deadlines derived from it are reproducible from the log alone."""
        if not producer_name.strip():
            raise ValueError("producer_name must name the publishing service")
        self.topic = topic
        self.bootstrap_servers = (bootstrap_servers if isinstance(bootstrap_servers, str)
                                  else ",".join(bootstrap_servers))
        self.producer_name = producer_name
        self.catalogue = catalogue or SchemaCatalogue.load()
        self.sealer = sealer
        self.policy_profile = policy_profile
        self._clock = clock or (lambda: datetime.now(UTC))
        self._validators: dict[tuple[str, int], StructureValidator] = {}
        opts = options or PublisherOptions()
        self._delivery_timeout_s = opts.delivery_timeout_ms / 1000 + 5
        self._options = opts
        self._producer = self._new_producer()

    def _new_producer(self) -> RecordProducer:
        """The chosen client's producer (protocolo.core.kafka_client): idempotent, acks=all,
        at most 5 requests in flight, these bounds and batching, keys partitioned with
        murmur2 as Java's client does."""
        opts = self._options
        try:
            return open_producer(ProducerSettings(
                bootstrap_servers=self.bootstrap_servers,
                linger_ms=opts.linger_ms,
                batch_size=opts.batch_size,
                delivery_timeout_ms=opts.delivery_timeout_ms,
                request_timeout_ms=opts.request_timeout_ms,
                max_block_ms=opts.max_block_ms,
                bootstrap_timeout_ms=opts.bootstrap_timeout_ms,
                extra=opts.kafka,
            ), opts.client)
        except KafkaUnreachable as exc:
            raise BrokerUnavailable(
                f"no Kafka broker answers at {self.bootstrap_servers}: is it running? "
                "(check PROTOCOLO_KAFKA_BOOTSTRAP or `protocolo dev status`)",
                [], {},
            ) from exc

    @property
    def kafka_client(self) -> str:
        """Which Kafka client this publisher produces with (kafka-python or confluent)."""
        return self._producer.client

    def _renew_if_fatal(self) -> None:
        """An idempotent producer that hit a fatal error (e.g. the broker refused a split
        batch as too large) fails every later send: replace it, as the Kafka clients
        prescribe, so one refused record does not stop the publisher for good."""
        if self._producer.broken():
            with contextlib.suppress(Exception):
                self._producer.close(0)
            self._producer = self._new_producer()

    # -- preparing -----------------------------------------------------------------------

    def _validator(self, event_type: str, version: int) -> StructureValidator:
        key = (event_type, version)
        validator = self._validators.get(key)
        if validator is None:
            validator = StructureValidator(self.catalogue.version(event_type, version).schema)
            self._validators[key] = validator
        return validator

    def prepare(self, event: Event) -> PreparedEvent:
        """Validate and encode one event without sending it (raises :class:`EventRejected`)."""
        try:
            schema = (self.catalogue.current(event.event_type) if event.schema_version is None
                      else self.catalogue.version(event.event_type, event.schema_version))
        except KeyError:
            raise EventRejected("event_type", "unknown-event-type",
                                f"{shown_value(event.event_type)} is not an event type ({', '.join(self.catalogue.event_types())})") from None
        if not isinstance(event.fields, Mapping):
            raise EventRejected("fields", "type", "event fields must be a mapping")
        if "meta" in event.fields:
            raise EventRejected("meta", "reserved", "meta is filled by the publisher; pass protocol_number, occurred_at, ... as arguments")
        # Canonical before anything uses it: it is the AES-GCM associated data of the sealed
        # personal data and, for some events, the Kafka key (schemas/uuids.py says why).
        event_id = (str(uuid.uuid4()) if event.event_id is None
                    else canonical_uuid(event.event_id, "meta.event_id"))
        record: dict[str, Any] = {
            "meta": {
                "event_id": event_id,
                "protocol_number": event.protocol_number,
                "occurred_at": event.occurred_at or self._clock(),
                "producer": event.producer or self.producer_name,
                "correlation_id": event.correlation_id,
            },
            **event.fields,
        }
        if event.event_type == "ContactOpened" and self.policy_profile is not None and "policy_profile" not in record:
            if schema.version < 3:
                # Dropping the deployment's choice would give the contact its service type's
                # profile: other deadlines, silently.
                raise EventRejected("policy_profile", "schema-version",
                                    f"this deployment imposes policy profile {self.policy_profile} "
                                    f"(PROTOCOLO_POLICY), which ContactOpened v{schema.version} cannot carry: "
                                    "publish version 3 or later")
            record["policy_profile"] = self.policy_profile
        identified: IdentifiedCustomer | None = None
        customer = record.get("customer")
        if isinstance(customer, Mapping) and "sealed" not in customer:
            if self.sealer is None:
                raise EventRejected("customer", "no-sealer", "this publisher has no personal-data sealer configured")
            # Identify (check the CPF, compute the blind indexes) now, seal only once the
            # whole event is valid: a rejected event creates no key in the vault.
            check_storable(dict(customer), "customer")  # before it is hashed or sealed
            identified = self.sealer.identify(dict(customer))
            record["customer"] = (identified.reference() if identified is not None
                                  else {"cpf_index": None, "customer_code_index": None, "sealed": None})
        validator = self._validator(event.event_type, schema.version)
        validator.check(record)
        record = validator.canonical(record)
        check_domain_rules(event.event_type, record, now=self._clock())
        # What PostgreSQL cannot store would stop the projector on this record for good.
        check_storable(record)
        key = entity_key(event.event_type, record)
        value = self._encode(event.event_type, record, schema.version)
        if identified is not None and self.sealer is not None:
            record["customer"] = self.sealer.seal_identified(identified, event_id)
            value = self._encode(event.event_type, record, schema.version)
        return PreparedEvent(
            event_type=event.event_type,
            event_id=event_id,
            key=key.encode(),
            value=value,
            headers=record_headers(event.event_type, event_id),
        )

    def _encode(self, event_type: str, record: dict[str, Any], version: int) -> bytes:
        value = self.catalogue.encode(event_type, record, version=version)
        if len(value) > MAX_RECORD_BYTES:
            field, size = largest_field(record)
            raise EventRejected(field, "record-size",
                                f"makes the event {len(value)} bytes, over the ledger's {MAX_RECORD_BYTES} "
                                f"(this field holds {size}); store large content elsewhere and publish "
                                "its reference and digest")
        return value

    # -- sending -------------------------------------------------------------------------

    def publish(self, event_type: str, fields: Mapping[str, Any], **meta: Any) -> Receipt:
        """Publish one event and wait until the broker has it."""
        return self.send_prepared([self.prepare(Event(event_type, fields, **meta))])[0]

    def publish_many(self, events: Iterable[Event]) -> list[Receipt]:
        """Validate all, then publish all; return receipts in the order given.

        A rejected event rejects the whole call before anything is sent; the error's
        field path starts with the event's index (``events[3].customer.cpf``).
        """
        prepared: list[PreparedEvent] = []
        for i, event in enumerate(events):
            try:
                prepared.append(self.prepare(event))
            except EventRejected as exc:
                raise EventRejected(f"events[{i}].{exc.field}", exc.rule, exc.detail) from exc
        return self.send_prepared(prepared)

    def send_prepared(self, prepared: list[PreparedEvent]) -> list[Receipt]:
        deliveries: list[tuple[PreparedEvent, Delivery]] = []
        errors: dict[str, BaseException] = {}
        unreachable: KafkaClientError | None = None
        send, topic = self._producer.send, self.topic
        for p in prepared:
            if unreachable is not None:  # don't wait max_block_ms again for every event
                errors[p.event_id] = unreachable
                continue
            try:
                deliveries.append((p, send(topic, p.key, p.value, p.headers)))
            except KafkaUnreachable as exc:  # e.g. no metadata within max_block_ms
                unreachable = errors[p.event_id] = exc
            except KafkaClientError as exc:
                errors[p.event_id] = exc
        deadline = time.monotonic() + self._delivery_timeout_s
        # The deliveries below say which events were not confirmed, whatever flush did.
        self._producer.flush(self._delivery_timeout_s)
        receipts: list[Receipt] = []
        for p, delivery in deliveries:
            try:
                md = delivery.get(max(deadline - time.monotonic(), 0.01))
            except Exception as exc:  # noqa: BLE001 - every failure is reported, none dropped
                errors[p.event_id] = exc
                continue
            receipts.append(Receipt(md.topic, md.partition, md.offset, p.event_id, p.event_type, p.key.decode()))
        if errors:
            self._renew_if_fatal()
            failed = {event_id: f"{type(e).__name__}: {e}" for event_id, e in errors.items()}
            broker_down = not receipts and all(isinstance(e, _BROKER_DOWN) for e in errors.values())
            raise (BrokerUnavailable if broker_down else PublishFailed)(
                f"{len(failed)} of {len(prepared)} events were not confirmed by the broker "
                f"(first: {next(iter(failed.values()))}); publish them again with the same event ids "
                "and occurred_at (the projector applies an event id once)",
                receipts, failed,
            )
        return receipts

    def close(self, timeout_s: float = 10) -> None:
        self._producer.close(timeout_s)

    def __enter__(self) -> LedgerPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
