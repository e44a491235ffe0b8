"""Retrieval requests: create (staff or the customer's online channel), the queue by
deadline, locate, fulfil, reject. Each write is one event, awaited until projected."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Security
from pydantic import BaseModel, ConfigDict, Field

from protocolo.core.errors import EventRejected
from protocolo.projections import history

from .. import inputs
from ..auth import Services, client_address, principal, principal_any_of
from ..decisions import Decision, decide, finish_pending
from ..identities import Principal
from ..inputs import encoded
from ..ledger_writes import WriteResult, event, publish_and_wait
from ..roles import Permission, Role

router = APIRouter(prefix="/v1/requests", tags=["retrieval requests"])

_STAFF_FIELDS_HIDDEN = ("cpf_index", "customer_code_index")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRequest(Strict):
    """By protocol number, or without one by CPF or customer code and a date window."""

    protocol_number: str | None = Field(None, max_length=40)
    cpf: str | None = Field(None, max_length=20)
    customer_code: str | None = Field(None, min_length=1, max_length=64)
    name: str | None = Field(None, max_length=200)
    window_from: datetime | None = None
    window_to: datetime | None = None
    kind: str = Field("RECORDING", pattern="^(RECORDING|HISTORY)$")
    requested_via: inputs.Channel = "WEB_FORM"
    delivery_channel: inputs.DeliveryChannel = "EMAIL"


class Located(Strict):
    protocol_numbers: list[Annotated[str, Field(max_length=40)]] = Field(max_length=100)
    recording_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list,
                                                                                     max_length=100)


class Fulfilment(Strict):
    delivered_sha256: str = Field(max_length=64)
    recording_id: str | None = Field(None, min_length=1, max_length=200)
    delivered_via: inputs.DeliveryChannel


class Rejection(Strict):
    reason: inputs.RejectionReason
    detail: str | None = Field(None, max_length=2000)


class Created(WriteResult):
    request_id: str


class QueuePage(BaseModel):
    total: int
    page: int
    page_size: int
    items: list[dict[str, Any]]


def _limit_customer(svc: Any, request: Request, who: Principal) -> None:
    if who.role is Role.CUSTOMER:
        wait = svc.customer_limit.take(f"{who.user_name}|{client_address(request)}")
        if wait:
            raise HTTPException(429, f"too many requests; try again in {wait:.0f} s",
                                headers={"Retry-After": str(max(int(wait), 1))})


@router.post("", status_code=201, response_model=Created, summary="File a retrieval request")
def create(body: NewRequest, request: Request, svc: Services,
           who: Annotated[Principal, Security(principal_any_of, scopes=[Permission.REQUESTS_WRITE,
                                                                   Permission.REQUESTS_OWN])]) -> Created:
    """A customer may file for their own contacts or CPF only; no justification is asked.
    A customer's ``customer_code`` and ``name`` are ignored: only the CPF they are
    registered with is recorded."""
    _limit_customer(svc, request, who)
    fields: dict[str, Any] = {"request_id": str(uuid.uuid4()), "kind": body.kind,
                              "requested_via": body.requested_via, "delivery_channel": body.delivery_channel,
                              "window_from": body.window_from, "window_to": body.window_to}
    number = inputs.protocol(body.protocol_number) if body.protocol_number is not None else None
    if number is not None:
        if body.cpf or body.customer_code:
            raise EventRejected("protocol_number", "one-of", "name the protocol number, or the customer, not both")
        with svc.ledger.connection() as conn:
            known, owner = history.contact_owner(conn, number)
        if not known or (who.role is Role.CUSTOMER and owner != who.subject_ref):
            raise EventRejected("protocol_number", "unknown-contact", f"no contact {number} of yours is on record")
        fields["customer"] = None
    else:
        cpf = inputs.cpf(body.cpf) if body.cpf is not None else None
        if who.role is Role.CUSTOMER and (cpf is None or svc.sealer.index.cpf(cpf) != who.subject_ref):
            raise EventRejected("cpf", "own-cpf", "a customer files requests with their own CPF")
        # A customer is known by their CPF only: a customer code or name in their body is
        # ignored (it could be another customer's), the CPF's blind index links the rest.
        own = who.role is Role.CUSTOMER
        fields["customer"] = {"cpf": cpf, "customer_code": None if own else body.customer_code,
                              "name": None if own else body.name}
        if cpf is None and body.customer_code is None:
            raise EventRejected("customer", "required",
                                "a request without protocol number names the customer by cpf or customer_code")
    result = publish_and_wait(svc, [event("RetrievalRequested", fields, number)])
    return Created(request_id=fields["request_id"], **result.model_dump())


def _visible(svc: Any, who: Principal, request_id: str) -> dict[str, Any]:
    try:
        rid = str(uuid.UUID(request_id))
    except ValueError:
        raise EventRejected("request_id", "uuid", "is not a UUID") from None
    with svc.ledger.connection() as conn:
        row = history.request(conn, rid)
        owner = history.contact_owner(conn, row["protocol_number"])[1] if row and row["protocol_number"] else None
    if row is None or row["requested_at"] is None or (
            who.role is Role.CUSTOMER and who.subject_ref not in (row["cpf_index"], owner)):
        raise HTTPException(404, f"no retrieval request {rid}")
    return row


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return encoded({k: v for k, v in row.items() if k not in _STAFF_FIELDS_HIDDEN})


@router.get("", response_model=QueuePage, summary="The request queue, by deadline")
def queue(svc: Services,
          who: Annotated[Principal, Security(principal_any_of, scopes=[Permission.REQUESTS_READ,
                                                                          Permission.REQUESTS_OWN])],
          open_only: bool = True, page: inputs.Page = 1, page_size: inputs.PageSize = 50) -> QueuePage:
    """Soonest deadline first; ``seconds_left`` counts down to the deadline (negative:
    overdue) and ``overdue`` flags it. A customer sees their own requests only."""
    own = who.subject_ref if who.role is Role.CUSTOMER else None
    with svc.ledger.connection() as conn:
        rows, total = history.request_queue(conn, open_only=open_only, cpf_index=own,
                                            offset=(page - 1) * page_size, limit=page_size)
    return QueuePage(total=total, page=page, page_size=page_size, items=[_shown(r) for r in rows])


@router.get("/{request_id}", summary="One retrieval request")
def one(request_id: str, svc: Services,
        who: Annotated[Principal, Security(principal_any_of, scopes=[Permission.REQUESTS_READ,
                                                                          Permission.REQUESTS_OWN])],
        ) -> dict[str, Any]:
    return _shown(_visible(svc, who, request_id))


#: event type -> (step, outcome, steps that forbid it): a request is located once and
#: closed (fulfilled or rejected) once; nothing follows its closing.
_STEPS = {"RetrievalLocated": ("located", "LOCATED", ("closed",)),
          "RetrievalFulfilled": ("closed", "FULFILLED", ()),
          "RetrievalRejected": ("closed", "REJECTED", ())}


def _follow_up(svc: Any, who: Principal, request_id: str, event_type: str, fields: dict[str, Any]) -> WriteResult:
    finish_pending(svc)
    row = _visible(svc, who, request_id)
    if row["status"] in ("fulfilled", "rejected"):
        raise HTTPException(409, f"request {row['request_id']} is {row['status']} already")
    step, outcome, excludes = _STEPS[event_type]
    rid = str(row["request_id"])
    return decide(svc, who, Decision(f"request:{rid}", step, outcome, excludes),
                  [event(event_type, {"request_id": rid, **fields}, row["protocol_number"])])


@router.post("/{request_id}/locate", response_model=WriteResult, summary="Say which contacts a request is about")
def locate(request_id: str, body: Located, svc: Services,
           who: Annotated[Principal, Security(principal, scopes=[Permission.REQUESTS_WRITE])]) -> WriteResult:
    numbers = [inputs.protocol(n, f"protocol_numbers[{i}]") for i, n in enumerate(body.protocol_numbers)]
    return _follow_up(svc, who, request_id, "RetrievalLocated",
                      {"protocol_numbers": numbers, "recording_ids": body.recording_ids})


@router.post("/{request_id}/fulfil", response_model=WriteResult, summary="Record the delivery (SHA-256)")
def fulfil(request_id: str, body: Fulfilment, svc: Services,
           who: Annotated[Principal, Security(principal, scopes=[Permission.REQUESTS_WRITE])]) -> WriteResult:
    return _follow_up(svc, who, request_id, "RetrievalFulfilled", {
        "recording_id": body.recording_id, "delivered_sha256": body.delivered_sha256,
        "delivered_via": body.delivered_via})


@router.post("/{request_id}/reject", response_model=WriteResult, summary="Reject, with a reason from the fixed list")
def reject(request_id: str, body: Rejection, svc: Services,
           who: Annotated[Principal, Security(principal, scopes=[Permission.REQUESTS_WRITE])]) -> WriteResult:
    return _follow_up(svc, who, request_id, "RetrievalRejected", {"reason": body.reason, "detail": body.detail})
