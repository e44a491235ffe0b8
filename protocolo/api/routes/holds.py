"""Legal holds: place and release, with the case reference."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Security
from pydantic import BaseModel, ConfigDict, Field

from protocolo.core.errors import shown_value
from protocolo.projections import history

from .. import inputs
from ..auth import Services, principal
from ..decisions import Decision, decide, finish_pending
from ..identities import Principal
from ..ledger_writes import WriteResult, event
from ..roles import Permission

router = APIRouter(prefix="/v1/contacts/{protocol_number}/holds", tags=["legal holds"])


class NewHold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_reference: str = Field(min_length=1, max_length=200)


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class HoldPlaced(WriteResult):
    hold_id: str


@router.post("", status_code=201, response_model=HoldPlaced, summary="Place a legal hold")
def place(protocol_number: str, body: NewHold, svc: Services,
          who: Annotated[Principal, Security(principal, scopes=[Permission.HOLDS_WRITE])]) -> HoldPlaced:
    number = inputs.protocol(protocol_number)
    with svc.ledger.connection() as conn:
        known, _ = history.contact_owner(conn, number)
    if not known:
        raise HTTPException(404, f"no contact with protocol number {number}")
    hold_id = f"hold-{uuid.uuid4()}"
    result = decide(svc, who, Decision(f"hold:{hold_id}", "placed", "PLACED"), [event("LegalHoldPlaced", {
        "hold_id": hold_id, "case_reference": body.case_reference, "placed_by": who.user_name}, number)])
    return HoldPlaced(hold_id=hold_id, **result.model_dump())


@router.post("/{hold_id}/release", response_model=WriteResult, summary="Release a legal hold")
def release(protocol_number: str, hold_id: inputs.PathId, body: Release, svc: Services,
            who: Annotated[Principal, Security(principal, scopes=[Permission.HOLDS_WRITE])]) -> WriteResult:
    number = inputs.protocol(protocol_number)
    finish_pending(svc)
    with svc.ledger.connection() as conn:
        found = history.hold(conn, hold_id)
    if found is None or found["protocol_number"] != number or found["placed_at"] is None:
        raise HTTPException(404, f"no hold {shown_value(hold_id)} on contact {number}")
    if found["released_at"] is not None:
        raise HTTPException(409, f"hold {shown_value(hold_id)} was released already")
    return decide(svc, who, Decision(f"hold:{hold_id}", "released", "RELEASED"), [event("LegalHoldReleased", {
        "hold_id": hold_id, "released_by": who.user_name, "reason": body.reason}, number)])
