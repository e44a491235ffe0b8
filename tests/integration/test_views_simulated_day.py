"""The views of a simulated call-centre day agree with the events that were published.

Every expected number is computed here, independently, from the list of ``Event``s the
simulator produced (the published facts), never from the views themselves. The day lies
120 days back, so 90-day SAC recordings are past retention and the sweeper must delete
them, except those under an active legal hold; 180-day telecom recordings must stay.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from helpers_flow import contact_opened, now_s, project, start_runtime
from psycopg.rows import dict_row

from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.producers.retention import sweep
from protocolo.producers.simulator import CallCentreDay, chunks

SEED = 335  # a day with an active hold on a 90-day recording, a released hold, late and open requests
CONTACTS = 150
AT_START = timedelta(seconds=60)  # every profile's start_disclosure_seconds
CONFIRMATION = timedelta(hours=24)
DELIVERY = timedelta(days=10)


def _first(events: list[Event], event_type: str, kind: str | None = None) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for e in events:
        if e.event_type == event_type and (kind is None or e.fields.get("kind") == kind):
            p = e.protocol_number
            first[p] = min(first.get(p, e.occurred_at), e.occurred_at)
    return first


def test_views_of_a_simulated_day_match_the_published_events(settings):
    rt = start_runtime(settings)
    now = datetime.now(UTC)
    with ProtocolIssuer(rt.database_url, block_size=500) as issuer:
        day = CallCentreDay(issuer.issue, contacts=CONTACTS, seed=SEED, days_ago=120, now=now).build()
    events = day.events
    by_type = Counter(e.event_type for e in events)

    # --- what the events say, computed without the views
    opened = _first(events, "ContactOpened")
    told = _first(events, "DisclosureMade", "PROTOCOL_NUMBER")
    notice = _first(events, "DisclosureMade", "RECORDING_NOTICE")
    confirmed = _first(events, "DisclosureMade", "PROTOCOL_CONFIRMATION")
    recorded = {e.protocol_number for e in events if e.event_type == "ContactOpened" and e.fields["recorded"]}
    expected_compliance = {
        p: (p in told and told[p] <= o + AT_START,
            (p in notice and notice[p] <= o + AT_START) if p in recorded else None,  # n/a: not recorded
            p in confirmed and confirmed[p] <= o + CONFIRMATION)
        for p, o in opened.items()
    }
    notes = Counter(e.protocol_number for e in events if e.event_type == "NoteAdded")
    holds: dict[str, list] = {}
    for e in events:
        if e.event_type == "LegalHoldPlaced":
            holds[e.fields["hold_id"]] = [e.protocol_number, e.occurred_at, None]
    for e in events:
        if e.event_type == "LegalHoldReleased":
            holds[e.fields["hold_id"]][2] = e.occurred_at
    on_hold = {p for p, placed, released in holds.values()
               if placed <= now and (released is None or released > now)}
    captures = {e.fields["recording_id"]: e for e in events if e.event_type == "RecordingCaptured"}
    retain_until = {r: opened[e.protocol_number] + timedelta(days=e.fields["retention_days"])
                    for r, e in captures.items()}
    expired = {r for r, until in retain_until.items() if until < now}
    expected_deleted = {r for r in expired if captures[r].protocol_number not in on_hold}
    profiles = Counter(captures[r].fields["retention_profile"] for r in expected_deleted)
    # The day really exercises retention: SAC recordings go, telecom ones stay, a hold stops one.
    assert set(profiles) == {"br-sac-2022"} and profiles["br-sac-2022"] >= 3
    assert any(e.fields["retention_profile"] == "br-anatel-rgc" for e in captures.values())
    assert expired - expected_deleted, "the seed must give a 90-day recording under an active hold"
    assert any(released is not None for _, _, released in holds.values())
    requests = {e.fields["request_id"]: e for e in events if e.event_type == "RetrievalRequested"}
    ended = {e.fields["request_id"]: e for e in events
             if e.event_type in ("RetrievalFulfilled", "RetrievalRejected")}
    in_time = {r for r, e in ended.items()
               if e.event_type == "RetrievalFulfilled" and e.occurred_at <= requests[r].occurred_at + DELIVERY}
    late = {r for r, e in ended.items() if e.event_type == "RetrievalFulfilled"} - in_time
    still_open = set(requests) - set(ended)
    assert late and still_open and any(e.protocol_number is None for e in requests.values())

    # --- publish, project, sweep, project
    with rt.publisher("simulator") as publisher:
        for chunk in chunks(events, 400):
            publisher.publish_many(chunk)
        first = project(rt)
        with rt.connect() as conn:
            deletions = sweep(conn, publisher, now)
        second = project(rt)
        with rt.connect() as conn:
            again = sweep(conn, publisher, now)
    assert (first.journaled, first.quarantined) == (len(events), 0)
    assert sorted(r.key for r in deletions) == sorted(captures[r].protocol_number for r in expected_deleted)
    assert (second.journaled, second.quarantined) == (len(deletions), 0)
    assert again == [], "a second sweep after projection must publish nothing"

    with rt.connect(row_factory=dict_row) as conn:
        def scalar(sql: str) -> object:
            return next(iter(conn.execute(sql).fetchone().values()))

        assert scalar("SELECT count(*) FROM journal") == len(events) + len(deletions)
        assert scalar("SELECT count(*) FROM quarantine") == 0
        assert scalar("SELECT count(*) FROM journal WHERE is_duplicate") == 0

        rows = {r["protocol_number"]: r for r in conn.execute("SELECT * FROM interactions")}
        assert len(rows) == by_type["ContactOpened"] == CONTACTS
        assert {p: r["opened_at"] for p, r in rows.items()} == opened
        assert {p: r["note_count"] for p, r in rows.items() if r["note_count"]} == dict(notes)
        compliance = {r["protocol_number"]: (r["protocol_disclosed_at_start"], r["recording_notice_at_start"],
                                             r["protocol_confirmed_in_time"])
                      for r in conn.execute("SELECT * FROM interaction_compliance")}
        assert compliance == expected_compliance
        late_told = {p for p, (at_start, _, _) in expected_compliance.items() if not at_start}
        assert len(late_told) >= 2  # told late or never: the view must show each of them

        idx = scalar("SELECT count(*) FROM customer_index")
        assert idx == sum(bool(e.fields["customer"].get("cpf")) + bool(e.fields["customer"].get("customer_code"))
                          for e in events if e.event_type == "ContactOpened")

        recs = {r["recording_id"]: r for r in conn.execute("SELECT * FROM recordings")}
        assert set(recs) == set(captures) and len(recs) == by_type["RecordingCaptured"]
        assert {r: x["retain_until"] for r, x in recs.items()} == retain_until
        assert {r for r, x in recs.items() if x["status"] == "deleted"} == expected_deleted
        assert {r for r, x in recs.items() if x["status"] == "retained"} == set(captures) - expected_deleted
        status = conn.execute("SELECT * FROM recording_deletion_status").fetchall()
        assert {d["recording_id"] for d in status} == expected_deleted
        assert [d for d in status if d["before_retention_end"] or d["under_legal_hold"]] == []
        assert all(d["digest_matches_capture"] and d["reason"] == "RETENTION_EXPIRED" for d in status)

        assert scalar("SELECT count(*) FROM legal_holds") == by_type["LegalHoldPlaced"]
        assert scalar("SELECT count(*) FROM legal_holds WHERE released_at IS NULL") == len(
            [h for h in holds.values() if h[2] is None])

        reqs = {str(r["request_id"]): r for r in conn.execute("SELECT * FROM retrieval_request_status")}
        assert set(reqs) == set(requests)
        assert {r for r, x in reqs.items() if x["protocol_number"] is None} == {
            r for r, e in requests.items() if e.protocol_number is None}
        assert {r for r, x in reqs.items() if x["fulfilled_in_time"]} == in_time
        assert {r for r, x in reqs.items() if x["fulfilled_in_time"] is False} == late
        assert {r for r, x in reqs.items() if x["overdue"]} == still_open
        assert all(x["due_at"] == x["requested_at"] + DELIVERY for x in reqs.values())


@pytest.mark.kafka_client_lane
def test_the_same_event_published_again_counts_once(settings):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p = issuer.issue()
    t0 = now_s() - timedelta(hours=2)
    opened = Event("ContactOpened", contact_opened({"customer_code": "C-DUP"}, channel="CHAT", recorded=False),
                   protocol_number=p, occurred_at=t0, event_id=str(uuid.uuid4()))
    note = Event("NoteAdded", {"agent_id": "agent-9", "text": "customer asked for the contract copy"},
                 protocol_number=p, occurred_at=t0 + timedelta(minutes=5), event_id=str(uuid.uuid4()))
    with rt.publisher("retrying-service") as publisher:
        # A retry inside one batch ...
        receipts = publisher.publish_many([opened, note, note])
        project(rt)
        # ... and a retry after the first copy was projected.
        receipts += publisher.publish_many([note, opened])
        project(rt)
    assert len({(r.partition, r.offset) for r in receipts}) == 5

    with rt.connect(row_factory=dict_row) as conn:
        journal = conn.execute("SELECT event_id::text, kafka_offset, is_duplicate FROM journal"
                               " ORDER BY kafka_partition, kafka_offset").fetchall()
        interaction = conn.execute("SELECT * FROM interactions").fetchall()
        index = conn.execute("SELECT count(*) AS n FROM customer_index").fetchone()["n"]
    assert [(j["event_id"], j["kafka_offset"]) for j in journal] == [
        (r.event_id, r.offset) for r in sorted(receipts, key=lambda r: r.offset)]
    flags = {}
    for j in journal:
        flags.setdefault(j["event_id"], []).append(j["is_duplicate"])
    assert flags == {opened.event_id: [False, True], note.event_id: [False, True, True]}
    [row] = interaction
    assert (row["protocol_number"], row["note_count"], row["opened_at"]) == (p, 1, t0)
    assert index == 1
