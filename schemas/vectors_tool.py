"""Cross-language test vectors: one known record and its exact bytes per schema version.

Writes ``schemas/vectors/<EventType>.v<N>.json`` and ``schemas/vectors/personal-data.json``
(format: ``schemas/vectors/README.md``; the contract: ``docs/wire-contract.md``)::

    python -m protocolo.schemas.vectors_tool           # (re)write the files
    python -m protocolo.schemas.vectors_tool --check   # exit 1 if a file is stale

Everything is fixed (ids, clocks, keys, nonces), so the output is byte-for-byte
reproducible. The tests never regenerate the files: they check the committed bytes against
the code (tests/schemas/test_schemas_vectors.py) and against the Apache Avro Java library
(tests/interop/). Adding a schema version means adding its sample record to :data:`SAMPLES`
and running this tool.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from protocolo.core.cpf import normalise_cpf
from protocolo.core.personal_data import BlindIndex, seal_plaintext, sealed_plaintext
from protocolo.core.protocol_number import make_protocol_number

from .catalogue import SchemaCatalogue
from .validation import entity_key, record_headers

VECTORS_DIR = Path(__file__).parent / "vectors"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NOTES = (
    "record is the event in plain JSON, not Avro's JSON encoding: unions are their bare "
    "value (no {\"type\": value} wrapper), enums are symbol strings, timestamp-micros are "
    "integer microseconds since 1970-01-01T00:00:00Z, uuid are canonical lowercase strings, "
    "bytes are lowercase hex strings (nonce, ciphertext). Blind indexes and sealed data use "
    "the published test keys of personal-data.json: the ciphertext opens with its data key. "
    "single_object_hex is the exact Kafka record value: c3 01, the 8-byte fingerprint as in "
    "schema_fingerprint_hex, then the Avro binary body; kafka_key and kafka_headers are the "
    "record's key and headers (UTF-8 text)."
)

# Published test keys (schemas/vectors/personal-data.json); real deployments keep theirs
# secret: PROTOCOLO_INDEX_KEY, and per-customer data keys in the key vault.
INDEX_KEY = hashlib.sha256(b"protocolo test vectors: index key, not a secret").digest()
DATA_KEY = hashlib.sha256(b"protocolo test vectors: data key, not a secret").digest()
KEY_REF = "0f6b1d2e-8c4a-4e1f-9b7d-3a5c2e9f1b08"
_TEST_INDEX = BlindIndex(INDEX_KEY)
_NAMESPACE = uuid.UUID("6f1c3f4e-2b1d-4c55-9a43-0d2f6a1e7b90")
_T0 = datetime(2025, 3, 3, 12, 4, 31, 250_118, tzinfo=UTC)  # 09:04 in São Paulo


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


def _sha256(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _opaque(label: str, size: int) -> bytes:
    out = b""
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{len(out)}".encode()).digest()
    return out[:size]


def _meta(event: str, at: datetime, protocol: str | None, producer: str,
          correlation: str | None = None) -> dict[str, Any]:
    return {
        "event_id": _id(event),
        "protocol_number": protocol,
        "occurred_at": at,
        "producer": producer,
        "correlation_id": correlation,
    }


PROTOCOL = make_protocol_number(2025, 4_182_307)
OTHER_PROTOCOL = make_protocol_number(2025, 3_990_114)
CPF = "111.444.777-35"
CUSTOMER_CODE = "C-00482913"
CUSTOMER_NAME = "Maria da Conceição Araújo"
CPF_INDEX = _TEST_INDEX.cpf(CPF)
CODE_INDEX = _TEST_INDEX.customer_code(CUSTOMER_CODE)
RECORDING_ID = "rec-20250303-7f3a91"
RECORDING_SHA256 = _sha256("audio of contact " + PROTOCOL)
REQUEST_ID = _id("retrieval request")
HOLD_ID = "hold-2025-0042"
WORKFLOW = str(_id("retrieval workflow"))



def _sealed(label: str, event_id: uuid.UUID, cpf: str | None, code: str | None,
            name: str | None) -> dict[str, Any]:
    """Sealed exactly as ``PersonalDataSealer.seal`` does, with a fixed nonce and the test key."""
    nonce = _opaque(f"nonce {label}", 12)
    plaintext = sealed_plaintext(cpf, code, name)
    return {"key_ref": KEY_REF, "nonce": nonce,
            "ciphertext": seal_plaintext(DATA_KEY, nonce, plaintext, str(event_id))}


def _customer(event: str) -> dict[str, Any]:
    return {
        "cpf_index": CPF_INDEX,
        "customer_code_index": CODE_INDEX,
        "sealed": _sealed(event, _id(event), "11144477735", CUSTOMER_CODE, CUSTOMER_NAME),
    }


#: (event type, schema version) -> the sample record, as fastavro writes and reads it.
SAMPLES: dict[tuple[str, int], dict[str, Any]] = {
    ("ContactOpened", 1): {
        "meta": _meta("ContactOpened v1", _T0, PROTOCOL, "telephony-ivr"),
        "channel": "PHONE",
        "direction": "INBOUND",
        "service_type": "MOBILE",
        "customer": _customer("ContactOpened v1"),
        "agent_id": "ag-3021",
        "subject": "Cobrança indevida na fatura de fevereiro",
        "recorded": True,
    },
    ("ContactOpened", 2): {
        "meta": _meta("ContactOpened v2", _T0 + timedelta(days=2), OTHER_PROTOCOL, "chat-gateway"),
        "channel": "CHAT",
        "direction": "INBOUND",
        "service_type": "BROADBAND",
        "customer": {"cpf_index": None, "customer_code_index": CODE_INDEX, "sealed": None},
        "agent_id": None,
        "subject": "Velocidade abaixo da contratada",
        "recorded": False,
        "language": "es",
    },
    ("ContactOpened", 3): {
        "meta": _meta("ContactOpened v3", _T0 + timedelta(days=3), OTHER_PROTOCOL, "telephony-ivr"),
        "channel": "PHONE",
        "direction": "INBOUND",
        "service_type": "MOBILE",
        "customer": _customer("ContactOpened v3"),
        "agent_id": "ag-1187",
        "subject": "Portabilidade não concluída",
        "recorded": True,
        "language": "pt-BR",
        "policy_profile": "br-anatel-rgc-small",
    },
    ("DisclosureMade", 1): {
        "meta": _meta("DisclosureMade", _T0 + timedelta(seconds=4), PROTOCOL, "telephony-ivr"),
        "kind": "RECORDING_NOTICE",
        "medium": "IVR_PROMPT",
    },
    ("RecordingCaptured", 1): {
        "meta": _meta("RecordingCaptured", _T0 + timedelta(minutes=9), PROTOCOL, "recorder"),
        "recording_id": RECORDING_ID,
        "media_uri": f"s3://protocolo-recordings/2025/03/03/{RECORDING_ID}.opus",
        "sha256": RECORDING_SHA256,
        "duration_ms": 531_480,
        "retention_profile": "br-anatel-rgc",
        "retention_days": 180,
    },
    ("ContactClosed", 1): {
        "meta": _meta("ContactClosed", _T0 + timedelta(minutes=9, seconds=2), PROTOCOL, "crm"),
        "outcome": "RESOLVED",
        "summary": "Estorno de R$ 39,90 aprovado; crédito na próxima fatura.",
    },
    ("NoteAdded", 1): {
        "meta": _meta("NoteAdded", _T0 + timedelta(days=2, minutes=14), OTHER_PROTOCOL,
                      "chat-gateway"),
        "agent_id": "ag-1187",
        "agent_name": "Joana Pereira",
        "text": "Cliente orientado a reiniciar o modem; visita técnica agendada para 06/03.",
    },
    ("RetrievalRequested", 1): {
        "meta": _meta("RetrievalRequested", _T0 + timedelta(days=20), None, "web-portal",
                      WORKFLOW),
        "request_id": REQUEST_ID,
        "kind": "RECORDING",
        "customer": _customer("RetrievalRequested"),
        "window_from": datetime(2025, 3, 1, 3, 0, tzinfo=UTC),
        "window_to": datetime(2025, 3, 8, 2, 59, 59, 999_999, tzinfo=UTC),
        "requested_via": "WEB_FORM",
        "delivery_channel": "EMAIL",
    },
    ("RetrievalLocated", 1): {
        "meta": _meta("RetrievalLocated", _T0 + timedelta(days=20, minutes=1), None,
                      "retrieval-service", WORKFLOW),
        "request_id": REQUEST_ID,
        "protocol_numbers": [PROTOCOL],
        "recording_ids": [RECORDING_ID],
    },
    ("RetrievalFulfilled", 1): {
        "meta": _meta("RetrievalFulfilled", _T0 + timedelta(days=21, hours=3), None,
                      "retrieval-service", WORKFLOW),
        "request_id": REQUEST_ID,
        "recording_id": RECORDING_ID,
        "delivered_sha256": RECORDING_SHA256,
        "delivered_via": "EMAIL",
    },
    ("RetrievalRejected", 1): {
        "meta": _meta("RetrievalRejected", _T0 + timedelta(days=25), None, "retrieval-service"),
        "request_id": _id("another retrieval request"),
        "reason": "NOT_FOUND",
        "detail": "Nenhum atendimento no período informado para este CPF.",
    },
    ("LegalHoldPlaced", 1): {
        "meta": _meta("LegalHoldPlaced", _T0 + timedelta(days=40), PROTOCOL, "legal-desk"),
        "hold_id": HOLD_ID,
        "case_reference": "0801234-56.2025.8.26.0100",
        "placed_by": "juridico@example.com.br",
    },
    ("LegalHoldReleased", 1): {
        "meta": _meta("LegalHoldReleased", _T0 + timedelta(days=300), PROTOCOL, "legal-desk"),
        "hold_id": HOLD_ID,
        "released_by": "juridico@example.com.br",
        "reason": "Processo arquivado.",
    },
    ("RecordingDeleted", 1): {
        "meta": _meta("RecordingDeleted", _T0 + timedelta(days=301), PROTOCOL,
                      "retention-sweeper"),
        "recording_id": RECORDING_ID,
        "sha256": RECORDING_SHA256,
        "reason": "RETENTION_EXPIRED",
        "authorised_by": None,
    },
    ("CustomerDataErased", 1): {
        "meta": _meta("CustomerDataErased", _T0 + timedelta(days=400), None, "privacy-desk"),
        "subject_ref": CPF_INDEX,
        "key_refs": [KEY_REF],
        "legal_basis": "LGPD art. 18, VI",
    },
    ("AccessRecorded", 1): {
        "meta": _meta("AccessRecorded", _T0 + timedelta(days=30), PROTOCOL, "protocolo-api"),
        "access_id": _id("access to contact"),
        "actor": "supervisor.ana",
        "role": "SUPERVISOR",
        "action": "UNMASK",
        "subject_ref": CPF_INDEX,
        "target": None,
        "purpose": "Procon complaint 2025-118",
        "source_address": "10.0.4.17",
    },
    ("AccessRecorded", 2): {
        "meta": _meta("AccessRecorded", _T0 + timedelta(days=30, hours=1), PROTOCOL, "protocolo-api"),
        "access_id": _id("read of an altered contact"),
        "actor": "analyst.bruno",
        "role": "ANALYST",
        "action": "VERIFIED_READ_MISMATCH",
        "subject_ref": CPF_INDEX,
        "target": "verification MISMATCH: interactions.outcome",
        "purpose": "contact read; the views differ from the signed log",
        "source_address": "10.0.4.18",
    },
    ("ApprovalRequested", 1): {
        "meta": _meta("ApprovalRequested", _T0 + timedelta(days=31), PROTOCOL, "protocolo-api",
                      WORKFLOW),
        "approval_id": _id("early deletion approval"),
        "action": "EARLY_DELETION",
        "requested_by": "supervisor.ana",
        "requester_role": "SUPERVISOR",
        "recording_id": RECORDING_ID,
        "subject_ref": None,
        "reason": "Ordem judicial 0801234-56.2025.8.26.0100",
    },
    ("ApprovalGranted", 1): {
        "meta": _meta("ApprovalGranted", _T0 + timedelta(days=32), PROTOCOL, "protocolo-api",
                      WORKFLOW),
        "approval_id": _id("early deletion approval"),
        "approved_by": "compliance.bruno",
        "approver_role": "COMPLIANCE",
        "comment": None,
    },
    ("ApprovalDenied", 1): {
        "meta": _meta("ApprovalDenied", _T0 + timedelta(days=32), None, "protocolo-api"),
        "approval_id": _id("erasure approval"),
        "denied_by": "compliance.bruno",
        "approver_role": "COMPLIANCE",
        "reason": "Registros sob obrigação legal de guarda.",
    },
}


def jsonable(value: Any) -> Any:
    """A decoded (or sample) record as the plain JSON the vector files use (see NOTES)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a time zone")
        return (value - EPOCH) // timedelta(microseconds=1)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def file_name(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def build(catalogue: SchemaCatalogue | None = None) -> dict[str, str]:
    """File name -> exact file text, for every version in the catalogue."""
    catalogue = catalogue or SchemaCatalogue.load()
    files = {}
    for event_type in catalogue.event_types():
        for sv in catalogue.versions(event_type):
            sample = SAMPLES.get((event_type, sv.version))
            if sample is None:
                raise KeyError(f"no sample record for {event_type} v{sv.version}: add one to SAMPLES")
            document = {
                "event_type": event_type,
                "version": sv.version,
                "schema_file": f"{event_type}/v{sv.version}.avsc",
                "schema_fingerprint_hex": sv.fingerprint.hex(),
                "schema_canonical_form": sv.canonical_form,
                "notes": NOTES,
                "record": jsonable(sample),
                "single_object_hex": catalogue.encode(event_type, sample, sv.version).hex(),
                "kafka_key": entity_key(event_type, sample),
                "kafka_headers": [[name, value.decode()] for name, value in
                                  record_headers(event_type, str(sample["meta"]["event_id"]))],
            }
            files[file_name(event_type, sv.version)] = _text(document)
    files[PERSONAL_DATA_FILE] = _text(personal_data_vectors())
    return files


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


PERSONAL_DATA_FILE = "personal-data.json"

#: (label, event id, clear CPF as typed, customer code, name) of each sealing vector.
SEALING_CASES: list[tuple[str, uuid.UUID, str | None, str | None, str | None]] = [
    ("ContactOpened v1", _id("ContactOpened v1"), CPF, CUSTOMER_CODE, CUSTOMER_NAME),
    ("code only", _id("sealing: code only"), None, "C-77 ÁGUA", None),
    ("json escapes", _id("sealing: json escapes"), "529.982.247-25", None,
     'Zé "Pequeno" \\ O\'Brien\tÑandú 𝄞 \u007f'),
]


def personal_data_vectors() -> dict[str, Any]:
    """Blind indexes and sealed personal data under the published test keys."""
    blind = [
        {"kind": "cpf", "input": CPF, "message": "cpf:11144477735", "index_hex": CPF_INDEX},
        {"kind": "cpf", "input": "529.982.247-25", "message": "cpf:52998224725",
         "index_hex": _TEST_INDEX.cpf("529.982.247-25")},
        {"kind": "customer", "input": CUSTOMER_CODE, "message": f"customer:{CUSTOMER_CODE}",
         "index_hex": CODE_INDEX},
        {"kind": "customer", "input": " C-77 ÁGUA ", "message": "customer:C-77 ÁGUA",
         "index_hex": _TEST_INDEX.customer_code(" C-77 ÁGUA ")},
    ]
    sealing = []
    for label, event_id, cpf, code, name in SEALING_CASES:
        digits = normalise_cpf(cpf) if cpf is not None else None
        sealed = _sealed(label, event_id, digits, code, name)
        plaintext = sealed_plaintext(digits, code, name)
        sealing.append({
            "label": label,
            "clear": {"cpf": cpf, "customer_code": code, "name": name},
            "event_id": str(event_id),
            "data_key_hex": DATA_KEY.hex(),
            "key_ref": KEY_REF,
            "nonce_hex": sealed["nonce"].hex(),
            "associated_data_hex": str(event_id).encode().hex(),
            "plaintext": plaintext.decode("ascii"),
            "plaintext_hex": plaintext.hex(),
            "ciphertext_hex": sealed["ciphertext"].hex(),
            "cpf_index": _TEST_INDEX.cpf(cpf) if cpf else None,
            "customer_code_index": _TEST_INDEX.customer_code(code) if code else None,
        })
    return {
        "notes": ("Test keys, published on purpose: never use them in a deployment. "
                  "Format: docs/wire-contract.md, 'Personal data'."),
        "index_key_hex": INDEX_KEY.hex(),
        "index_key_base64": base64.b64encode(INDEX_KEY).decode(),
        "blind_index": blind,
        "sealing": sealing,
    }


def stale(directory: Path = VECTORS_DIR) -> list[str]:
    """Names of vector files that are missing, differ from :func:`build` or are extra."""
    expected = build()
    present = {p.name for p in directory.glob("*.json")}
    problems = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return problems + sorted(present - expected.keys())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {VECTORS_DIR / name}", file=sys.stderr)
        return 1 if names else 0
    VECTORS_DIR.mkdir(exist_ok=True)
    for name, text in build().items():
        (VECTORS_DIR / name).write_text(text, encoding="utf-8")
        print(VECTORS_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
