"""The API's contact answers are checked against the signed log when read: a ``verified``
object in the timeline and in each search result, and the verified value shown when a view
was altered in the database."""

from __future__ import annotations

import psycopg
from api_world import RunningApi

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import load_log_key


def checkpoint(api: RunningApi) -> None:
    api.settle()
    key = load_log_key(api.runtime.settings, "dev")  # the dev key file: what the API pins
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        checkpoint_partitions(conn, key, api.topic, "dev")


def test_contact_and_search_answers_carry_their_verification(api: RunningApi) -> None:
    number = api.protocols["b1"]
    checkpoint(api)
    with api.client("analyst") as c:
        got = c.get(f"/v1/contacts/{number}").json()
        found = c.get("/v1/contacts", params={"protocol_number": number}).json()
    verified = got["verified"]
    assert verified["status"] == "verified", verified
    assert verified["summary"].startswith("verified: checkpoint protocolo/dev/")
    assert {(e["partition"], e["offset"]) for e in verified["events_verified"]} == {
        (e["partition"], e["offset"]) for e in got["events"]}
    [item] = found["items"]
    assert item["verified"]["status"] == "verified"


def test_an_altered_view_is_answered_with_the_verified_value_and_named(api: RunningApi) -> None:
    number = api.protocols["b1"]
    checkpoint(api)
    api.query("UPDATE interactions SET outcome = 'ABANDONED' WHERE protocol_number = %s RETURNING 1", number)
    try:
        with api.client("analyst") as c:
            got = c.get(f"/v1/contacts/{number}").json()
            found = c.get("/v1/contacts", params={"protocol_number": number}).json()
    finally:
        api.query("UPDATE interactions SET outcome = 'RESOLVED' WHERE protocol_number = %s RETURNING 1", number)
    assert got["interaction"]["outcome"] == "RESOLVED"
    assert got["verified"]["status"] == "MISMATCH"
    # each read that showed verified values in place of altered ones is on the ledger
    api.settle()
    recorded = api.query("SELECT actor, action, target FROM access_log WHERE protocol_number = %s"
                         " AND action = 'VERIFIED_READ_MISMATCH'", number)
    assert recorded == [("analyst", "VERIFIED_READ_MISMATCH", "verification MISMATCH: interactions.outcome")] * 2
    assert {"table": "interactions", "key": f"protocol_number={number}", "column": "outcome",
            "view": "ABANDONED", "verified": "RESOLVED"} in got["verified"]["differences"]
    [item] = found["items"]
    assert item["outcome"] == "RESOLVED" and item["verified"]["status"] == "MISMATCH"


def test_an_audited_read_of_an_altered_contact_records_the_finding(api: RunningApi) -> None:
    number = api.protocols["b1"]
    checkpoint(api)
    api.query("UPDATE interactions SET outcome = 'ABANDONED' WHERE protocol_number = %s RETURNING 1", number)
    try:
        with api.client("supervisor") as c:
            got = c.get(f"/v1/contacts/{number}", params={"unmask": "true", "purpose": "Procon 2026-55"})
    finally:
        api.query("UPDATE interactions SET outcome = 'RESOLVED' WHERE protocol_number = %s RETURNING 1", number)
    assert got.status_code == 200, got.text
    assert got.json()["verified"]["status"] == "MISMATCH"
    api.settle()
    rows = api.query("SELECT action, target FROM access_log WHERE protocol_number = %s AND purpose = %s",
                     number, "Procon 2026-55")
    assert rows == [("UNMASK", "verification MISMATCH: interactions.outcome")]
