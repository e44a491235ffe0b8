"""A regulator's pages: the exports and reports made for its regulator, and their
downloads. Each page calls the API's own route functions with the caller's principal, so
the scope (the user's regulator) and the access record of a download are the API's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, Security
from fastapi.responses import HTMLResponse

from protocolo.api.auth import Services
from protocolo.api.identities import Principal
from protocolo.api.roles import Permission
from protocolo.api.routes import regulator

from .answers import REFUSALS, refused
from .render import page
from .session import reader

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/regulator", response_class=HTMLResponse)
def documents(request: Request, svc: Services,
              who: Annotated[Principal, Security(reader, scopes=[Permission.REGULATOR_DOCUMENTS_OWN])]) -> Response:
    return page(request, "regulator.html", who, documents=regulator.own_documents(svc, who))


@router.get("/regulator/documents/{document_id}")
def download(document_id: str, request: Request, svc: Services,
             who: Annotated[Principal, Security(reader, scopes=[Permission.REGULATOR_DOCUMENTS_OWN])]) -> Response:
    """The download is recorded on the ledger (``EXPORT_DOWNLOAD``) before a byte is sent."""
    try:
        return regulator.download(svc, request, who, regulator.own_document(svc, who, document_id), None)
    except REFUSALS as exc:
        return refused(request, who, exc, back="/console/regulator")
