"""``protocolo export`` / ``verify-export``: an audit export a regulator checks without us.

Oracles independent of the writer: the export is read with plain fastavro, hashlib and
``cryptography`` (no project code), its records compared with what a raw kafka-python
consumer reads off the ledger topic, the RFC 6962 roots recomputed by a recursive MTH
transcribed from RFC 9162 §2.1.1, and the checkpoint signatures checked with the raw
Ed25519 public key taken from the published verifier key string. Tampering is done the
way an insider would (editing files, re-signing with the genuine log key) and each case
must fail with its named reason, never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "evidence"))  # the local TSA
from helpers_flow import (
    Cli,
    contact_opened,
    drain,
    now_s,
    project,
    recording_captured,
    start_runtime,
)
from local_tsa import LocalTsa  # noqa: E402

from protocolo.attestation.export_verify import ExportTrust, verify_export
from protocolo.attestation.log_key import load_log_key
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.export import manifest_note_text
from protocolo.evidence.note import Ed25519NoteSigner, sign_note
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

DEPLOYMENT = "acme-export"


def _contact(p: str, t0: datetime, service_type: str, channel: str) -> list[Event]:
    return [
        Event("ContactOpened", contact_opened({"cpf": "52998224725", "name": "Ana Export"},
                                              service_type=service_type, channel=channel),
              protocol_number=p, occurred_at=t0),
        Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"},
              protocol_number=p, occurred_at=t0 + timedelta(seconds=5)),
        Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p,
              occurred_at=t0 + timedelta(minutes=3)),
    ]


def _checkpoint(cli: Cli) -> None:
    done = cli("checkpoint", "--once", "--quiet")
    assert done.code in (0, 1), done.err


@pytest.fixture
def ledger(settings, monkeypatch, capsys, tmp_path):
    """Two periods: contacts, a poison record (quarantined) and a checkpoint; then, after a
    pause, more contacts and another checkpoint. A local TSA stamps every checkpoint."""
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", DEPLOYMENT)
    tsa = LocalTsa(tmp_path / "tsa").start()
    chain = tmp_path / "tsa-chain.pem"
    chain.write_bytes(tsa.tsa_pem_path.read_bytes() + tsa.root_pem_path.read_bytes())
    monkeypatch.setenv("PROTOCOLO_TSA_URL", tsa.url)
    monkeypatch.setenv("PROTOCOLO_TSA_CHAIN", str(chain))
    rt = start_runtime(settings)
    cli = Cli(settings, monkeypatch, capsys)
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", DEPLOYMENT)
    t0 = now_s() - timedelta(days=1)
    with ProtocolIssuer(rt.database_url) as issuer:
        first = [issuer.issue() for _ in range(3)]
        second = [issuer.issue() for _ in range(2)]
    published = (_contact(first[0], t0, "MOBILE", "PHONE") + _contact(first[1], t0, "BANKING", "CHAT")
                 + _contact(first[2], t0, "MOBILE", "CHAT"))
    with rt.publisher("export-test") as publisher:
        publisher.publish_many(published)
    producer = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap)
    producer.send(settings.topic, key=b"poison", value=b"\xc3\x01not avro at all", partition=0,
                  headers=[("h", b"\xff\x00")]).get(timeout=20)
    producer.close()
    project(rt)
    _checkpoint(cli)
    time.sleep(1.1)
    middle = datetime.now(UTC)
    time.sleep(1.1)
    later = _contact(second[0], t0, "BANKING", "PHONE") + _contact(second[1], t0, "MOBILE", "PHONE")
    published += later
    with rt.publisher("export-test") as publisher:
        publisher.publish_many(later)
    project(rt)
    _checkpoint(cli)
    key = load_log_key(settings, DEPLOYMENT)
    vkeys = tuple(key.vkey(log_origin(DEPLOYMENT, settings.topic, p)) for p in range(settings.partitions))
    yield {"rt": rt, "cli": cli, "key": key, "vkeys": vkeys, "middle": middle, "t0": t0,
           "first": first, "second": second, "tsa": tsa, "published": published, "settings": settings,
           "trust": ExportTrust(vkeys, (), (tsa.root_pem_path.read_bytes(),))}
    tsa.stop()


def _export(ledger: dict[str, Any], out: Path, *args: str, start: str | None = None,
            end: str | None = None) -> Path:
    done = ledger["cli"]("export", "--from", start or (ledger["t0"] - timedelta(days=1)).isoformat(),
                         "--to", end or datetime.now(UTC).isoformat(), "--out", str(out),
                         "--regulator", "anatel", "--requested-by", "auditor-1", "--quiet", *args)
    assert done.code == 0, done.err
    assert "self-check with the log keys: VALID" in done.out
    return out


# --- the independent reader (no project code) --------------------------------------------

def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _leaf_input(r: dict[str, Any]) -> bytes:
    topic = r["topic"].encode()
    key = r["key"]
    return (struct.pack(">H", len(topic)) + topic + struct.pack(">IQ", r["partition"], r["offset"])
            + (struct.pack(">i", -1) if key is None else struct.pack(">i", len(key)) + key)
            + struct.pack(">I", len(r["value"])) + r["value"])


def _checkpoint_note(path: Path, vkey: str) -> tuple[str, int, bytes]:
    """Verify the log's Ed25519 signature with cryptography; return (origin, size, root)."""
    text, _, signatures = path.read_bytes().partition(b"\n\n")
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    raw_key = base64.b64decode(key_b64)[1:]
    key_id = bytes.fromhex(key_id_hex)
    for line in signatures.decode().splitlines():
        if line.startswith(f"\u2014 {name} "):
            sig = base64.b64decode(line.split(" ")[2])
            if sig[:4] == key_id:
                Ed25519PublicKey.from_public_bytes(raw_key).verify(sig[4:], text + b"\n")
                origin, size, root = text.decode().split("\n")[:3]
                return origin, int(size), base64.b64decode(root)
    raise AssertionError(f"{path} is not signed by {name}")


def test_the_export_is_read_and_checked_by_an_independent_reader(ledger, tmp_path) -> None:
    end = datetime.now(UTC).isoformat()
    out = _export(ledger, tmp_path / "e1", end=end)
    report = verify_export(out, ledger["trust"])
    assert report.verdict == "VALID", report.render()
    manifest = json.loads((out / "manifest.json").read_bytes())
    settings = ledger["settings"]
    # the manifest's signature, with cryptography and the published key
    lowest = min(manifest["partitions"], key=lambda e: e["partition"])
    vkey = ledger["vkeys"][lowest["partition"]]
    sig_text, _, sig_lines = (out / "manifest.sig").read_bytes().partition(b"\n\n")
    assert sig_text + b"\n" == manifest_note_text((out / "manifest.json").read_bytes()).encode()
    sig = base64.b64decode(sig_lines.decode().split()[2])
    Ed25519PublicKey.from_public_bytes(base64.b64decode(vkey.split("+", 2)[2])[1:]).verify(sig[4:], sig_text + b"\n")
    for f in manifest["files"]:
        assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    on_topic = {(r.partition, r.offset): r for r in drain(ledger["rt"].kafka_bootstrap, settings.topic)}
    exported: set[tuple[int, int]] = set()
    for entry in manifest["partitions"]:
        with open(out / entry["data"], "rb") as f:
            records = list(fastavro.reader(f))
        origin, size, root = _checkpoint_note(out / entry["end"]["checkpoint"], ledger["vkeys"][entry["partition"]])
        assert (origin, size) == (log_origin(DEPLOYMENT, settings.topic, entry["partition"]), entry["leaves"][1])
        assert entry["leaves"][0] == 0  # the first export of this ledger starts at the empty tree
        assert _mth([_leaf_input(r) for r in records]) == root
        for r in records:
            raw = on_topic[(r["partition"], r["offset"])]
            assert (r["key"], r["value"]) == (raw.key, raw.value)
            assert [(h["key"].decode(), h["value"]) for h in r["headers"]] == list(raw.headers)
            exported.add((r["partition"], r["offset"]))
        lines = (out / entry["jsonl"]).read_text().splitlines()
        assert len(lines) == len(records)
        for line, r in zip(lines, records, strict=True):
            doc = json.loads(line)
            assert doc["value_sha256"] == hashlib.sha256(r["value"]).hexdigest()
            if r["quarantined"] is None:  # the event decoded with plain fastavro from the value
                schema = json.loads((out / f"schemas/{r['value'][2:10].hex()}.avsc").read_text())
                import io

                body = io.BytesIO(r["value"][10:])
                event = fastavro.schemaless_reader(body, fastavro.parse_schema(schema), None)
                assert doc["event"]["meta"]["event_id"] == str(event["meta"]["event_id"])
                assert doc["event"]["meta"]["protocol_number"] == event["meta"]["protocol_number"]
    assert exported == set(on_topic)  # every record of the log, the poison one included
    assert manifest["counts"]["(quarantined)"] == 1
    assert manifest["counts"]["ContactOpened"] == 5
    # the same export made twice is byte-identical
    again = _export(ledger, tmp_path / "e2", end=end)
    for f in sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()):
        assert (again / f).read_bytes() == (out / f).read_bytes(), f
    # ... and so is the same export with its partitions written by two processes
    assert len(manifest["partitions"]) > 1
    parallel = _export(ledger, tmp_path / "e3", "--workers", "2", end=end)
    for f in sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()):
        assert (parallel / f).read_bytes() == (out / f).read_bytes(), f


def test_periods_chain_and_tampering_each_fail_with_a_named_reason(ledger, tmp_path) -> None:
    early = _export(ledger, tmp_path / "early", end=ledger["middle"].isoformat())
    late = _export(ledger, tmp_path / "late", start=ledger["middle"].isoformat())
    trust = ledger["trust"]
    assert verify_export(early, trust).verdict == "VALID", verify_export(early, trust).render()
    m_late = json.loads((late / "manifest.json").read_bytes())
    m_early = json.loads((early / "manifest.json").read_bytes())
    assert m_late["previous"]["manifest_sha256"] == hashlib.sha256((early / "manifest.json").read_bytes()).hexdigest()
    chained = ExportTrust(trust.vkeys, (), trust.tsa_roots, previous=early)
    assert verify_export(late, chained).verdict == "VALID", verify_export(late, chained).render()
    # periods are read off checkpoints and cover their time span: consecutive exports leave
    # no leaf out (they may overlap where no checkpoint was signed at the boundary)
    ends = {e["partition"]: e["leaves"][1] for e in m_early["partitions"]}
    assert all(e["leaves"][0] <= ends[e["partition"]] for e in m_late["partitions"])
    assert all(e["leaves"][1] == e["end"]["size"] for e in m_late["partitions"])
    assert m_early["records"] >= 10 and m_late["records"] >= 6

    key = ledger["key"]

    def tampered(name: str, source: Path = late) -> Path:
        copy = tmp_path / name
        shutil.copytree(source, copy)
        return copy

    def resign(d: Path, signer: Any = None) -> None:
        """What an insider with the log key does after editing: new hashes, new signature."""
        manifest = json.loads((d / "manifest.json").read_bytes())
        files = [p for p in sorted(q.relative_to(d).as_posix() for q in d.rglob("*") if q.is_file())
                 if p not in ("manifest.json", "manifest.sig", "manifest.tsr", "manifest.chain.pem", "SHA256SUMS")]
        entries = {p: {"path": p, "size": (d / p).stat().st_size,
                       "sha256": hashlib.sha256((d / p).read_bytes()).hexdigest()} for p in files}
        (d / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {p}\n" for p, e in sorted(entries.items())))
        entries["SHA256SUMS"] = {"path": "SHA256SUMS", "size": (d / "SHA256SUMS").stat().st_size,
                                 "sha256": hashlib.sha256((d / "SHA256SUMS").read_bytes()).hexdigest()}
        manifest["files"] = [entries[p] for p in sorted(entries)]
        data = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
        (d / "manifest.json").write_bytes(data)
        lowest = min(manifest["partitions"], key=lambda e: e["partition"])["origin"]
        (d / "manifest.sig").write_bytes(sign_note(manifest_note_text(data), [signer or key.signer(lowest)]))
        (d / "manifest.tsr").unlink(missing_ok=True)
        (d / "manifest.chain.pem").unlink(missing_ok=True)

    def reason(d: Path, t: ExportTrust = trust) -> str | None:
        report = verify_export(d, t)
        assert report.verdict != "VALID"
        return report.reason

    early_counts = {e["partition"]: e["records"] for e in m_early["partitions"]}
    busy = max(m_late["partitions"], key=lambda e: min(e["records"], early_counts[e["partition"]]))
    assert busy["records"] and early_counts[busy["partition"]]
    data = busy["data"]

    # any byte changed
    d = tampered("byte")
    raw = bytearray((d / data).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (d / data).write_bytes(bytes(raw))
    assert reason(d) == "file-changed"

    def records_of(d: Path, path: str) -> list[dict[str, Any]]:
        with open(d / path, "rb") as f:
            return list(fastavro.reader(f))

    # a record removed (and the file re-signed by an insider)
    d = tampered("removed")
    recs = records_of(d, data)
    marker = (d / data).read_bytes()[-16:]
    with open(d / data, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_schema(late / data)), recs[:-1], sync_marker=marker)
    resign(d)
    assert reason(d) == "completeness"

    # a record moved in from the earlier export
    d = tampered("moved")
    moved = records_of(early, next(e["data"] for e in m_early["partitions"] if e["partition"] == busy["partition"]))
    with open(d / data, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_schema(late / data)), [moved[-1], *recs], sync_marker=marker)
    resign(d)
    assert reason(d) == "record-order"

    # a record added at the end (a copy of the last one with the next offset)
    d = tampered("added")
    extra = dict(recs[-1], offset=recs[-1]["offset"] + 1, leaf_index=recs[-1]["leaf_index"] + 1)
    with open(d / data, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_schema(late / data)), [*recs, extra], sync_marker=marker)
    resign(d)
    assert reason(d) == "completeness"

    # the period's start moved (claims to start one leaf later)
    d = tampered("start-moved")
    manifest = json.loads((d / "manifest.json").read_bytes())
    entry = next(e for e in manifest["partitions"] if e["partition"] == busy["partition"])
    entry["leaves"][0] += 1
    (d / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    resign(d)
    assert reason(d) == "period-mismatch"

    # the period's end moved (claims to end one leaf earlier, the last record dropped)
    d = tampered("end-moved")
    with open(d / data, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_schema(late / data)), recs[:-1], sync_marker=marker)
    manifest = json.loads((d / "manifest.json").read_bytes())
    entry = next(e for e in manifest["partitions"] if e["partition"] == busy["partition"])
    entry["leaves"][1] -= 1
    entry["end"]["size"] -= 1
    (d / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    resign(d)
    assert reason(d) == "period-mismatch"

    # the manifest re-signed with another key of the same name
    d = tampered("other-key")
    lowest = min(m_late["partitions"], key=lambda e: e["partition"])["origin"]
    resign(d, Ed25519NoteSigner.generate(lowest))
    assert reason(d) == "manifest-signature"

    # the chain link broken: the later export checked against another "previous"
    assert reason(late, ExportTrust(trust.vkeys, (), trust.tsa_roots, previous=late)) == "chain-broken"

    # a rendering changed
    d = tampered("rendering")
    lines = (d / busy["jsonl"]).read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"RESOLVED"', '"ABANDONED"').replace('"leaf_index":', '"leaf_index": ')
    (d / busy["jsonl"]).write_text("".join(lines))
    resign(d)
    assert reason(d) == "rendering-mismatch"
    d = tampered("csv")
    text = (d / busy["csv"]).read_text().splitlines(keepends=True)
    text[1] = text[1].replace(",", ";", 1)
    (d / busy["csv"]).write_text("".join(text))
    resign(d)
    assert reason(d) == "rendering-mismatch"

    # a file added after signing
    d = tampered("unlisted")
    (d / "partitions" / "note.txt").write_text("trust me")
    assert reason(d) == "file-unlisted"

    # the CLI: named reason, exit 1, no traceback; without pinned keys UNPINNED, exit 3
    cli = ledger["cli"]
    done = cli("verify-export", str(tmp_path / "rendering"), *[f"--vkey={v}" for v in trust.vkeys])
    assert done.code == 1 and "VERDICT: INVALID [rendering-mismatch]" in done.out
    assert "Traceback" not in done.out + done.err
    done = cli("verify-export", str(late))
    assert done.code == 3 and "VERDICT: UNPINNED" in done.out, done.out + done.err
    done = cli("verify-export", str(late), *[f"--vkey={v}" for v in trust.vkeys], "--previous", str(early))
    assert done.code == 0 and "VERDICT: VALID" in done.out, done.out


def _schema(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        schema = fastavro.reader(f).writer_schema
    assert isinstance(schema, dict)
    return schema


def test_an_empty_period_and_a_subset_export(ledger, tmp_path) -> None:
    time.sleep(1.1)
    start = datetime.now(UTC)
    time.sleep(1.1)
    empty = _export(ledger, tmp_path / "empty", start=start.isoformat())
    manifest = json.loads((empty / "manifest.json").read_bytes())
    assert manifest["records"] == 0
    assert all(e["leaves"][0] == e["leaves"][1] for e in manifest["partitions"])
    assert verify_export(empty, ledger["trust"]).verdict == "VALID"

    subset = _export(ledger, tmp_path / "banking", "--service-type", "BANKING")
    report = verify_export(subset, ledger["trust"])
    assert report.verdict == "VALID", report.render()
    manifest = json.loads((subset / "manifest.json").read_bytes())
    assert manifest["request"]["subset"] is True
    protocols = set()
    for entry in manifest["partitions"]:
        with open(subset / entry["data"], "rb") as f:
            for r in fastavro.reader(f):
                assert r["inclusion_proof"] or entry["leaves"][1] == 1
                protocols.add(json.loads(r["event"])["meta"]["protocol_number"])
    assert protocols == {ledger["first"][1], ledger["second"][0]}
    assert manifest["counts"] == {"ContactClosed": 2, "ContactOpened": 2, "DisclosureMade": 2}

    done = ledger["cli"]("export", "--from", "2026-01-01", "--to", "2020-01-01", "--out", str(tmp_path / "x"))
    assert done.code == 2 and "is before --from" in done.err
    done = ledger["cli"]("export", "--from", "yesterday", "--to", "2020-01-01", "--out", str(tmp_path / "x"))
    assert done.code == 2 and "ISO 8601" in done.err
    done = ledger["cli"]("export", "--from", "2020-01-01", "--to", "2020-02-01", "--out", str(tmp_path / "x"),
                         "--reveal")
    assert done.code == 2 and "--legal-basis" in done.err
    for bad in ("0", "two"):
        done = ledger["cli"]("export", "--from", "2020-01-01", "--to", "2020-02-01", "--out", str(tmp_path / "x"),
                             "--workers", bad)
        assert done.code == 2 and "--workers must be" in done.err and "Traceback" not in done.err
    assert not (tmp_path / "x").exists()


def test_reveal_needs_a_legal_basis_and_is_recorded_on_the_ledger(ledger, tmp_path) -> None:
    import psycopg

    out = _export(ledger, tmp_path / "revealed", "--protocol", ledger["first"][0], "--reveal",
                  "--legal-basis", "Anatel ofício 123/2026")
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["revealed"] == ["revealed/customers.jsonl"]
    assert manifest["request"]["legal_basis"] == "Anatel ofício 123/2026"
    (line,) = (out / "revealed/customers.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "Ana Export" and json.loads(line)["cpf"] == "52998224725"
    assert verify_export(out, ledger["trust"]).verdict == "VALID"
    # without --reveal nothing in the export holds the clear name
    sealed = _export(ledger, tmp_path / "sealed", "--protocol", ledger["first"][0])
    assert all(b"Ana Export" not in p.read_bytes() for p in sealed.rglob("*") if p.is_file())
    project(ledger["rt"])
    with psycopg.connect(ledger["settings"].database_url) as conn:
        rows = conn.execute("SELECT action, role, purpose, target FROM access_log").fetchall()
    assert [(a, r, p) for a, r, p, _ in rows] == [("EXPORT_DOWNLOAD", "COMPLIANCE", "Anatel ofício 123/2026")]
    assert manifest["export_id"] in rows[0][3]


def _two_person_grants(events: list[Event]) -> dict[str, list[datetime]]:
    """Recording id -> when an EARLY_DELETION approval was granted by someone other than its
    requester (DOMAIN.md's two-person rule; no denials in these tests)."""
    asked = {e.fields["approval_id"]: (e.fields["requested_by"], e.fields["recording_id"]) for e in events
             if e.event_type == "ApprovalRequested" and e.fields["action"] == "EARLY_DELETION"}
    grants: dict[str, list[datetime]] = {}
    for e in (e for e in events if e.event_type == "ApprovalGranted" and e.fields["approval_id"] in asked):
        requester, recording = asked[e.fields["approval_id"]]
        if e.fields["approved_by"] != requester:
            grants.setdefault(recording, []).append(e.occurred_at)
    return grants


def _early_deletion_approval(p: str, rec: str, asker: str, granter: str, at: datetime) -> list[Event]:
    approval_id = str(uuid.uuid4())
    return [Event("ApprovalRequested", {"approval_id": approval_id, "action": "EARLY_DELETION",
                                        "requested_by": asker, "requester_role": "SUPERVISOR",
                                        "recording_id": rec, "subject_ref": None, "reason": "court order"},
                  protocol_number=p, occurred_at=at),
            Event("ApprovalGranted", {"approval_id": approval_id, "approved_by": granter,
                                      "approver_role": "COMPLIANCE", "comment": None},
                  occurred_at=at + timedelta(minutes=5))]


def _expected_rules(events: list[Event], period_end: datetime) -> dict[tuple[str, ...], tuple[int, int, int, list[str]]]:
    """The rule figures computed straight from the published events (DOMAIN.md's rules with
    the policy data: 60 s to disclose at the start, 24 h to confirm in writing)."""
    from protocolo.core.policy import profile_for_service, profile_named

    figures: dict[tuple[str, ...], tuple[int, int, int, list[str]]] = {}

    def count(group: tuple[str, ...], verdict: str, protocol: str) -> None:
        a, b, p, who = figures.get(group, (0, 0, 0, []))
        figures[group] = (a + 1, b + (verdict == "broken"), p + (verdict == "pending"),
                          who + ([protocol] if verdict == "broken" else []))

    opened: dict[str, Event] = {}
    first: dict[tuple[str, str], datetime] = {}
    kept_days: dict[str, int] = {}
    deletions: list[Event] = []
    holds: dict[str, list[Event]] = {}
    answered: dict[str, datetime] = {}
    closed: dict[str, datetime] = {}
    grants = _two_person_grants(events)
    for e in events:
        if e.event_type == "ContactOpened":
            opened.setdefault(e.protocol_number, e)
        elif e.event_type == "DisclosureMade":
            k = (e.protocol_number, e.fields["kind"])
            first[k] = min(first.get(k, e.occurred_at), e.occurred_at)
        elif e.event_type == "RecordingCaptured":
            kept_days[e.fields["recording_id"]] = e.fields["retention_days"]
        elif e.event_type == "RecordingDeleted":
            deletions.append(e)
        elif e.event_type == "LegalHoldPlaced":  # no releases in these tests
            holds.setdefault(e.protocol_number, []).append(e)
        elif e.event_type in ("RetrievalFulfilled", "RetrievalRejected"):
            answered.setdefault(e.fields["request_id"], e.occurred_at)
        elif e.event_type == "ContactClosed":
            closed[e.protocol_number] = min(closed.get(e.protocol_number, e.occurred_at), e.occurred_at)
    for e in events:
        if e.event_type != "RetrievalRequested":
            continue
        contact = opened.get(e.protocol_number or "")
        service = contact.fields["service_type"] if contact else ""
        profile = profile_named(profile_for_service(service))
        group = ((service, contact.fields["channel"], profile.key) if contact else ("(no contact)", "-", profile.key))
        due = e.occurred_at + (timedelta(hours=profile.history_delivery_hours) if e.fields["kind"] == "HISTORY"
                               else timedelta(days=profile.recording_delivery_days))
        done = answered.get(e.fields["request_id"])
        verdict = ("kept" if done and done <= due else "broken" if done
                   else "pending" if due > period_end else "broken")
        count((*group, "request_answered_in_time"), verdict, e.protocol_number or "")

    for protocol, e in opened.items():
        profile = profile_named(profile_for_service(e.fields["service_type"]))
        group = (e.fields["service_type"], e.fields["channel"], profile.key)
        at = e.occurred_at
        told = first.get((protocol, "PROTOCOL_NUMBER"))
        count((*group, "protocol_told_at_start"),
              "kept" if told and told <= at + timedelta(seconds=60) else "broken", protocol)
        if e.fields["recorded"]:
            notice = first.get((protocol, "RECORDING_NOTICE"))
            count((*group, "recording_notice_at_start"),
                  "kept" if notice and notice <= at + timedelta(seconds=60) else "broken", protocol)
        confirmed = first.get((protocol, "PROTOCOL_CONFIRMATION"))
        deadline = at + timedelta(hours=24)
        count((*group, "protocol_confirmed_in_time"), "kept" if confirmed and confirmed <= deadline
              else "pending" if deadline > period_end else "broken", protocol)
        for d in (d for d in deletions if d.protocol_number == protocol):
            two_people = any(t <= d.occurred_at for t in grants.get(d.fields["recording_id"], ()))
            early = d.occurred_at < at + timedelta(days=kept_days[d.fields["recording_id"]]) and not two_people
            held = any(h.occurred_at <= d.occurred_at for h in holds.get(protocol, []))
            count((*group, "recording_deleted_lawfully"), "broken" if early or held else "kept", protocol)
        answer_due = at + timedelta(days=profile.demand_answer_days)  # 7 calendar days (2022 decree)
        answer = closed.get(protocol)
        count((*group, "demand_answered_in_time"), "kept" if answer and answer <= answer_due
              else "broken" if answer else "pending" if answer_due > period_end else "broken", protocol)
    return figures


def _closed(p: str, at: datetime) -> Event:
    return Event("ContactClosed", {"outcome": "RESOLVED", "summary": "ok"}, protocol_number=p, occurred_at=at)


def test_the_compliance_report_counts_verified_events_and_renders(ledger, tmp_path) -> None:
    import subprocess

    from matplotlib.image import imread

    rt, cli = ledger["rt"], ledger["cli"]
    t1 = now_s() - timedelta(days=3)
    recent = now_s() - timedelta(hours=1)
    with ProtocolIssuer(rt.database_url) as issuer:
        p1, p2, p3, p4, p5, p6 = (issuer.issue() for _ in range(6))

    def said(p: str, kind: str, at: datetime) -> Event:
        return Event("DisclosureMade", {"kind": kind, "medium": "IVR_PROMPT"}, protocol_number=p, occurred_at=at)

    events = [
        Event("ContactOpened", contact_opened(service_type="MOBILE", channel="PHONE"), protocol_number=p1, occurred_at=t1),
        said(p1, "PROTOCOL_NUMBER", t1 + timedelta(seconds=10)), said(p1, "RECORDING_NOTICE", t1 + timedelta(seconds=5)),
        said(p1, "PROTOCOL_CONFIRMATION", t1 + timedelta(hours=2)),
        Event("ContactOpened", contact_opened(service_type="BANKING", channel="CHAT"), protocol_number=p2, occurred_at=t1),
        said(p2, "PROTOCOL_NUMBER", t1 + timedelta(seconds=120)), said(p2, "PROTOCOL_CONFIRMATION", t1 + timedelta(hours=30)),
        Event("ContactOpened", contact_opened(service_type="MOBILE", channel="CHAT", recorded=False),
              protocol_number=p3, occurred_at=t1),
        said(p3, "PROTOCOL_NUMBER", t1 + timedelta(seconds=30)), said(p3, "PROTOCOL_CONFIRMATION", t1 + timedelta(hours=1)),
        Event("ContactOpened", contact_opened(service_type="MOBILE", channel="PHONE"), protocol_number=p4, occurred_at=recent),
        said(p4, "RECORDING_NOTICE", recent + timedelta(seconds=1)),
    ]

    def captured(p: str, rec: str, days: int, at: datetime) -> list[Event]:
        fields = recording_captured(rec, p, days=days)
        return [Event("RecordingCaptured", fields, protocol_number=p, occurred_at=at)]

    def deleted(p: str, rec: str, at: datetime) -> Event:
        return Event("RecordingDeleted", {"recording_id": rec, "sha256": recording_captured(rec, p)["sha256"],
                                          "reason": "RETENTION_EXPIRED", "authorised_by": "retention job"},
                     protocol_number=p, occurred_at=at)

    old = now_s() - timedelta(days=200)
    events += [Event("ContactOpened", contact_opened(service_type="MOBILE", channel="PHONE"), protocol_number=p5,
                     occurred_at=old),
               said(p5, "PROTOCOL_NUMBER", old + timedelta(seconds=3)),
               Event("ContactOpened", contact_opened(service_type="BANKING", channel="PHONE"), protocol_number=p6,
                     occurred_at=old)]
    events += captured(p5, "rec-kept", 180, old + timedelta(minutes=2)) + [deleted(p5, "rec-kept", old + timedelta(days=190))]
    events += captured(p2, "rec-early", 180, t1 + timedelta(minutes=1)) + [deleted(p2, "rec-early", t1 + timedelta(hours=1))]
    events += captured(p6, "rec-held", 180, old + timedelta(minutes=1)) + [
        Event("LegalHoldPlaced", {"hold_id": "hold-report-1", "case_reference": "Procon 77", "placed_by": "legal"},
              protocol_number=p6, occurred_at=old + timedelta(days=10)),
        deleted(p6, "rec-held", old + timedelta(days=190))]

    # early deletions: p1's granted by a second person before it (kept), p4's approved by the
    # one who asked (broken: the two-person rule is judged on the log, whoever published it)
    events += captured(p1, "rec-approved", 180, t1 + timedelta(minutes=1)) + _early_deletion_approval(
        p1, "rec-approved", "supervisora", "conformidade", t1 + timedelta(minutes=30)) + [
        deleted(p1, "rec-approved", t1 + timedelta(hours=1))]
    events += captured(p4, "rec-self", 180, recent + timedelta(minutes=1)) + _early_deletion_approval(
        p4, "rec-self", "supervisora", "supervisora", recent + timedelta(minutes=2)) + [
        deleted(p4, "rec-self", recent + timedelta(minutes=10))]

    def asked(rid: str, kind: str, at: datetime, p: str | None) -> Event:
        return Event("RetrievalRequested", {
            "request_id": rid, "kind": kind, "requested_via": "WEB_FORM", "delivery_channel": "EMAIL",
            "customer": {"cpf": "52998224725", "name": "Ana Export"},
            "window_from": at - timedelta(days=2), "window_to": at}, protocol_number=p, occurred_at=at)

    # demands: p1 answered within 7 days, p5 answered after 10, p6 never (overdue); p2-p4 open, not due
    events += [_closed(p1, t1 + timedelta(hours=2)), _closed(p5, old + timedelta(days=10))]
    r_ok, r_late, r_open, r_new, r_no = (str(uuid.uuid4()) for _ in range(5))
    events += [
        asked(r_ok, "RECORDING", t1 + timedelta(hours=1), p1),
        Event("RetrievalFulfilled", {"request_id": r_ok, "recording_id": "rec-x", "delivered_sha256": "0" * 64,
                                     "delivered_via": "EMAIL"}, protocol_number=p1, occurred_at=t1 + timedelta(days=1)),
        asked(r_late, "HISTORY", old + timedelta(days=1), p6),  # answered after 120 h
        Event("RetrievalRejected", {"request_id": r_late, "reason": "NOT_FOUND", "detail": "late answer"},
              protocol_number=p6, occurred_at=old + timedelta(days=9)),
        asked(r_open, "HISTORY", old + timedelta(days=2), p5),  # never answered, long overdue
        asked(r_new, "RECORDING", recent, p4),  # open, not due yet
        asked(r_no, "HISTORY", old + timedelta(days=3), None),  # by CPF, no contact, overdue
    ]
    with rt.publisher("export-test") as publisher:
        publisher.publish_many(events)
    project(rt)
    start = (old - timedelta(days=5)).isoformat()
    end = datetime.now(UTC)
    out = tmp_path / "report.json"
    done = cli("report", "--from", start, "--to", end.isoformat(), "--out", str(out), "--format", "json")
    assert done.code == 0, done.err
    report = json.loads(out.read_bytes())
    got = {(g["service_type"], g["channel"], g["policy_profile"], f["rule"]):
           (f["applicable"], f["broken"], f["pending"], sorted(b["protocol_number"] for b in f["broken_by"]))
           for g in report["groups"] for f in g["figures"] if f["applicable"]}
    want = {k: (a, b, p, sorted(w)) for k, (a, b, p, w) in
            _expected_rules(ledger["published"] + events, end).items()}
    assert got == want
    # the SLA distribution: the two answered requests, as shares of their deadlines
    sla = {r["request_id"]: r["share_of_deadline"] for r in report["request_sla"]}
    assert sla == {r_ok: round(23 / 240, 4), r_late: round(8 * 24 / 120, 4)}
    # the daily series add up to the same judged contacts as the figures (deletions included)
    per_day = sum(v["judged"] for rules in report["daily"].values() for v in rules.values())
    assert per_day == sum(a - p for (_, _, _, rule), (a, _, p, _) in got.items()
                          if rule != "request_answered_in_time")
    assert got[("BANKING", "PHONE", "br-sac-2022@1", "recording_deleted_lawfully")] == (1, 1, 0, [p6])  # under hold
    assert got[("BANKING", "CHAT", "br-sac-2022@1", "recording_deleted_lawfully")] == (1, 1, 0, [p2])  # too early
    # p5's after its retention, p1's early with a two-person approval: kept; p4's self-approved: broken
    assert got[("MOBILE", "PHONE", "br-anatel-rgc@1", "recording_deleted_lawfully")] == (3, 1, 0, [p4])
    assert got[("BANKING", "PHONE", "br-sac-2022@1", "request_answered_in_time")] == (1, 1, 0, [p6])
    assert got[("MOBILE", "PHONE", "br-anatel-rgc@1", "request_answered_in_time")] == (3, 1, 1, [p5])
    assert got[("(no contact)", "-", "br-sac-2022@1", "request_answered_in_time")] == (1, 1, 0, [""])
    assert got[("BANKING", "PHONE", "br-sac-2022@1", "demand_answered_in_time")][1:] == (1, 0, [p6])  # never
    demands = [got[k] for k in got if k[3] == "demand_answered_in_time"]
    late = {p for _, _, _, broken in demands for p in broken}
    assert p5 in late and p6 in late and not late & {p1, p2, p3, p4}  # answered late / never; in time / not due
    # the report names the export it was computed from, and that export verifies
    evidence = tmp_path / "report.json.export"
    assert report["export_id"] == json.loads((evidence / "manifest.json").read_bytes())["export_id"]
    assert verify_export(evidence, ledger["trust"]).verdict == "VALID"
    # every broken figure points at the contact's opening record in the export
    opening = {}
    for entry in json.loads((evidence / "manifest.json").read_bytes())["partitions"]:
        with open(evidence / entry["data"], "rb") as f:
            for r in fastavro.reader(f):
                if r["event_type"] == "ContactOpened":
                    opening[json.loads(r["event"])["meta"]["protocol_number"]] = (r["partition"], r["offset"])
                elif r["event_type"] == "RetrievalRequested":
                    opening[json.loads(r["event"])["request_id"]] = (r["partition"], r["offset"])
    for g in report["groups"]:
        for f in g["figures"]:
            for b in f["broken_by"]:
                assert opening[b.get("request_id") or b["protocol_number"]] == (b["partition"], b["offset"])

    for fmt in ("html", "csv", "pdf"):
        target = tmp_path / f"report.{fmt}"
        done = cli("report", "--from", start, "--to", end.isoformat(), "--out", str(target), "--format", fmt)
        assert done.code == 0, done.err
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "<script" not in page.lower()
    assert f'href="/v1/contacts/{p2}/proof?purpose=compliance-report"' in page  # the API's route asks why
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert rows[0].startswith("service_type,channel,policy_profile,rule,applicable,broken")
    assert any(row.startswith("BANKING,CHAT,br-sac-2022@1,protocol_told_at_start,") for row in rows)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 4
    for png in pages:
        pixels = imread(str(png))
        assert pixels.std() > 0.01  # something is drawn, not a blank page
    keep = Path("/tmp/h15-report-pages")
    keep.mkdir(exist_ok=True)
    for png in pages:
        shutil.copy(png, keep / png.name)
    shutil.copy(tmp_path / "report.html", keep / "report.html")


def test_the_demo_writes_the_runs_export_verified_with_pinned_keys_and_its_report(settings, monkeypatch,
                                                                                   capsys) -> None:
    from protocolo.cli import main

    for name, value in (("PROTOCOLO_HOME", str(settings.home)), ("PROTOCOLO_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                        ("PROTOCOLO_DATABASE_URL", settings.database_url), ("PROTOCOLO_TOPIC", settings.topic),
                        ("PROTOCOLO_GROUP_ID", settings.group_id), ("PROTOCOLO_DEV_KEYS", "1"),
                        ("PROTOCOLO_DEPLOYMENT", DEPLOYMENT)):
        monkeypatch.setenv(name, value)
    for name in ("PROTOCOLO_TSA_URL", "PROTOCOLO_TSA_CHAIN", "PROTOCOLO_WITNESSES"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo", "--contacts", "30", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("Audit export ("))
    export = Path(line.rsplit(": ", 1)[1])
    assert "offline verification with the log's verifier keys: VALID" in out
    key = load_log_key(settings, DEPLOYMENT)
    vkeys = tuple(key.vkey(log_origin(DEPLOYMENT, settings.topic, p)) for p in range(settings.partitions))
    assert verify_export(export, ExportTrust(vkeys)).verdict == "VALID"
    manifest = json.loads((export / "manifest.json").read_bytes())
    assert manifest["records"] > 0 and manifest["request"]["regulator"] == "demo-regulator"
    for suffix in ("html", "pdf"):
        assert (export.parent / f"{export.name}-report.{suffix}").stat().st_size > 0


def test_a_ledger_that_differs_from_its_checkpoints_gets_no_export(ledger, tmp_path) -> None:
    import psycopg

    with psycopg.connect(ledger["settings"].database_url, autocommit=True) as conn:
        (partition,) = conn.execute(
            "UPDATE journal SET record_value = record_value || '\\x00'::bytea WHERE (topic, kafka_partition,"
            " kafka_offset) = (SELECT topic, kafka_partition, kafka_offset FROM journal WHERE protocol_number = %s"
            " ORDER BY kafka_offset LIMIT 1) RETURNING kafka_partition", (ledger["first"][0],)).fetchone()
    out = tmp_path / "refused"
    done = ledger["cli"]("export", "--from", (ledger["t0"] - timedelta(days=1)).isoformat(),
                         "--to", datetime.now(UTC).isoformat(), "--out", str(out), "--regulator", "anatel")
    assert done.code == 2, done.out + done.err
    assert f"partition {partition}:" in done.err and "protocolo verify" in done.err
    assert "Traceback" not in done.err and not out.exists() and not (tmp_path / "refused.partial").exists()
