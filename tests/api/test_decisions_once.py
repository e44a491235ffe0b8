"""Every decision happens once: concurrent HTTP requests racing on one approval, one
retrieval request or one hold yield exactly one decision on the topic (read raw from
Kafka, not from the projection, which applies an event id once and would hide a
duplicate), and every loser gets 409."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from api_world import CPF_B, RunningApi, sha256
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType

from protocolo.schemas.catalogue import SchemaCatalogue

ROUNDS = 3


def topic_events(api: RunningApi) -> list[tuple[str, dict[str, Any]]]:
    """Every record of the API's topic, decoded: (event type, record)."""
    catalogue = SchemaCatalogue.load()
    consumer = KafkaConsumer(bootstrap_servers=api.runtime.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        ends = api.log_end()
        tps = [TopicPartition(api.topic, p) for p in ends]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found: list[tuple[str, dict[str, Any]]] = []
        while any(consumer.position(tp) < ends[tp.partition] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    decoded = catalogue.decode(r.value)
                    found.append((decoded.event_type, decoded.record))
        return found
    finally:
        consumer.close()


def race(api: RunningApi, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every (who, path, body) at the same moment, each on its own connection."""
    barrier = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def one(i: int, who: str, path: str, body: dict[str, Any]) -> None:
        with api.client(who) as c:
            barrier.wait()
            answers[i] = c.post(path, json=body)

    threads = [threading.Thread(target=one, args=(i, *call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def new_recording(api: RunningApi, prefix: str = "rec-race-") -> str:
    rec = f"{prefix}{uuid.uuid4().hex[:8]}"
    publisher = api.runtime.publisher("test-race")
    try:
        publisher.publish("RecordingCaptured", {
            "recording_id": rec, "media_uri": f"s3://recordings/{rec}.opus", "sha256": sha256(rec),
            "duration_ms": 1000, "retention_profile": "br-anatel-rgc", "retention_days": 180},
            protocol_number=api.protocols["b1"])
    finally:
        publisher.close()
    api.settle()
    return rec


def test_two_grants_and_two_denials_at_once_decide_once(api: RunningApi) -> None:
    approvals = []
    for _ in range(ROUNDS):
        rec = new_recording(api)
        with api.client("supervisor") as c:
            asked = c.post("/v1/approvals", json={"action": "EARLY_DELETION", "protocol_number": api.protocols["b1"],
                                                  "recording_id": rec, "reason": "court order 0802"})
        assert asked.status_code == 201, asked.text
        approval = asked.json()["approval_id"]
        approvals.append((approval, rec))
        path = f"/v1/approvals/{approval}"
        answers = race(api, [("compliance", f"{path}/grant", {}), ("compliance-2", f"{path}/grant", {}),
                             ("compliance", f"{path}/deny", {"reason": "no"}),
                             ("compliance-2", f"{path}/deny", {"reason": "no"})])
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409, 409, 409], [a.text for a in answers]
        assert all("decided-once" in a.json()["detail"] or "already" in a.json()["detail"]
                   for a in answers if a.status_code == 409)
    api.settle()
    events = topic_events(api)
    for approval, rec in approvals:
        decisions = [t for t, r in events if t in ("ApprovalGranted", "ApprovalDenied")
                     and str(r["approval_id"]) == approval]
        deletions = [r for t, r in events if t == "RecordingDeleted" and r["recording_id"] == rec]
        assert len(decisions) == 1, decisions
        assert len(deletions) == (1 if decisions == ["ApprovalGranted"] else 0)
        [(decision, status)] = api.query(
            "SELECT a.decision, r.status FROM approvals a, recordings r"
            " WHERE a.approval_id = %s::uuid AND r.recording_id = %s", approval, rec)
        assert (decision, status) in (("GRANTED", "deleted"), ("DENIED", "retained"))


def test_two_fulfilments_and_two_rejections_at_once_close_a_request_once(api: RunningApi) -> None:
    requests = []
    for _ in range(ROUNDS):
        with api.client("analyst") as c:
            made = c.post("/v1/requests", json={"protocol_number": api.protocols["a1"]})
        assert made.status_code == 201, made.text
        rid = made.json()["request_id"]
        requests.append(rid)
        path = f"/v1/requests/{rid}"
        fulfil = {"delivered_sha256": sha256(rid), "delivered_via": "EMAIL"}
        reject = {"reason": "NOT_FOUND"}
        answers = race(api, [("analyst", f"{path}/fulfil", fulfil), ("supervisor", f"{path}/fulfil", fulfil),
                             ("analyst", f"{path}/reject", reject), ("supervisor", f"{path}/reject", reject)])
        assert sorted(a.status_code for a in answers) == [200, 409, 409, 409], [a.text for a in answers]
        # a later decision, and a location after the closing, are refused too
        with api.client("analyst") as c:
            assert c.post(f"{path}/reject", json=reject).status_code == 409
            assert c.post(f"{path}/locate", json={"protocol_numbers": [api.protocols["a1"]]}).status_code == 409
    api.settle()
    closing = Counter(str(r["request_id"]) for t, r in topic_events(api)
                      if t in ("RetrievalFulfilled", "RetrievalRejected", "RetrievalLocated"))
    assert {rid: closing[rid] for rid in requests} == {rid: 1 for rid in requests}


def test_two_locations_at_once_locate_a_request_once(api: RunningApi) -> None:
    with api.client("analyst") as c:
        made = c.post("/v1/requests", json={"protocol_number": api.protocols["a1"]})
    rid = made.json()["request_id"]
    body = {"protocol_numbers": [api.protocols["a1"]]}
    answers = race(api, [("analyst", f"/v1/requests/{rid}/locate", body),
                         ("supervisor", f"/v1/requests/{rid}/locate", body)])
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    api.settle()
    assert [t for t, r in topic_events(api) if t == "RetrievalLocated" and str(r["request_id"]) == rid] == [
        "RetrievalLocated"]


def test_two_releases_of_one_hold_at_once_release_it_once(api: RunningApi) -> None:
    number = api.protocols["a2"]
    with api.client("supervisor") as c:
        placed = c.post(f"/v1/contacts/{number}/holds", json={"case_reference": "proc 0803"})
    assert placed.status_code == 201, placed.text
    hold = placed.json()["hold_id"]
    path = f"/v1/contacts/{number}/holds/{hold}/release"
    answers = race(api, [("supervisor", path, {"reason": "case closed"}),
                         ("compliance", path, {"reason": "case closed"}),
                         ("compliance-2", path, {"reason": "case closed"})])
    assert sorted(a.status_code for a in answers) == [200, 409, 409], [a.text for a in answers]
    api.settle()
    released = [r for t, r in topic_events(api) if t == "LegalHoldReleased" and r["hold_id"] == hold]
    assert len(released) == 1


def set_max_message_bytes(api: RunningApi, value: str | None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=api.runtime.kafka_bootstrap)
    try:
        op = (AlterConfigOp.SET, value) if value is not None else (AlterConfigOp.DELETE, None)
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, api.topic,
                                            configs={"max.message.bytes": op})], incremental=True)
    finally:
        admin.close()


def test_a_broker_refusal_between_a_grants_events_leaves_neither_or_both(api: RunningApi) -> None:
    """The broker (really) refuses the records of a grant: the grant's RecordingDeleted is
    larger than the topic's max.message.bytes while its ApprovalGranted is not. The
    decision stands (a second decision gets 409), and once the broker takes records again
    the same events are published, each once: never a grant without its deletion."""
    rec = new_recording(api, "rec-big-" + "x" * 180)
    with api.client("supervisor") as c:
        asked = c.post("/v1/approvals", json={"action": "EARLY_DELETION", "protocol_number": api.protocols["b1"],
                                              "recording_id": rec, "reason": "court order 0804"})
    approval = asked.json()["approval_id"]
    set_max_message_bytes(api, "420")
    try:
        with api.client("compliance") as c:
            failed = c.post(f"/v1/approvals/{approval}/grant", json={})
        assert failed.status_code == 503, failed.text
        assert "do not decide again" in failed.json()["detail"]
        with api.client("compliance-2") as c:  # decided: a second decision is refused
            assert c.post(f"/v1/approvals/{approval}/deny", json={"reason": "no"}).status_code == 409
        assert not [r for t, r in topic_events(api) if t == "RecordingDeleted" and r["recording_id"] == rec]
    finally:
        set_max_message_bytes(api, None)
    # nobody decides anything: the server's outbox sweep completes the publication
    deadline = time.monotonic() + 60
    while not [r for t, r in topic_events(api) if t == "RecordingDeleted" and r["recording_id"] == rec]:
        assert time.monotonic() < deadline, "the pending RecordingDeleted was never published"
        time.sleep(1)
    with api.client("compliance-2") as c:
        assert c.post(f"/v1/approvals/{approval}/grant", json={}).status_code == 409
    api.settle()
    events = topic_events(api)
    assert [t for t, r in events if t in ("ApprovalGranted", "ApprovalDenied")
            and str(r["approval_id"]) == approval] == ["ApprovalGranted"]
    assert len([r for t, r in events if t == "RecordingDeleted" and r["recording_id"] == rec]) == 1
    assert api.query("SELECT a.decision, r.status FROM approvals a, recordings r WHERE a.approval_id = %s::uuid"
                     " AND r.recording_id = %s", approval, rec) == [("GRANTED", "deleted")]


def test_a_granted_erasure_interrupted_by_the_broker_is_carried_out_later(api: RunningApi) -> None:
    """The grant of a customer erasure is published, then the broker (really) refuses the
    CustomerDataErased (its legal basis is larger than the topic allows for a while). The
    grant stands (a second decision gets 409), the keys are not destroyed without their
    record, and once the broker takes records again the server carries the erasure out,
    once, with nobody deciding again."""
    reason = f"LGPD art. 18 VI, case {uuid.uuid4()} " + "x" * 900
    with api.client("supervisor") as c:
        asked = c.post("/v1/approvals", json={"action": "CUSTOMER_ERASURE", "cpf": CPF_B, "reason": reason})
    assert asked.status_code == 201, asked.text
    approval = asked.json()["approval_id"]

    def erasures() -> list[dict[str, Any]]:
        return [r for t, r in topic_events(api) if t == "CustomerDataErased" and r["legal_basis"] == reason]

    set_max_message_bytes(api, "700")
    try:
        with api.client("compliance") as c:
            failed = c.post(f"/v1/approvals/{approval}/grant", json={})
        assert failed.status_code == 503, failed.text
        assert "erasure did not complete" in failed.json()["detail"]
        with api.client("compliance-2") as c:
            assert c.post(f"/v1/approvals/{approval}/deny", json={"reason": "no"}).status_code == 409
        assert erasures() == []
        with api.client("supervisor") as c:  # the keys stand until the erasure is on record
            opened = c.get(f"/v1/contacts/{api.protocols['b1']}", params={"unmask": "true", "purpose": "check"})
        assert opened.json()["customer"]["cpf"] == "".join(d for d in CPF_B if d.isdigit())
    finally:
        set_max_message_bytes(api, None)
    deadline = time.monotonic() + 60
    while not erasures():
        assert time.monotonic() < deadline, "the granted erasure was never carried out"
        time.sleep(1)
    api.settle()
    assert len(erasures()) == 1
    with api.client("supervisor") as c:
        opened = c.get(f"/v1/contacts/{api.protocols['b1']}", params={"unmask": "true", "purpose": "check"})
    assert opened.json()["customer"] == {"erased": True}
