"""Compliance's exports and reports for regulators: order one (it runs in the background,
followed on a page that refreshes itself, no JavaScript) and see each regulator's export
chain (every export with its manifest's SHA-256 and the previous one's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, Security
from fastapi.responses import HTMLResponse

from protocolo.api.auth import Services
from protocolo.api.document_jobs import KINDS, DocumentOrder, OrderRefused
from protocolo.api.identities import Principal, check_regulator_name
from protocolo.api.roles import Permission
from protocolo.attestation.regulator_documents import export_chain
from protocolo.core.errors import EventRejected

from .answers import REFUSALS, message, see_other
from .catalogue import translator
from .render import language, page
from .session import reader, writer
from .staff import day_end, day_start

router = APIRouter(prefix="/console", include_in_schema=False)
Field = Annotated[str, Form(max_length=64)]


def _form_page(request: Request, svc: Services, who: Principal, *, status: int = 200,
               problem: str | None = None, form: dict[str, str] | None = None) -> Response:
    with svc.ledger.connection() as conn:
        chain = export_chain(conn)
    return page(request, "exports.html", who, status=status, problem=problem, chain=chain,
                jobs=svc.documents.recent(), kinds=KINDS,
                form=form or {"kind": "report", "regulator": "", "period_from": "", "period_to": ""})


@router.get("/exports", response_class=HTMLResponse)
def exports(request: Request, svc: Services,
            who: Annotated[Principal, Security(reader, scopes=[Permission.EXPORTS_MAKE])]) -> Response:
    return _form_page(request, svc, who)


def _order(who: Principal, kind: str, regulator: str, period_from: str, period_to: str) -> DocumentOrder:
    if kind not in KINDS:
        raise EventRejected("kind", "one-of", ", ".join(KINDS))
    check_regulator_name(regulator.strip())
    start, end = day_start(period_from, "period_from"), day_end(period_to, "period_to")
    if start is None or end is None:
        raise EventRejected("period_from" if start is None else "period_to", "required", "a date as YYYY-MM-DD")
    end = min(end, datetime.now(UTC).replace(microsecond=0))  # today: up to now
    if end < start:
        raise EventRejected("period_to", "order", "the period ends before it starts")
    return DocumentOrder(kind, start, end, regulator.strip(), who.user_name)


@router.post("/exports", response_class=HTMLResponse)
def order(request: Request, svc: Services,
          who: Annotated[Principal, Security(writer, scopes=[Permission.EXPORTS_MAKE])],
          kind: Field, regulator: Field, period_from: Field, period_to: Field) -> Response:
    form = {"kind": kind, "regulator": regulator, "period_from": period_from, "period_to": period_to}
    try:
        job = svc.documents.start(_order(who, kind, regulator, period_from, period_to))
    except REFUSALS as exc:
        status, text = message(exc, translator(language(request)))
        return _form_page(request, svc, who, status=status, problem=text, form=form)
    except OrderRefused as exc:
        return _form_page(request, svc, who, status=503, problem=str(exc), form=form)
    return see_other(f"/console/exports/jobs/{job.job_id}")


@router.get("/exports/jobs/{job_id}", response_class=HTMLResponse)
def job(job_id: str, request: Request, svc: Services,
        who: Annotated[Principal, Security(reader, scopes=[Permission.EXPORTS_MAKE])]) -> Response:
    found = svc.documents.get(job_id)
    if found is None:
        t = translator(language(request))
        return page(request, "refused.html", who, status=404, problem=t("error.not_found"), back="/console/exports")
    return page(request, "export_job.html", who, job=found)
