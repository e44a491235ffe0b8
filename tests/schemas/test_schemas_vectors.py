"""The committed cross-language vectors are decodable, right by the spec and what the code produces.

These tests never regenerate the vectors with the code under test (that would compare the
code with itself): they read the committed files and check the code against them. The
files are rewritten only by ``python -m protocolo.schemas.vectors_tool``, on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from fastavro import schemaless_reader

from protocolo.core.cpf import normalise_cpf
from protocolo.core.personal_data import (
    BlindIndex,
    open_ciphertext,
    seal_plaintext,
    sealed_plaintext,
)
from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import HEADER_SIZE, canonical_form, fingerprint
from protocolo.schemas.validation import entity_key, record_headers
from protocolo.schemas.vectors_tool import (
    PERSONAL_DATA_FILE,
    VECTORS_DIR,
    file_name,
    jsonable,
    stale,
)

CATALOGUE = SchemaCatalogue.load()
COMMITTED = sorted(VECTORS_DIR.glob("*.v*.json"))
PERSONAL = json.loads((VECTORS_DIR / PERSONAL_DATA_FILE).read_text(encoding="utf-8"))
HEX64 = re.compile(r"^[0-9a-f]{64}$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_schema_version_has_exactly_one_committed_vector() -> None:
    expected = {file_name(t, sv.version) for t in CATALOGUE.event_types() for sv in CATALOGUE.versions(t)}
    assert {p.name for p in COMMITTED} == expected, (
        "vector files missing or extra: add a sample to SAMPLES and run "
        "python -m protocolo.schemas.vectors_tool")


def test_stale_detects_an_edited_file(tmp_path: Path) -> None:
    for path in [*COMMITTED, VECTORS_DIR / PERSONAL_DATA_FILE]:
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    target = tmp_path / "NoteAdded.v1.json"
    target.write_text(target.read_text().replace("Joana", "Joanna"), encoding="utf-8")
    (tmp_path / "Old.v1.json").write_text("{}")
    assert stale(tmp_path) == ["NoteAdded.v1.json", "Old.v1.json"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_vector_decodes(path: Path) -> None:
    vector = load(path)
    data = bytes.fromhex(vector["single_object_hex"])
    decoded = CATALOGUE.decode(data)
    assert decoded.event_type == vector["event_type"]
    assert decoded.writer_version == vector["version"]
    assert decoded.fingerprint.hex() == vector["schema_fingerprint_hex"] == data[2:10].hex()
    writer = CATALOGUE.version(vector["event_type"], vector["version"])
    assert writer.canonical_form == vector["schema_canonical_form"]
    # exactly the record, read with its own writer schema
    as_written = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer.schema, None)
    assert jsonable(as_written) == vector["record"]
    # resolved into the current schema: the record plus defaults of fields added since
    current = CATALOGUE.current(vector["event_type"])
    added = {f["name"]: f["default"] for f in current.schema["fields"]
             if f["name"] not in vector["record"]}
    assert jsonable(decoded.record) == {**vector["record"], **added}


# --- the committed record, back to Python values by its schema (not by vectors_tool) -----


def _from_json(schema: Any, value: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):  # a union: null, or the one non-null branch of ours
        if value is None:
            return None
        (branch,) = [b for b in schema if b != "null"]
        return _from_json(branch, value, named)
    if isinstance(schema, dict):
        if "name" in schema:
            named[schema["name"]] = named[f"{schema.get('namespace', '')}.{schema['name']}"] = schema
        kind = schema["type"]
        if kind == "record":
            return {f["name"]: _from_json(f["type"], value[f["name"]], named) for f in schema["fields"]}
        if kind == "array":
            return [_from_json(schema["items"], v, named) for v in value]
        if schema.get("logicalType") == "timestamp-micros":
            return EPOCH + timedelta(microseconds=value)
        return _from_json(kind, value, named)
    if schema == "bytes":
        return bytes.fromhex(value)
    return value


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_the_code_encodes_each_committed_record_to_its_committed_bytes(path: Path) -> None:
    vector = load(path)
    writer = CATALOGUE.version(vector["event_type"], vector["version"])
    record = _from_json(json.loads(CATALOGUE.schema_json(vector["event_type"], vector["version"])),
                        vector["record"], {})
    encoded = CATALOGUE.encode(vector["event_type"], record, writer.version)
    assert encoded.hex() == vector["single_object_hex"]
    assert entity_key(vector["event_type"], record) == vector["kafka_key"]
    headers = record_headers(vector["event_type"], vector["record"]["meta"]["event_id"])
    assert [[k, v.decode()] for k, v in headers] == vector["kafka_headers"]


def test_kafka_keys_follow_the_documented_rule() -> None:
    """Key = protocol number, else the request id (retrievals), subject_ref (erasure),
    access_id (access audit) or approval_id (approvals)."""
    own_field = {"RetrievalRequested": "request_id", "RetrievalLocated": "request_id",
                 "RetrievalFulfilled": "request_id", "RetrievalRejected": "request_id",
                 "CustomerDataErased": "subject_ref", "AccessRecorded": "access_id",
                 "ApprovalRequested": "approval_id", "ApprovalGranted": "approval_id",
                 "ApprovalDenied": "approval_id"}
    for path in COMMITTED:
        vector = load(path)
        record = vector["record"]
        own = record.get(own_field.get(vector["event_type"], ""))
        assert vector["kafka_key"] == (record["meta"]["protocol_number"] or own), path.name
        assert vector["kafka_headers"] == [["event_type", vector["event_type"]],
                                           ["event_id", record["meta"]["event_id"]]]


def test_identifiers_in_vectors_are_realistic() -> None:
    published_indexes = {v["index_hex"] for v in PERSONAL["blind_index"]}
    for path in COMMITTED:
        vector = load(path)
        record = vector["record"]
        if record["meta"]["protocol_number"] is not None:
            number = record["meta"]["protocol_number"]
            assert normalise_protocol_number(number) == number
        for number in record.get("protocol_numbers", []):
            assert normalise_protocol_number(number) == number
        for key in ("sha256", "delivered_sha256"):
            if key in record:
                assert HEX64.match(record[key]), (path.name, key)
        customer = record.get("customer") or {}
        for key in ("cpf_index", "customer_code_index"):
            if customer.get(key) is not None:
                # an index an outside producer can reproduce from personal-data.json
                assert customer[key] in published_indexes, (path.name, key)
        if record.get("subject_ref") is not None:
            assert record["subject_ref"] in published_indexes


# --- personal data: blind indexes and sealing under the published test keys -------------


def test_published_index_key_is_one_key_in_two_spellings() -> None:
    key = bytes.fromhex(PERSONAL["index_key_hex"])
    assert len(key) == 32 and base64.b64decode(PERSONAL["index_key_base64"]) == key


@pytest.mark.parametrize("case", PERSONAL["blind_index"], ids=lambda c: c["message"])
def test_blind_index_is_the_hmac_of_the_documented_message(case: dict[str, Any]) -> None:
    key = bytes.fromhex(PERSONAL["index_key_hex"])
    # independent oracle: the stdlib HMAC over the message the contract documents
    assert hmac.new(key, case["message"].encode(), hashlib.sha256).hexdigest() == case["index_hex"]
    index = BlindIndex(key)
    produced = index.cpf(case["input"]) if case["kind"] == "cpf" else index.customer_code(case["input"])
    assert produced == case["index_hex"]


@pytest.mark.parametrize("case", PERSONAL["sealing"], ids=lambda c: c["label"])
def test_sealing_vectors_are_what_the_sealer_produces_and_opens(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["data_key_hex"])
    nonce = bytes.fromhex(case["nonce_hex"])
    clear = case["clear"]
    digits = normalise_cpf(clear["cpf"]) if clear["cpf"] is not None else None
    plaintext = sealed_plaintext(digits, clear["customer_code"], clear["name"])
    assert plaintext == case["plaintext"].encode("ascii") == bytes.fromhex(case["plaintext_hex"])
    assert json.loads(plaintext) == {**clear, "cpf": digits}
    assert bytes.fromhex(case["associated_data_hex"]) == case["event_id"].encode()
    assert case["event_id"] == case["event_id"].lower() and len(nonce) == 12
    ciphertext = bytes.fromhex(case["ciphertext_hex"])
    assert seal_plaintext(key, nonce, plaintext, case["event_id"]) == ciphertext
    assert len(ciphertext) == len(plaintext) + 16  # the tag follows the ciphertext
    assert open_ciphertext(key, nonce, ciphertext, case["event_id"]) == plaintext
    with pytest.raises(InvalidTag):  # the event id is bound: another spelling does not open
        open_ciphertext(key, nonce, ciphertext, case["event_id"].upper())
    index = BlindIndex(bytes.fromhex(PERSONAL["index_key_hex"]))
    assert case["cpf_index"] == (index.cpf(clear["cpf"]) if clear["cpf"] else None)
    assert case["customer_code_index"] == (
        index.customer_code(clear["customer_code"]) if clear["customer_code"] else None)


def test_sealed_customers_in_event_vectors_open_with_the_test_key() -> None:
    key = bytes.fromhex(PERSONAL["sealing"][0]["data_key_hex"])
    opened = 0
    for path in COMMITTED:
        record = load(path)["record"]
        sealed = (record.get("customer") or {}).get("sealed")
        if sealed is None:
            continue
        assert sealed["key_ref"] == PERSONAL["sealing"][0]["key_ref"]
        clear = json.loads(open_ciphertext(key, bytes.fromhex(sealed["nonce"]),
                                           bytes.fromhex(sealed["ciphertext"]), record["meta"]["event_id"]))
        index = BlindIndex(bytes.fromhex(PERSONAL["index_key_hex"]))
        assert index.cpf(clear["cpf"]) == record["customer"]["cpf_index"]
        assert index.customer_code(clear["customer_code"]) == record["customer"]["customer_code_index"]
        opened += 1
    assert opened == 3  # ContactOpened v1 and v3, RetrievalRequested v1


# --- docs in .avsc files are not part of the contract's bytes ---------------------------


def _without_docs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_docs(v) for k, v in schema.items() if k != "doc"}
    if isinstance(schema, list):
        return [_without_docs(v) for v in schema]
    return schema


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_doc_strings_do_not_change_the_fingerprint(path: Path) -> None:
    """The .avsc docs were corrected after the schemas were published: the committed
    fingerprints (taken before) must still be the files' fingerprints."""
    vector = load(path)
    schema = json.loads(CATALOGUE.schema_json(vector["event_type"], vector["version"]))
    assert fingerprint(schema).hex() == vector["schema_fingerprint_hex"]
    assert fingerprint(_without_docs(schema)).hex() == vector["schema_fingerprint_hex"]
    assert canonical_form(_without_docs(schema)) == vector["schema_canonical_form"]
    # while a change that is not a doc does change it (so the check above can fail)
    renamed = {**schema, "fields": [{**schema["fields"][-1], "name": "renamed"}, *schema["fields"][:-1]]}
    assert fingerprint(renamed).hex() != vector["schema_fingerprint_hex"]


# --- one vector assembled by hand from the spec's encoding rules (no fastavro) -----------


def zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return zigzag(len(raw)) + raw


def test_disclosure_made_bytes_follow_the_spec() -> None:
    vector = load(VECTORS_DIR / "DisclosureMade.v1.json")
    schema = json.loads(CATALOGUE.schema_json("DisclosureMade", 1))
    symbols = {f["name"]: f["type"]["symbols"] for f in schema["fields"][1:]}
    record, meta = vector["record"], vector["record"]["meta"]
    assert meta["correlation_id"] is None and meta["protocol_number"] is not None
    expected = (
        b"\xc3\x01"
        + bytes.fromhex(vector["schema_fingerprint_hex"])
        + avro_string(meta["event_id"])
        + zigzag(1) + avro_string(meta["protocol_number"])
        + zigzag(meta["occurred_at"])
        + avro_string(meta["producer"])
        + zigzag(0)
        + zigzag(symbols["kind"].index(record["kind"]))
        + zigzag(symbols["medium"].index(record["medium"]))
    )
    assert vector["single_object_hex"] == expected.hex()
    # the worked example in schemas/vectors/README.md walks through these bytes
    readme = (VECTORS_DIR / "README.md").read_text(encoding="utf-8")
    assert "ad 2e 88 85 91 45 f8 ec" in readme
    assert vector["schema_fingerprint_hex"] == "ad2e88859145f8ec"
    assert zigzag(meta["occurred_at"]).hex(" ") in readme
    assert f"{len(expected)} bytes in all" in readme


def test_wire_contract_worked_examples_are_the_committed_vectors() -> None:
    """docs/wire-contract.md quotes the vectors; a regenerated vector must update the doc."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "wire-contract.md").read_text(encoding="utf-8")
    cpf = next(c for c in PERSONAL["blind_index"] if c["message"] == "cpf:11144477735")
    assert f"`{cpf['message']}` gives `{cpf['index_hex']}`" in doc
    case = PERSONAL["sealing"][0]
    ciphertext = case["ciphertext_hex"]
    for quoted in (case["data_key_hex"], case["nonce_hex"], f'"{case["event_id"]}"', case["plaintext"],
                   f"({len(case['plaintext_hex']) // 2} bytes)",
                   f"{ciphertext[:8]} {ciphertext[8:16]} ... {ciphertext[-16:-8]} {ciphertext[-8:]}"):
        assert quoted in doc, quoted
