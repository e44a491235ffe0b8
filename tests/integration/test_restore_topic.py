"""A lost ledger topic is restored from the journal and proves itself against the signed roots.

End to end on the real broker: publish (a poison record too), project, checkpoint; delete
the topic; ``restore-topic`` (after its own verify); ``verify-restore`` recomputes the roots
from the new topic read by a raw consumer; a projector re-reading the restored topic into a
fresh database gives the same journal, quarantine, views and trees (``view_snapshot``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import timedelta

import psycopg
from helpers_flow import Cli, contact_opened, now_s, project, start_runtime
from kafka import KafkaAdminClient, KafkaProducer
from psycopg import sql
from view_snapshot import describe_difference, snapshot

from protocolo.attestation.log_key import load_log_key
from protocolo.attestation.topic_restore import sign_mapping
from protocolo.evidence.checkpoint import log_origin
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event


def test_a_destroyed_topic_is_restored_and_reprojects_to_the_same_ledger(settings, monkeypatch, capsys,
                                                                          backend, tmp_path) -> None:
    rt = start_runtime(settings)
    cli = Cli(settings, monkeypatch, capsys)
    t0 = now_s() - timedelta(hours=5)
    with ProtocolIssuer(rt.database_url) as issuer:
        protocols = [issuer.issue() for _ in range(6)]
    events = []
    for i, p in enumerate(protocols):
        events += [Event("ContactOpened", contact_opened(service_type="MOBILE" if i % 2 else "BANKING"),
                         protocol_number=p, occurred_at=t0),
                   Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "VOICE"}, protocol_number=p,
                         occurred_at=t0 + timedelta(seconds=4)),
                   Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p,
                         occurred_at=t0 + timedelta(minutes=2))]
    with rt.publisher("restore-test") as publisher:
        publisher.publish_many(events)
    producer = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap)
    producer.send(settings.topic, key=b"poison", value=b"garbage", partition=1, headers=[("x", b"\x00\xff")]).get(20)
    producer.send(settings.topic, key=b"tombstone", value=None, partition=2).get(20)
    producer.close()
    project(rt)
    assert cli("checkpoint", "--once", "--quiet").code in (0, 1)
    before = snapshot(settings.database_url)
    assert before["quarantine"], "the poison records are quarantined"

    # the disaster
    admin = KafkaAdminClient(bootstrap_servers=rt.kafka_bootstrap)
    admin.delete_topics([settings.topic])
    deadline = time.monotonic() + 60
    while settings.topic in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.5)
    admin.close()

    mapping = tmp_path / "mapping.json"
    done = None
    while time.monotonic() < deadline:  # the broker may still be finishing the deletion
        done = cli("restore-topic", "--to", settings.topic, "--mapping", str(mapping))
        if done.code == 0:
            break
        time.sleep(1)
    assert done is not None and done.code == 0, done.err if done else ""
    assert f"{len(events) + 2:,} records restored" in done.out

    key = load_log_key(settings, "dev")
    vkeys = [f"--vkey={key.vkey(log_origin('dev', settings.topic, p))}" for p in range(settings.partitions)]
    proved = cli("verify-restore", "--mapping", str(mapping), *vkeys)
    assert proved.code == 0, proved.out + proved.err
    assert "VERDICT: VALID" in proved.out
    # the mapping is signed: an edited one is refused by name
    doc = json.loads(mapping.read_bytes())
    doc["partitions"][0]["runs"] = []
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    (tmp_path / "edited.json.sig").write_bytes((tmp_path / "mapping.json.sig").read_bytes())
    refused = cli("verify-restore", "--mapping", str(edited), *vkeys)
    assert refused.code == 1 and "[mapping-hash]" in refused.out

    # re-project the restored topic into a fresh database: the same ledger
    fresh = f"t_restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(backend.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(fresh)))
    url = psycopg.conninfo.make_conninfo(settings.database_url, dbname=fresh)
    try:
        again = start_runtime(dataclasses.replace(settings, database_url=url,
                                                  group_id=f"restore-{uuid.uuid4().hex[:6]}"))
        project(again)
        after = snapshot(url)
        assert after == before, describe_difference(before, after)
    finally:
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(fresh)))


def test_offsets_with_gaps_are_restored_in_runs_and_a_mapping_with_overlapping_runs_is_refused(
        settings, monkeypatch, capsys, tmp_path) -> None:
    """A transaction's commit marker takes an offset that holds no record: the old offsets
    have gaps, so the mapping has several runs for a partition; the proof finds every
    record's run. A mapping whose runs overlap (signed by the log key all the same) names
    two origins for one offset and is refused by name, not followed."""
    rt = start_runtime(settings)
    cli = Cli(settings, monkeypatch, capsys)
    t0 = now_s() - timedelta(hours=2)
    with ProtocolIssuer(rt.database_url) as issuer:
        protocols = [issuer.issue() for _ in range(4)]

    def opened(p: str) -> list[Event]:
        return [Event("ContactOpened", contact_opened(), protocol_number=p, occurred_at=t0),
                Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p,
                      occurred_at=t0 + timedelta(minutes=1))]

    with rt.publisher("restore-gaps") as publisher:
        publisher.publish_many(opened(protocols[0]) + opened(protocols[1]))
    # two committed transactions on partition 0: each leaves a marker, a gap in the offsets
    producer = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap, transactional_id=f"gaps-{uuid.uuid4().hex[:6]}")
    producer.init_transactions()
    for n in range(2):
        producer.begin_transaction()
        producer.send(settings.topic, key=f"in-transaction-{n}".encode(), value=b"not an event", partition=0)
        producer.commit_transaction()
    producer.close()
    with rt.publisher("restore-gaps") as publisher:
        publisher.publish_many(opened(protocols[2]) + opened(protocols[3]))
    project(rt)
    assert cli("checkpoint", "--once", "--quiet").code in (0, 1)
    with psycopg.connect(settings.database_url) as conn:
        offsets = [r[0] for r in conn.execute(
            "SELECT kafka_offset FROM journal WHERE topic = %(t)s AND kafka_partition = 0 UNION ALL"
            " SELECT kafka_offset FROM quarantine WHERE topic = %(t)s AND kafka_partition = 0 ORDER BY 1",
            {"t": settings.topic})]
    gaps = sum(1 for a, b in zip(offsets, offsets[1:], strict=False) if b != a + 1)
    assert gaps >= 1, f"the commit markers left no gap in partition 0's offsets {offsets}"

    target = f"{settings.topic}-restored"
    mapping = tmp_path / "mapping.json"
    done = cli("restore-topic", "--to", target, "--mapping", str(mapping))
    assert done.code == 0, done.err
    doc = json.loads(mapping.read_bytes())
    runs = next(p["runs"] for p in doc["partitions"] if p["partition"] == 0)
    assert len(runs) == gaps + 1, runs
    assert sum(r[3] for r in runs) == len(offsets)

    key = load_log_key(settings, "dev")
    vkeys = [f"--vkey={key.vkey(log_origin('dev', settings.topic, p))}" for p in range(settings.partitions)]
    proved = cli("verify-restore", "--mapping", str(mapping), *vkeys)
    assert proved.code == 0, proved.out + proved.err
    assert "VERDICT: VALID" in proved.out

    # the second run made to start inside the first, and the mapping signed again
    new, old, leaf, length = runs[1]
    runs[1] = [runs[0][0] + runs[0][3] - 1, old, leaf, length + 1]
    overlapping = tmp_path / "overlapping.json"
    overlapping.write_bytes(json.dumps(doc).encode())
    lowest = log_origin("dev", settings.topic, 0)
    (tmp_path / "overlapping.json.sig").write_bytes(sign_mapping(overlapping.read_bytes(), key.signer(lowest)))
    refused = cli("verify-restore", "--mapping", str(overlapping), *vkeys)
    assert refused.code == 1, refused.out + refused.err
    assert "FAILED partition 0: the run at new offset" in refused.out and "overlaps" in refused.out
    assert "[mapping-malformed]" in refused.out
    assert "Traceback" not in refused.out + refused.err
