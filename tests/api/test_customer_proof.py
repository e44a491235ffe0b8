"""A customer's bundle over the API: the customer downloads their own (every contact, every
partition) and staff download it by CPF with a purpose; each verifies offline with keys
pinned from the deployment (never the bundle's), names the customer by blind index (never
the CPF), holds exactly the customer's contacts, and is on the ledger as a BUNDLE_DOWNLOAD."""

from __future__ import annotations

import psycopg
from api_world import CPF_A, RunningApi

from protocolo.attestation.bundle_writer import deployment_trust
from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import load_log_key
from protocolo.evidence.bundle import Expected, verify_bundle

PURPOSE = "Procon complaint 2026-311"


def test_the_customer_and_staff_get_the_customers_bundle(api: RunningApi) -> None:
    api.settle()
    key = load_log_key(api.runtime.settings, "dev")
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        checkpoint_partitions(conn, key, api.topic, "dev")
    with api.client("customer") as c:
        mine = c.get("/v1/customers/me/proof")
    assert mine.status_code == 200, mine.text
    cpf_index = mine.headers["x-customer-index"]
    trust = deployment_trust(key, "dev", api.topic, range(api.runtime.settings.partitions))
    report = verify_bundle(mine.content, trust, Expected(customer_index=cpf_index))
    assert report.verdict == "VALID", report.reasons
    protocols = {api.protocols["a1"], api.protocols["a2"]}
    assert set(report.subject["protocol_numbers"]) == protocols  # customer A's, not B's
    assert CPF_A not in report.render() and CPF_A.encode() not in mine.content
    with api.client("analyst") as c:
        assert c.get("/v1/customers/proof", params={"cpf": CPF_A}).status_code == 422  # no purpose
        assert c.get("/v1/customers/proof", params={"cpf": "123.456.789-00",
                                                    "purpose": PURPOSE}).status_code == 422
        staff = c.get("/v1/customers/proof", params={"cpf": CPF_A, "purpose": PURPOSE})
    assert staff.status_code == 200, staff.text
    assert staff.headers["x-customer-index"] == cpf_index
    assert verify_bundle(staff.content, trust, Expected(customer_index=cpf_index)).verdict == "VALID"
    api.settle()
    rows = api.query("SELECT actor, action, target, purpose, subject_ref FROM access_log"
                     " WHERE action = 'BUNDLE_DOWNLOAD' AND target = 'customer.zip' ORDER BY accessed_at")
    assert [(r[0], r[4]) for r in rows] == [("customer", cpf_index), ("analyst", cpf_index)]
    assert rows[1][3] == PURPOSE
