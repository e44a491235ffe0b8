"""Kafka records for tests: committed vector events re-encoded, and raw records sent in order.

Each record is a kafka-python ``ConsumerRecord`` (the type the projector reads), built from
a committed vector in ``schemas/vectors`` with a fresh event id, so that tests can make as
many distinct valid events as they need and alter any field before encoding. :class:`Sent`
and :func:`send_in_order` put hostile or odd records on a real topic, bypassing the
publisher, and remember where each landed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.validation import entity_key

VECTORS = Path(__file__).resolve().parents[1] / "schemas" / "vectors"
CATALOGUE = SchemaCatalogue.load()


def vector_payload(event_type: str = "NoteAdded", version: int = 1) -> dict[str, Any]:
    """The decoded payload of a committed vector, with a fresh event id."""
    vector = json.loads((VECTORS / f"{event_type}.v{version}.json").read_text())
    payload = CATALOGUE.decode(bytes.fromhex(vector["single_object_hex"])).record
    payload["meta"]["event_id"] = str(uuid.uuid4())
    return payload


def encode(payload: dict[str, Any], event_type: str = "NoteAdded") -> tuple[bytes, bytes]:
    """(key, value) of an event as a correct producer writes them."""
    return entity_key(event_type, payload).encode(), CATALOGUE.encode(event_type, payload)


def record(partition: int, offset: int, key: bytes | None, value: bytes | None,
           headers: list[tuple[str, bytes]] | None = None, timestamp: int = 1_741_177_111_250) -> ConsumerRecord:
    return ConsumerRecord(
        topic="ledger", partition=partition, leader_epoch=0, offset=offset, timestamp=timestamp,
        timestamp_type=0, key=key, value=value, headers=headers or [], checksum=None,
        serialized_key_size=len(key or b""), serialized_value_size=len(value or b""),
        serialized_header_size=-1,
    )


def valid_record(partition: int, offset: int, **changes: Any) -> ConsumerRecord:
    """A valid NoteAdded at that place; ``changes`` replace top-level payload fields."""
    payload = vector_payload()
    payload.update(changes)
    key, value = encode(payload)
    return record(partition, offset, key, value)


@dataclass
class Sent:
    """A record a test sends raw (bypassing the publisher), and where it landed."""

    label: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    expect: tuple[str, ...] = ()  # fragments the quarantine error must contain; () = must be journalled
    event_id: str | None = None  # the event id inside, for a refused record that carries one
    partition: int = -1
    offset: int = -1
    sent_headers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def hostile(self) -> bool:
        """The projector must quarantine it."""
        return bool(self.expect)

    poison = hostile


def send_in_order(bootstrap: str, topic: str, plan: list[Sent], **producer_config: Any) -> None:
    """Send ``plan`` one record at a time, each awaited, so the order on every partition is
    the plan's; record where each landed."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, **producer_config)
    try:
        for s in plan:
            md = producer.send(topic, key=s.key, value=s.value, headers=s.headers).get(timeout=15)
            s.partition, s.offset = md.partition, md.offset
    finally:
        producer.close()
