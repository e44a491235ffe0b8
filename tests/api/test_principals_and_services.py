"""Who acted is the authenticated user, never a body field; a service publishes only the
facts a contact-centre system reports; and the two-person rule holds on the log even for
a deletion published outside the API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from api_world import CPF_A, RunningApi, sha256

#: Event types a service token must not publish, with bodies an attacker would send.
FORBIDDEN: list[tuple[str, dict[str, Any]]] = [
    ("RecordingDeleted", {"recording_id": "{rec}", "sha256": "{sha}", "reason": "COURT_ORDER",
                          "authorised_by": "approval 6f1c7a55-0000-4000-8000-000000000000: asked by secsup, "
                                           "granted by seccomp1"}),
    ("LegalHoldReleased", {"hold_id": "hold-x", "released_by": "supervisor", "reason": "done"}),
    ("LegalHoldPlaced", {"hold_id": "hold-y", "case_reference": "c", "placed_by": "supervisor"}),
    ("ApprovalGranted", {"approval_id": str(uuid.uuid4()), "approved_by": "compliance", "approver_role": "COMPLIANCE",
                         "comment": None}),
    ("ApprovalRequested", {"approval_id": str(uuid.uuid4()), "action": "EARLY_DELETION", "requested_by": "x",
                           "requester_role": "SUPERVISOR", "recording_id": "{rec}", "subject_ref": None,
                           "reason": "x"}),
    ("ApprovalDenied", {"approval_id": str(uuid.uuid4()), "denied_by": "x", "approver_role": "COMPLIANCE",
                        "reason": "x"}),
    ("AccessRecorded", {"access_id": str(uuid.uuid4()), "actor": "someone", "role": "ANALYST", "action": "UNMASK",
                        "subject_ref": None, "target": None, "purpose": "x", "source_address": None}),
    ("RetrievalFulfilled", {"request_id": str(uuid.uuid4()), "recording_id": None, "delivered_sha256": "{sha}",
                            "delivered_via": "EMAIL"}),
    ("RetrievalRejected", {"request_id": str(uuid.uuid4()), "reason": "NOT_FOUND", "detail": None}),
    ("RetrievalLocated", {"request_id": str(uuid.uuid4()), "protocol_numbers": [], "recording_ids": []}),
    ("CustomerDataErased", {"subject_ref": "x", "key_refs": [], "legal_basis": "x"}),
]


def _fill(fields: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    return {k: v.format(**values) if isinstance(v, str) else v for k, v in fields.items()}


@pytest.mark.parametrize(("event_type", "fields"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_a_service_cannot_publish_decisions_deletions_holds_or_audit(
        api: RunningApi, event_type: str, fields: dict[str, Any]) -> None:
    rec = api.recordings["a1"]
    start = api.log_end()
    with api.client("service") as c:
        r = c.post("/v1/events", json={"event_type": event_type, "protocol_number": api.protocols["a1"],
                                       "fields": _fill(fields, {"rec": rec, "sha": sha256(rec)})})
    assert r.status_code == 422, r.text
    assert r.json()["rule"] == "service-allow-list" and r.json()["field"] == "event_type"
    assert api.log_end() == start


def test_a_service_still_publishes_what_a_contact_centre_reports(api: RunningApi) -> None:
    with api.client("service") as c:
        r = c.post("/v1/events", json={"event_type": "NoteAdded", "protocol_number": api.protocols["a2"],
                                       "fields": {"agent_id": "agent-007", "agent_name": None, "text": "called back"}})
    assert r.status_code == 201, r.text
    # the record names the service user that published it, not just the API
    [(producer,)] = api.query("SELECT payload->'meta'->>'producer' FROM journal WHERE event_id = %s::uuid",
                              r.json()["receipts"][0]["event_id"])
    assert producer == "protocolo-api/service"


@pytest.mark.parametrize(("who", "path", "body"), [
    ("supervisor", "/v1/contacts/{a1}/holds", {"case_reference": "c-1", "placed_by": "compliance"}),
    ("supervisor", "/v1/contacts/{a1}/holds/hold-x/release", {"reason": "r", "released_by": "compliance"}),
    ("supervisor", "/v1/approvals", {"action": "EARLY_DELETION", "protocol_number": "{a1}", "recording_id": "{rec}",
                                     "reason": "r", "requested_by": "compliance"}),
    ("compliance", "/v1/approvals/{approval}/grant", {"approved_by": "compliance-2"}),
    ("compliance", "/v1/approvals/{approval}/deny", {"reason": "r", "denied_by": "compliance-2"}),
    ("analyst", "/v1/requests", {"protocol_number": "{a1}", "requested_by": "customer"}),
], ids=["placed_by", "released_by", "requested_by", "approved_by", "denied_by", "request requested_by"])
def test_a_body_naming_who_acted_is_refused(api: RunningApi, who: str, path: str, body: dict[str, Any]) -> None:
    values = {**api.protocols, "rec": api.recordings["a1"], "approval": str(uuid.uuid4())}
    start = api.log_end()
    with api.client(who) as c:
        r = c.post(path.format(**values), json=_fill(body, values))
    assert r.status_code == 422, r.text
    assert r.json()["rule"] == "extra_forbidden"
    assert api.log_end() == start


def test_an_early_deletion_without_a_two_person_approval_is_a_rule_break_whoever_published_it(
        api: RunningApi) -> None:
    """A producer outside the API (LedgerPublisher itself) deletes a recording before its
    retention end naming an approval that does not exist: the views flag it, the contact
    search finds it under the rule, the CLI history says so; an approved one is not flagged."""
    number = api.protocols["b1"]
    rogue, approved = f"rec-rogue-{uuid.uuid4().hex[:6]}", f"rec-ok-{uuid.uuid4().hex[:6]}"
    publisher = api.runtime.publisher("rogue-service")
    try:
        for rec in (rogue, approved):
            publisher.publish("RecordingCaptured", {
                "recording_id": rec, "media_uri": f"s3://r/{rec}", "sha256": sha256(rec), "duration_ms": 1,
                "retention_profile": "br-anatel-rgc", "retention_days": 180}, protocol_number=number)
        publisher.publish("RecordingDeleted", {
            "recording_id": rogue, "sha256": sha256(rogue), "reason": "COURT_ORDER",
            "authorised_by": f"approval {uuid.uuid4()}: asked by secsup, granted by seccomp1"},
            protocol_number=number)
    finally:
        publisher.close()
    api.settle()
    with api.client("supervisor") as c:
        asked = c.post("/v1/approvals", json={"action": "EARLY_DELETION", "protocol_number": number,
                                              "recording_id": approved, "reason": "court order 0805"})
    with api.client("compliance") as c:
        assert c.post(f"/v1/approvals/{asked.json()['approval_id']}/grant", json={}).status_code == 200
    flags = dict(api.query("SELECT recording_id, early_without_approval FROM recording_deletion_status"
                           " WHERE recording_id IN (%s, %s)", rogue, approved))
    assert flags == {rogue: True, approved: False}
    with api.client("compliance") as c:
        found = c.get("/v1/contacts", params={"rule_broken": "early-deletion-without-approval"}).json()
    assert number in {x["protocol_number"] for x in found["items"]}
    assert api.protocols["a2"] not in {x["protocol_number"] for x in found["items"]}


def test_a_customer_request_carries_only_their_own_cpf(api: RunningApi) -> None:
    """Customer A files with their CPF and customer B's code and name: the request records
    A's CPF and nothing of B (a staff request keeps what staff typed)."""
    with api.client("customer") as c:
        r = c.post("/v1/requests", json={"cpf": CPF_A, "customer_code": "C-b1", "name": "Cliente b1",
                                         "window_from": "2026-01-01T00:00:00Z", "window_to": "2026-12-31T00:00:00Z"})
    assert r.status_code == 201, r.text
    index = api.runtime.sealer().index
    [(cpf_index, code_index)] = api.query("SELECT cpf_index, customer_code_index FROM retrieval_requests"
                                          " WHERE request_id = %s::uuid", r.json()["request_id"])
    assert cpf_index == index.cpf(CPF_A)
    assert code_index is None and code_index != index.customer_code("C-b1")
    with api.client("analyst") as c:
        staff = c.post("/v1/requests", json={"cpf": CPF_A, "customer_code": "C-a1",
                                             "window_from": "2026-01-01T00:00:00Z",
                                             "window_to": "2026-12-31T00:00:00Z"})
    assert api.query("SELECT customer_code_index FROM retrieval_requests WHERE request_id = %s::uuid",
                     staff.json()["request_id"]) == [(index.customer_code("C-a1"),)]


def test_compliance_judges_recordings_by_digest_never_reaching_their_media(api: RunningApi) -> None:
    number, rec = api.protocols["a1"], api.recordings["a1"]
    with api.client("compliance") as c:
        timeline = c.get(f"/v1/contacts/{number}")
        media = c.get(f"/v1/contacts/{number}/recordings/{rec}", params={"purpose": "audit check"})
    assert timeline.status_code == 200 and media.status_code == 403
    assert "media_uri" not in timeline.text and f"{rec}.opus" not in timeline.text
    assert sha256(rec) in {r["sha256"] for r in timeline.json()["recordings"]}
    with api.client("analyst") as c:  # the dispute team hands recordings over: audited, by the route
        assert c.get(f"/v1/contacts/{number}/recordings/{rec}", params={"purpose": "customer asked"}).json()[
            "media_uri"].endswith(f"{rec}.opus")
