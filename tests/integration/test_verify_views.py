"""`protocolo verify` checks what people read: the decoded copies and every view table.

One ledger is built once for the module on the real broker and PostgreSQL (two contacts
through every event type, a customer erasure), projected and checkpointed. Each test
tampers with a copy of its database in SQL, as a database administrator could, and runs
the command in-process as a user would. The expected values come from the events as
published (the test's own facts), never from the code under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from contact_world import Contact, publish_contact
from helpers_flow import now_s, project, start_runtime
from ledger_copies import Run, database_copy, execute, ledger_database, ledger_settings, run_verify
from psycopg import sql

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import LogKey
from protocolo.cli import main as cli_main
from protocolo.core.config import Settings
from protocolo.producers.publisher import Event

DEPLOYMENT = "acme-views"
PARTITIONS = 2


@dataclass
class World:
    template: str
    admin_url: str
    topic: str
    bootstrap: str
    home: Path
    key: LogKey
    contacts: list[Contact]

    @property
    def vkeys(self) -> list[str]:
        return [self.key.vkey(f"protocolo/{DEPLOYMENT}/{self.topic}/{p}") for p in range(PARTITIONS)]


@pytest.fixture(scope="module")
def world(backend, tmp_path_factory) -> Iterator[World]:
    with ledger_database(backend.database_url, "views_tpl") as name:
        settings = ledger_settings(backend, name, "views", tmp_path_factory.mktemp("views-home"), PARTITIONS)
        rt = start_runtime(settings)
        contacts = [publish_contact(rt), publish_contact(rt)]
        with rt.publisher("view-tests") as publisher:
            publisher.publish_many([Event("CustomerDataErased", {
                "subject_ref": contacts[1].cpf_index, "key_refs": [contacts[1].cpf_index],
                "legal_basis": "LGPD art. 18 VI"}, occurred_at=now_s())])
            # one event sent twice, byte for byte (a producer's retry): a duplicate row, not applied
            retried = publisher.prepare(Event("NoteAdded", {"agent_id": "agent-007", "agent_name": "Carla",
                                                            "text": "retried"}, protocol_number=contacts[1].protocol,
                                              occurred_at=now_s()))
            publisher.send_prepared([retried])
            publisher.send_prepared([retried])
        project(rt)
        key = LogKey.generate(f"protocolo/{DEPLOYMENT}")
        with rt.connect(autocommit=True) as conn:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        rt.sealer().vault.close()  # the template database must have no session left
        yield World(name, backend.database_url, settings.topic, backend.kafka_bootstrap, settings.home, key,
                    contacts)


@pytest.fixture
def copy_url(world: World) -> Iterator[str]:
    with database_copy(world.admin_url, world.template, "views") as url:
        yield url


@pytest.fixture
def verify(world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def run(database_url: str, *argv: str) -> Run:
        return run_verify(monkeypatch, capsys, home=world.home, database_url=database_url,
                          bootstrap=world.bootstrap, topic=world.topic, partitions=PARTITIONS,
                          argv=["--quiet", *argv, *[a for v in world.vkeys for a in ("--vkey", v)]])

    return run


# -- the clean ledger --------------------------------------------------------------------


def test_the_untampered_ledger_is_clean_with_every_check(world, copy_url, verify) -> None:
    run = verify(copy_url, "--json")
    assert run.code == 0, run.out + run.err
    checks = run.report["checks"]
    journalled = execute(copy_url, "SELECT count(*) FROM journal")[0][0]
    assert checks["payloads"]["rows"] == journalled == len(world.contacts[0].receipts) * 2 + 3
    assert execute(copy_url, "SELECT count(*) FROM journal WHERE is_duplicate")[0][0] == 1
    views = checks["views"]
    assert views["journal_rows"] == journalled
    # every view table the contacts reach holds rows, so each was really compared
    assert all(views["tables"][t] > 0 for t in ("interactions", "customer_index", "legal_holds", "recordings",
                                                 "recording_deletions", "retrieval_requests", "erasures",
                                                 "access_log", "approvals")), views["tables"]
    text = verify(copy_url)
    assert text.code == 0 and "every decoded copy verified; every view row verified" in text.out, text.out
    only = verify(copy_url, "--json", "--views-only").report
    assert only["partitions"] == [] and set(only["checks"]) == {"views"}
    none = verify(copy_url, "--json", "--no-views", "--no-payloads").report
    assert set(none["checks"]) == {"index"} and none["leaves"] > 0  # the index is part of the ledger check


def test_verify_writes_nothing_and_leaves_no_scratch_table(world, copy_url, verify) -> None:
    def snapshot() -> list[Any]:
        tables = [t for (t,) in execute(copy_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                        " ORDER BY 1")]
        return [(t, *execute(copy_url, f"SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY"
                                       f" x::text), '')) FROM {t} x")[0]) for t in tables]
    before = snapshot()
    assert verify(copy_url, "--json").code == 0
    assert snapshot() == before


# -- the decoded copy --------------------------------------------------------------------


def journal_row(url: str, protocol: str, event_type: str) -> tuple[int, int, int]:
    rows = execute(url, "SELECT kafka_partition, leaf_index, kafka_offset FROM journal"
                   " WHERE protocol_number = %s AND event_type = %s", (protocol, event_type))
    assert len(rows) == 1
    return rows[0]


def test_an_edited_payload_is_a_payload_mismatch_at_its_row(world, copy_url, verify) -> None:
    p = world.contacts[0].protocol
    partition, leaf, offset = journal_row(copy_url, p, "ContactClosed")
    execute(copy_url, "UPDATE journal SET payload = jsonb_set(payload, '{outcome}', '\"ABANDONED\"')"
            " WHERE protocol_number = %s AND event_type = 'ContactClosed'", (p,))
    run = verify(copy_url, "--json", "--no-views")
    assert run.code == 1, run.out + run.err
    [found] = run.findings("payload-mismatch")
    assert (found["partition"], found["leaf_index"], found["kafka_offset"]) == (partition, leaf, offset)
    assert "payload.outcome" in found["detail"] and "ABANDONED" in found["detail"] and "RESOLVED" in found["detail"]
    # the leaves still verify: only the decoded copy lies
    assert set(run.report["counts"]) == {"payload-mismatch"}
    text = verify(copy_url, "--no-views")
    assert text.code == 1 and f"partition {partition}, leaf {leaf}, offset {offset}" in text.out


@pytest.mark.parametrize(("column", "value"), [
    ("occurred_at", "2001-01-01T00:00:00Z"), ("event_type", "NoteAdded"), ("protocol_number", None)])
def test_an_edited_decoded_column_is_a_payload_mismatch(world, copy_url, verify, column, value) -> None:
    p = world.contacts[0].protocol
    partition, leaf, offset = journal_row(copy_url, p, "ContactClosed")
    execute(copy_url, sql.SQL("UPDATE journal SET {} = %s WHERE kafka_partition = %s AND leaf_index = %s")
            .format(sql.Identifier(column)).as_string(None), (value, partition, leaf))
    run = verify(copy_url, "--json", "--no-views")
    [found] = run.findings("payload-mismatch")
    assert (found["partition"], found["leaf_index"], found["kafka_offset"]) == (partition, leaf, offset)
    assert found["detail"].startswith(f"column {column}:")


# -- the views ---------------------------------------------------------------------------

#: (table, SET clause, WHERE clause on the first contact, column named, journal's value)
TAMPERINGS = [
    ("interactions", "outcome = 'ABANDONED'", "protocol_number = %(p)s", "outcome", "RESOLVED"),
    ("interactions", "protocol_disclosed_at = NULL", "protocol_number = %(p)s", "protocol_disclosed_at", None),
    ("interactions", "note_count = 7", "protocol_number = %(p)s", "note_count", 1),
    ("recordings", "sha256 = repeat('0', 64)", "protocol_number = %(p)s", "sha256", None),
    ("recording_deletions", "reason = 'CUSTOMER_REQUEST'", "protocol_number = %(p)s", "reason", "RETENTION_EXPIRED"),
    ("legal_holds", "released_at = NULL", "protocol_number = %(p)s", "released_at", None),
    ("retrieval_requests", "status = 'requested'", "request_id = %(req)s::uuid", "status", "fulfilled"),
    ("approvals", "decision = 'GRANTED'", "approval_id = %(approval)s::uuid", "decision", "DENIED"),
    ("access_log", "purpose = 'routine'", "access_id = %(access)s::uuid", "purpose", "Procon-123456"),
    ("customer_index", "opened_at = opened_at - interval '1 day'", "protocol_number = %(p)s", "opened_at", None),
    ("erasures", "legal_basis = 'none'", "true", "legal_basis", "LGPD art. 18 VI"),
]


@pytest.mark.parametrize(("table", "change", "where", "column", "truth"), TAMPERINGS,
                         ids=[f"{t[0]}.{t[3]}" for t in TAMPERINGS])
def test_an_edited_view_column_is_a_view_mismatch_naming_table_key_and_column(
        world, copy_url, verify, table, change, where, column, truth) -> None:
    c = world.contacts[0]
    params = {"p": c.protocol, "req": c.requests[0], "approval": c.approval, "access": c.access}
    with psycopg.connect(copy_url, autocommit=True) as conn:
        changed = conn.execute(f"UPDATE {table} SET {change} WHERE {where}", params).rowcount
    assert changed >= 1
    run = verify(copy_url, "--json", "--views-only")
    assert run.code == 1, run.out + run.err
    found = run.findings("view-mismatch")
    assert len(found) == changed, found
    assert all(f["table"] == table and f["column"] == column for f in found), found
    if table not in ("erasures",):
        key_value = {"retrieval_requests": c.requests[0], "approvals": c.approval,
                     "access_log": c.access}.get(table, c.protocol if table in ("interactions", "customer_index")
                                                 else None)
        if key_value:
            assert key_value in found[0]["key"], found[0]
    if truth is not None:
        assert repr(truth) in found[0]["detail"], found[0]
    text = verify(copy_url, "--views-only")
    assert f"table {table}" in text.out and f"column {column}" in text.out


def test_a_deleted_and_an_inserted_view_row_are_named(world, copy_url, verify) -> None:
    c = world.contacts[1]
    execute(copy_url, "DELETE FROM legal_holds WHERE hold_id = %s", (c.hold,))
    execute(copy_url, "INSERT INTO interactions (protocol_number, outcome) VALUES ('99999999999999999999', 'RESOLVED')")
    run = verify(copy_url, "--json", "--views-only")
    found = {(f["table"], f["key"]): f["detail"] for f in run.findings("view-mismatch")}
    assert "deleted" in found[("legal_holds", f"hold_id={c.hold}")]
    assert "inserted" in found[("interactions", "protocol_number=99999999999999999999")]


def test_an_edited_policy_profile_is_named(world, copy_url, verify) -> None:
    execute(copy_url, "UPDATE policy_profiles SET recording_retention_days = 1 WHERE profile LIKE 'br-anatel-rgc@%%'")
    run = verify(copy_url, "--json", "--views-only")
    assert run.code == 1
    found = [f for f in run.findings("view-mismatch") if f["table"] == "policy_profiles"]
    assert found and "br-anatel-rgc" in found[0]["detail"]


# -- verified reads: history checks what it shows against the signed log ----------------


@pytest.fixture
def history(world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def run(database_url: str, *argv: str, pinned: list[str] | None = None) -> Run:
        for var, value in (("PROTOCOLO_HOME", str(world.home)), ("PROTOCOLO_DATABASE_URL", database_url),
                           ("PROTOCOLO_KAFKA_BOOTSTRAP", world.bootstrap), ("PROTOCOLO_TOPIC", world.topic),
                           ("PROTOCOLO_PARTITIONS", str(PARTITIONS)), ("PROTOCOLO_DEV_KEYS", "1"),
                           ("PROTOCOLO_LOG_VKEYS", " ".join(world.vkeys if pinned is None else pinned))):
            monkeypatch.setenv(var, value)
        for var in ("PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY", "PROTOCOLO_POLICY"):
            monkeypatch.delenv(var, raising=False)
        capsys.readouterr()
        code = cli_main(["history", *argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def test_history_says_each_contact_is_verified_by_its_signed_checkpoint(world, copy_url, history) -> None:
    c = world.contacts[0]
    run = history(copy_url, "--protocol", c.protocol, "--json")
    assert run.code == 0, run.err
    [contact] = run.report["interactions"]
    verified = contact["verified"]
    assert verified["status"] == "verified", verified
    partition = c.receipts[0].partition
    assert verified["checkpoints"] == [{"origin": f"protocolo/{DEPLOYMENT}/{world.topic}/{partition}",
                                        "size": execute(copy_url, "SELECT tree_size FROM checkpoints WHERE"
                                                        " kafka_partition = %s", (partition,))[0][0]}]
    # every event published for the contact, each proven (the receipts are the oracle)
    assert sorted((e["partition"], e["offset"]) for e in verified["events_verified"]) == sorted(
        (r.partition, r.offset) for r in c.receipts)
    text = history(copy_url, "--protocol", c.protocol)
    assert f"signed    verified: checkpoint protocolo/{DEPLOYMENT}/{world.topic}/{partition}" in text.out
    by_cpf = history(copy_url, "--customer", "C-VIEW-0001", "--json")
    assert {i["verified"]["status"] for i in by_cpf.report["interactions"]} == {"verified"}


@pytest.mark.parametrize(("change", "column", "shown", "truth"), [
    ("UPDATE interactions SET outcome = 'ABANDONED' WHERE protocol_number = %(p)s", "outcome", "ABANDONED",
     "RESOLVED"),
    ("UPDATE legal_holds SET released_at = NULL WHERE protocol_number = %(p)s", "released_at", None, None),
    ("UPDATE retrieval_requests SET status = 'requested' WHERE request_id = %(req)s::uuid", "status", "requested",
     "fulfilled"),
    ("UPDATE recordings SET status = 'retained' WHERE protocol_number = %(p)s", "status", "retained", "deleted"),
])
def test_an_altered_view_is_a_mismatch_and_history_shows_the_verified_value(
        world, copy_url, history, change, column, shown, truth) -> None:
    c = world.contacts[0]
    execute(copy_url, change, {"p": c.protocol, "req": c.requests[0]})  # type: ignore[arg-type]
    run = history(copy_url, "--protocol", c.protocol, "--json")
    [contact] = run.report["interactions"]
    assert contact["verified"]["status"] == "MISMATCH"
    [d] = [d for d in contact["verified"]["differences"] if d["column"] == column]
    assert d["view"] == shown
    if truth is not None:
        assert d["verified"] == truth
    # what is shown is the verified value, never the altered one
    if column == "outcome":
        assert contact["outcome"] == "RESOLVED"
    if column == "status" and d["table"] == "retrieval_requests":
        assert [r["status"] for r in contact["retrieval_requests"] if r["request_id"] == c.requests[0]] == ["fulfilled"]
    if column == "released_at":
        assert all(h["released_at"] is not None for h in contact["legal_holds"])
    text = history(copy_url, "--protocol", c.protocol)
    assert "MISMATCH" in text.out and "ALTERED" in text.out and f" {column}: the view says" in text.out


def test_an_edited_decoded_copy_is_a_mismatch_and_the_timeline_shows_the_bytes(world, copy_url, history) -> None:
    c = world.contacts[0]
    execute(copy_url, "UPDATE journal SET payload = jsonb_set(payload, '{outcome}', '\"ABANDONED\"')"
            " WHERE protocol_number = %s AND event_type = 'ContactClosed'", (c.protocol,))
    run = history(copy_url, "--protocol", c.protocol, "--json")
    [contact] = run.report["interactions"]
    assert contact["verified"]["status"] == "MISMATCH"
    assert any(d["table"] == "journal" and d["column"] == "payload.outcome" and d["view"] == "ABANDONED"
               for d in contact["verified"]["differences"])
    [closed] = [e for e in contact["events"] if e["event_type"] == "ContactClosed"]
    assert closed["payload"]["outcome"] == "RESOLVED"


def test_an_unpinned_log_is_unverified_and_a_wrong_key_is_a_mismatch(world, copy_url, history) -> None:
    c = world.contacts[0]
    unpinned = history(copy_url, "--protocol", c.protocol, "--json", pinned=[])
    verified = unpinned.report["interactions"][0]["verified"]
    assert verified["status"] == "unverified" and "PROTOCOLO_LOG_VKEYS" in verified["summary"]
    other = LogKey.generate(f"protocolo/{DEPLOYMENT}")
    forged = history(copy_url, "--protocol", c.protocol, "--json",
                     pinned=[other.vkey(f"protocolo/{DEPLOYMENT}/{world.topic}/{p}") for p in range(PARTITIONS)])
    assert forged.report["interactions"][0]["verified"]["status"] == "MISMATCH"


def test_an_event_after_the_newest_checkpoint_is_pending(world, copy_url, history, tmp_path) -> None:
    c = world.contacts[0]
    settings = Settings(home=world.home, kafka_bootstrap=world.bootstrap, database_url=copy_url, topic=world.topic,
                        partitions=PARTITIONS, group_id=f"views-{uuid.uuid4().hex[:8]}", dev_keys=True)
    rt = start_runtime(settings)
    with rt.publisher("view-tests") as publisher:
        [receipt] = publisher.publish_many([Event("NoteAdded", {"agent_id": "agent-007", "agent_name": "Carla",
                                                                "text": "called back"},
                                                  protocol_number=c.protocol, occurred_at=now_s())])
    project(rt)
    run = history(copy_url, "--protocol", c.protocol, "--json")
    verified = run.report["interactions"][0]["verified"]
    assert verified["status"] == "pending", verified
    assert verified["events_pending"] == [{"partition": receipt.partition, "offset": receipt.offset}]
    assert len(verified["events_verified"]) == len(c.receipts)


def test_an_event_hidden_by_its_duplicate_mark_is_named(world, copy_url, verify) -> None:
    p = world.contacts[0].protocol
    partition, leaf, offset = journal_row(copy_url, p, "ContactClosed")
    execute(copy_url, "UPDATE journal SET is_duplicate = true WHERE kafka_partition = %s AND leaf_index = %s",
            (partition, leaf))
    # ... and the views rebuilt to agree with it, as a careful forger would
    with psycopg.connect(copy_url) as conn:
        from protocolo.projections.rebuild import rebuild_views
        rebuild_views(conn)
    run = verify(copy_url, "--json")
    assert run.code == 1, run.out
    [found] = run.findings("payload-mismatch")
    assert (found["partition"], found["leaf_index"], found["kafka_offset"]) == (partition, leaf, offset)
    assert "is_duplicate" in found["detail"]
    assert not run.findings("view-mismatch")  # the views agree with the journal: only this check sees it
