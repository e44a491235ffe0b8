"""The dispute team's pages: search, a contact, its proof, the request queue, the approval
inbox. Each calls the API's route function for the same thing with the caller's
principal, so the rules (masking, the access audit, two-person approval) are the API's."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response, Security
from fastapi.responses import HTMLResponse

from protocolo.api import inputs
from protocolo.api.auth import Services
from protocolo.api.identities import Principal
from protocolo.api.roles import Permission, allows
from protocolo.api.routes import approvals, contacts, requests
from protocolo.core.errors import EventRejected

from . import catalogue, rules
from .answers import REFUSALS, blank, message, notice, refused, see_other
from .render import SHOWN_ZONE, language, page
from .session import reader, writer

router = APIRouter(prefix="/console", include_in_schema=False)

CHANNELS = ("PHONE", "EMAIL", "WEB_FORM", "CHAT", "APP")
Text = Annotated[str, Query(max_length=200, pattern=inputs.NO_NUL)]
Note = Annotated[str | None, Query(max_length=40)]


def day_start(day: str | None, field: str) -> datetime | None:
    """A date field (``YYYY-MM-DD``) as the start of that day in Brasília time."""
    return _day(day, field, time.min)


def day_end(day: str | None, field: str) -> datetime | None:
    return _day(day, field, time.max)


def _day(day: str | None, field: str, at: time) -> datetime | None:
    if not day:
        return None
    try:
        return datetime.combine(date.fromisoformat(day), at, SHOWN_ZONE)
    except ValueError:
        raise EventRejected(field, "date", "a date as YYYY-MM-DD") from None


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, svc: Services,
           who: Annotated[Principal, Security(reader, scopes=[Permission.CONTACTS_READ])],
           protocol_number: Text = "", cpf: Text = "", customer_code: Text = "", opened_from: Text = "",
           opened_to: Text = "", channel: Text = "", agent_id: Text = "", purpose: Text = "",
           page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1) -> Response:
    form = {"protocol_number": protocol_number, "cpf": cpf, "customer_code": customer_code,
            "opened_from": opened_from, "opened_to": opened_to, "channel": channel, "agent_id": agent_id,
            "purpose": purpose}
    found: contacts.ContactPage | None = None
    problem = None
    try:
        if channel and channel not in CHANNELS:
            raise EventRejected("channel", "one-of", ", ".join(CHANNELS))
        found = contacts.search(
            request, svc, who, protocol_number=blank(protocol_number), cpf=blank(cpf),
            customer_code=blank(customer_code), opened_from=day_start(blank(opened_from), "opened_from"),
            opened_to=day_end(blank(opened_to), "opened_to"), channel=blank(channel),
            agent_id=blank(agent_id), page=page_number, page_size=20, purpose=blank(purpose))
    except REFUSALS as exc:
        status, problem = message(exc, catalogue.translator(language(request)))
        return page(request, "search.html", who, status=status, form=form, found=None, problem=problem,
                    channels=CHANNELS, page_number=page_number, flags=rules.FLAGS)
    return page(request, "search.html", who, form=form, found=found, problem=problem, channels=CHANNELS,
                page_number=page_number, flags=rules.FLAGS)


@router.get("/contacts/{protocol_number}", response_class=HTMLResponse)
def contact(protocol_number: str, request: Request, svc: Services,
            who: Annotated[Principal, Security(reader, scopes=[Permission.CONTACTS_READ])],
            unmask: bool = False, purpose: Text = "", note: Note = None) -> Response:
    t = catalogue.translator(language(request))
    problem = None
    try:
        try:
            shown = contacts.timeline(protocol_number, request, svc, who, unmask=unmask, purpose=blank(purpose))
        except REFUSALS as exc:
            if not unmask:
                raise
            problem = message(exc, t)[1]  # show the masked page with why it stayed masked
            shown = contacts.timeline(protocol_number, request, svc, who, unmask=False, purpose=None)
    except REFUSALS as exc:
        return refused(request, who, exc, back="/console/search")
    interaction = shown["interaction"] or {}
    holds_active = [h for h in shown["holds"] if h.get("released_at") is None]
    return page(request, "contact.html", who, shown=shown, interaction=interaction,
                checks=rules.checks(interaction, shown["compliance"], t), holds_active=holds_active,
                may_unmask=allows(who.role, Permission.PERSONAL_DATA_UNMASK),
                may_ask_deletion=allows(who.role, Permission.APPROVALS_REQUEST),
                notice=notice(note), problem=problem)


@router.get("/contacts/{protocol_number}/proof", response_class=HTMLResponse)
def proof(protocol_number: str, request: Request, svc: Services,
          who: Annotated[Principal, Security(reader, scopes=[Permission.CONTACTS_READ])],
          purpose: Text = "") -> Response:
    """The proof-of-service bundle, through the API's route: the zip, and the download
    recorded on the ledger with the purpose given (refused, as a page, without one, or
    while a record is not covered by a signed checkpoint yet)."""
    try:
        return contacts.proof_bundle(protocol_number, request, svc, who, purpose=blank(purpose))
    except REFUSALS as exc:
        return refused(request, who, exc, back=f"/console/contacts/{protocol_number}")


@router.post("/contacts/{protocol_number}/recordings/{recording_id}/early-deletion", response_class=HTMLResponse)
def ask_early_deletion(protocol_number: str, recording_id: str, request: Request, svc: Services,
                       who: Annotated[Principal, Security(writer, scopes=[Permission.APPROVALS_REQUEST])],
                       reason: Annotated[str, Form(max_length=4000)] = "") -> Response:
    back = f"/console/contacts/{protocol_number}"
    try:
        approvals.ask(approvals.NewApproval(action="EARLY_DELETION", reason=reason.strip(),
                                            protocol_number=protocol_number, recording_id=recording_id,
                                            cpf=None, customer_code=None), svc, who)
    except REFUSALS as exc:
        return refused(request, who, exc, back=back)
    return see_other(f"{back}?note=contact.deletion_asked")


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request, svc: Services,
          who: Annotated[Principal, Security(reader, scopes=[Permission.REQUESTS_READ])],
          page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1) -> Response:
    found = requests.queue(svc, who, open_only=True, page=page_number, page_size=50)
    overdue = sum(1 for r in found.items if r.get("overdue"))
    return page(request, "queue.html", who, found=found, overdue=overdue)


@router.get("/approvals", response_class=HTMLResponse)
def inbox(request: Request, svc: Services,
          who: Annotated[Principal, Security(reader, scopes=[Permission.APPROVALS_READ])],
          note: Note = None) -> Response:
    pending: list[dict[str, Any]] = approvals.inbox(svc, who)
    return page(request, "approvals.html", who, pending=pending, notice=notice(note),
                may_decide=allows(who.role, Permission.APPROVALS_DECIDE))


@router.post("/approvals/{approval_id}/grant", response_class=HTMLResponse)
def grant(approval_id: str, request: Request, svc: Services,
          who: Annotated[Principal, Security(writer, scopes=[Permission.APPROVALS_DECIDE])],
          comment: Annotated[str, Form(max_length=4000)] = "") -> Response:
    try:
        approvals.grant(approval_id, approvals.Decision(comment=blank(comment)), svc, who)
    except REFUSALS as exc:
        return refused(request, who, exc, back="/console/approvals")
    return see_other("/console/approvals?note=approvals.granted")


@router.post("/approvals/{approval_id}/deny", response_class=HTMLResponse)
def deny(approval_id: str, request: Request, svc: Services,
         who: Annotated[Principal, Security(writer, scopes=[Permission.APPROVALS_DECIDE])],
         reason: Annotated[str, Form(max_length=4000)] = "") -> Response:
    try:
        approvals.deny(approval_id, approvals.Denial(reason=reason.strip()), svc, who)
    except REFUSALS as exc:
        return refused(request, who, exc, back="/console/approvals")
    return see_other("/console/approvals?note=approvals.denied")
