"""The customer's online channel: ask for the recording of a call (by protocol number, or
by CPF and the day of the call; no justification asked) and follow the request.

Filing is the API's ``POST /v1/requests`` (:func:`protocolo.api.routes.requests.create`):
the same ownership rule (only their own contacts, only their own CPF) and the same rate
limit; the 10-day clock starts at the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response, Security
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from protocolo.api import inputs
from protocolo.api.auth import Services
from protocolo.api.identities import Principal
from protocolo.api.roles import Permission
from protocolo.api.routes import customer_proof, requests
from protocolo.core.errors import EventRejected

from . import catalogue
from .answers import REFUSALS, blank, message, notice, refused, see_other
from .render import language, page
from .session import reader, writer
from .staff import day_end, day_start

router = APIRouter(prefix="/console/my", include_in_schema=False)

DELIVERY = ("EMAIL", "APP", "WEB")
Short = Annotated[str, Form(max_length=200, pattern=inputs.NO_NUL)]


@router.get("/requests/new", response_class=HTMLResponse)
def new_request(request: Request,
                who: Annotated[Principal, Security(reader, scopes=[Permission.REQUESTS_OWN])]) -> Response:
    return page(request, "customer_new.html", who, form=dict.fromkeys(("protocol_number", "cpf", "day"), ""),
                problem=None, delivery=DELIVERY)


@router.post("/requests", response_class=HTMLResponse)
def file_request(request: Request, svc: Services,
                 who: Annotated[Principal, Security(writer, scopes=[Permission.REQUESTS_OWN])],
                 protocol_number: Short = "", cpf: Short = "", day: Short = "",
                 delivery_channel: Short = "EMAIL") -> Response:
    form = {"protocol_number": protocol_number, "cpf": cpf, "day": day, "delivery_channel": delivery_channel}
    t = catalogue.translator(language(request))
    try:
        number = blank(protocol_number)
        if number is None and (blank(cpf) is None or blank(day) is None):
            raise EventRejected("protocol_number" if blank(cpf) is None else "day", "required", t("customer.either"))
        created = requests.create(requests.NewRequest(
            protocol_number=number, cpf=None if number else blank(cpf), customer_code=None, name=None,
            window_from=None if number else day_start(blank(day), "day"),
            window_to=None if number else day_end(blank(day), "day"),
            kind="RECORDING", requested_via="WEB_FORM",
            delivery_channel=delivery_channel if delivery_channel in DELIVERY else "EMAIL",  # type: ignore[arg-type]
        ), request, svc, who)
    except REFUSALS as exc:
        status, problem = message(exc, t)
        if status == 429:
            problem = t("customer.too_many", seconds=_retry_after(exc))
        return page(request, "customer_new.html", who, status=status, form=form, problem=problem, delivery=DELIVERY)
    return see_other(f"/console/my/requests/{created.request_id}?note=customer.created")


def _retry_after(exc: Exception) -> str:
    headers = getattr(exc, "headers", None) or {}
    return str(headers.get("Retry-After", "60"))


@router.get("/requests", response_class=HTMLResponse)
def my_requests(request: Request, svc: Services,
                who: Annotated[Principal, Security(reader, scopes=[Permission.REQUESTS_OWN])]) -> Response:
    found = requests.queue(svc, who, open_only=False, page=1, page_size=200)
    return page(request, "customer_list.html", who, found=found)


@router.get("/proof", response_class=HTMLResponse)
def my_proof(request: Request, svc: Services,
             who: Annotated[Principal, Security(reader, scopes=[Permission.PROOF_OWN])]) -> Response:
    """The customer's bundle of every contact (their LGPD access), through the API's route:
    the zip, its download recorded on the ledger; refused as a page while a partition is not
    checkpointed."""
    try:
        return customer_proof.my_proof(request, svc, who)
    except REFUSALS as exc:
        return refused(request, who, exc, back="/console/my/requests")


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def follow(request_id: str, request: Request, svc: Services,
           who: Annotated[Principal, Security(reader, scopes=[Permission.REQUESTS_OWN])],
           note: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    try:
        shown = requests.one(request_id, svc, who)
    except (*REFUSALS, ValidationError) as exc:
        return refused(request, who, exc, back="/console/my/requests")
    return page(request, "customer_follow.html", who, r=shown, notice=notice(note))
