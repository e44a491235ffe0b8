"""The verifiable index on a real ledger: maintained at checkpoint time, signed, proved,
and checked by `protocolo verify`.

One ledger is made for the module on the real broker and PostgreSQL: customers (CPF and
customer code) with contacts spread over the partitions, a request by CPF, and records the
projector quarantines; projected and checkpointed twice. The oracle is the independent
transcription of docs/evidence-format.md §11 (vindex_oracle) applied to the records a raw
consumer reads off the topic, never the rows or the code under test.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_flow import contact_opened, drain, now_s, project, start_runtime
from ledger_copies import database_copy, ledger_database, ledger_settings, run_verify
from test_merkle_tree import publish_mixed

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.index_store import StoredIndex, index_checkpoints
from protocolo.attestation.log_key import LogKey
from protocolo.core.config import Settings
from protocolo.evidence.checkpoint import open_checkpoint
from protocolo.evidence.note import Ed25519NoteVerifier, VerifierKey
from protocolo.evidence.vindex import MapKey
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evidence"))
import vindex_oracle as oracle  # noqa: E402

DEPLOYMENT = "acme-index"
PARTITIONS = 4
REPO = Path(__file__).resolve().parents[2]
SCHEMAS = oracle.published_schemas(REPO / "schemas" / "avro")


def valid_cpf(base: str) -> str:
    digits = [int(c) for c in base]
    for weight in (10, 11):
        total = sum(d * (weight - i) for i, d in enumerate(digits))
        digits.append((total * 10 % 11) % 10)
    return "".join(map(str, digits))


CPFS = [valid_cpf(f"{n:09d}") for n in (111444777, 123456789, 987654321)]


@dataclass
class Ledger:
    template: str
    admin_url: str
    topic: str
    bootstrap: str
    home: Path
    key: LogKey
    records: dict[int, list[Any]]
    cpf_indexes: list[str]
    settings: Settings

    def origin(self, partition: int) -> str:
        return f"protocolo/{DEPLOYMENT}/{self.topic}/{partition}"

    def oracle_map(self, partition: int, size: int) -> dict[bytes, list[int]]:
        lists: dict[bytes, list[int]] = {}
        for i, r in enumerate(self.records[partition][:size]):
            for kind, value in oracle.leaf_pairs(r.key, r.value or b"", SCHEMAS):
                lists.setdefault(oracle.key_hash(kind, value), []).append(i)
        return lists


def _contacts(rt: Any, issuer: ProtocolIssuer, cpfs: list[str], per_customer: int) -> None:
    events = []
    for n, cpf in enumerate(cpfs):
        for c in range(per_customer):
            p = issuer.issue()
            customer = {"cpf": cpf, "customer_code": f"C-{n}", "name": f"Cliente {n}"}
            events += [Event("ContactOpened", contact_opened(customer), protocol_number=p,
                             occurred_at=now_s()),
                       Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"},
                             protocol_number=p, occurred_at=now_s()),
                       Event("ContactClosed", {"outcome": "RESOLVED", "summary": f"ok {c}"},
                             protocol_number=p, occurred_at=now_s())]
    with rt.publisher("index-test") as publisher:
        publisher.publish_many(events)


@pytest.fixture(scope="module")
def ledger(backend, tmp_path_factory) -> Iterator[Ledger]:
    with ledger_database(backend.database_url, "vindex_tpl") as name:
        settings = ledger_settings(backend, name, "vindex", tmp_path_factory.mktemp("vindex-home"), PARTITIONS)
        topic = settings.topic
        rt = start_runtime(settings)
        key = LogKey.generate(f"protocolo/{DEPLOYMENT}")
        with ProtocolIssuer(rt.registry_url) as issuer:
            _contacts(rt, issuer, CPFS, 3)
            publish_mixed(rt, 12)
            project(rt)
            with rt.connect(autocommit=True) as conn:
                checkpoint_partitions(conn, key, topic, DEPLOYMENT)
            _contacts(rt, issuer, CPFS[:1], 2)
            with rt.publisher("index-test") as publisher:
                publisher.publish_many([Event("RetrievalRequested", {
                    "request_id": str(uuid.uuid4()), "kind": "RECORDING", "requested_via": "WEB_FORM",
                    "delivery_channel": "EMAIL", "customer": {"cpf": CPFS[0], "name": "Cliente 0"},
                    "window_from": now_s(), "window_to": now_s()}, occurred_at=now_s())])
            project(rt)
            with rt.connect(autocommit=True) as conn:
                checkpoint_partitions(conn, key, topic, DEPLOYMENT)
        records: dict[int, list[Any]] = {}
        for r in drain(backend.kafka_bootstrap, topic):
            records.setdefault(r.partition, []).append(r)
        for p in records:
            records[p].sort(key=lambda r: r.offset)
        cpf_indexes = sorted({value for rs in records.values() for r in rs
                              for kind, value in oracle.leaf_pairs(r.key, r.value or b"", SCHEMAS)
                              if kind == "cpf-index"})
        assert len(cpf_indexes) == len(CPFS)
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            # the publisher's key vault keeps a connection to the template; copies need none
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                         " AND pid <> pg_backend_pid()", (name,))
        yield Ledger(name, backend.database_url, topic, backend.kafka_bootstrap, settings.home, key, records,
                     cpf_indexes, settings)


@pytest.fixture
def copy_url(ledger: Ledger) -> Iterator[str]:
    with database_copy(ledger.admin_url, ledger.template, "vindex") as url:
        yield url


def _pinned(ledger: Ledger, partition: int) -> Ed25519NoteVerifier:
    vkey = VerifierKey.parse(ledger.key.vkey(ledger.origin(partition)))
    return Ed25519NoteVerifier(vkey.name, vkey.public_key)


def test_every_checkpoint_signs_the_map_of_the_topic(ledger: Ledger, copy_url: str) -> None:
    with psycopg.connect(copy_url, autocommit=True) as conn:
        for partition in ledger.records:
            cps = index_checkpoints(conn, ledger.topic, partition)
            sizes = [int(s) for (s,) in conn.execute(
                "SELECT tree_size FROM checkpoints WHERE topic = %s AND kafka_partition = %s"
                " ORDER BY tree_size", (ledger.topic, partition))]
            assert [c.size for c in cps] == sizes and sizes
            for cp in cps:
                signed = open_checkpoint(cp.note, [_pinned(ledger, partition)],
                                         origin=ledger.origin(partition)).checkpoint
                (line,) = signed.extensions
                assert line.startswith("protocolo-vindex/v1 ")
                expected = oracle.root(ledger.oracle_map(partition, cp.size))
                assert oracle.base64.b64decode(line.split(" ")[1]) == expected == cp.map_root


def test_lookup_proofs_give_every_leaf_of_a_key_or_its_absence(ledger: Ledger, copy_url: str) -> None:
    cpf_seen = 0
    with psycopg.connect(copy_url, autocommit=True) as conn:
        for partition in ledger.records:
            store = StoredIndex(conn, ledger.topic, partition)
            for cp in index_checkpoints(conn, ledger.topic, partition):
                expected = ledger.oracle_map(partition, cp.size)
                keys = {MapKey(kind, value) for r in ledger.records[partition]
                        for kind, value in oracle.leaf_pairs(r.key, r.value or b"", SCHEMAS)}
                keys |= {MapKey("cpf-index", c) for c in ledger.cpf_indexes}
                keys.add(MapKey("protocol", "209900000000000"))
                for key in sorted(keys):
                    proof = store.prove(key, cp.size).to_json()
                    got = oracle.verify(json.loads(json.dumps(proof)), cp.map_root, cp.size)
                    assert got == expected.get(oracle.key_hash(key.kind, key.value)), key
                    if key.kind == "cpf-index" and got:
                        cpf_seen += 1
    assert cpf_seen >= 3


def test_a_first_index_built_in_key_order_is_the_map(ledger: Ledger, copy_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The first index of a partition (a ledger checkpointed before the index) is built in
    one pass in key order, a few entries and nodes at a time: the map of the spec, and its
    stored nodes give lookup proofs the transcription accepts."""
    from protocolo.attestation import index_store

    monkeypatch.setattr(index_store, "ENTRY_BATCH", 5)
    monkeypatch.setattr(index_store, "KEY_BATCH", 3)
    partition, _, size = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url) as conn:
        with conn.transaction():
            for table, column in (("vindex_checkpoints", "tree_size"), ("vindex_nodes", "map_size"),
                                  ("vindex_entries", "leaf_index")):
                conn.execute(f"DELETE FROM {table} WHERE topic = %s AND kafka_partition = %s"
                             f" AND {column} >= 0", (ledger.topic, partition))
            store = StoredIndex(conn, ledger.topic, partition)
            root = store.advance(index_store.published_catalogue(), size)
        expected = ledger.oracle_map(partition, size)
        assert root == oracle.root(expected)
        for khash, indexes in expected.items():
            kind, value = next(conn.execute("SELECT kind, key_value FROM vindex_entries WHERE topic = %s"
                                            " AND kafka_partition = %s AND key_hash = %s LIMIT 1",
                                            (ledger.topic, partition, khash)))
            proof = store.prove(MapKey(kind, value), size).to_json()
            assert oracle.verify(json.loads(json.dumps(proof)), root, size) == indexes


def _verify(ledger: Ledger, url: str, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    vkeys = [a for p in range(PARTITIONS) for a in ("--vkey", ledger.key.vkey(ledger.origin(p)))]
    run = run_verify(monkeypatch, capsys, home=ledger.home, database_url=url, bootstrap=ledger.bootstrap,
                     topic=ledger.topic, partitions=PARTITIONS, argv=["--json", "--quiet", *vkeys])
    return run.code, run.report


def _index_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"].startswith("index-")]


def _contact_partition(ledger: Ledger) -> tuple[int, str]:
    for partition, records in ledger.records.items():
        for r in records:
            if r.key and len(r.key) == 15 and r.key.isdigit():
                return partition, r.key.decode()
    raise AssertionError("no contact")


def test_verify_covers_the_index(ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and report["clean"], report["findings"]


def test_verify_names_a_key_whose_stored_list_was_altered(ledger: Ledger, copy_url: str,
                                                         monkeypatch, capsys) -> None:
    partition, protocol = _contact_partition(ledger)
    khash = oracle.key_hash("protocol", protocol)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        deleted = conn.execute(
            "DELETE FROM vindex_entries WHERE ctid = (SELECT ctid FROM vindex_entries WHERE topic = %s"
            " AND kafka_partition = %s AND key_hash = %s ORDER BY leaf_index DESC LIMIT 1)",
            (ledger.topic, partition, khash)).rowcount
    assert deleted == 1
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    found = _index_findings(report)
    assert code == 1 and found
    assert all(f["partition"] == partition and f["kind"] == "index-mismatch" for f in found)
    assert any(f"key protocol:{protocol}" in f["detail"] for f in found), found


def test_verify_names_an_altered_map_node(ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    partition, protocol = _contact_partition(ledger)
    khash = oracle.key_hash("protocol", protocol)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        altered = conn.execute(
            "UPDATE vindex_nodes SET hash = %s WHERE topic = %s AND kafka_partition = %s"
            " AND leaf_key = %s AND map_size = (SELECT max(map_size) FROM vindex_nodes WHERE"
            " topic = %s AND kafka_partition = %s AND leaf_key = %s)",
            (b"\x07" * 32, ledger.topic, partition, khash, ledger.topic, partition, khash)).rowcount
    assert altered == 1
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    found = _index_findings(report)
    assert code == 1 and len(found) == 1, found
    assert found[0]["partition"] == partition
    assert f"the leaf of key protocol:{protocol}" in found[0]["detail"]


def test_verify_in_chunks_sorted_on_disk_finds_the_same(ledger: Ledger, copy_url: str,
                                                         monkeypatch, capsys) -> None:
    """Stretches applied a few keys at a time in key order (as a long one is): a clean
    index stays clean, and an altered leaf of the newest map state and a key's altered
    entry are each named once."""
    from protocolo.attestation import audit_index

    monkeypatch.setattr(audit_index, "SPILL_PAIRS", 3)
    monkeypatch.setattr(audit_index, "CHUNK_KEYS", 2)
    spilled: list[bool] = []
    held = audit_index.StretchKeys.__init__

    def spy(self: Any, pairs: Any) -> None:
        held(self, pairs)
        spilled.append(self._disk is not None)

    monkeypatch.setattr(audit_index.StretchKeys, "__init__", spy)
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and report["clean"], report["findings"]
    assert any(spilled), "no stretch was long enough to be sorted on disk"
    partition, first, second = _grown_partition(ledger, copy_url)
    protocol = _new_protocol(ledger, partition, first)
    assert protocol is not None
    khash = oracle.key_hash("protocol", protocol)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        altered = conn.execute(
            "UPDATE vindex_nodes SET list_hash = %s WHERE topic = %s AND kafka_partition = %s"
            " AND leaf_key = %s AND map_size = %s",
            (b"\x09" * 32, ledger.topic, partition, khash, second)).rowcount
        renamed = conn.execute(
            "UPDATE vindex_entries SET key_value = 'x' WHERE topic = %s AND kafka_partition = %s"
            " AND key_hash = %s", (ledger.topic, partition, khash)).rowcount
    assert altered == 1 and renamed >= 1
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    found = sorted(f["detail"] for f in _index_findings(report))
    assert code == 1 and len(found) == 2, found
    assert f"key protocol:{protocol}: stored with leaves" in found[0] and "protocol:x" in found[0]
    # a leaf finished in a later chunk than its key's is named from its stored entries
    assert any(f"the leaf of key protocol:{name}, differs" in found[1] for name in (protocol, "x"))


def test_verify_refuses_an_index_checkpoint_not_signed(ledger: Ledger, copy_url: str,
                                                      monkeypatch, capsys) -> None:
    partition, _ = _contact_partition(ledger)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("UPDATE vindex_checkpoints SET note = replace(note, 'protocolo-vindex/v1 ',"
                     " 'protocolo-vindex/v1 A') WHERE topic = %s AND kafka_partition = %s",
                     (ledger.topic, partition))
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    found = _index_findings(report)
    assert code == 1 and found and {f["kind"] for f in found} == {"index-forged"}
    assert {f["partition"] for f in found} == {partition}


def _grown_partition(ledger: Ledger, url: str) -> tuple[int, int, int]:
    """A partition whose second index checkpoint covers a contact new in it: (partition,
    first size, second size)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for partition in sorted(ledger.records):
            sizes = [cp.size for cp in index_checkpoints(conn, ledger.topic, partition)]
            if len(sizes) == 2 and 0 < sizes[0] < sizes[1] and \
                    _new_protocol(ledger, partition, sizes[0]) is not None:
                return partition, sizes[0], sizes[1]
    raise AssertionError("no partition has a new contact between the two index checkpoints")


def _new_protocol(ledger: Ledger, partition: int, first: int) -> str | None:
    """A contact whose first record is in the second stretch of leaves."""
    earlier = {r.key for r in ledger.records[partition][:first]}
    for r in ledger.records[partition][first:]:
        if r.key and len(r.key) == 15 and r.key.isdigit() and r.key not in earlier:
            return str(r.key.decode())
    return None


def test_verify_names_an_altered_node_of_an_earlier_map_state(ledger: Ledger, copy_url: str,
                                                              monkeypatch, capsys) -> None:
    """The root of the first map state is rewritten by the second: its old version is what
    a lookup proof at the first index checkpoint stands on, and is checked there."""
    partition, first, _ = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        altered = conn.execute(
            "UPDATE vindex_nodes SET hash = %s WHERE topic = %s AND kafka_partition = %s"
            " AND depth = 0 AND map_size = %s", (b"\x05" * 32, ledger.topic, partition, first)).rowcount
    assert altered == 1
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    found = _index_findings(report)
    assert code == 1 and len(found) == 1, found
    assert (found[0]["partition"], found[0]["tree_size"]) == (partition, first)
    assert "map node (depth 0, prefix 0), an inner node, differs" in found[0]["detail"]


def test_verify_finds_map_rows_added_where_nothing_changed(ledger: Ledger, copy_url: str,
                                                           monkeypatch, capsys) -> None:
    """A node at a map size no index checkpoint has, and an entry for a key no leaf has:
    rows the replay never meets, found by counting."""
    partition, first, second = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO vindex_nodes SELECT topic, kafka_partition, depth, prefix, %s, hash,"
            " leaf_key, list_hash FROM vindex_nodes WHERE topic = %s AND kafka_partition = %s"
            " AND depth = 0 AND map_size = %s", (second + 5, ledger.topic, partition, second))
        conn.execute(
            "INSERT INTO vindex_entries VALUES (%s, %s, %s, 0, 'protocol', '209900000000001')",
            (ledger.topic, partition, oracle.key_hash("protocol", "209900000000001")))
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    details = [f["detail"] for f in _index_findings(report)]
    assert code == 1 and len(details) == 2, details
    assert any(f"1 stored map nodes at map size {second + 5}, which no index checkpoint has" in d
               for d in details), details
    assert any(f"1 stored entries for leaves [0, {first}) that no row there gives" in d
               for d in details), details


def test_verify_stops_a_partition_whose_stored_list_cannot_be_built_on(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """An entry slipped in before a key's first leaf: when the key comes, its stored earlier
    list is not what its map leaf (absent) holds, so the replay cannot go on from it."""
    partition, first, second = _grown_partition(ledger, copy_url)
    protocol = _new_protocol(ledger, partition, first)
    assert protocol is not None
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vindex_entries VALUES (%s, %s, %s, 0, 'protocol', %s)",
                     (ledger.topic, partition, oracle.key_hash("protocol", protocol), protocol))
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    found = _index_findings(report)
    assert code == 1 and {f["partition"] for f in found} == {partition}, found
    stopped = [f for f in found if "were not checked" in f["detail"]]
    assert len(stopped) == 1 and stopped[0]["tree_size"] == second, found
    assert f"key protocol:{protocol}: the entries stored before leaf {first} ([0] (1))" \
        in stopped[0]["detail"]


# -- bundles carry the lookup proofs of their subject --------------------------------------


def _busiest_contact(ledger: Ledger) -> tuple[int, str]:
    """The partition and protocol number of a contact with several records, and another
    contact in that partition."""
    best: tuple[int, int, str] = (0, -1, "")
    for partition, records in ledger.records.items():
        counts: dict[str, int] = {}
        for r in records:
            if r.key and len(r.key) == 15 and r.key.isdigit():
                counts[r.key.decode()] = counts.get(r.key.decode(), 0) + 1
        others = [k for k in counts if counts[k] >= 3]
        if len(others) >= 2 and counts[others[0]] > best[0]:
            best = (counts[others[0]], partition, others[0])
    assert best[1] >= 0
    return best[1], best[2]


def _write(ledger: Ledger, url: str, protocol: str) -> bytes:
    from datetime import UTC, datetime

    from protocolo.attestation.bundle_writer import BundleRequest, WriterContext, write_bundle

    settings = Settings(home=ledger.home, kafka_bootstrap=ledger.bootstrap, database_url=url,
                        topic=ledger.topic, partitions=PARTITIONS, group_id="unused", dev_keys=True)
    sealer = start_runtime(settings).sealer()
    context = WriterContext(DEPLOYMENT, ledger.topic, ledger.key, sealer, "test")
    with psycopg.connect(url, autocommit=True) as conn:
        return write_bundle(conn, BundleRequest(protocol), context, datetime.now(UTC))


def _check(ledger: Ledger, data: bytes, protocol: str) -> Any:
    from protocolo.attestation.bundle_writer import deployment_trust
    from protocolo.evidence.bundle import Expected, verify_bundle

    trust = deployment_trust(ledger.key, DEPLOYMENT, ledger.topic, range(PARTITIONS))
    return verify_bundle(data, trust, Expected(protocol_number=protocol))


def _failures(report: Any) -> dict[str, str]:
    return {f.reason: f.detail for f in report.findings if not f.ok}


def test_a_contact_bundle_proves_it_holds_every_record(ledger: Ledger, copy_url: str) -> None:
    partition, protocol = _busiest_contact(ledger)
    report = _check(ledger, _write(ledger, copy_url, protocol), protocol)
    assert report.checks_passed, _failures(report)
    assert not [w for w in report.warnings if "completeness" in w]
    complete = [f for f in report.findings if f.ok and "every record of its subject" in f.detail]
    assert [f.subject for f in complete] == [f"index/p{partition}"]
    held = sorted(v.leaf_index for v in report.records)
    expected = ledger.oracle_map(partition, 10**9)[oracle.key_hash("protocol", protocol)]
    assert held == expected  # the oracle: every record of that key on the topic


def test_a_record_left_out_is_named(ledger: Ledger, copy_url: str, monkeypatch) -> None:
    from protocolo.attestation import bundle_writer

    partition, protocol = _busiest_contact(ledger)
    original = bundle_writer.journal_records
    monkeypatch.setattr(bundle_writer, "journal_records",
                        lambda *a, **k: original(*a, **k)[:-1])  # the maker drops the last one
    report = _check(ledger, _write(ledger, copy_url, protocol), protocol)
    assert "record-missing" in _failures(report), _failures(report)
    assert f"partition {partition}" in _failures(report)["record-missing"]


def test_a_record_of_another_contact_is_named(ledger: Ledger, copy_url: str, monkeypatch) -> None:
    from protocolo.attestation import bundle_writer

    partition, protocol = _busiest_contact(ledger)
    other = next(r for r in ledger.records[partition]
                 if r.key and r.key.isdigit() and len(r.key) == 15 and r.key.decode() != protocol)
    original = bundle_writer.journal_records
    monkeypatch.setattr(bundle_writer, "journal_records", lambda conn, topic, positions: original(
        conn, topic, [*positions, (partition, other.offset)]))
    report = _check(ledger, _write(ledger, copy_url, protocol), protocol)
    assert "record-not-in-index" in _failures(report), _failures(report)


def _with_lookups(monkeypatch, change) -> None:
    from protocolo.attestation import bundle_writer

    original = bundle_writer.lookups
    monkeypatch.setattr(bundle_writer, "lookups", lambda *a: change(original(*a), *a))


def test_a_lookup_proof_for_another_key_is_named(ledger: Ledger, copy_url: str, monkeypatch) -> None:
    import dataclasses as dc

    from protocolo.attestation.index_store import StoredIndex

    partition, protocol = _busiest_contact(ledger)
    other = next(r.key.decode() for r in ledger.records[partition]
                 if r.key and r.key.isdigit() and len(r.key) == 15 and r.key.decode() != protocol)

    def swap(found, conn, topic, stored, subject):
        proof = StoredIndex(conn, topic, found[0].partition).prove(MapKey("protocol", other),
                                                                   found[0].size)
        body = (json.dumps(proof.to_json(), sort_keys=True, indent=2) + "\n").encode()
        return [dc.replace(found[0], proof=body), *found[1:]]

    _with_lookups(monkeypatch, swap)
    report = _check(ledger, _write(ledger, copy_url, protocol), protocol)
    assert "index-proof-missing" in _failures(report), _failures(report)


def test_a_lookup_proof_for_another_checkpoint_is_named(ledger: Ledger, copy_url: str,
                                                        monkeypatch) -> None:
    import dataclasses as dc

    from protocolo.attestation.index_store import StoredIndex, index_checkpoints

    with psycopg.connect(copy_url) as conn:
        grown = [p for p in ledger.records if len(index_checkpoints(conn, ledger.topic, p)) >= 2]
    assert grown, "the second round grew a partition"
    protocol = next(r.key.decode() for r in ledger.records[grown[0]]
                    if r.key and r.key.isdigit() and len(r.key) == 15)

    def older(found, conn, topic, stored, subject):
        first = index_checkpoints(conn, topic, found[0].partition)[0]
        proof = StoredIndex(conn, topic, first.partition).prove(MapKey("protocol", protocol),
                                                                first.size)
        body = (json.dumps(proof.to_json(), sort_keys=True, indent=2) + "\n").encode()
        return [dc.replace(found[0], proof=body), *found[1:]]

    _with_lookups(monkeypatch, older)
    report = _check(ledger, _write(ledger, copy_url, protocol), protocol)
    assert "lookup-other-checkpoint" in _failures(report), _failures(report)


def test_a_map_root_not_signed_is_named(ledger: Ledger, copy_url: str, monkeypatch) -> None:
    import dataclasses as dc

    _, protocol = _busiest_contact(ledger)

    def unsigned(found, *_):
        note = found[0].index_checkpoint.replace(b"protocolo-vindex/v1 ", b"protocolo-vindex/v1 A")
        return [dc.replace(f, index_checkpoint=note) for f in found]

    _with_lookups(monkeypatch, unsigned)
    report = _check(ledger, _write(ledger, copy_url, protocol), protocol)
    assert "index-not-signed" in _failures(report), _failures(report)


def _undo_last_checkpoint(ledger: Ledger, url: str) -> tuple[int, int, int, bytes]:
    """Take a partition with two index checkpoints back to before the second one (rows of
    the checkpoint, its anchors and its index removed); (partition, old size, size, map root)."""
    from protocolo.attestation.index_store import index_checkpoints

    partition, _, _ = _grown_partition(ledger, url)  # a new contact: three new keys at least
    with psycopg.connect(url, autocommit=True) as conn:
        first, last = index_checkpoints(conn, ledger.topic, partition)[-2:]
        where = "WHERE topic = %s AND kafka_partition = %s"
        args = (ledger.topic, partition)
        conn.execute(f"DELETE FROM checkpoint_anchors {where} AND tree_size = %s", (*args, last.size))
        conn.execute(f"DELETE FROM checkpoints {where} AND tree_size = %s", (*args, last.size))
        conn.execute(f"DELETE FROM vindex_checkpoints {where} AND tree_size = %s", (*args, last.size))
        conn.execute(f"DELETE FROM vindex_nodes {where} AND map_size = %s", (*args, last.size))
        conn.execute(f"DELETE FROM vindex_entries {where} AND leaf_index >= %s", (*args, first.size))
    return partition, first.size, last.size, last.map_root


@pytest.mark.parametrize("chunk", [None, 2])
def test_the_map_root_is_reproduced_when_the_checkpoint_is_signed_again(
        ledger: Ledger, copy_url: str, chunk: int | None, monkeypatch, capsys) -> None:
    """Signed again, whole or applied 2 keys at a time in key order (as a long stretch
    is): the same map root, and the nodes and entries verify."""
    from protocolo.attestation import index_store
    from protocolo.attestation.checkpointer import checkpoint_partition

    if chunk is not None:
        monkeypatch.setattr(index_store, "UPDATE_KEYS", chunk)
    partition, _, size, map_root = _undo_last_checkpoint(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        made = checkpoint_partition(conn, ledger.key, ledger.topic, DEPLOYMENT, partition)
        assert made is not None and made.size == size
        assert index_checkpoints(conn, ledger.topic, partition)[-1].map_root == map_root
    code, report = _verify(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and report["clean"], report["findings"]


def test_a_leaf_without_its_row_refuses_the_checkpoint_and_signs_nothing(ledger: Ledger,
                                                                         copy_url: str) -> None:
    from protocolo.attestation.checkpointer import CheckpointRefused, checkpoint_partition

    partition, old, size, _ = _undo_last_checkpoint(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        deleted = conn.execute(
            "DELETE FROM journal WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s",
            (ledger.topic, partition, size - 1)).rowcount
        assert deleted == 1
        with pytest.raises(CheckpointRefused) as refused:
            checkpoint_partition(conn, ledger.key, ledger.topic, DEPLOYMENT, partition)
        assert refused.value.reason == "index-leaves-missing"
        assert f"leaf {size - 1}" in str(refused.value)
        for table in ("checkpoints", "vindex_checkpoints"):
            (newest,) = conn.execute(f"SELECT max(tree_size) FROM {table} WHERE topic = %s AND"
                                     " kafka_partition = %s", (ledger.topic, partition)).fetchone()
            assert newest == old, table
