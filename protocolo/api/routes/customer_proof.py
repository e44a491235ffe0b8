"""A customer's proof-of-service bundle: every contact and request of one customer, in every
partition, proven complete by the verifiable index (docs/evidence-format.md §11.6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response, Security

from .. import access_audit, evidence_bundles, inputs
from ..auth import Services, principal
from ..identities import Principal
from ..roles import Permission

router = APIRouter(tags=["contacts"])

#: why a customer's own download is recorded: the data subject's right of access
OWN_ACCESS = "LGPD art. 18 II: access by the data subject to all their contacts"

_ZIP: dict[int | str, dict[str, Any]] = {200: {"content": {"application/zip": {}},
              "description": "the bundle (docs/evidence-format.md §9, §11.6); verify it offline "
                             "with --customer-index <the X-Customer-Index header>"},
        409: {"description": "a partition has no signed checkpoint yet, or the customer has no contact"}}


def _zip(data: bytes, cpf_index: str) -> Response:
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="customer.zip"',
                             "X-Customer-Index": cpf_index})


@router.get("/v1/customers/me/proof", summary="My bundle of every contact (LGPD access)",
            response_class=Response, responses=_ZIP)
def my_proof(request: Request, svc: Services,
             who: Annotated[Principal, Security(principal, scopes=[Permission.PROOF_OWN])]) -> Response:
    """Every contact and retrieval request of the signed-in customer, in every partition,
    with the lookup proofs that show none is missing (up to the checkpoints): recorded on the
    ledger as a ``BUNDLE_DOWNLOAD``. The ``X-Customer-Index`` header is the blind index to
    pin when verifying (``--customer-index``)."""
    if who.subject_ref is None:  # a customer account always names its subject
        raise HTTPException(403, "this account names no customer")
    data = evidence_bundles.customer_bundle_for(svc, who.subject_ref)
    access_audit.record_access(svc, request, who, access_audit.BUNDLE_DOWNLOAD, purpose=OWN_ACCESS,
                               subject_ref=who.subject_ref, target="customer.zip")
    return _zip(data, who.subject_ref)


@router.get("/v1/customers/proof", summary="A customer's bundle of every contact, by CPF",
            response_class=Response, responses=_ZIP)
def customer_proof(request: Request, svc: Services,
                   who: Annotated[Principal, Security(principal, scopes=[Permission.CONTACTS_READ])],
                   cpf: inputs.ShortText = None, purpose: inputs.Purpose = None) -> Response:
    """The customer's bundle for staff (a dispute by CPF, an LGPD request answered on the
    customer's behalf): needs a ``purpose``; recorded on the ledger as a ``BUNDLE_DOWNLOAD``."""
    reason = inputs.need_purpose(purpose)
    if cpf is None:
        raise HTTPException(422, detail=[{"loc": ["query", "cpf"], "msg": "the customer's CPF is "
                                          "required", "type": "missing"}])
    cpf_index = svc.sealer.index.cpf(inputs.cpf(cpf))
    data = evidence_bundles.customer_bundle_for(svc, cpf_index)
    access_audit.record_access(svc, request, who, access_audit.BUNDLE_DOWNLOAD, purpose=reason,
                               subject_ref=cpf_index, target="customer.zip")
    return _zip(data, cpf_index)
