"""``protocolo evidence`` writes a bundle of a projected contact that verifies offline.

Oracles independent of the writer: the records in the bundle are compared byte for byte
with what a raw kafka-python consumer reads off the ledger topic; the bundle is verified
with nothing but the published verifier keys (``LogKey.vkey``) and the local TSA's root.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "evidence"))  # the local TSA
from helpers_flow import (
    CPF,
    CPF_DIGITS,
    Cli,
    contact_opened,
    drain,
    now_s,
    project,
    recording_captured,
    start_runtime,
)
from local_tsa import LocalTsa  # noqa: E402

from protocolo.attestation.log_key import load_log_key
from protocolo.evidence.bundle import BundleTrust, verify_bundle
from protocolo.evidence.bundle_zip import read_zip
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

NAME = "Joana Prova"
CODE = "C-EVID-9"
DEPLOYMENT = "acme-evidence"


@pytest.fixture
def witness(settings, monkeypatch, tmp_path):
    """A C2SP witness (real HTTP server) the checkpointer asks, run by an 'auditor'."""
    import subprocess

    from protocolo.attestation.witness import Witness, WitnessServer, WitnessState, load_witness_key
    from protocolo.evidence.keys import verifier_from_key

    key_file = tmp_path / "witness.key"
    vkey = subprocess.run([str(Path(sys.executable).parent / "protocolo"), "witness", "keygen",
                           "--name", "auditor.example/w1", "--out", str(key_file)],
                          capture_output=True, text=True, check=True).stdout.strip()
    log_key = load_log_key(settings, DEPLOYMENT)
    logs = [verifier_from_key(log_key.vkey(log_origin(DEPLOYMENT, settings.topic, p)))
            for p in range(settings.partitions)]
    with WitnessServer(Witness(load_witness_key(key_file), logs, WitnessState(tmp_path / "w"))) as server:
        monkeypatch.setenv("PROTOCOLO_WITNESSES", f"{vkey}={server.url}")
        yield vkey


@pytest.fixture
def contact(settings, monkeypatch, capsys, tmp_path):
    """A recorded contact with disclosures, a recording and a request by CPF (keyed by its own
    id, so on another partition most of the time), projected and checkpointed with a TSA."""
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", DEPLOYMENT)
    tsa = LocalTsa(tmp_path / "tsa").start()
    chain = tmp_path / "tsa-chain.pem"
    chain.write_bytes(tsa.tsa_pem_path.read_bytes() + tsa.root_pem_path.read_bytes())
    monkeypatch.setenv("PROTOCOLO_TSA_URL", tsa.url)
    monkeypatch.setenv("PROTOCOLO_TSA_CHAIN", str(chain))
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p = issuer.issue()
    t0 = now_s() - timedelta(days=3)
    captured = recording_captured("rec-evid-1", p)
    request_id = str(uuid.uuid4())
    events = [
        Event("ContactOpened", contact_opened({"cpf": CPF, "customer_code": CODE, "name": NAME}),
              protocol_number=p, occurred_at=t0),
        Event("DisclosureMade", {"kind": "RECORDING_NOTICE", "medium": "IVR_PROMPT"},
              protocol_number=p, occurred_at=t0 + timedelta(seconds=3)),
        Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"},
              protocol_number=p, occurred_at=t0 + timedelta(seconds=8)),
        Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p,
              occurred_at=t0 + timedelta(minutes=4)),
        Event("RecordingCaptured", captured, protocol_number=p,
              occurred_at=t0 + timedelta(minutes=4, seconds=2)),
        Event("RetrievalRequested", {
            "request_id": request_id, "kind": "RECORDING", "requested_via": "WEB_FORM",
            "delivery_channel": "EMAIL", "customer": {"cpf": CPF, "name": NAME},
            "window_from": t0 - timedelta(days=1), "window_to": t0 + timedelta(days=1)},
            occurred_at=t0 + timedelta(days=1)),
        Event("RetrievalLocated", {"request_id": request_id, "protocol_numbers": [p],
                                   "recording_ids": ["rec-evid-1"]}, occurred_at=t0 + timedelta(days=1, hours=1)),
        Event("RetrievalFulfilled", {"request_id": request_id, "recording_id": "rec-evid-1",
                                     "delivered_sha256": captured["sha256"], "delivered_via": "EMAIL"},
              occurred_at=t0 + timedelta(days=2)),
    ]
    with rt.publisher("evidence-test") as publisher:
        receipts = publisher.publish_many(events)
    project(rt)
    cli = Cli(settings, monkeypatch, capsys)
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", DEPLOYMENT)
    done = cli("checkpoint", "--once")
    assert done.code == 0, done.err
    key = load_log_key(settings, DEPLOYMENT)
    vkeys = tuple(key.vkey(log_origin(DEPLOYMENT, settings.topic, part)) for part in range(settings.partitions))
    yield {"rt": rt, "p": p, "cli": cli, "receipts": receipts, "request_id": request_id,
           "trust": BundleTrust(vkeys, (), (tsa.root_pem_path.read_bytes(),)), "tsa": tsa,
           "vkeys": vkeys}
    tsa.stop()


def _bundle(cli: Cli, tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / name
    done = cli("evidence", "--out", str(out), *args)
    assert done.code == 0, done.err
    assert "self-check: VALID" in done.out
    return out.read_bytes()


def test_a_projected_contact_bundle_verifies_offline_record_for_record(contact, tmp_path) -> None:
    data = _bundle(contact["cli"], tmp_path, "b.zip", "--protocol", contact["p"])
    report = verify_bundle(data, contact["trust"])
    assert report.ok, report.render()
    assert report.warnings == []  # the verifiable index's lookup proofs show nothing is left out
    assert any(f.ok and "every record of its subject" in f.detail for f in report.findings)
    # every record of the contact and of its request, as a raw consumer reads them off Kafka
    wanted = {(r.partition, r.offset) for r in contact["receipts"]}
    assert {(r.partition, r.offset) for r in report.records} == wanted
    files = dict(read_zip(data))
    manifest = json.loads(files["manifest.json"])
    on_topic = {(r.partition, r.offset): r for r in drain(contact["rt"].kafka_bootstrap,
                                                          contact["rt"].settings.topic)}
    for entry in manifest["records"]:
        raw = on_topic[(entry["partition"], entry["offset"])]
        assert files[f"{entry['dir']}/value.bin"] == raw.value
        assert files.get(f"{entry['dir']}/key.bin") == raw.key
    assert any(f["path"].endswith(".tsr") for f in manifest["files"])
    assert all(f.ok for f in report.findings if f.subject.endswith(".tsr"))
    # the CLI agrees, with the keys given on the command line only
    vkey_args = [a for v in contact["vkeys"] for a in ("--vkey", v)]
    tsa_root = str(contact["tsa"].root_pem_path)
    checked = contact["cli"]("verify-evidence", str(tmp_path / "b.zip"), *vkey_args, "--tsa-root", tsa_root)
    assert checked.code == 0, checked.out + checked.err
    assert checked.out.count("VERIFIED ") == len(wanted)
    assert "VERDICT: VALID" in checked.out
    summary = files["summary.html"].decode()
    assert "SIM / YES" in summary and contact["p"] in summary
    assert "janela / window: 60 s" in summary and "Anatel RGC (Res. 632/2014) arts. 7, 26" in summary
    assert json.loads(files["manifest.json"])["request"]["legal_basis"] is None
    # sealed by default: no clear personal data in any file of the bundle
    for name, content in files.items():
        for secret in (NAME, CPF, CPF_DIGITS, CODE):
            assert secret.encode() not in content, (secret, name)


def test_reveal_needs_a_legal_basis_and_records_it(contact, tmp_path) -> None:
    cli = contact["cli"]
    refused = cli("evidence", "--protocol", contact["p"], "--out", str(tmp_path / "r.zip"), "--reveal")
    assert refused.code == 2 and "--legal-basis" in refused.err
    assert not (tmp_path / "r.zip").exists()
    basis = "Processo 0001234-56.2026.8.26.0100, ofício do juízo"
    data = _bundle(cli, tmp_path, "r.zip", "--protocol", contact["p"], "--reveal", "--legal-basis", basis)
    files = dict(read_zip(data))
    assert NAME in files["summary.html"].decode() and basis in files["summary.html"].decode()
    assert json.loads(files["manifest.json"])["request"] == {
        "protocol_number": contact["p"], "request_id": None, "reveal": True, "legal_basis": basis}
    assert verify_bundle(data, contact["trust"]).ok


def test_bundles_before_and_after_an_erasure_both_verify(contact, tmp_path) -> None:
    before = _bundle(contact["cli"], tmp_path, "before.zip", "--protocol", contact["p"])
    sealer = contact["rt"].sealer()
    refs = sealer.vault.live_key_refs([sealer.index.cpf(CPF)])
    assert sealer.vault.destroy(refs, "LGPD art. 18 VI") == 1
    after = _bundle(contact["cli"], tmp_path, "after.zip", "--protocol", contact["p"], "--reveal",
                    "--legal-basis", "court order")
    for data in (before, after):
        assert verify_bundle(data, contact["trust"]).ok
    assert "APAGADOS" not in dict(read_zip(before))["summary.html"].decode()
    summary_after = dict(read_zip(after))["summary.html"].decode()
    assert "APAGADOS" in summary_after and NAME not in summary_after
    # the records themselves are the same bytes: erasure changed no evidence
    records = lambda data: {n: c for n, c in read_zip(data) if n.startswith("records/")}  # noqa: E731
    assert records(before) == records(after)


def test_records_not_yet_checkpointed_are_listed_as_pending_not_refused(contact, tmp_path) -> None:
    rt = contact["rt"]
    with rt.publisher("evidence-test-late") as publisher:
        (late,) = publisher.publish_many([Event("NoteAdded", {"agent_id": "agent-007", "agent_name": "Ana",
                                                              "text": "late note"},
                                                protocol_number=contact["p"], occurred_at=now_s())])
    project(rt)
    done = contact["cli"]("evidence", "--protocol", contact["p"], "--out", str(tmp_path / "x.zip"))
    assert done.code == 0, done.err
    assert "1 newer records are not checkpointed yet" in done.out and "protocolo checkpoint" in done.out
    data = (tmp_path / "x.zip").read_bytes()
    report = verify_bundle(data, contact["trust"])
    assert report.ok, report.render()
    manifest = json.loads(dict(read_zip(data))["manifest.json"])
    assert [(p["partition"], p["offset"]) for p in manifest["pending"]] == [(late.partition, late.offset)]
    assert (late.partition, late.offset) not in {(r.partition, r.offset) for r in report.records}
    assert "Not yet checkpointed (not proven here)" in dict(read_zip(data))["summary.html"].decode()


def test_unknown_contact_and_bad_arguments_are_refused(contact, tmp_path) -> None:
    cli = contact["cli"]
    unknown = cli("evidence", "--protocol", "1" * 14, "--out", str(tmp_path / "u.zip"))
    assert unknown.code == 2, unknown.err
    assert "no contact" in unknown.err or "protocol" in unknown.err
    assert cli("evidence", "--out", str(tmp_path / "u.zip")).code == 2
    missing = cli("verify-evidence", str(tmp_path / "none.zip"))
    assert missing.code == 2 and "cannot read" in missing.err


def test_request_bundle_covers_that_request_and_its_contact(contact, tmp_path) -> None:
    data = _bundle(contact["cli"], tmp_path, "q.zip", "--request", contact["request_id"])
    report = verify_bundle(data, contact["trust"])
    assert report.ok, report.render()
    assert {r.event_type for r in report.records} >= {"ContactOpened", "RetrievalRequested",
                                                       "RetrievalFulfilled"}


def test_the_demo_ends_with_a_bundle_verified_offline(settings, monkeypatch, capsys) -> None:
    from protocolo.cli import main

    for name, value in (("PROTOCOLO_HOME", str(settings.home)), ("PROTOCOLO_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                        ("PROTOCOLO_DATABASE_URL", settings.database_url), ("PROTOCOLO_TOPIC", settings.topic),
                        ("PROTOCOLO_GROUP_ID", settings.group_id), ("PROTOCOLO_DEV_KEYS", "1"),
                        ("PROTOCOLO_DEPLOYMENT", DEPLOYMENT)):
        monkeypatch.setenv(name, value)
    assert main(["demo", "--contacts", "40", "--seed", "7"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    line = next(x for x in out.splitlines() if x.startswith("Proof-of-service bundle of "))
    path = Path(line.rsplit(": ", 1)[1])
    assert "offline verification pinned to the deployment's log keys: VALID (contact " in out
    # ... after `protocolo verify`'s checks (leaves, nodes, checkpoints, index, decoded copies, views)
    audit = next(x for x in captured.err.splitlines() if "protocolo verify, keys pinned:" in x)
    assert "decoded copies" in audit and "views" in audit and audit.endswith(": no difference"), audit
    # ... and with a verified read of the sample contact, proven into the signed checkpoints
    verified = out.split("Verified read of ", 1)[1].splitlines()[1].strip()
    assert verified.startswith(f"verified: checkpoint protocolo/{DEPLOYMENT}/{settings.topic}/"), verified
    key = load_log_key(settings, DEPLOYMENT)
    vkeys = tuple(key.vkey(log_origin(DEPLOYMENT, settings.topic, p)) for p in range(settings.partitions))
    report = verify_bundle(path.read_bytes(), BundleTrust(vkeys))
    assert report.ok and report.records, report.render()
    # ... and with the sample customer's bundle (all their contacts), pinned to the same keys
    line = next(x for x in out.splitlines() if x.startswith("The sample customer's bundle"))
    customer = verify_bundle(Path(line.rsplit(": ", 1)[1]).read_bytes(), BundleTrust(vkeys))
    assert customer.ok and customer.subject["kind"] == "customer", customer.render()
    assert len(customer.subject["protocol_numbers"]) >= 1 and customer.records


def test_witness_cosignatures_travel_in_the_bundle_and_a_required_witness_is_enforced(
        witness, contact, tmp_path) -> None:
    data = _bundle(contact["cli"], tmp_path, "w.zip", "--protocol", contact["p"])
    files = dict(read_zip(data))
    assert f"witness w0 {witness}" in files["policy.txt"].decode()
    logs = "".join(f"log {v}\n" for v in contact["vkeys"])
    required = f"{logs}witness auditor {witness}\nquorum auditor\n".encode()
    trust = contact["trust"]
    report = verify_bundle(data, BundleTrust((), (required,), trust.tsa_roots))
    assert report.ok, report.render()
    assert all("auditor" in r.detail for r in report.records)
    stranger = CosignatureV1Signer.generate("notary.example/w9").verifier
    missing = f"{logs}witness notary {stranger}\nquorum notary\n".encode()
    report = verify_bundle(data, BundleTrust((), (missing,), trust.tsa_roots))
    assert not report.ok and "quorum-not-met" in report.reasons


def _sql(contact, text: str, *args) -> list:
    import psycopg

    with psycopg.connect(contact["rt"].database_url, autocommit=True) as conn:
        cur = conn.execute(text, args)
        return cur.fetchall() if cur.description else []


def _fastavro_fields(files: dict[str, bytes], directory: str) -> dict:
    """The record decoded by plain fastavro over the bundled schema (independent oracle)."""
    import io

    import fastavro

    value = files[f"{directory}/value.bin"]
    schema = fastavro.parse_schema(json.loads(files[f"schemas/{value[2:10].hex()}.avsc"]))
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)


def test_an_edited_decoded_copy_or_view_does_not_reach_the_bundle(contact, tmp_path) -> None:
    """journal.payload and the interactions view say ABANDONED; the signed bytes say RESOLVED,
    and so does every readable part of the bundle, which verifies."""
    p = contact["p"]
    _sql(contact, "UPDATE journal SET payload = jsonb_set(payload, '{outcome}', '\"ABANDONED\"')"
         " WHERE protocol_number = %s AND event_type = 'ContactClosed'", p)
    _sql(contact, "UPDATE interactions SET outcome = 'ABANDONED', protocol_disclosed_at = NULL"
         " WHERE protocol_number = %s", p)
    data = _bundle(contact["cli"], tmp_path, "t.zip", "--protocol", p)
    assert verify_bundle(data, contact["trust"]).ok
    files = dict(read_zip(data))
    manifest = json.loads(files["manifest.json"])
    (closed,) = [r["dir"] for r in manifest["records"] if r["event_type"] == "ContactClosed"]
    assert _fastavro_fields(files, closed)["outcome"] == "RESOLVED"
    assert json.loads(files[f"{closed}/record.json"])["fields"]["outcome"] == "RESOLVED"
    assert all(b"ABANDONED" not in content for name, content in files.items()
               if name.endswith((".json", ".html")) and name != "verify.py")
    summary = files["summary.html"].decode()
    assert "<b>RESOLVED</b>" in summary
    told = summary.split("When the protocol number was told", 1)[1].split("</p>", 2)[1]
    assert "SIM / YES" in told  # the disclosure rule is judged from the records, not the view


def test_a_journal_value_that_misses_the_signed_root_refuses_the_bundle(contact, tmp_path) -> None:
    p = contact["p"]
    (partition,) = _sql(contact, "UPDATE journal SET record_value = record_value || '\\x00'::bytea"
                        " WHERE protocol_number = %s AND event_type = 'ContactClosed'"
                        " RETURNING kafka_partition", p)[0]
    done = contact["cli"]("evidence", "--protocol", p, "--out", str(tmp_path / "v.zip"))
    assert done.code == 2 and not (tmp_path / "v.zip").exists()
    assert f"partition {partition} of the ledger differs from its signed checkpoints" in done.err
    assert "protocolo verify" in done.err and "bug" not in done.err
    assert len(done.err.strip().splitlines()) == 1, done.err


@pytest.mark.parametrize("which", ["disclosure", "last-row"])
def test_a_deleted_journal_row_refuses_the_bundle_naming_the_partition(contact, tmp_path, which) -> None:
    p = contact["p"]
    if which == "disclosure":
        (partition,) = _sql(contact, "DELETE FROM journal WHERE ctid = (SELECT ctid FROM journal"
                            " WHERE protocol_number = %s AND event_type = 'DisclosureMade' LIMIT 1)"
                            " RETURNING kafka_partition", p)[0]
    else:
        partition = _sql(contact, "SELECT kafka_partition FROM journal WHERE protocol_number = %s"
                         " AND event_type = 'ContactOpened'", p)[0][0]
        _sql(contact, "DELETE FROM journal WHERE topic = %s AND kafka_partition = %s AND leaf_index ="
             " (SELECT max(leaf_index) FROM journal WHERE topic = %s AND kafka_partition = %s)",
             contact["rt"].settings.topic, partition, contact["rt"].settings.topic, partition)
    done = contact["cli"]("evidence", "--protocol", p, "--out", str(tmp_path / "d.zip"))
    assert done.code == 2 and not (tmp_path / "d.zip").exists(), done.out
    assert f"partition {partition} of the ledger differs from its signed checkpoints" in done.err
    assert "protocolo verify" in done.err and "bug" not in done.err
    checked = contact["cli"]("verify")
    assert checked.code == 1, checked.out + checked.err  # and `verify` names it too


def test_evidence_options_are_refused_before_any_io(contact, tmp_path, monkeypatch) -> None:
    """A bad option is named without reaching PostgreSQL (the database URL points nowhere)."""
    monkeypatch.setenv("PROTOCOLO_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    cli = contact["cli"]
    for args, named in ((["--request", "not-a-uuid"], "--request"),
                        (["--protocol", "12"], "--protocol"),
                        (["--protocol", contact["p"], "--reveal"], "--legal-basis"),
                        (["--protocol", contact["p"], "--out", str(tmp_path / "no" / "x.zip")], "--out")):
        out = args if "--out" in args else [*args, "--out", str(tmp_path / "x.zip")]
        done = cli("evidence", *out)
        assert done.code == 2 and named in done.err, done.err
        assert "connect" not in done.err and "127.0.0.1" not in done.err, done.err
        assert len(done.err.strip().splitlines()) == 1, done.err
