"""The wire contract holds across languages, with the Apache Avro Java library as the oracle.

A Java producer (tests/interop/java), written from docs/wire-contract.md and the .avsc files
only, publishes a complete contact with Avro's own ``BinaryMessageEncoder`` and the official
``kafka-clients`` to the session's real broker; the real projector projects it and
``protocolo history`` shows it. The other way, Java's ``BinaryMessageDecoder`` reads bytes
the Python publisher wrote and checks every committed vector, and the JDK's HMAC and
AES-GCM reproduce the blind indexes and sealed bytes the vectors publish.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader
from java_build import SCHEMAS, VECTORS, JavaInterop

from protocolo.cli import main as cli_main
from protocolo.core.config import Settings
from protocolo.core.personal_data import BlindIndex, KeyVault
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import HEADER_SIZE
from protocolo.schemas.vectors_tool import jsonable

CPF = "529.982.247-25"
CPF_DIGITS = "52998224725"
CUSTOMER_CODE = "C-JAVA-0017"
NAME = "Conceição D'Ávila"
CONTACT = ["ContactOpened", "DisclosureMade", "DisclosureMade", "RecordingCaptured", "ContactClosed"]


def quiet(message: str) -> None:
    pass


def history(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str]:
    """``protocolo history ...`` in-process, against this test's database, topic and keys."""
    for name, value in (("PROTOCOLO_HOME", str(settings.home)),
                        ("PROTOCOLO_KAFKA_BOOTSTRAP", settings.kafka_bootstrap or ""),
                        ("PROTOCOLO_DATABASE_URL", settings.database_url or ""),
                        ("PROTOCOLO_TOPIC", settings.topic),
                        ("PROTOCOLO_GROUP_ID", settings.group_id),
                        # the deployment's keys are the dev keys only when said (docs: "Dev keys")
                        ("PROTOCOLO_DEV_KEYS", "1")):
        monkeypatch.setenv(name, value)
    for name in ("PROTOCOLO_POLICY", "PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    code = cli_main(["history", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out


@pytest.mark.parametrize("sealed", [False, True], ids=["indexes-only", "sealed-with-a-handed-key"])
def test_java_producer_contact_is_projected_and_shown_by_history(
    sealed: bool, settings: Settings, java_interop: JavaInterop, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both routes of docs/wire-contract.md ("Personal data from a non-Python producer"):
    blind indexes only (what every outside producer can do with the index key), and sealing
    with a per-customer data key the vault's owner handed over."""
    rt = Runtime.start(settings, log=quiet)
    with ProtocolIssuer(rt.database_url, block_size=10) as issuer:
        protocol = issuer.issue()
    sealing: list[str] = []
    if sealed:
        cpf_index = BlindIndex(rt.keys.index_key).cpf(CPF)
        vault = KeyVault(rt.database_url, rt.keys.master_key)
        try:
            key_ref, data_key = vault.sealing_key(cpf_index)
        finally:
            vault.close()
        sealing = ["--data-key-ref", key_ref, "--data-key-hex", data_key.hex()]
    opened_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    result = java_interop.run(
        "ContactProducer", "--bootstrap", rt.kafka_bootstrap, "--topic", settings.topic,
        "--schemas", str(SCHEMAS), "--protocol", protocol,
        "--opened-at-micros", str(int(opened_at.timestamp()) * 1_000_000),
        "--index-key-base64", base64.b64encode(rt.keys.index_key).decode(),
        "--cpf", CPF, "--customer-code", CUSTOMER_CODE, "--name", NAME, *sealing,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sent = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [s["event_type"] for s in sent] == [*CONTACT, "RetrievalRequested"]
    assert {s["key"] for s in sent[:5]} == {protocol}  # the contact's key: its protocol number
    request_key = sent[5]["key"]
    assert str(uuid.UUID(request_key)) == request_key  # a request by CPF: its own id

    with rt.projector() as projector:
        projector.run(until_caught_up=True, idle_timeout_s=60)
    with rt.connect() as conn:
        quarantined = conn.execute("SELECT error FROM quarantine").fetchall()
        journalled = conn.execute("SELECT count(*) FROM journal").fetchone()
    assert quarantined == []
    assert journalled == (6,)

    code, out = history(settings, monkeypatch, capsys, "--cpf", CPF, "--json")
    assert code == 0
    found = json.loads(out)
    (contact,) = found["interactions"]
    assert contact["protocol_number"] == protocol
    assert [e["event_type"] for e in contact["events"]] == CONTACT
    assert {e["event_id"] for e in contact["events"]} == {s["event_id"] for s in sent[:5]}
    assert contact["compliance"]["protocol_disclosed_at_start"] is True
    assert contact["compliance"]["recording_notice_at_start"] is True
    assert datetime.fromisoformat(contact["opened_at"]) == opened_at
    assert contact["outcome"] == "RESOLVED" and contact["service_type"] == "MOBILE"
    if sealed:  # sealed by the JDK's AES-GCM, opened by the Python sealer
        assert contact["customer"] == {"identified": True, "erased": False, "name": NAME,
                                       "customer_code": CUSTOMER_CODE, "cpf_masked": "***.982.247-**"}
    else:  # found by the CPF's blind index that Java computed; no personal data in the ledger
        assert contact["customer"] == {"identified": True, "erased": False, "sealed": False}
    code, by_code = history(settings, monkeypatch, capsys, "--customer", CUSTOMER_CODE, "--json")
    assert code == 0 and [i["protocol_number"] for i in json.loads(by_code)["interactions"]] == [protocol]
    (recording,) = contact["recordings"]
    assert recording["recording_id"] == f"rec-java-{protocol}"
    assert recording["retention_profile"].startswith("br-anatel-rgc@")
    (request,) = found["retrieval_requests"]
    assert request["request_id"] == request_key and request["kind"] == "RECORDING"
    assert CPF_DIGITS not in out

    code, text = history(settings, monkeypatch, capsys, "--protocol", protocol)
    assert code == 0
    assert "protocol told at start: yes" in text and "recording notice at start: yes" in text
    assert (NAME in text) is sealed
    assert ("identified by blind index only" in text) is not sealed


def test_java_decoder_checks_every_vector_and_reads_python_records(
    settings: Settings, java_interop: JavaInterop, tmp_path: Path,
) -> None:
    rt = Runtime.start(settings, log=quiet)
    with ProtocolIssuer(rt.database_url, block_size=10) as issuer:
        protocol = issuer.issue()
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        Event("ContactOpened", {"channel": "CHAT", "direction": "INBOUND", "service_type": "BANKING",
                                "customer": {"cpf": CPF, "customer_code": CUSTOMER_CODE, "name": NAME},
                                "agent_id": None, "subject": "Tarifa não reconhecida", "recorded": False},
              protocol_number=protocol, occurred_at=now),
        Event("NoteAdded", {"agent_id": "ag-1", "agent_name": "Zoë", "text": "Cliente retornará 📞"},
              protocol_number=protocol, occurred_at=now),
        Event("RetrievalRequested", {"request_id": str(uuid.uuid4()), "kind": "HISTORY",
                                     "customer": {"customer_code": CUSTOMER_CODE},
                                     "window_from": now - timedelta(days=3), "window_to": now,
                                     "requested_via": "APP", "delivery_channel": "APP"},
              occurred_at=now, correlation_id="wf-1"),
        Event("ContactOpened", {"channel": "PHONE", "direction": "OUTBOUND", "service_type": "MOBILE",
                                "customer": {}, "agent_id": "ag-2", "subject": "Retorno", "recorded": True},
              protocol_number=protocol, occurred_at=now, schema_version=1),
    ]
    with rt.publisher("python-side") as publisher:
        prepared = [publisher.prepare(e) for e in events]
    records = tmp_path / "python-records.jsonl"
    records.write_text("".join(json.dumps({"value_hex": p.value.hex()}) + "\n" for p in prepared))

    result = java_interop.run("VectorChecker", "--schemas", str(SCHEMAS), "--vectors", str(VECTORS),
                              "--python-records", str(records))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    ok = {line[3:] for line in lines if line.startswith("ok ")}
    committed = sorted(VECTORS.glob("*.v*.json"))
    catalogue = SchemaCatalogue.load()
    assert len(committed) == sum(len(catalogue.versions(t)) for t in catalogue.event_types())
    for path in committed:
        for check in ("canonical form", "fingerprint (parsingFingerprint)", "decodes to record",
                      "record encodes to single_object_hex", "kafka_key", "kafka_headers",
                      "unknown fingerprint refused"):
            assert f"{path.name} {check}" in ok, (path.name, check)
    personal = json.loads((VECTORS / "personal-data.json").read_text(encoding="utf-8"))
    for case in personal["blind_index"]:
        assert f"blind index {json.dumps(case['message'], ensure_ascii=False)}" in ok
    for case in personal["sealing"]:
        assert f"sealing '{case['label']}' ciphertext (JDK AES-GCM)" in ok
        assert f"sealing '{case['label']}' plaintext bytes" in ok

    catalogue = SchemaCatalogue.load()
    decoded = [json.loads(line[len("decoded "):]) for line in lines if line.startswith("decoded ")]
    assert len(decoded) == len(prepared)
    for p, java in zip(prepared, decoded, strict=True):
        writer = catalogue.by_fingerprint(p.value[2:HEADER_SIZE])
        assert (java["event_type"], java["version"]) == (p.event_type, writer.version)
        assert java["kafka_key"] == p.key.decode()
        expected: Any = jsonable(schemaless_reader(io.BytesIO(p.value[HEADER_SIZE:]), writer.schema, None))
        assert java["record"] == expected


def test_java_vector_checker_reports_a_tampered_vector(java_interop: JavaInterop, tmp_path: Path) -> None:
    """The checker can fail, and names what is wrong."""
    vectors = tmp_path / "vectors"
    shutil.copytree(VECTORS, vectors)
    path = vectors / "ContactClosed.v1.json"
    vector = json.loads(path.read_text(encoding="utf-8"))
    vector["record"]["outcome"] = "ESCALATED"
    path.write_text(json.dumps(vector), encoding="utf-8")
    personal_path = vectors / "personal-data.json"
    personal = json.loads(personal_path.read_text(encoding="utf-8"))
    ct = personal["sealing"][1]["ciphertext_hex"]
    personal["sealing"][1]["ciphertext_hex"] = ct[:-2] + f"{int(ct[-2:], 16) ^ 1:02x}"
    personal_path.write_text(json.dumps(personal), encoding="utf-8")

    result = java_interop.run("VectorChecker", "--schemas", str(SCHEMAS), "--vectors", str(vectors))
    assert result.returncode == 1
    failed = sorted(line for line in result.stdout.splitlines() if line.startswith("FAIL"))
    assert failed[:2] == ["FAIL ContactClosed.v1.json decodes to record",
                          "FAIL ContactClosed.v1.json record encodes to single_object_hex (Java: "
                          + failed[1].split("(Java: ")[1]]
    assert any(line.startswith("FAIL sealing 'code only' ciphertext") for line in failed)
