"""Erasing a customer's personal data without touching any event (crypto-shredding).

``erase_customer`` finds every data key the customer's personal data was sealed under
(the key named by their CPF's blind index, the one named by their customer code's, and
any other that a contact of theirs used), publishes ``CustomerDataErased`` as the evidence
of the erasure, and only then destroys the keys. Publishing first means a crash between
the two steps leaves an erasure on record that is simply run again; the reverse would
leave keys destroyed with no record of why. Running it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.core.errors import EventRejected
from protocolo.core.personal_data import PersonalDataSealer
from protocolo.core.watermark import wait_until_projected

from .publisher import LedgerPublisher, Receipt


class NothingToErase(LookupError):
    pass


@dataclass(frozen=True)
class ErasureResult:
    subject_ref: str
    key_refs: list[str]
    destroyed: int
    receipt: Receipt


def customer_key_refs(ledger: psycopg.Connection[Any], registry: psycopg.Connection[Any],
                      index_refs: list[str], *,
                      earlier_ledgers: Sequence[psycopg.Connection[Any]] = ()) -> list[str]:
    """The live data keys of a customer: those of the subjects named by these blind
    indexes, of the other index (CPF or code) of any contact found by them, and any key a
    contact of theirs was sealed under. Contacts come from the ledger's views and from
    ``earlier_ledgers`` (on the embedded stack, the databases of earlier broker
    incarnations: a contact projected there may be the only one linking the CPF to the
    customer code), keys from the registry (one for every ledger, so an erasure reaches
    all of them)."""
    contacts: list[tuple[Any, ...]] = []
    for conn in (ledger, *earlier_ledgers):
        contacts += conn.execute(
            "SELECT i.personal_data_key, i.cpf_index, i.customer_code_index"
            "  FROM customer_index c JOIN interactions i USING (protocol_number)"
            " WHERE c.index_value = ANY(%s)",
            (index_refs,),
        ).fetchall()
        if not conn.autocommit:
            conn.rollback()
    subjects = sorted({*index_refs, *(c[1] for c in contacts if c[1]), *(c[2] for c in contacts if c[2])})
    sealed_under = sorted({c[0] for c in contacts if c[0]})
    rows = registry.execute(
        "SELECT key_ref FROM personal_data_keys"
        " WHERE wrapped_key IS NOT NULL AND (subject_ref = ANY(%s) OR key_ref = ANY(%s))"
        " ORDER BY key_ref",
        (subjects, sealed_under),
    ).fetchall()
    if not registry.autocommit:
        registry.rollback()
    return [r[0] for r in rows]


def erase_customer(
    ledger: psycopg.Connection[Any],
    registry: psycopg.Connection[Any],
    publisher: LedgerPublisher,
    sealer: PersonalDataSealer,
    *,
    cpf: str | None = None,
    customer_code: str | None = None,
    legal_basis: str,
    projection_timeout_s: float = 30.0,
    earlier_ledgers: Sequence[psycopg.Connection[Any]] = (),
) -> ErasureResult:
    """Erase a customer (see the module's doc). Waits first until the projection has caught
    up with the topic, so that contacts published a moment ago are covered too; raises
    :class:`~protocolo.core.watermark.ProjectionBehind` (nothing published) if it does not."""
    if cpf is None and customer_code is None:
        raise EventRejected("customer", "required", "name the customer by cpf or customer_code")
    if not legal_basis.strip():
        raise EventRejected("legal_basis", "required", "say on what legal basis the data is erased")
    index_refs = [r for r in (
        sealer.index.cpf(cpf) if cpf is not None else None,
        sealer.index.customer_code(customer_code) if customer_code is not None else None,
    ) if r]
    return erase_subject(ledger, registry, publisher, sealer, index_refs=index_refs, legal_basis=legal_basis,
                         projection_timeout_s=projection_timeout_s, earlier_ledgers=earlier_ledgers)


def erase_subject(
    ledger: psycopg.Connection[Any],
    registry: psycopg.Connection[Any],
    publisher: LedgerPublisher,
    sealer: PersonalDataSealer,
    *,
    index_refs: list[str],
    legal_basis: str,
    projection_timeout_s: float = 30.0,
    correlation_id: str | None = None,
    earlier_ledgers: Sequence[psycopg.Connection[Any]] = (),
) -> ErasureResult:
    """:func:`erase_customer` for a customer known by blind index only (the API's
    two-person erasure names the subject, never the clear CPF)."""
    wait_until_projected(ledger, publisher.bootstrap_servers, publisher.topic, timeout_s=projection_timeout_s)
    key_refs = customer_key_refs(ledger, registry, index_refs, earlier_ledgers=earlier_ledgers)
    if not key_refs:
        raise NothingToErase(
            "no live data key for this customer: never seen, or already erased"
        )
    receipt = publisher.publish("CustomerDataErased", {
        "subject_ref": index_refs[0], "key_refs": key_refs, "legal_basis": legal_basis,
    }, correlation_id=correlation_id)
    destroyed = sealer.vault.destroy(key_refs, legal_basis)
    return ErasureResult(index_refs[0], key_refs, destroyed, receipt)
