"""`protocolo verify` finds and locates every tampering of the ledger done in PostgreSQL.

One small ledger is made once for the module on the real broker and PostgreSQL: mixed
events plus records the projector quarantines, projected, checkpointed (signed with a
throw-away log key), grown and checkpointed again, so partitions have two consistent
checkpoints. Each test works on a copy of that database (``CREATE DATABASE ... TEMPLATE``),
tampers with it in SQL as a database administrator could, and runs the command in-process
as a user would (``--json``), asserting the partition, leaf index, Kafka offset and kind it
reports. The expected locations come from the records a raw consumer reads off the topic,
not from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_flow import drain, project, start_runtime
from ledger_copies import Run, database_copy, execute, ledger_database, ledger_settings, run_verify
from test_merkle_tree import publish_mixed, spec_leaf

from protocolo.attestation.checkpointer import checkpoint_partitions, stored_checkpoints
from protocolo.attestation.log_key import LogKey
from protocolo.evidence.checkpoint import Checkpoint, sign_checkpoint
from protocolo.evidence.merkle import CompactRange
from protocolo.evidence.note import Ed25519NoteSigner, VerifierKey

DEPLOYMENT = "acme-verify"
PARTITIONS = 4


@dataclass
class Ledger:
    """The module's projected, checkpointed ledger (a template database) and its facts."""

    template: str
    admin_url: str
    topic: str
    bootstrap: str
    home: Path
    key: LogKey
    records: dict[int, list[Any]]  # partition -> records as a raw consumer reads them

    @property
    def vkeys(self) -> list[str]:
        """Every partition's log verifier key (one key per origin)."""
        return [self.key.vkey(self.origin(p)) for p in range(PARTITIONS)]

    def origin(self, partition: int) -> str:
        return f"protocolo/{DEPLOYMENT}/{self.topic}/{partition}"


@pytest.fixture(scope="module")
def ledger(backend, tmp_path_factory) -> Iterator[Ledger]:
    with ledger_database(backend.database_url, "verify_tpl") as name:
        settings = ledger_settings(backend, name, "verify", tmp_path_factory.mktemp("verify-home"), PARTITIONS)
        rt = start_runtime(settings)
        key = LogKey.generate(f"protocolo/{DEPLOYMENT}")
        publish_mixed(rt, 24)  # 4 quarantined records among them
        project(rt)
        with rt.connect(autocommit=True) as conn:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        publish_mixed(rt, 24)
        project(rt)
        with rt.connect(autocommit=True) as conn:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        records: dict[int, list[Any]] = {}
        for r in drain(backend.kafka_bootstrap, settings.topic):
            records.setdefault(r.partition, []).append(r)
        yield Ledger(name, backend.database_url, settings.topic, backend.kafka_bootstrap, settings.home, key,
                     records)


@pytest.fixture
def copy_url(ledger: Ledger) -> Iterator[str]:
    """A fresh copy of the module's ledger database, for one test to tamper with."""
    with database_copy(ledger.admin_url, ledger.template, "verify") as url:
        yield url


@pytest.fixture
def verify(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def run(database_url: str, *argv: str, vkey: bool = True, env: dict[str, str] | None = None) -> Run:
        pins = [a for v in ledger.vkeys for a in ("--vkey", v)] if vkey else []
        return run_verify(monkeypatch, capsys, home=ledger.home, database_url=database_url,
                          bootstrap=ledger.bootstrap, topic=ledger.topic, partitions=PARTITIONS,
                          argv=[*argv, *pins], env=env)

    return run


def row_at(url: str, table: str, ledger: Ledger, partition: int) -> tuple[int, int]:
    """(leaf index, offset) of a row of ``table`` in ``partition``, chosen in the middle; the
    oracle: leaf index i is the i-th record of the partition on the topic."""
    rows = execute(url, f"SELECT leaf_index, kafka_offset FROM {table} WHERE topic = %s AND kafka_partition = %s"
                   " ORDER BY leaf_index", (ledger.topic, partition))
    assert rows, f"no {table} row in partition {partition}"
    leaf, offset = rows[len(rows) // 2]
    assert ledger.records[partition][leaf].offset == offset
    return leaf, offset


def busiest(ledger: Ledger) -> int:
    """The partition with the most records (and at least one quarantined one if possible)."""
    return max(ledger.records, key=lambda p: len(ledger.records[p]))


def quarantined_partition(url: str, topic: str) -> int:
    rows = execute(url, "SELECT kafka_partition FROM quarantine WHERE topic = %s ORDER BY kafka_partition", (topic,))
    assert rows, "the ledger has quarantined records"
    return int(rows[0][0])


def assert_located(run: Run, kind: str, partition: int, leaf: int, offset: int | None) -> dict[str, Any]:
    assert run.code == 1, run.out + run.err
    found = [f for f in run.findings(kind) if f["partition"] == partition and f.get("leaf_index") == leaf]
    assert found, f"no {kind} at partition {partition} leaf {leaf}: {run.findings()}"
    if offset is not None:
        assert found[0].get("kafka_offset") == offset, found[0]
    return found[0]


# -- the oracle: the ledger as built is exactly what the topic holds ------------------------


def test_the_untampered_ledger_verifies_clean_and_matches_the_topic(ledger, copy_url, verify) -> None:
    # the oracle: stored leaves are the RFC leaves of the records on the topic
    for partition, records in ledger.records.items():
        stored = execute(copy_url, "SELECT hash FROM merkle_nodes WHERE topic = %s AND kafka_partition = %s"
                         " AND level = 0 ORDER BY node_index", (ledger.topic, partition))
        assert [bytes(h) for (h,) in stored] == [
            spec_leaf(ledger.topic, partition, r.offset, r.key, r.value or b"") for r in records]
    run = verify(copy_url, "--json", "--against-kafka")
    assert run.code == 0, run.out + run.err
    report = run.report
    assert report["clean"] is True and report["findings"] == []
    assert report["leaves"] == sum(len(r) for r in ledger.records.values())
    by_partition = {p["partition"]: p for p in report["partitions"]}
    assert sum(p["quarantined"] for p in by_partition.values()) == 8
    for partition, records in ledger.records.items():
        assert by_partition[partition]["leaves"] == len(records)
        assert by_partition[partition]["kafka_records"] == len(records)
        assert by_partition[partition]["checkpoints"] >= 1
        assert by_partition[partition]["checkpoints_verified"] == by_partition[partition]["checkpoints"]
    text = verify(copy_url)
    assert text.code == 0 and "OK: every leaf, tree node and checkpoint verified" in text.out


# -- rows -----------------------------------------------------------------------------------


def test_an_updated_value_is_modified_at_its_leaf(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    leaf, offset = row_at(copy_url, "journal", ledger, p)
    execute(copy_url, "UPDATE journal SET record_value = record_value || '\\x00'::bytea WHERE topic = %s"
            " AND kafka_partition = %s AND leaf_index = %s", (ledger.topic, p, leaf))
    run = verify(copy_url, "--json")
    assert_located(run, "modified", p, leaf, offset)
    assert run.first(p)["leaf_index"] == leaf and run.first(p)["kind"] == "modified"
    # the signed checkpoints covering it are no longer reproduced
    assert any(f["partition"] == p for f in run.findings("checkpoint-mismatch"))


def test_an_updated_key_is_modified_at_its_leaf(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    leaf, offset = row_at(copy_url, "journal", ledger, p)
    execute(copy_url, "UPDATE journal SET record_key = 'someone-else'::bytea WHERE topic = %s"
            " AND kafka_partition = %s AND leaf_index = %s", (ledger.topic, p, leaf))
    run = verify(copy_url, "--json")
    assert_located(run, "modified", p, leaf, offset)
    assert run.first(p)["leaf_index"] == leaf


def test_an_updated_offset_is_modified_and_the_original_offset_named(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    leaf, offset = row_at(copy_url, "journal", ledger, p)
    execute(copy_url, "UPDATE journal SET kafka_offset = kafka_offset + 100000 WHERE topic = %s"
            " AND kafka_partition = %s AND leaf_index = %s", (ledger.topic, p, leaf))
    run = verify(copy_url, "--json")
    found = assert_located(run, "modified", p, leaf, offset)  # where the record really is
    assert str(offset + 100000) in found["detail"]


def test_an_updated_partition_is_missing_here_and_inserted_there(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    leaf, offset = row_at(copy_url, "journal", ledger, p)
    elsewhere = PARTITIONS + 3  # a partition the topic does not have: no index or offset clash
    execute(copy_url, "UPDATE journal SET kafka_partition = %s WHERE topic = %s AND kafka_partition = %s"
            " AND leaf_index = %s", (elsewhere, ledger.topic, p, leaf))
    run = verify(copy_url, "--json")
    assert_located(run, "missing", p, leaf, offset)
    assert_located(run, "inserted", elsewhere, leaf, offset)
    assert run.first(p)["kind"] == "missing" and run.first(p)["leaf_index"] == leaf


def test_a_deleted_row_is_missing(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    leaf, offset = row_at(copy_url, "journal", ledger, p)
    execute(copy_url, "DELETE FROM journal WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s",
            (ledger.topic, p, leaf))
    run = verify(copy_url, "--json")
    assert_located(run, "missing", p, leaf, offset)
    assert run.first(p)["leaf_index"] == leaf


def test_a_forged_row_is_inserted(ledger, copy_url, verify) -> None:
    """A forger appends a row after the last one, with a correctly computed leaf hash."""
    p = busiest(ledger)
    size = len(ledger.records[p])
    next_offset = ledger.records[p][-1].offset + 1
    value = b"forged event"
    leaf_hash = spec_leaf(ledger.topic, p, next_offset, b"k", value)
    execute(copy_url,
            "INSERT INTO journal (topic, kafka_partition, kafka_offset, kafka_timestamp, record_key, record_value,"
            " headers, fingerprint, event_type, schema_version, event_id, protocol_number, entity_key,"
            " occurred_at, payload, is_duplicate, leaf_index, leaf_hash)"
            " SELECT topic, kafka_partition, %s, kafka_timestamp, 'k'::bytea, %s, headers, fingerprint, event_type,"
            " schema_version, gen_random_uuid(), protocol_number, entity_key, occurred_at, payload, true, %s, %s"
            " FROM journal WHERE topic = %s AND kafka_partition = %s ORDER BY leaf_index LIMIT 1",
            (next_offset, value, size, leaf_hash, ledger.topic, p))
    run = verify(copy_url, "--json")
    assert_located(run, "inserted", p, size, next_offset)
    assert run.first(p)["kind"] == "inserted"


def test_two_swapped_leaf_indexes_are_reordered(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    rows = execute(copy_url, "SELECT leaf_index, kafka_offset FROM journal WHERE topic = %s AND kafka_partition = %s"
                   " ORDER BY leaf_index", (ledger.topic, p))
    (a, a_offset), (b, b_offset) = rows[1], rows[-2]
    with psycopg.connect(copy_url) as conn:
        q = "UPDATE journal SET leaf_index = %s WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s"
        conn.execute(q, (-1, ledger.topic, p, a))
        conn.execute(q, (a, ledger.topic, p, b))
        conn.execute(q, (b, ledger.topic, p, -1))
    run = verify(copy_url, "--json")
    first = assert_located(run, "reordered", p, a, b_offset)  # the row now at index a is the one of b
    assert f"leaf {b}" in first["detail"]
    assert_located(run, "reordered", p, b, a_offset)
    assert run.first(p)["leaf_index"] == a
    assert not run.findings("modified") and not run.findings("missing")


def test_a_removed_quarantine_row_is_missing(ledger, copy_url, verify) -> None:
    p = quarantined_partition(copy_url, ledger.topic)
    leaf, offset = row_at(copy_url, "quarantine", ledger, p)
    execute(copy_url, "DELETE FROM quarantine WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s",
            (ledger.topic, p, leaf))
    run = verify(copy_url, "--json")
    assert_located(run, "missing", p, leaf, offset)
    assert run.first(p)["leaf_index"] == leaf


def test_an_edited_tree_node_is_a_tree_mismatch(ledger, copy_url, verify) -> None:
    p = busiest(ledger)
    execute(copy_url, "UPDATE merkle_nodes SET hash = sha256(hash) WHERE topic = %s AND kafka_partition = %s"
            " AND level = 1 AND node_index = 1", (ledger.topic, p))
    run = verify(copy_url, "--json")
    assert run.code == 1
    found = [f for f in run.findings("tree-mismatch") if f["partition"] == p]
    assert found and found[0]["level"] == 1 and found[0]["node_index"] == 1 and found[0]["leaf_index"] == 2


# -- checkpoints ----------------------------------------------------------------------------


def two_checkpoints(ledger: Ledger, url: str) -> tuple[int, Any, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        for p in sorted(ledger.records, key=lambda p: -len(ledger.records[p])):
            history = stored_checkpoints(conn, ledger.topic, p)
            if len(history) >= 2:
                return p, history[-2], history[-1]
    raise AssertionError("no partition has two checkpoints")


def test_an_edited_checkpoint_row_is_forged(ledger, copy_url, verify) -> None:
    p, _, last = two_checkpoints(ledger, copy_url)
    note = last.note.decode() if isinstance(last.note, bytes) else last.note
    text, _, signatures = note.partition("\n\n")
    lines = text.split("\n")
    lines[1] = str(last.size + 1)  # claim one more leaf, signature lines kept
    execute(copy_url, "UPDATE checkpoints SET note = %s WHERE topic = %s AND kafka_partition = %s"
            " AND tree_size = %s", ("\n".join(lines) + "\n\n" + signatures, ledger.topic, p, last.size))
    run = verify(copy_url, "--json")
    assert run.code == 1
    forged = [f for f in run.findings("checkpoint-forged") if f["partition"] == p]
    assert [f["tree_size"] for f in forged] == [last.size], run.findings()


def test_a_checkpoint_resigned_with_another_key_is_forged(ledger, copy_url, verify) -> None:
    p, _, last = two_checkpoints(ledger, copy_url)
    other = Ed25519NoteSigner.generate(ledger.origin(p))
    note = sign_checkpoint(Checkpoint(ledger.origin(p), last.size, last.root), [other])
    execute(copy_url, "UPDATE checkpoints SET note = %s, key_id = %s WHERE topic = %s AND kafka_partition = %s"
            " AND tree_size = %s", (note.decode(), f"{other.key_id:08x}", ledger.topic, p, last.size))
    run = verify(copy_url, "--json")
    assert run.code == 1
    forged = [f for f in run.findings("checkpoint-forged") if f["partition"] == p]
    assert [f["tree_size"] for f in forged] == [last.size]
    assert "pinned" in forged[0]["detail"]


def test_a_consistency_break_between_two_checkpoints_is_inconsistent(ledger, copy_url, verify) -> None:
    """The log's own key signs, at the newer size, the root of another history (a fork)."""
    p, before, last = two_checkpoints(ledger, copy_url)
    fork = CompactRange()
    fork.extend([bytes([i % 256]) * 32 for i in range(last.size)])
    note = sign_checkpoint(Checkpoint(ledger.origin(p), last.size, fork.root()),
                           [ledger.key.signer(ledger.origin(p))])
    execute(copy_url, "UPDATE checkpoints SET note = %s, root_hash = %s, compact_range = %s WHERE topic = %s"
            " AND kafka_partition = %s AND tree_size = %s",
            (note.decode(), fork.root(), list(fork.hashes), ledger.topic, p, last.size))
    run = verify(copy_url, "--json")
    assert run.code == 1
    broken = [f for f in run.findings("checkpoint-inconsistent") if f["partition"] == p]
    assert [f["tree_size"] for f in broken] == [last.size], run.findings()
    assert str(before.size) in broken[0]["detail"]
    assert not run.findings("checkpoint-forged")


def test_a_checkpoint_signed_by_an_unpinned_key_is_forged_when_only_that_partition_key_is_pinned(
        ledger, copy_url, verify) -> None:
    """Pinning one partition's verifier key verifies that origin only: the others are not
    vouched for by any pinned key."""
    p, _, _ = two_checkpoints(ledger, copy_url)
    run = verify(copy_url, "--json", "--vkey", ledger.key.vkey(ledger.origin(p)), vkey=False)
    assert run.code == 1
    assert {f["partition"] for f in run.findings("checkpoint-forged")} == set(ledger.records) - {p}
    assert not [f for f in run.findings() if f["partition"] == p]


# -- against Kafka --------------------------------------------------------------------------


def test_against_kafka_finds_a_value_that_the_ledger_alone_cannot(ledger, copy_url, verify) -> None:
    """A thorough forger changes a value and rewrites its leaf, the tree and the compact range,
    and removes the checkpoints: the ledger is self-consistent; the topic is not like it."""
    p = busiest(ledger)
    leaf, offset = row_at(copy_url, "journal", ledger, p)
    key = next(r.key for r in ledger.records[p] if r.offset == offset)
    forged = b"forged value"
    with psycopg.connect(copy_url) as conn:
        conn.execute("UPDATE journal SET record_value = %s, leaf_hash = %s WHERE topic = %s AND kafka_partition = %s"
                     " AND leaf_index = %s", (forged, spec_leaf(ledger.topic, p, offset, key, forged),
                                               ledger.topic, p, leaf))
        leaves = [bytes(h) for (h,) in conn.execute(
            "SELECT leaf_hash FROM (SELECT leaf_index, leaf_hash FROM journal WHERE topic = %(t)s AND"
            " kafka_partition = %(p)s UNION ALL SELECT leaf_index, leaf_hash FROM quarantine WHERE topic = %(t)s"
            " AND kafka_partition = %(p)s) l ORDER BY leaf_index", {"t": ledger.topic, "p": p})]
        tree = CompactRange()
        nodes = [n for h in leaves for n in tree.append(h)]
        conn.execute("DELETE FROM merkle_nodes WHERE topic = %s AND kafka_partition = %s", (ledger.topic, p))
        with conn.cursor().copy("COPY merkle_nodes (topic, kafka_partition, level, node_index, hash) FROM STDIN") as cp:
            for n in nodes:
                cp.write_row((ledger.topic, p, n.node.level, n.node.index, n.hash))
        conn.execute("UPDATE projector_offsets SET compact_range = %s WHERE topic = %s AND kafka_partition = %s",
                     (list(tree.hashes), ledger.topic, p))
        conn.execute("DELETE FROM checkpoint_anchors WHERE topic = %s AND kafka_partition = %s", (ledger.topic, p))
        conn.execute("DELETE FROM checkpoints WHERE topic = %s AND kafka_partition = %s", (ledger.topic, p))
        for table in ("vindex_checkpoints", "vindex_nodes", "vindex_entries"):
            # index rows left without their index checkpoints are a finding of their own
            conn.execute(f"DELETE FROM {table} WHERE topic = %s AND kafka_partition = %s", (ledger.topic, p))
    alone = verify(copy_url, "--json")
    assert alone.code == 0, alone.out
    run = verify(copy_url, "--json", "--against-kafka")
    found = assert_located(run, "modified", p, leaf, offset)
    assert found["source"] == "kafka" and "value" in found["detail"]
    assert len(run.findings()) == 1


# -- input and reachability -----------------------------------------------------------------


def test_bad_input_and_an_unreachable_ledger_have_their_exit_status(ledger, copy_url, verify) -> None:
    bad = verify(copy_url, "--vkey", "not-a-key", vkey=False)
    assert bad.code == 2 and "--vkey" in bad.err and "Traceback" not in bad.err
    none = verify(copy_url, vkey=False)
    assert none.code == 2 and "no log verifier key" in none.err
    gone = verify("postgresql://nobody@127.0.0.1:9/none")
    assert gone.code == 3 and "Traceback" not in gone.err


def test_the_dev_log_key_file_is_read_where_dev_keys_are_allowed(ledger, copy_url, verify, tmp_path) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "log-signing.key").write_text(ledger.key.private_key_string() + "\n")
    env = {"PROTOCOLO_HOME": str(home)}
    assert verify(copy_url, "--json", vkey=False, env=env).code == 2  # not a dev setup: key must be pinned
    run = verify(copy_url, "--json", vkey=False, env=env | {"PROTOCOLO_DEV_KEYS": "1"})
    assert run.code == 0, run.out + run.err
    assert sum(p["checkpoints_verified"] for p in run.report["partitions"]) >= PARTITIONS
    env_keys = verify(copy_url, "--json", vkey=False, env={"PROTOCOLO_LOG_VKEYS": ",".join(ledger.vkeys)})
    assert env_keys.code == 0, env_keys.out + env_keys.err


def test_verify_writes_nothing(ledger, copy_url, verify) -> None:
    def snapshot() -> list[Any]:
        return [execute(copy_url, f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                        f" FROM {table} t")[0] for table in
                ("journal", "quarantine", "merkle_nodes", "projector_offsets", "checkpoints")]
    before = snapshot()
    assert verify(copy_url, "--json", "--against-kafka").code == 0
    assert snapshot() == before


# -- the chunked walk: the same answer whatever the chunk size ------------------------------


def audit_at_chunk_level(ledger: Ledger, url: str, chunk_level: int) -> set[tuple[Any, ...]]:
    from protocolo.attestation.audit_checkpoints import LogKeys
    from protocolo.attestation.audit_findings import FindingLog
    from protocolo.attestation.ledger_audit import audit_ledger

    findings = FindingLog()
    with psycopg.connect(url) as conn:
        audit_ledger(conn, ledger.topic, LogKeys([VerifierKey.parse(v) for v in ledger.vkeys]), findings,
                     chunk_level=chunk_level)
    assert sum(s.leaves for s in findings.partitions.values()) == sum(len(r) for r in ledger.records.values())
    return {(f.kind, f.partition, f.leaf_index, f.kafka_offset, f.tree_size, f.level, f.node_index)
            for f in findings.kept}


@pytest.mark.parametrize("tampering", ["none", "delete", "swap", "value", "node"])
def test_chunks_of_any_size_find_the_same_differences(ledger, copy_url, tampering) -> None:
    """Chunks of 2 and 4 leaves put chunk edges, the tree above the chunks and checkpoints
    at and between chunk edges to work on the real ledger; the answer is the same as with
    one chunk per partition."""
    p = busiest(ledger)
    rows = execute(copy_url, "SELECT leaf_index FROM journal WHERE topic = %s AND kafka_partition = %s"
                   " ORDER BY leaf_index", (ledger.topic, p))
    a, b = rows[2][0], rows[-3][0]
    where = "WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s"
    if tampering == "delete":
        execute(copy_url, f"DELETE FROM journal {where}", (ledger.topic, p, a))
    elif tampering == "swap":
        with psycopg.connect(copy_url) as conn:
            for old, new in ((a, -1), (b, a), (-1, b)):
                conn.execute(f"UPDATE journal SET leaf_index = %s {where}", (new, ledger.topic, p, old))
    elif tampering == "value":
        execute(copy_url, f"UPDATE journal SET record_value = '\\x01'::bytea {where}", (ledger.topic, p, b))
    elif tampering == "node":
        execute(copy_url, "UPDATE merkle_nodes SET hash = sha256(hash) WHERE topic = %s AND kafka_partition = %s"
                " AND level = 3 AND node_index = 0", (ledger.topic, p))
    answers = {level: audit_at_chunk_level(ledger, copy_url, level) for level in (1, 2, 12)}
    assert answers[1] == answers[2] == answers[12]
    assert bool(answers[12]) == (tampering != "none"), answers[12]


@pytest.mark.parametrize("tampering", ["none", "value"])
def test_partitions_audited_in_processes_find_what_one_process_finds(ledger, copy_url, tampering) -> None:
    """The parallel audit (one process per partition, in the snapshot of the connection
    that started it) keeps the same findings, counts and partition summaries as the walk in
    one process."""
    from protocolo.attestation.audit_checkpoints import LogKeys
    from protocolo.attestation.audit_findings import FindingLog
    from protocolo.attestation.ledger_audit import audit_ledger

    if tampering == "value":
        p = busiest(ledger)
        execute(copy_url, "UPDATE journal SET record_value = '\\x01'::bytea WHERE topic = %s AND"
                " kafka_partition = %s AND leaf_index = 1", (ledger.topic, p))
    logs = []
    for workers in (1, 2):
        findings = FindingLog()
        with psycopg.connect(copy_url) as conn:
            audit_ledger(conn, ledger.topic, LogKeys([VerifierKey.parse(v) for v in ledger.vkeys]), findings,
                         workers=workers)
        logs.append(findings)
    serial, parallel = logs
    assert parallel.sorted() == serial.sorted()
    assert parallel.counts == serial.counts
    assert parallel.partitions == serial.partitions
    assert sum(s.leaves for s in parallel.partitions.values()) == sum(len(r) for r in ledger.records.values())
    assert bool(parallel.total) == (tampering == "value")
