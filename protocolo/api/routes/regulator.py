"""A regulator's documents: the exports and reports made for its regulator, and nothing else.

Scope comes from the user (``protocolo user add --role regulator --regulator NAME``), never
from the request: another regulator's document is answered exactly like an unknown one.
Each download is an access, recorded on the ledger (``EXPORT_DOWNLOAD``) before a byte is
sent.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Security
from fastapi.responses import FileResponse, Response, StreamingResponse

from protocolo.attestation.regulator_documents import (
    RegulatorDocument,
    document_of,
    documents_for,
    export_archive,
)

from .. import access_audit, inputs
from ..auth import Services, principal
from ..identities import Principal
from ..roles import Permission
from ..services import ApiServices

router = APIRouter(tags=["regulator"])

DocumentId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]+$")]
EXPORT_DOWNLOAD = "EXPORT_DOWNLOAD"


def own_documents(svc: ApiServices, who: Principal) -> list[RegulatorDocument]:
    if who.regulator is None:
        return []
    with svc.ledger.connection() as conn:
        return documents_for(conn, who.regulator)


def own_document(svc: ApiServices, who: Principal, document_id: str) -> RegulatorDocument:
    found = None
    if who.regulator is not None:
        with svc.ledger.connection() as conn:
            found = document_of(conn, who.regulator, document_id)
    if found is None or not found.location.exists():
        raise HTTPException(404, f"no document {document_id} made for you")
    return found


def download(svc: ApiServices, request: Request, who: Principal, document: RegulatorDocument,
             purpose: str | None) -> Response:
    """Record the access, then send the file (a report) or a tar stream (an export)."""
    reason = (purpose or "").strip() or f"supervision by {who.regulator}"
    access_audit.record_access(svc, request, who, EXPORT_DOWNLOAD, purpose=reason,
                               target=f"{document.kind} {document.document_id} for {document.regulator}")
    disposition = {"Content-Disposition": f'attachment; filename="{document.file_name}"'}
    if document.kind == "report":
        return FileResponse(document.location, media_type=document.media_type, headers=disposition)
    return StreamingResponse(export_archive(document.location), media_type=document.media_type,
                             headers=disposition)


@router.get("/v1/regulator/documents", summary="The exports and reports made for my regulator")
def list_documents(svc: Services, who: Annotated[Principal, Security(
        principal, scopes=[Permission.REGULATOR_DOCUMENTS_OWN])]) -> list[dict[str, Any]]:
    """Newest first; a regulator user without a regulator sees none."""
    return [d.as_json() for d in own_documents(svc, who)]


@router.get("/v1/regulator/documents/{document_id}", summary="Download one (recorded as an access)",
            response_class=Response,
            responses={200: {"content": {"application/x-tar": {}, "text/html": {}, "application/pdf": {},
                                         "application/json": {}, "text/csv": {}},
                             "description": "the report file, or the export directory as a tar archive"},
                       404: {"description": "no such document made for the caller's regulator"}})
def download_document(document_id: DocumentId, request: Request, svc: Services,
                      who: Annotated[Principal, Security(principal,
                                                         scopes=[Permission.REGULATOR_DOCUMENTS_OWN])],
                      purpose: inputs.Purpose = None) -> Response:
    """The download is recorded on the ledger (AccessRecorded, ``EXPORT_DOWNLOAD``) first."""
    return download(svc, request, who, own_document(svc, who, document_id), purpose)
