"""Erasing a customer's personal data without touching any event (crypto-shredding).

``erase_customer`` finds every data key the customer's personal data was sealed under
(the key named by their CPF's blind index, the one named by their customer code's, and
any other that a contact of theirs used), publishes ``CustomerDataErased`` as the evidence
of the erasure, and only then destroys the keys. Publishing first means a crash between
the two steps leaves an erasure on record that is simply run again; the reverse would
leave keys destroyed with no record of why. Running it twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from protocolo.personal_data import PersonalDataSealer
from protocolo.schemas.errors import EventRejected

from .publisher import LedgerPublisher, Receipt


class NothingToErase(LookupError):
    pass


@dataclass(frozen=True)
class ErasureResult:
    subject_ref: str
    key_refs: list[str]
    destroyed: int
    receipt: Receipt


def customer_key_refs(conn: psycopg.Connection, index_refs: list[str]) -> list[str]:
    """The live data keys of a customer: those of the subjects named by these blind
    indexes, of the other index (CPF or code) of any contact found by them, and any key a
    contact of theirs was sealed under."""
    rows = conn.execute(
        "WITH contacts AS ("
        "  SELECT i.personal_data_key, i.cpf_index, i.customer_code_index"
        "    FROM customer_index c JOIN interactions i USING (protocol_number)"
        "   WHERE c.index_value = ANY(%(refs)s)),"
        " subjects AS ("
        "  SELECT unnest(%(refs)s::text[]) AS s UNION SELECT cpf_index FROM contacts"
        "  UNION SELECT customer_code_index FROM contacts)"
        " SELECT key_ref FROM personal_data_keys"
        "  WHERE wrapped_key IS NOT NULL"
        "    AND (subject_ref IN (SELECT s FROM subjects)"
        "         OR key_ref IN (SELECT personal_data_key FROM contacts))"
        "  ORDER BY key_ref",
        {"refs": index_refs},
    ).fetchall()
    return [r[0] for r in rows]


def erase_customer(
    conn: psycopg.Connection,
    publisher: LedgerPublisher,
    sealer: PersonalDataSealer,
    *,
    cpf: str | None = None,
    customer_code: str | None = None,
    legal_basis: str,
) -> ErasureResult:
    if cpf is None and customer_code is None:
        raise EventRejected("customer", "required", "name the customer by cpf or customer_code")
    if not legal_basis.strip():
        raise EventRejected("legal_basis", "required", "say on what legal basis the data is erased")
    index_refs = [r for r in (
        sealer.index.cpf(cpf) if cpf is not None else None,
        sealer.index.customer_code(customer_code) if customer_code is not None else None,
    ) if r]
    key_refs = customer_key_refs(conn, index_refs)
    conn.rollback()
    if not key_refs:
        raise NothingToErase(
            "no live data key for this customer in the projected ledger: never seen, already "
            "erased, or not projected yet (run `protocolo project --until-caught-up` and retry)"
        )
    receipt = publisher.publish("CustomerDataErased", {
        "subject_ref": index_refs[0], "key_refs": key_refs, "legal_basis": legal_basis,
    })
    destroyed = sealer.vault.destroy(key_refs, legal_basis)
    return ErasureResult(index_refs[0], key_refs, destroyed, receipt)
