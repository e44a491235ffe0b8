"""A regulator's pages: the exports and reports made for its regulator, and their
downloads. Each page calls the API's own route functions with the caller's principal, so
the scope (the user's regulator) and the access record of a download are the API's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, Security
from fastapi.responses import HTMLResponse

from protocolo.api.auth import Services
from protocolo.api.identities import Principal
from protocolo.api.roles import Permission
from protocolo.api.routes import contacts, regulator

from .answers import REFUSALS, blank, refused
from .render import page
from .session import reader

router = APIRouter(prefix="/console", include_in_schema=False)
Text = Annotated[str, Query(max_length=200)]


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


@router.get("/regulator/proof")
def proof(request: Request, svc: Services,
          who: Annotated[Principal, Security(reader, scopes=[Permission.PROOFS_REPORTED])],
          protocol_number: Text = "", purpose: Text = "") -> Response:
    """The proof-of-service bundle of a contact a report made for the reader's regulator
    names, through the API's route (which checks that and records the download)."""
    try:
        return contacts.proof_bundle(protocol_number.replace(" ", ""), request, svc, who, purpose=blank(purpose))
    except REFUSALS as exc:
        return refused(request, who, exc, back="/console/regulator")
