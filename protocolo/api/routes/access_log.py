"""Who looked at whose data: the access audit, read back from the ledger's view."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Security
from fastapi.encoders import jsonable_encoder

from protocolo.projections import history

from .. import access_audit, inputs
from ..auth import Services, principal
from ..identities import Principal
from ..roles import Permission

router = APIRouter(tags=["access audit"])


@router.get("/v1/access-log", summary="Access audit, by customer, contact or person")
def access_log(request: Request, svc: Services,
               who: Annotated[Principal, Security(principal, scopes=[Permission.ACCESS_LOG_READ])],
               cpf: inputs.ShortText = None, protocol_number: inputs.ShortText = None,
               actor: inputs.ShortText = None, purpose: inputs.Purpose = None) -> list[dict[str, Any]]:
    """Looking up a customer by CPF here is itself an audited search."""
    subject = svc.sealer.index.cpf(inputs.cpf(cpf)) if cpf is not None else None
    number = inputs.protocol(protocol_number) if protocol_number is not None else None
    if subject is not None:
        access_audit.record_access(svc, request, who, access_audit.SEARCH_BY_CPF,
                                   purpose=inputs.need_purpose(purpose), subject_ref=subject, target="access log")
    with svc.ledger.connection() as conn:
        rows = history.access_log(conn, subject_ref=subject, protocol_number=number, actor=actor)
    return [jsonable_encoder(r) for r in rows]


@router.get("/v1/me/access-log", summary="Who accessed my data (LGPD)")
def my_access_log(svc: Services,
                  who: Annotated[Principal, Security(principal, scopes=[Permission.ACCESS_LOG_OWN])],
                  ) -> list[dict[str, Any]]:
    """Each access to my data: when, by which role, what, why, about which contact; not the
    staff member's login name or network address (staff see those in /v1/access-log)."""
    with svc.ledger.connection() as conn:
        rows = history.access_log(conn, subject_ref=who.subject_ref)
    return [jsonable_encoder({k: v for k, v in r.items() if k not in _STAFF_ONLY}) for r in rows]


#: What a customer's own access log leaves out: who the staff member is and where from.
_STAFF_ONLY = frozenset({"subject_ref", "actor", "source_address"})
