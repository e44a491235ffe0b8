"""Proof-of-service bundles for the API: the writer ``protocolo evidence`` uses, read-only.

The bundle is written from the ledger with the deployment's log key (as the CLI does) and
checked with the offline verifier, pinned to the deployment's own keys (configuration,
never the bundle's), before it is handed out. Records not yet under a signed checkpoint
(the download's own access record, for one) are listed in the bundle as pending, so a
download right after another one works. A ledger that fails its own checks is answered
503 naming the partition, never sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from fastapi import HTTPException

from protocolo.attestation.bundle_customer import CustomerRef, write_customer_bundle
from protocolo.attestation.bundle_writer import (
    BundleNotPossible,
    BundleRequest,
    LedgerDamaged,
    WriterContext,
    deployment_trust,
    self_check,
    write_bundle,
)
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.log_key import LogKey, SigningKeyError, load_log_key
from protocolo.projections import history

from .services import ApiServices


def _tool() -> str:
    try:
        return f"protocolo {version('protocolo')} (api)"
    except PackageNotFoundError:  # pragma: no cover - a source tree
        return "protocolo (api)"


def _context(svc: ApiServices) -> tuple[AttestationSettings, LogKey, WriterContext]:
    try:
        attestation = AttestationSettings.from_env()
        key = load_log_key(svc.settings, attestation.deployment)
    except (SigningKeyError, ValueError) as exc:
        raise HTTPException(503, f"this server cannot sign evidence: {exc}") from None
    context = WriterContext(
        deployment=attestation.deployment, topic=svc.topic, log_key=key, sealer=svc.sealer, tool=_tool(),
        tsa_chain_pem=attestation.tsa_chain.read_bytes() if attestation.tsa_chain else None,
        witness_vkeys=tuple(str(w.key) for w in attestation.witnesses))
    return attestation, key, context


def customer_bundle_for(svc: ApiServices, cpf_index: str) -> bytes:
    """The customer's bundle (every contact and request, every partition), self-checked with
    the deployment's pinned keys like a contact's."""
    attestation, key, context = _context(svc)
    partitions = max(svc.settings.partitions, 1)
    with svc.ledger.connection() as conn:
        try:
            data = write_customer_bundle(conn, CustomerRef("cpf_index", cpf_index),
                                         BundleRequest(None), context, partitions,
                                         datetime.now(UTC).replace(microsecond=0))
        except LedgerDamaged as exc:
            raise HTTPException(503, str(exc)) from None
        except BundleNotPossible as exc:
            raise HTTPException(409, str(exc)) from None
    trust = deployment_trust(key, attestation.deployment, svc.topic, range(partitions))
    try:
        self_check(data, trust, None)
    except LedgerDamaged as exc:
        raise HTTPException(503, str(exc)) from None
    return data


def bundle_for(svc: ApiServices, protocol_number: str) -> tuple[bytes, str | None]:
    """The contact's bundle and its customer's blind index (for the access record)."""
    attestation, key, context = _context(svc)
    with svc.ledger.connection() as conn:
        known, subject = history.contact_owner(conn, protocol_number)
        if not known:
            raise HTTPException(404, f"no contact {protocol_number}")
        try:
            data = write_bundle(conn, BundleRequest(protocol_number, None, False, None), context,
                                datetime.now(UTC).replace(microsecond=0))
        except LedgerDamaged as exc:
            raise HTTPException(503, str(exc)) from None
        except BundleNotPossible as exc:
            raise HTTPException(409, str(exc)) from None
    trust = deployment_trust(key, attestation.deployment, svc.topic, range(svc.settings.partitions))
    try:
        self_check(data, trust, protocol_number)
    except LedgerDamaged as exc:
        raise HTTPException(503, str(exc)) from None
    return data, subject
