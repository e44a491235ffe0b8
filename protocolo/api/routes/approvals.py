"""Two-person approval of early deletion and customer erasure.

One user asks (ApprovalRequested); a DIFFERENT user with the approver role (compliance)
grants (ApprovalGranted, then the action's own event, correlated by the approval id) or
denies (ApprovalDenied). Asking and deciding are each an event on the ledger; nobody
decides on their own request, whatever their role.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Security
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field

from protocolo.core.errors import EventRejected
from protocolo.core.watermark import ProjectionBehind
from protocolo.producers.publisher import PublishFailed
from protocolo.projections import history

from .. import erasure_follow_up, inputs
from ..auth import Services, principal
from ..decisions import Decision as Taken
from ..decisions import DecisionPending, decide, finish_pending
from ..identities import Principal
from ..inputs import encoded
from ..ledger_writes import WriteResult, await_projection, event, publish_and_wait, receipt_out
from ..roles import Permission

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class NewApproval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["EARLY_DELETION", "CUSTOMER_ERASURE"]
    reason: str = Field(min_length=1, max_length=2000)
    protocol_number: str | None = Field(None, max_length=40)
    recording_id: str | None = Field(None, min_length=1, max_length=200, pattern=inputs.NO_NUL)
    cpf: str | None = Field(None, max_length=20)
    customer_code: str | None = Field(None, min_length=1, max_length=64)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(None, max_length=2000)


class Denial(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class ApprovalAsked(WriteResult):
    approval_id: str


@router.post("", status_code=201, response_model=ApprovalAsked, summary="Ask for an action needing two people")
def ask(body: NewApproval, svc: Services,
        who: Annotated[Principal, Security(principal, scopes=[Permission.APPROVALS_REQUEST])]) -> ApprovalAsked:
    approval_id = str(uuid.uuid4())
    fields: dict[str, Any] = {"approval_id": approval_id, "action": body.action, "requested_by": who.user_name,
                              "requester_role": who.role.value.upper(), "reason": body.reason,
                              "recording_id": None, "subject_ref": None}
    number = None
    if body.action == "EARLY_DELETION":
        if body.protocol_number is None:
            raise EventRejected("protocol_number", "required", "an early deletion names the contact")
        if body.recording_id is None:
            raise EventRejected("recording_id", "required", "an early deletion names the recording")
        number = inputs.protocol(body.protocol_number)
        with svc.ledger.connection() as conn:
            rec = history.recording(conn, body.recording_id)
        if rec is None or rec["protocol_number"] != number:
            raise EventRejected("recording_id", "unknown-recording", f"no such recording of contact {number}")
        if rec["status"] != "retained":
            raise EventRejected("recording_id", "deleted", "the recording is deleted already")
        fields["recording_id"] = body.recording_id
    else:
        if body.cpf is not None:
            fields["subject_ref"] = svc.sealer.index.cpf(inputs.cpf(body.cpf))
        elif body.customer_code is not None:
            fields["subject_ref"] = svc.sealer.index.customer_code(body.customer_code)
        else:
            raise EventRejected("cpf", "required", "an erasure names the customer by cpf or customer_code")
    result = publish_and_wait(svc, [event("ApprovalRequested", fields, number, correlation_id=approval_id)])
    return ApprovalAsked(approval_id=approval_id, **result.model_dump())


def _pending(svc: Any, approval_id: str) -> dict[str, Any]:
    try:
        aid = str(uuid.UUID(approval_id))
    except ValueError:
        raise EventRejected("approval_id", "uuid", "is not a UUID") from None
    with svc.ledger.connection() as conn:
        row = history.approval(conn, aid)
    if row is None or row["requested_at"] is None:
        raise HTTPException(404, f"no approval {aid}")
    return row


@router.get("", summary="Approvals waiting for a decision")
def inbox(svc: Services,
          who: Annotated[Principal, Security(principal, scopes=[Permission.APPROVALS_READ])]) -> list[dict[str, Any]]:
    with svc.ledger.connection() as conn:
        return [jsonable_encoder(r) for r in history.approvals_pending(conn)]


@router.get("/{approval_id}", summary="One approval")
def one(approval_id: str, svc: Services,
        who: Annotated[Principal, Security(principal, scopes=[Permission.APPROVALS_READ])]) -> dict[str, Any]:
    return encoded(_pending(svc, approval_id))


def _decidable(svc: Any, who: Principal, approval_id: str) -> dict[str, Any]:
    finish_pending(svc)
    row = _pending(svc, approval_id)
    if row["decision"] is not None:
        raise HTTPException(409, f"approval {row['approval_id']} was {row['decision'].lower()} already")
    if row["requested_by"] == who.user_name:
        raise HTTPException(403, "nobody decides on their own request: a second person must [rule: self-approval]")
    return row


@router.post("/{approval_id}/grant", response_model=WriteResult, summary="Grant, and carry out the action")
def grant(approval_id: str, body: Decision, svc: Services,
          who: Annotated[Principal, Security(principal, scopes=[Permission.APPROVALS_DECIDE])]) -> WriteResult:
    row = _decidable(svc, who, approval_id)
    aid, number = str(row["approval_id"]), row["protocol_number"]
    granted = event("ApprovalGranted", {"approval_id": aid, "approved_by": who.user_name,
                                        "approver_role": who.role.value.upper(), "comment": body.comment},
                    number, correlation_id=aid)
    taken = Taken(f"approval:{aid}", "decided", "GRANTED")
    authorised = f"approval {aid}: asked by {row['requested_by']}, granted by {who.user_name}"
    if row["action"] == "EARLY_DELETION":
        with svc.ledger.connection() as conn:
            rec = history.recording(conn, row["recording_id"])
        if rec is None or rec["status"] != "retained":
            raise HTTPException(409, f"recording {row['recording_id']!r} is no longer retained")
        return decide(svc, who, taken, [granted, event("RecordingDeleted", {
            "recording_id": row["recording_id"], "sha256": rec["sha256"], "reason": "COURT_ORDER",
            "authorised_by": authorised[:500]}, number, correlation_id=aid)])
    result = decide(svc, who, taken, [granted], follow_up=erasure_follow_up.ERASE)
    try:
        receipts = erasure_follow_up.carry_out(svc, aid)
    except (PublishFailed, ProjectionBehind) as exc:
        raise DecisionPending("the grant is recorded and published; the erasure did not complete "
                              f"({type(exc).__name__}) and is run again by the server until it does "
                              "(do not decide again)") from exc
    projected = await_projection(svc, receipts) if receipts else True
    return WriteResult(receipts=[*result.receipts, *(receipt_out(r) for r in receipts)],
                       projected=result.projected and projected)


@router.post("/{approval_id}/deny", response_model=WriteResult, summary="Deny")
def deny(approval_id: str, body: Denial, svc: Services,
         who: Annotated[Principal, Security(principal, scopes=[Permission.APPROVALS_DECIDE])]) -> WriteResult:
    row = _decidable(svc, who, approval_id)
    aid = str(row["approval_id"])
    return decide(svc, who, Taken(f"approval:{aid}", "decided", "DENIED"), [event("ApprovalDenied", {
        "approval_id": aid, "denied_by": who.user_name, "approver_role": who.role.value.upper(),
        "reason": body.reason}, row["protocol_number"], correlation_id=aid)])
