"""Two-person approval: one user asks, a different approver decides; each step is an
event on the ledger; nobody approves their own request."""

from __future__ import annotations

from api_world import CPF_B, RunningApi


def ask_deletion(api: RunningApi, who: str) -> str:
    with api.client(who) as c:
        r = c.post("/v1/approvals", json={"action": "EARLY_DELETION", "protocol_number": api.protocols["a1"],
                                          "recording_id": api.recordings["a1"], "reason": "court order 0801"})
    assert r.status_code == 201, r.text
    return str(r.json()["approval_id"])


def test_self_approval_is_refused_and_publishes_nothing(api: RunningApi) -> None:
    approval = ask_deletion(api, "compliance")  # compliance may both ask and approve...
    start = api.log_end()
    with api.client("compliance") as c:  # ... but never their own request
        r = c.post(f"/v1/approvals/{approval}/grant", json={})
    assert r.status_code == 403 and "self-approval" in r.json()["detail"]
    assert api.log_end() == start
    with api.client("compliance") as c:
        assert c.post(f"/v1/approvals/{approval}/deny", json={"reason": "mine"}).status_code == 403
    assert api.log_end() == start
    assert api.query("SELECT decision FROM approvals WHERE approval_id = %s::uuid", approval) == [(None,)]


def test_early_deletion_happens_only_after_a_second_person_grants(api: RunningApi) -> None:
    approval = ask_deletion(api, "supervisor")
    recording = api.recordings["a1"]
    status = "SELECT status FROM recordings WHERE recording_id = %s"
    assert api.query(status, recording) == [("retained",)]  # asking deletes nothing
    with api.client("supervisor") as c:  # the requester's role may not decide at all
        assert c.post(f"/v1/approvals/{approval}/grant", json={}).status_code == 403
    with api.client("compliance-2") as c:
        inbox = c.get("/v1/approvals").json()
        assert approval in {a["approval_id"] for a in inbox}
        granted = c.post(f"/v1/approvals/{approval}/grant", json={"comment": "ok"})
    assert granted.status_code == 200, granted.text
    assert [r["event_type"] for r in granted.json()["receipts"]] == ["ApprovalGranted", "RecordingDeleted"]
    # read-your-writes: the view shows it as soon as the call returns
    assert api.query(status, recording) == [("deleted",)]
    assert api.query("SELECT decision, decided_by, requested_by FROM approvals WHERE approval_id = %s::uuid",
                     approval) == [("GRANTED", "compliance-2", "supervisor")]
    [(authorised,)] = api.query("SELECT authorised_by FROM recording_deletions WHERE recording_id = %s", recording)
    assert "supervisor" in authorised and "compliance-2" in authorised
    with api.client("compliance") as c:  # decided once
        assert c.post(f"/v1/approvals/{approval}/grant", json={}).status_code == 409


def test_a_denied_request_changes_nothing_but_the_record(api: RunningApi) -> None:
    with api.client("supervisor") as c:
        r = c.post("/v1/approvals", json={"action": "EARLY_DELETION", "protocol_number": api.protocols["b1"],
                                          "recording_id": api.recordings["b1"], "reason": "tidy up"})
    approval = r.json()["approval_id"]
    with api.client("compliance") as c:
        denied = c.post(f"/v1/approvals/{approval}/deny", json={"reason": "retention still running"})
    assert [x["event_type"] for x in denied.json()["receipts"]] == ["ApprovalDenied"]
    assert api.query("SELECT status FROM recordings WHERE recording_id = %s", api.recordings["b1"]) == [("retained",)]
    assert api.query("SELECT decision FROM approvals WHERE approval_id = %s::uuid", approval) == [("DENIED",)]


def test_customer_erasure_with_two_people(api: RunningApi) -> None:
    with api.client("compliance") as c:
        r = c.post("/v1/approvals", json={"action": "CUSTOMER_ERASURE", "cpf": CPF_B, "reason": "LGPD art. 18, VI"})
    assert r.status_code == 201, r.text
    approval = r.json()["approval_id"]
    with api.client("supervisor") as c:  # before: readable
        before = c.get(f"/v1/contacts/{api.protocols['b1']}", params={"unmask": True, "purpose": "check"})
    assert before.json()["customer"]["cpf"] == "12345678909"
    with api.client("compliance-2") as c:
        granted = c.post(f"/v1/approvals/{approval}/grant", json={})
    assert granted.status_code == 200, granted.text
    assert [x["event_type"] for x in granted.json()["receipts"]] == ["ApprovalGranted", "CustomerDataErased"]
    with api.client("supervisor") as c:
        after = c.get(f"/v1/contacts/{api.protocols['b1']}", params={"unmask": True, "purpose": "check"})
    assert after.json()["customer"] == {"erased": True}
