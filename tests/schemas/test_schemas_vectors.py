"""The committed cross-language vectors are current, decodable and right by the spec."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader

from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import HEADER_SIZE
from protocolo.schemas.vectors_tool import VECTORS_DIR, build, jsonable, stale

CATALOGUE = SchemaCatalogue.load()
COMMITTED = sorted(VECTORS_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_committed_vectors_equal_a_fresh_generation() -> None:
    expected = build(CATALOGUE)
    assert sorted(p.name for p in COMMITTED) == sorted(expected), (
        "vector files missing or extra: run python -m protocolo.schemas.vectors_tool")
    for path in COMMITTED:
        assert path.read_text(encoding="utf-8") == expected[path.name], (
            f"{path.name} is stale: run python -m protocolo.schemas.vectors_tool")


def test_stale_detects_an_edited_file(tmp_path: Path) -> None:
    for name, text in build(CATALOGUE).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert stale(tmp_path) == []
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


def test_identifiers_in_vectors_are_realistic() -> None:
    for path in COMMITTED:
        vector = load(path)
        text = json.dumps(vector["record"])
        meta = vector["record"]["meta"]
        if meta["protocol_number"] is not None:
            assert normalise_protocol_number(meta["protocol_number"]) == meta["protocol_number"]
        for number in vector["record"].get("protocol_numbers", []):
            assert normalise_protocol_number(number) == number
        for key in ("cpf_index", "customer_code_index", "sha256", "delivered_sha256"):
            if f'"{key}": "' in text:
                value = text.split(f'"{key}": "')[1].split('"')[0]
                assert len(value) == 64 and int(value, 16) >= 0, (path.name, key)


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
