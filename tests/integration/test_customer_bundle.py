"""A customer's bundle on a real ledger: every contact and request of one customer, in every
partition, proven complete by the verifiable index's lookup proofs.

One ledger for the module (real broker and PostgreSQL, 4 partitions): the customer has two
contacts in each partition (protocol numbers chosen with Kafka's own partitioner) and a
request by CPF; another customer has contacts too. The oracle is the records a raw consumer
reads off the topic, mapped by the independent transcription of docs/evidence-format.md §11
(plain fastavro reading the blind-index fields), never the rows or the code under test.
Every verification pins the deployment's keys (derived from its signing key), never the
bundle's.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_flow import contact_opened, drain, now_s, project, start_runtime
from kafka.partitioner.default import murmur2
from ledger_copies import ledger_database, ledger_settings
from test_verifiable_index import SCHEMAS, oracle, valid_cpf

from protocolo.attestation import bundle_customer, bundle_writer
from protocolo.attestation.bundle_customer import CustomerRef, write_customer_bundle
from protocolo.attestation.bundle_writer import BundleRequest, WriterContext, deployment_trust
from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import LogKey
from protocolo.cli import main as cli_main
from protocolo.evidence.bundle import Expected, verify_bundle
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

DEPLOYMENT = "acme-customer"
PARTITIONS = 4
REPO = Path(__file__).resolve().parents[2]
CUSTOMER, OTHER, SINGLE = valid_cpf("222333444"), valid_cpf("555666777"), valid_cpf("888999000")


@dataclass
class Ledger:
    topic: str
    url: str
    home: Path
    bootstrap: str
    key: LogKey
    records: list[Any]
    cpf_index: str
    other_index: str
    single_index: str  # a customer with one contact: the other partitions prove absence
    sealer: Any


def _protocols_in_every_partition(issuer: ProtocolIssuer, per_partition: int) -> list[str]:
    partitions = list(range(PARTITIONS))
    chosen: dict[int, list[str]] = {p: [] for p in partitions}
    while any(len(v) < per_partition for v in chosen.values()):
        p = issuer.issue()
        where = (murmur2(p.encode()) & 0x7FFFFFFF) % PARTITIONS  # Kafka's default partitioner
        if len(chosen[where]) < per_partition:
            chosen[where].append(p)
    return [p for ps in chosen.values() for p in ps]


def _contact(protocol: str, cpf: str, n: int) -> list[Event]:
    customer = {"cpf": cpf, "customer_code": f"C-{cpf[:4]}", "name": f"Cliente {n}"}
    return [Event("ContactOpened", contact_opened(customer), protocol_number=protocol, occurred_at=now_s()),
            Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"},
                  protocol_number=protocol, occurred_at=now_s()),
            Event("ContactClosed", {"outcome": "RESOLVED", "summary": f"ok {n}"},
                  protocol_number=protocol, occurred_at=now_s())]


@pytest.fixture(scope="module")
def ledger(backend, tmp_path_factory) -> Iterator[Ledger]:
    with ledger_database(backend.database_url, "custb") as name:
        settings = ledger_settings(backend, name, "custb", tmp_path_factory.mktemp("custb-home"), PARTITIONS)
        rt = start_runtime(settings)
        key = LogKey.generate(f"protocolo/{DEPLOYMENT}")
        with ProtocolIssuer(rt.registry_url) as issuer:
            mine = _protocols_in_every_partition(issuer, 2)
            theirs = _protocols_in_every_partition(issuer, 1)
            single = issuer.issue()
        events = [e for n, p in enumerate(mine) for e in _contact(p, CUSTOMER, n)]
        events += [e for n, p in enumerate(theirs) for e in _contact(p, OTHER, n)]
        events += _contact(single, SINGLE, 0)
        events.append(Event("RetrievalRequested", {
            "request_id": str(uuid.uuid4()), "kind": "RECORDING", "requested_via": "WEB_FORM",
            "delivery_channel": "EMAIL", "customer": {"cpf": CUSTOMER, "name": "Cliente"},
            "window_from": now_s(), "window_to": now_s()}, occurred_at=now_s()))
        with rt.publisher("customer-bundle-test") as publisher:
            publisher.publish_many(events)
        project(rt)
        with rt.connect(autocommit=True) as conn:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        records = drain(backend.kafka_bootstrap, settings.topic)
        indexes = {cpf: rt.sealer().index.cpf(cpf) for cpf in (CUSTOMER, OTHER, SINGLE)}
        yield Ledger(settings.topic, settings.database_url, settings.home, backend.kafka_bootstrap, key, records,
                     indexes[CUSTOMER], indexes[OTHER], indexes[SINGLE], rt.sealer())


def _oracle_positions(ledger: Ledger, cpf_index: str) -> set[tuple[int, int]]:
    """The customer's records, from the topic: those carrying their blind index, and every
    record whose Kafka key is the key of one of those (their contacts and requests)."""
    pairs = {(r.partition, r.offset): oracle.leaf_pairs(r.key, r.value or b"", SCHEMAS)
             for r in ledger.records}
    keys = {r.key for r in ledger.records if ("cpf-index", cpf_index) in pairs[(r.partition, r.offset)]}
    return {(r.partition, r.offset) for r in ledger.records if r.key in keys}


def _write(ledger: Ledger, cpf_index: str, field: str = "cpf_index") -> bytes:
    context = WriterContext(DEPLOYMENT, ledger.topic, ledger.key, ledger.sealer, "test")
    with psycopg.connect(ledger.url, autocommit=True) as conn:
        return write_customer_bundle(conn, CustomerRef(field, cpf_index), BundleRequest(None),
                                     context, PARTITIONS, datetime.now(UTC))


def _check(ledger: Ledger, data: bytes, customer_index: str | None = None) -> Any:
    trust = deployment_trust(ledger.key, DEPLOYMENT, ledger.topic, range(PARTITIONS))
    return verify_bundle(data, trust, Expected(customer_index=customer_index))


def _failures(report: Any) -> dict[str, str]:
    found = {f.reason: f.detail for f in report.findings if not f.ok}
    found.update({r.reason: r.detail for r in report.records if not r.ok})
    return found


def _vkeys(ledger: Ledger) -> list[str]:
    return [a for p in range(PARTITIONS)
            for a in ("--vkey", ledger.key.vkey(f"protocolo/{DEPLOYMENT}/{ledger.topic}/{p}"))]


def test_the_customer_bundle_holds_every_record_in_every_partition(ledger: Ledger,
                                                                   tmp_path: Path) -> None:
    data = _write(ledger, ledger.cpf_index)
    report = _check(ledger, data, ledger.cpf_index)
    assert report.verdict == "VALID", _failures(report)
    expected = _oracle_positions(ledger, ledger.cpf_index)
    assert {p for p, _ in expected} == set(range(PARTITIONS))  # the customer is in every partition
    assert {(r.partition, r.offset) for r in report.records} == expected
    complete = sorted(f.subject for f in report.findings if f.ok and "every record of its subject" in f.detail)
    assert complete == [f"index/p{p}" for p in range(PARTITIONS)]
    assert f"cpf_index {ledger.cpf_index}" in report.proven()
    assert CUSTOMER not in report.render()  # the CPF in clear only when revealed
    # the published verifier, run as a recipient would, with the keys pinned on its command line
    bundle = tmp_path / "customer.zip"
    bundle.write_bytes(data)
    done = subprocess.run([sys.executable, str(REPO / "verifier" / "protocolo_verify.py"), str(bundle),
                           *_vkeys(ledger), "--customer-index", ledger.cpf_index],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERDICT: VALID" in done.stdout and ledger.cpf_index in done.stdout


def test_a_customer_in_one_partition_is_proven_absent_from_the_others(ledger: Ledger,
                                                                     tmp_path: Path) -> None:
    data = _write(ledger, ledger.single_index)
    report = _check(ledger, data, ledger.single_index)
    assert report.verdict == "VALID", _failures(report)
    expected = _oracle_positions(ledger, ledger.single_index)
    assert len({p for p, _ in expected}) == 1 and len(expected) == 3
    assert {(r.partition, r.offset) for r in report.records} == expected
    complete = sorted(f.subject for f in report.findings if f.ok and "every record of its subject" in f.detail)
    assert complete == [f"index/p{p}" for p in range(PARTITIONS)]  # absence proven in the other three
    bundle = tmp_path / "single.zip"
    bundle.write_bytes(data)
    bad = subprocess.run([sys.executable, str(REPO / "verifier" / "protocolo_verify.py"), str(bundle),
                          *_vkeys(ledger), "--customer-index", "not-hex"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--customer-index" in bad.stderr, bad.stderr


def test_by_customer_code_the_same_contacts_are_proven(ledger: Ledger) -> None:
    code_index = ledger.sealer.index.customer_code(f"C-{CUSTOMER[:4]}")
    report = _check(ledger, _write(ledger, code_index, "customer_code_index"), code_index)
    assert report.verdict == "VALID", _failures(report)
    contacts = {(r.partition, r.offset) for r in report.records if r.event_type.startswith("Contact")}
    by_cpf = {(p, o) for p, o in _oracle_positions(ledger, ledger.cpf_index)}
    assert contacts and contacts <= by_cpf
    assert report.subject["customer_code_index"] == code_index


def test_another_customers_bundle_is_not_this_one(ledger: Ledger) -> None:
    report = _check(ledger, _write(ledger, ledger.other_index), ledger.cpf_index)
    assert "subject-mismatch" in _failures(report)


def _maker(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """The maker alters what it gathered before packing (a dishonest or broken writer)."""
    original = bundle_customer.pack_customer

    def pack(conn, gathered, subject, *rest):
        change(conn, gathered, subject)
        return original(conn, gathered, subject, *rest)

    monkeypatch.setattr(bundle_customer, "pack_customer", pack)


@pytest.mark.parametrize("partition", range(PARTITIONS))
def test_any_record_left_out_is_named(ledger: Ledger, monkeypatch, partition: int) -> None:
    def drop(conn, gathered, subject):
        mine = [r for r in gathered.records if r.partition == partition]
        gathered.records.remove(mine[len(mine) // 2])

    _maker(monkeypatch, drop)
    report = _check(ledger, _write(ledger, ledger.cpf_index))
    assert report.verdict == "INVALID"
    assert f"partition {partition}" in _failures(report)["record-missing"]


def test_a_whole_contact_left_out_is_named(ledger: Ledger, monkeypatch) -> None:
    def drop(conn, gathered, subject):
        protocol = subject["protocol_numbers"].pop()
        gathered.records[:] = [r for r in gathered.records if r.key != protocol.encode()]

    _maker(monkeypatch, drop)
    report = _check(ledger, _write(ledger, ledger.cpf_index))
    assert "record-missing" in _failures(report), _failures(report)


def test_a_contact_held_but_left_out_of_the_subject_is_named(ledger: Ledger, monkeypatch) -> None:
    def unnamed(conn, gathered, subject):
        subject["protocol_numbers"].pop()

    _maker(monkeypatch, unnamed)
    failures = _failures(_check(ledger, _write(ledger, ledger.cpf_index)))
    assert "contact-missing" in failures, failures


def test_a_record_of_another_customer_is_named(ledger: Ledger, monkeypatch) -> None:
    other = _write(ledger, ledger.other_index)
    stranger = verify_bundle(other, deployment_trust(ledger.key, DEPLOYMENT, ledger.topic,
                                                      range(PARTITIONS))).records[0]

    def add(conn, gathered, subject):
        from protocolo.projections.history import journal_records

        for row in journal_records(conn, ledger.topic, [(stranger.partition, stranger.offset)]):
            gathered.add(row)

    _maker(monkeypatch, add)
    failures = _failures(_check(ledger, _write(ledger, ledger.cpf_index)))
    assert "record-not-in-index" in failures and "record-outside-subject" in failures, failures


def test_a_partition_without_its_lookup_proof_is_named(ledger: Ledger, monkeypatch) -> None:
    original = bundle_writer.lookups  # the packing shared with contact bundles asks for them
    monkeypatch.setattr(bundle_writer, "lookups",
                        lambda *a: [f for f in original(*a) if f.partition != 3])
    failures = _failures(_check(ledger, _write(ledger, ledger.cpf_index)))
    assert "cpf-index:" in failures["index-proof-missing"], failures


def test_the_cli_refuses_a_cpf_with_wrong_check_digits_before_any_io(monkeypatch, capsys,
                                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("PROTOCOLO_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(sys, "stdin", io.StringIO("123.456.789-00\n"))
    out = tmp_path / "c.zip"
    assert cli_main(["evidence", "--cpf", "-", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--cpf" in err and "Traceback" not in err and "123.456.789-00" not in err
    assert not out.exists()
    assert cli_main(["evidence", "--cpf", "-", "--protocol", "202600000000016", "--out", str(out)]) == 2


def test_a_bundle_stating_fewer_partitions_than_the_pinned_keys_is_named(ledger: Ledger,
                                                                       monkeypatch) -> None:
    """A maker cannot hide a partition by stating a smaller count: the recipient pinned one key
    per partition, and a pinned key beyond the stated count fails the bundle."""
    def fewer(conn, gathered, subject):
        subject["partitions"] = PARTITIONS - 1
        gathered.records[:] = [r for r in gathered.records if r.partition < PARTITIONS - 1]
        gathered.pending[:] = [r for r in gathered.pending if r.partition < PARTITIONS - 1]
        for key in [k for k in gathered.used if k[0] == PARTITIONS - 1]:
            del gathered.used[key]
        gathered.stored.pop(PARTITIONS - 1, None)

    _maker(monkeypatch, fewer)
    report = _check(ledger, _write(ledger, ledger.cpf_index))
    assert "partitions-mismatch" in _failures(report), _failures(report)
    assert f"partition {PARTITIONS - 1}" in _failures(report)["partitions-mismatch"]
