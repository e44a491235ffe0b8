"""One contact through every event type of the contract, end to end.

Published with ``LedgerPublisher`` on the real broker, projected into the real PostgreSQL,
then read back the ways users read it: ``protocolo history`` (by protocol, CPF and customer
code) and the views. Times are chosen so that every derived value is known in advance:
the contact opened 200 days ago, its telecom recording (180 days) was deleted after its
retention deadline, a legal hold came and went in between.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from helpers_flow import (
    CPF,
    CPF_DIGITS,
    CPF_MASKED,
    Cli,
    contact_opened,
    now_s,
    project,
    recording_captured,
    start_runtime,
)
from psycopg.rows import dict_row

from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

CODE = "C-FLOW-0001"
NAME = "Ana Beatriz Souza"


@pytest.mark.tansu_lane
@pytest.mark.kafka_client_lane
def test_every_event_type_reaches_history_and_views(settings, monkeypatch, capsys):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url, block_size=5) as issuer:
        p = issuer.issue()
    t0 = now_s() - timedelta(days=200)
    rec = "rec-flow-1"
    captured = recording_captured(rec, p)
    req_a, req_b, req_cpf = (str(uuid.uuid4()) for _ in range(3))
    approval = str(uuid.uuid4())
    sealer = rt.sealer()
    cpf_index = sealer.index.cpf(CPF)
    code_index = sealer.index.customer_code(CODE)
    customer = {"cpf": CPF, "customer_code": CODE, "name": NAME}

    def at(**delta: float) -> datetime:
        return t0 + timedelta(**delta)

    def on_p(event_type: str, fields: dict, when: datetime) -> Event:
        return Event(event_type, fields, protocol_number=p, occurred_at=when)

    events = [
        on_p("ContactOpened", contact_opened(customer), at()),
        on_p("DisclosureMade", {"kind": "RECORDING_NOTICE", "medium": "IVR_PROMPT"}, at(seconds=3)),
        on_p("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"}, at(seconds=8)),
        on_p("ContactClosed", {"outcome": "RESOLVED", "summary": "refund confirmed"}, at(minutes=4)),
        on_p("RecordingCaptured", captured, at(minutes=4, seconds=2)),
        on_p("DisclosureMade", {"kind": "PROTOCOL_CONFIRMATION", "medium": "SMS"}, at(minutes=10)),
        on_p("NoteAdded", {"agent_id": "agent-007", "agent_name": "Carla Lima",
                           "text": "refund of R$ 30 promised"}, at(hours=1)),
        on_p("RetrievalRequested", {"request_id": req_a, "kind": "RECORDING", "requested_via": "APP",
                                    "delivery_channel": "EMAIL"}, at(days=2)),
        on_p("RetrievalLocated", {"request_id": req_a, "protocol_numbers": [p],
                                  "recording_ids": [rec]}, at(days=3)),
        on_p("RetrievalFulfilled", {"request_id": req_a, "recording_id": rec,
                                    "delivered_sha256": captured["sha256"],
                                    "delivered_via": "EMAIL"}, at(days=5)),
        on_p("RetrievalRequested", {"request_id": req_b, "kind": "RECORDING", "requested_via": "PHONE",
                                    "delivery_channel": "APP"}, at(days=6)),
        on_p("RetrievalRejected", {"request_id": req_b, "reason": "IDENTITY_NOT_VERIFIED",
                                   "detail": "could not confirm the holder"}, at(days=7)),
        on_p("LegalHoldPlaced", {"hold_id": "hold-flow-1", "case_reference": "Procon-123456",
                                 "placed_by": "legal@company"}, at(days=10)),
        # The customer lost the number: a request by CPF, keyed by its own id, located later.
        Event("RetrievalRequested", {
            "request_id": req_cpf, "kind": "RECORDING", "requested_via": "WEB_FORM",
            "delivery_channel": "EMAIL", "customer": {"cpf": CPF, "name": NAME},
            "window_from": at(days=-1), "window_to": at(days=1),
        }, occurred_at=at(days=20)),
        Event("RetrievalLocated", {"request_id": req_cpf, "protocol_numbers": [p],
                                   "recording_ids": [rec]}, occurred_at=at(days=21)),
        on_p("LegalHoldReleased", {"hold_id": "hold-flow-1", "released_by": "legal@company",
                                   "reason": "case closed"}, at(days=40)),
        on_p("RecordingDeleted", {"recording_id": rec, "sha256": captured["sha256"],
                                  "reason": "RETENTION_EXPIRED", "authorised_by": "retention job"},
             at(days=190)),
        Event("CustomerDataErased", {"subject_ref": cpf_index, "key_refs": [cpf_index],
                                     "legal_basis": "LGPD art. 18 VI"}, occurred_at=at(days=195)),
        # The access audit and a two-person approval (docs/api.md), on the contact's key.
        on_p("AccessRecorded", {"access_id": str(uuid.uuid4()), "actor": "ana", "role": "SUPERVISOR",
                                "action": "UNMASK", "subject_ref": cpf_index, "target": None,
                                "purpose": "Procon-123456", "source_address": "10.0.0.7"}, at(days=11)),
        on_p("ApprovalRequested", {"approval_id": approval, "action": "EARLY_DELETION", "requested_by": "ana",
                                   "requester_role": "SUPERVISOR", "recording_id": rec, "subject_ref": None,
                                   "reason": "court order"}, at(days=12)),
        on_p("ApprovalDenied", {"approval_id": approval, "denied_by": "bruno", "approver_role": "COMPLIANCE",
                                "reason": "hold in force"}, at(days=13)),
        on_p("ApprovalGranted", {"approval_id": approval, "approved_by": "bruno", "approver_role": "COMPLIANCE",
                                 "comment": "later decision: the denial stands"}, at(days=14)),
    ]
    assert len({e.event_type for e in events}) == 17

    with rt.publisher("flow-test") as publisher:
        receipts = publisher.publish_many(events)
    stats = project(rt)
    assert (stats.journaled, stats.quarantined) == (len(events), 0)

    # Wire contract: key = protocol number, else the event's own id.
    by_id = {r.event_id: (e, r) for e, r in zip(events, receipts, strict=True)}
    for e, r in by_id.values():
        expected_key = p if e.protocol_number else (
            cpf_index if e.event_type == "CustomerDataErased" else req_cpf)
        assert r.key == expected_key, e.event_type
    assert len({r.partition for r in receipts if r.key == p}) == 1

    # --- history --protocol: every event of the contact, with its Kafka position, in time order
    cli = Cli(settings, monkeypatch, capsys)
    result = cli("history", "--protocol", p, "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["query"] == {"protocol_number": p}
    [contact] = doc["interactions"]
    assert contact["protocol_number"] == p
    linked = [(e, r) for e, r in by_id.values() if r.key in (p, req_cpf)]
    linked.sort(key=lambda er: er[0].occurred_at)
    got = contact["events"]
    assert [g["event_id"] for g in got] == [r.event_id for _, r in linked]
    for g, (e, r) in zip(got, linked, strict=True):
        assert (g["event_type"], g["partition"], g["offset"]) == (e.event_type, r.partition, r.offset)
        assert datetime.fromisoformat(g["occurred_at"]) == e.occurred_at
        assert g["duplicate"] is False
        assert g["payload"]["meta"]["event_id"] == r.event_id
    assert contact["customer"] == {"identified": True, "erased": False, "name": NAME, "customer_code": CODE,
                                   "cpf_masked": CPF_MASKED}
    assert contact["compliance"] == {"protocol_disclosed_at_start": True,
                                     "recording_notice_at_start": True,
                                     "protocol_confirmed_in_time": True}
    assert [r["recording_id"] for r in contact["recordings"]] == [rec]
    assert contact["recordings"][0]["status"] == "deleted"
    assert sorted(r["request_id"] for r in contact["retrieval_requests"]) == sorted([req_a, req_b, req_cpf])
    assert CPF not in result.out and CPF_DIGITS not in result.out

    # --- the views
    with rt.connect(row_factory=dict_row) as conn:
        i = conn.execute("SELECT * FROM interactions WHERE protocol_number = %s", (p,)).fetchone()
        assert i["opened_at"] == t0
        assert i["closed_at"] == at(minutes=4)
        assert i["outcome"] == "RESOLVED" and i["summary"] == "refund confirmed"
        assert i["recording_notice_at"] == at(seconds=3)
        assert i["protocol_disclosed_at"] == at(seconds=8)
        assert i["protocol_confirmed_at"] == at(minutes=10)
        assert i["note_count"] == 1
        assert (i["channel"], i["direction"], i["service_type"]) == ("PHONE", "INBOUND", "MOBILE")
        assert i["policy_profile"] == "br-anatel-rgc@1"
        assert (i["cpf_index"], i["customer_code_index"]) == (cpf_index, code_index)
        key_subject = conn.execute("SELECT subject_ref FROM personal_data_keys WHERE key_ref = %s",
                                   (i["personal_data_key"],)).fetchone()
        assert key_subject["subject_ref"] == cpf_index
        assert conn.execute("SELECT count(*) AS n FROM interactions").fetchone()["n"] == 1

        r = conn.execute("SELECT * FROM recordings WHERE recording_id = %s", (rec,)).fetchone()
        assert r["retain_until"] == t0 + timedelta(days=180)
        assert (r["status"], r["deleted_at"]) == ("deleted", at(days=190))
        assert r["retention_profile"] == "br-anatel-rgc@1"
        d = conn.execute("SELECT * FROM recording_deletion_status WHERE recording_id = %s", (rec,)).fetchone()
        assert d["reason"] == "RETENTION_EXPIRED"
        assert d["digest_matches_capture"] is True
        assert d["before_retention_end"] is False
        assert d["under_legal_hold"] is False

        reqs = {str(x["request_id"]): x for x in conn.execute("SELECT * FROM retrieval_request_status")}
        assert set(reqs) == {req_a, req_b, req_cpf}
        a, b, c = reqs[req_a], reqs[req_b], reqs[req_cpf]
        assert a["requested_at"] == at(days=2)
        assert a["due_at"] == a["requested_at"] + timedelta(days=10)
        assert a["policy_profile"] == "br-anatel-rgc@1"
        assert (a["status"], a["located_protocols"], a["fulfilled_at"]) == ("fulfilled", [p], at(days=5))
        assert a["delivered_sha256"] == captured["sha256"] and a["fulfilled_in_time"] is True
        assert (b["status"], b["rejection_reason"], b["rejected_at"]) == (
            "rejected", "IDENTITY_NOT_VERIFIED", at(days=7))
        assert b["overdue"] is False
        assert c["protocol_number"] is None and c["cpf_index"] == cpf_index
        assert (c["status"], c["located_protocols"]) == ("located", [p])
        assert c["due_at"] == at(days=30)
        assert c["policy_profile"] == "br-sac-2022@1"  # the deployment default: no contact named
        assert c["window_from"] == at(days=-1) and c["window_to"] == at(days=1)
        assert c["overdue"] is True  # located 180 days ago, never delivered

        h = conn.execute("SELECT * FROM legal_holds").fetchone()
        assert (h["hold_id"], h["protocol_number"], h["placed_at"]) == ("hold-flow-1", p, at(days=10))
        assert (h["released_at"], h["released_by"]) == (at(days=40), "legal@company")

        idx = conn.execute("SELECT index_kind, index_value, protocol_number FROM customer_index"
                           " ORDER BY index_kind").fetchall()
        assert [tuple(x.values()) for x in idx] == [("cpf", cpf_index, p), ("customer_code", code_index, p)]
        assert all(CPF_DIGITS not in x["index_value"] and CODE not in x["index_value"] for x in idx)

        e = conn.execute("SELECT * FROM erasures").fetchone()
        assert (e["subject_ref"], e["key_refs"], e["erased_at"]) == (cpf_index, [cpf_index], at(days=195))

    # --- history without the protocol number: by CPF, by customer code
    by_cpf = cli("history", "--cpf", CPF, "--json")
    assert by_cpf.code == 0, by_cpf.err
    doc = by_cpf.json()
    assert doc["query"] == {"cpf": CPF_MASKED}
    assert [x["protocol_number"] for x in doc["interactions"]] == [p]
    assert [(x["request_id"], x["protocol_number"]) for x in doc["retrieval_requests"]] == [(req_cpf, None)]
    assert CPF not in by_cpf.out and CPF_DIGITS not in by_cpf.out

    by_code = cli("history", "--customer", CODE, "--json")
    assert by_code.code == 0, by_code.err
    assert [x["protocol_number"] for x in by_code.json()["interactions"]] == [p]
    assert cli("history", "--customer", "C-NOBODY").code == 1

    # --- the access audit and the approval: the first decision stands
    with rt.connect() as conn:
        assert conn.execute("SELECT actor, action, protocol_number, subject_ref FROM access_log").fetchall() == [
            ("ana", "UNMASK", p, cpf_index)]
        assert conn.execute("SELECT decision, decided_by, requested_by, recording_id FROM approvals").fetchall() == [
            ("DENIED", "bruno", "ana", rec)]
