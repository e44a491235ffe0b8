"""What staff and customers rely on: search filters, paging and totals; the request queue
by deadline with its countdown and overdue flag; a request's life from filing to
fulfilment; holds; every write readable as soon as it returns (read-your-writes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api_world import CPF_A, RunningApi, sha256


def test_search_filters_paging_and_totals(api: RunningApi) -> None:
    with api.client("analyst") as c:
        everything = c.get("/v1/contacts", params={"page_size": 2, "sort": "protocol_number"}).json()
        second = c.get("/v1/contacts", params={"page_size": 2, "page": 2, "sort": "protocol_number"}).json()
        past_end = c.get("/v1/contacts", params={"page_size": 2, "page": 9}).json()
        recorded_rule = c.get("/v1/contacts", params={"rule_broken": "recording-notice-not-at-start"}).json()
        by_protocol = c.get("/v1/contacts", params={"protocol_number": api.protocols["b1"]}).json()
        none = c.get("/v1/contacts", params={"channel": "CHAT"}).json()
        window = c.get("/v1/contacts", params={"opened_from": "2000-01-01T00:00:00Z",
                                               "opened_to": "2000-01-02T00:00:00Z"}).json()
    assert everything["total"] == second["total"] == past_end["total"] >= 3
    numbers = [r["protocol_number"] for r in everything["items"] + second["items"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert past_end["items"] == []
    # a1 and b1 are recorded and no recording notice was disclosed; a2 is not recorded
    found = {r["protocol_number"] for r in recorded_rule["items"]}
    assert {api.protocols["a1"], api.protocols["b1"]} <= found and api.protocols["a2"] not in found
    assert [r["protocol_number"] for r in by_protocol["items"]] == [api.protocols["b1"]]
    assert none["total"] == 0 and window["total"] == 0


def test_a_request_from_filing_to_fulfilment(api: RunningApi) -> None:
    with api.client("customer") as c:  # the customer's own channel, by CPF and a window
        filed = c.post("/v1/requests", json={
            "cpf": CPF_A, "window_from": "2024-01-01T00:00:00Z", "window_to": "2031-01-01T00:00:00Z",
            "delivery_channel": "APP"})
        assert filed.status_code == 201 and filed.json()["projected"] is True
        request_id = filed.json()["request_id"]
        mine = c.get(f"/v1/requests/{request_id}").json()  # read-your-writes
        assert mine["status"] == "requested" and "cpf_index" not in mine
        assert 9 * 86400 < (datetime.fromisoformat(mine["due_at"]) - datetime.now(UTC)).total_seconds() <= 10 * 86400
    with api.client("analyst") as c:
        assert c.post(f"/v1/requests/{request_id}/locate",
                      json={"protocol_numbers": [api.protocols["a1"]]}).status_code == 200
        assert c.get(f"/v1/requests/{request_id}").json()["status"] == "located"
        timeline = c.get(f"/v1/contacts/{api.protocols['a1']}").json()
        assert request_id in {r["request_id"] for r in timeline["requests"]}
        done = c.post(f"/v1/requests/{request_id}/fulfil", json={
            "delivered_sha256": sha256(api.recordings["a1"]), "recording_id": api.recordings["a1"],
            "delivered_via": "APP"})
        assert done.status_code == 200
        row = c.get(f"/v1/requests/{request_id}").json()
        assert row["status"] == "fulfilled" and row["fulfilled_in_time"] is True
        assert c.post(f"/v1/requests/{request_id}/reject", json={"reason": "NOT_FOUND"}).status_code == 409
    with api.client("other-customer") as c:
        assert c.get(f"/v1/requests/{request_id}").status_code == 404
        assert request_id not in {r["request_id"] for r in c.get("/v1/requests").json()["items"]}


def test_the_queue_is_by_deadline_with_countdown_and_overdue_flag(api: RunningApi) -> None:
    old = (datetime.now(UTC) - timedelta(days=12)).isoformat()
    with api.client("service") as c:  # a request made 12 days ago, published by a service
        r = c.post("/v1/events", json={"event_type": "RetrievalRequested", "protocol_number": api.protocols["b1"],
                                       "occurred_at": old, "fields": {
                                           "request_id": "6f1c1a44-3a43-4f41-9e4b-4d0b8f0c2a11", "kind": "RECORDING",
                                           "customer": None, "window_from": None, "window_to": None,
                                           "requested_via": "PHONE", "delivery_channel": "EMAIL"}})
        assert r.status_code == 201, r.text
    with api.client("analyst") as c:
        assert c.post("/v1/requests", json={"protocol_number": api.protocols["a2"]}).status_code == 201
        queue = c.get("/v1/requests").json()["items"]
    dues = [q["due_at"] for q in queue]
    assert dues == sorted(dues)
    first = queue[0]
    assert first["request_id"] == "6f1c1a44-3a43-4f41-9e4b-4d0b8f0c2a11"
    assert first["overdue"] is True and first["seconds_left"] < 0
    assert all(q["overdue"] is False and q["seconds_left"] > 0 for q in queue[1:])
    with api.client() as c:
        metrics = c.get("/metrics").text
    assert "protocolo_overdue_requests 1" in metrics


def test_holds_place_and_release(api: RunningApi) -> None:
    path = f"/v1/contacts/{api.protocols['a2']}"
    with api.client("supervisor") as c:
        placed = c.post(f"{path}/holds", json={"case_reference": "0801234-56.2026.8.26.0100"})
        assert placed.status_code == 201
        hold_id = placed.json()["hold_id"]
        holds = c.get(path).json()["holds"]
        assert [(h["hold_id"], h["placed_by"], h["released_at"]) for h in holds] == [(hold_id, "supervisor", None)]
        assert c.post(f"{path}/holds/{hold_id}/release", json={"reason": "case closed"}).status_code == 200
        assert c.get(path).json()["holds"][0]["released_by"] == "supervisor"
        assert c.post(f"{path}/holds/{hold_id}/release", json={"reason": "again"}).status_code == 409
