"""Publishing for internal services over HTTP (role ``service``): the same contract as
LedgerPublisher, since it is LedgerPublisher, restricted to the facts a contact-centre
system reports. Decisions (approvals, deletions, holds, a request's location and closing,
erasure) and the access audit come only from the routes that enforce their rules and
name the authenticated user as the one who acted."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Security
from pydantic import BaseModel, ConfigDict, Field

from protocolo.core.errors import EventRejected
from protocolo.producers.publisher import Event
from protocolo.schemas.catalogue import SchemaCatalogue

from ..auth import Services, principal
from ..event_bodies import event_bodies, fields_from_json
from ..identities import Principal
from ..ledger_writes import WriteResult, publish_and_wait
from ..roles import Permission

router = APIRouter(prefix="/v1/events", tags=["events"])

#: What a service may publish: an allow-list, so a new event type is refused until
#: someone decides a service may publish it. None of these has a field naming who acted
#: through the API (``agent_id`` is the contact centre's agent, reported by its system).
SERVICE_EVENT_TYPES = frozenset({
    "ContactOpened", "ContactClosed", "DisclosureMade", "NoteAdded", "RecordingCaptured", "RetrievalRequested",
})


CATALOGUE = SchemaCatalogue.load()


def _one_body_per_event_type(schema: dict[str, Any]) -> None:
    """The documented body: one shape per event type (its ``fields`` from the wire contract).
    Validation stays the publisher's, which names the field and the rule broken."""
    schema.clear()
    schema.update(title="NewEvent", oneOf=event_bodies(CATALOGUE, set(CATALOGUE.event_types()) - SERVICE_EVENT_TYPES),
                  description="One event; `event_type` selects the shape of `fields`.")


class NewEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_body_per_event_type)
    event_type: str = Field(min_length=1, max_length=100)
    protocol_number: str | None = Field(None, max_length=40)
    occurred_at: datetime | None = None
    correlation_id: str | None = Field(None, max_length=200)
    event_id: str | None = Field(None, max_length=100)
    fields: dict[str, Any]


@router.post("", status_code=201, response_model=WriteResult, summary="Publish one event")
def publish(body: NewEvent, svc: Services,
            who: Annotated[Principal, Security(principal, scopes=[Permission.EVENTS_PUBLISH])]) -> WriteResult:
    """Validated by the wire contract (422 names the field and the rule); timestamps inside
    ``fields`` are RFC 3339 date-times with a zone, as ``occurred_at``. Only the event types
    of ``SERVICE_EVENT_TYPES`` (422, rule ``service-allow-list``, nothing published)."""
    if body.event_type not in SERVICE_EVENT_TYPES and body.event_type in CATALOGUE.event_types():
        raise EventRejected("event_type", "service-allow-list",
                            f"a service may publish only {', '.join(sorted(SERVICE_EVENT_TYPES))}; decisions, "
                            "deletions, holds and the access audit come from their own routes, which enforce "
                            "their rules and name the authenticated user")
    fields = (fields_from_json(CATALOGUE.current(body.event_type).schema, body.fields)
              if body.event_type in CATALOGUE.event_types() else body.fields)
    return publish_and_wait(svc, [Event(body.event_type, fields, protocol_number=body.protocol_number,
                                        occurred_at=body.occurred_at, correlation_id=body.correlation_id,
                                        event_id=body.event_id, producer=f"{svc.publisher.producer_name}/{who.user_name}")])
