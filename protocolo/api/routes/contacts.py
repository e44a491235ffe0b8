"""Contacts: search, timeline (masked unless unmasked and audited), recording references."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, Security
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict

from protocolo.attestation.regulator_documents import reported_contact
from protocolo.core.errors import shown_value
from protocolo.projections import history

from .. import access_audit, evidence_bundles, inputs, verified_reads
from ..auth import Services, principal, principal_any_of
from ..identities import Principal
from ..inputs import encoded
from ..lag import lag_summary
from ..roles import ROLE_PERMISSIONS, Permission, allows

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

#: Fields that identify a customer: never in a masked answer (blind indexes included:
#: they link a customer's contacts together).
_IDENTIFYING = ("cpf_index", "customer_code_index", "personal_data_key")


class ContactPage(BaseModel):
    total: int
    page: int
    page_size: int
    items: list[verified_reads.VerifiedContact]


def _masked(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _IDENTIFYING}


@router.get("", response_model=ContactPage, summary="Search contacts")
def search(
    request: Request, svc: Services,
    who: Annotated[Principal, Security(principal, scopes=[Permission.CONTACTS_READ])],
    protocol_number: inputs.ShortText = None,
    cpf: inputs.ShortText = None,
    customer_code: inputs.ShortText = None,
    opened_from: inputs.Moment = None,
    opened_to: inputs.Moment = None,
    channel: inputs.Channel | None = None,
    service_type: inputs.ServiceType | None = None,
    agent_id: inputs.ShortText = None,
    rule_broken: Literal["protocol-not-disclosed-at-start", "recording-notice-not-at-start",
                         "protocol-not-confirmed-in-time", "early-deletion-without-approval"] | None = None,
    sort: Literal["opened_at", "-opened_at", "protocol_number"] = "-opened_at",
    page: inputs.Page = 1,
    page_size: inputs.PageSize = 20,
    purpose: inputs.Purpose = None,
) -> ContactPage:
    """Contacts matching every filter given. Searching by CPF or customer code is recorded
    on the ledger (AccessRecorded) and needs a ``purpose``."""
    index = svc.sealer.index
    cpf_index = index.cpf(inputs.cpf(cpf)) if cpf is not None else None
    code_index = index.customer_code(customer_code) if customer_code is not None else None
    if opened_from and opened_to and opened_from > opened_to:
        raise HTTPException(422, detail=[{"loc": ["query", "opened_to"], "msg": "must not be before opened_from",
                                          "type": "range"}])
    filters = history.ContactFilters(
        protocol_number=inputs.protocol(protocol_number) if protocol_number is not None else None,
        cpf_index=cpf_index, customer_code_index=code_index, opened_from=_aware(opened_from),
        opened_to=_aware(opened_to), channel=channel, service_type=service_type, agent_id=agent_id,
        rule_broken=rule_broken)
    if cpf_index or code_index:
        reason = inputs.need_purpose(purpose)
        access_audit.record_access(
            svc, request, who, access_audit.SEARCH_BY_CPF if cpf_index else access_audit.SEARCH_BY_CUSTOMER_CODE,
            purpose=reason, subject_ref=cpf_index or code_index, target="contact search")
    with svc.ledger.connection() as conn:
        rows, total = history.search_contacts(conn, filters, offset=(page - 1) * page_size, limit=page_size,
                                              sort=sort)
        verified_reads.check_search_rows(svc, conn, rows)
    for r in rows:
        if r["verified"]["status"] == "MISMATCH":
            access_audit.record_access(svc, request, who, access_audit.VERIFIED_READ_MISMATCH,
                                       purpose=verified_reads.MISMATCH_PURPOSE, protocol_number=r["protocol_number"],
                                       subject_ref=r.get("cpf_index"),
                                       target=verified_reads.finding_summary(r["verified"]["differences"]))
    return ContactPage(total=total, page=page, page_size=page_size,
                       items=[verified_reads.VerifiedContact.model_validate(jsonable_encoder(_masked(r)))
                              for r in rows])


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise HTTPException(422, detail=[{"loc": ["query"], "msg": "a time needs its zone offset (Z or -03:00)",
                                          "type": "timezone"}])
    return moment


class ContactTimeline(BaseModel):
    """The timeline's parts (interaction, compliance, events, recordings, requests, holds,
    customer, projection), with the verified values, and how they were checked."""

    model_config = ConfigDict(extra="allow")
    protocol_number: str
    verified: verified_reads.Verification


@router.get("/{protocol_number}", summary="A contact's timeline", response_model=ContactTimeline)
def timeline(
    protocol_number: str, request: Request, svc: Services,
    who: Annotated[Principal, Security(principal, scopes=[Permission.CONTACTS_READ])],
    unmask: Annotated[bool, Query(description="Show the customer's personal data (audited).")] = False,
    purpose: inputs.Purpose = None,
) -> dict[str, Any]:
    """Events, recordings, requests, holds and compliance flags of one contact, and how far
    the projection stands behind the ledger. Personal data is masked unless ``unmask``
    (supervisor, compliance), which is recorded on the ledger."""
    number = inputs.protocol(protocol_number)
    if unmask and Permission.PERSONAL_DATA_UNMASK not in ROLE_PERMISSIONS[who.role]:
        raise HTTPException(403, f"role {who.role.value} may not unmask personal data [rule: role]")
    with svc.ledger.connection() as conn:
        found = history.timelines(conn, [number])[0]
        checked = verified_reads.check_timeline(svc, conn, found) if found.events else None
    if found.interaction is None and not found.events or checked is None:
        raise HTTPException(404, f"no contact with protocol number {number}")
    customer: dict[str, Any] | None = None
    if unmask:
        reason = inputs.need_purpose(purpose)
        subject = found.interaction.get("cpf_index") if found.interaction else None
        access_audit.record_access(svc, request, who, access_audit.UNMASK, purpose=reason,
                                   protocol_number=number, subject_ref=subject,
                                   target=verified_reads.finding_target(checked))
        opened = next((e for e in found.events if e["event_type"] == "ContactOpened"), None)
        if opened is not None:
            sealed = (opened["payload"].get("customer") or {}).get("sealed")
            customer = svc.sealer.open(sealed, str(opened["event_id"])) or {"erased": True}
    elif checked.status == "MISMATCH":
        access_audit.record_access(svc, request, who, access_audit.VERIFIED_READ_MISMATCH,
                                   purpose=verified_reads.MISMATCH_PURPOSE, protocol_number=number,
                                   subject_ref=found.interaction.get("cpf_index") if found.interaction else None,
                                   target=verified_reads.finding_target(checked))
    # The media reference is served by the audited recording route only (RECORDINGS_ACCESS);
    # the digest stays: it is what proves a delivered or deleted recording is the captured one.
    events = [{**e, "payload": {k: v for k, v in e["payload"].items() if k not in ("customer", "media_uri")}}
              for e in found.events]
    return encoded({
        "protocol_number": number,
        "interaction": _masked(found.interaction) if found.interaction else None,
        "compliance": found.compliance,
        "customer": customer,
        "masked": not unmask,
        "events": events,
        "recordings": [{k: v for k, v in _masked(r).items() if k != "media_uri"} for r in found.recordings],
        "requests": [_masked(r) for r in found.requests],
        "holds": found.holds,
        "projection": lag_summary(svc),
        "verified": checked.as_dict(),
    })


@router.get("/{protocol_number}/recordings/{recording_id}", summary="A recording's media reference")
def recording_reference(
    protocol_number: str, recording_id: inputs.PathId, request: Request, svc: Services,
    who: Annotated[Principal, Security(principal, scopes=[Permission.RECORDINGS_ACCESS])],
    mode: Literal["playback", "download"] = "playback",
    purpose: inputs.Purpose = None,
) -> dict[str, Any]:
    """Where the audio is and its SHA-256, for playback or download: recorded on the ledger."""
    number = inputs.protocol(protocol_number)
    with svc.ledger.connection() as conn:
        rec = history.recording(conn, recording_id)
        _known, subject = history.contact_owner(conn, number)
    if rec is None or rec["protocol_number"] != number:
        raise HTTPException(404, f"no recording {shown_value(recording_id)} of contact {number}")
    reason = inputs.need_purpose(purpose)
    access_audit.record_access(
        svc, request, who, access_audit.RECORDING_PLAYBACK if mode == "playback" else access_audit.RECORDING_DOWNLOAD,
        purpose=reason, protocol_number=number, subject_ref=subject, target=recording_id)
    return encoded({k: rec[k] for k in ("recording_id", "protocol_number", "media_uri", "sha256",
                                                 "duration_ms", "captured_at", "status", "retain_until")})



@router.get("/{protocol_number}/proof", summary="The contact's proof-of-service bundle (zip)",
            response_class=Response,
            responses={200: {"content": {"application/zip": {}},
                             "description": "the bundle (docs/evidence-format.md §9); verify it offline"},
                       409: {"description": "not every record is covered by a signed checkpoint yet"}})
def proof_bundle(
    protocol_number: str, request: Request, svc: Services,
    who: Annotated[Principal, Security(principal_any_of, scopes=[Permission.CONTACTS_READ,
                                                                 Permission.PROOFS_REPORTED])],
    purpose: inputs.Purpose = None,
) -> Response:
    """Every record of the contact and of its retrieval requests, with inclusion proofs,
    signed checkpoints and a standalone verifier (personal data sealed): recorded on the
    ledger as a ``BUNDLE_DOWNLOAD``. The same bundle ``protocolo evidence`` writes. A
    regulator (``proofs:reported``) gets only contacts a report made for it names; any
    other is answered as unknown."""
    number = inputs.protocol(protocol_number)
    reason = inputs.need_purpose(purpose)
    if not allows(who.role, Permission.CONTACTS_READ):
        with svc.ledger.connection() as conn:
            named = who.regulator is not None and reported_contact(conn, who.regulator, number)
        if not named:
            raise HTTPException(404, f"no contact {number} in a report made for you")
    data, subject = evidence_bundles.bundle_for(svc, number)
    access_audit.record_access(svc, request, who, access_audit.BUNDLE_DOWNLOAD, purpose=reason,
                               protocol_number=number, subject_ref=subject, target=f"{number}.zip")
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{number}.zip"'})
