"""The proof-of-service bundle over the API: refused while no record is checkpointed
(nothing recorded), then a zip that verifies offline with keys pinned from the deployment
(never the bundle's), its download on the ledger as a BUNDLE_DOWNLOAD access; a second
download right after the first works although the first's access record is not
checkpointed (it is listed as pending)."""

from __future__ import annotations

import json

import psycopg
from api_world import RunningApi

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import load_log_key
from protocolo.evidence.bundle import BundleTrust, Expected, verify_bundle
from protocolo.evidence.bundle_zip import read_zip

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
        api.settle()  # the first download's AccessRecorded is journalled, not checkpointed
        again = c.get(f"/v1/contacts/{number}/proof", params={"purpose": PURPOSE})
    assert again.status_code == 200, again.text
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert f'filename="{number}.zip"' in got.headers["content-disposition"]
    pinned = BundleTrust(vkeys=tuple(key.vkey(o) for o in key_origins(api)))
    report = verify_bundle(got.content, pinned, Expected(number))
    assert report.ok, report.reasons
    second = verify_bundle(again.content, pinned, Expected(number))
    assert second.ok, second.reasons
    api.settle()
    rows = api.query("SELECT actor, action, protocol_number, target, purpose FROM access_log"
                     " WHERE action = 'BUNDLE_DOWNLOAD'")
    assert rows == [("analyst", "BUNDLE_DOWNLOAD", number, f"{number}.zip", PURPOSE)] * 2
    manifest = json.loads(dict(read_zip(again.content))["manifest.json"])
    access = api.query("SELECT kafka_partition, kafka_offset FROM journal WHERE protocol_number = %s"
                       " AND event_type = 'AccessRecorded'", number)
    assert len(access) == 2  # one per download; the first was journalled before the second
    assert min(access) in {(p["partition"], p["offset"]) for p in manifest["pending"]}


def key_origins(api: RunningApi) -> list[str]:
    with psycopg.connect(api.database_url) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT origin FROM checkpoints WHERE topic = %s", (api.topic,))]
