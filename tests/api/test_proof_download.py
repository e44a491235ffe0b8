"""The proof-of-service bundle over the API: refused while a record is not checkpointed
(nothing recorded), then a zip that verifies offline, its download on the ledger as a
BUNDLE_DOWNLOAD access."""

from __future__ import annotations

import psycopg
from api_world import RunningApi

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import load_log_key
from protocolo.evidence.bundle import BundleTrust, verify_bundle

PURPOSE = "Procon complaint 2026-207"


def test_a_contact_proof_is_a_bundle_that_verifies_and_its_download_is_audited(api: RunningApi) -> None:
    number = api.protocols["a1"]
    api.settle()
    with api.client("analyst") as c:
        assert c.get(f"/v1/contacts/{number}/proof").status_code == 422  # no purpose: refused first
        start = api.log_end()
        early = c.get(f"/v1/contacts/{number}/proof", params={"purpose": PURPOSE})
        assert early.status_code == 409 and "checkpoint" in early.text, early.text
        assert api.log_end() == start, "a refused download records nothing"

        key = load_log_key(api.runtime.settings, "dev")
        with psycopg.connect(api.database_url, autocommit=True) as conn:
            assert checkpoint_partitions(conn, key, api.topic, "dev")
        got = c.get(f"/v1/contacts/{number}/proof", params={"purpose": PURPOSE})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert f'filename="{number}.zip"' in got.headers["content-disposition"]
    pinned = BundleTrust(vkeys=tuple(key.vkey(o) for o in key_origins(api)))
    report = verify_bundle(got.content, pinned)
    assert report.ok, report.reasons
    api.settle()
    rows = api.query("SELECT actor, action, protocol_number, target, purpose FROM access_log"
                     " WHERE action = 'BUNDLE_DOWNLOAD'")
    assert rows == [("analyst", "BUNDLE_DOWNLOAD", number, f"{number}.zip", PURPOSE)]


def key_origins(api: RunningApi) -> list[str]:
    with psycopg.connect(api.database_url) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT origin FROM checkpoints WHERE topic = %s", (api.topic,))]
