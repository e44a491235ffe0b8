"""Every write of the API: one or more events through the publisher, then a bounded wait
until the projection has applied them, so the caller's next read sees them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from protocolo.core.watermark import ProjectionBehind, wait_until_applied
from protocolo.producers.publisher import Event, Receipt

from .services import ApiServices


class ReceiptOut(BaseModel):
    """Where the event landed on the ledger topic."""

    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str


class WriteResult(BaseModel):
    receipts: list[ReceiptOut]
    projected: bool  # False: published, but not projected within the API's wait


def receipt_out(r: Receipt) -> ReceiptOut:
    return ReceiptOut(topic=r.topic, partition=r.partition, offset=r.offset, event_id=r.event_id,
                      event_type=r.event_type)


def publish_and_wait(svc: ApiServices, events: list[Event]) -> WriteResult:
    """Validate all, publish all (nothing is sent if one is rejected), then wait. A single
    event's rejection names its field as the caller sent it (no ``events[0].`` prefix)."""
    if len(events) == 1:
        receipts = svc.publisher.send_prepared([svc.publisher.prepare(events[0])])
    else:
        receipts = svc.publisher.publish_many(events)
    return WriteResult(receipts=[receipt_out(r) for r in receipts], projected=await_projection(svc, receipts))


def await_projection(svc: ApiServices, receipts: list[Receipt]) -> bool:
    positions: dict[int, int] = {}
    for r in receipts:
        positions[r.partition] = max(positions.get(r.partition, -1), r.offset)
    try:
        with svc.ledger.connection() as conn:
            wait_until_applied(conn, svc.topic, positions, timeout_s=svc.projection_timeout_s)
    except ProjectionBehind:
        return False
    return True


def event(event_type: str, fields: Mapping[str, Any], protocol_number: str | None = None,
          correlation_id: str | None = None) -> Event:
    return Event(event_type, fields, protocol_number=protocol_number, correlation_id=correlation_id)
