"""The export writer's fast paths give the bytes of the format's rule, checked against an
independent transcription of docs/export-format.md §3-4: plain fastavro with logical types,
the standard library's ``json`` and ``csv``, ``strftime``, and fastavro's own ``Writer`` for
``data.avro``. Inputs: every committed event vector, the fuzz corpus's hostile records and
strings, and seeded random values at the edges (timestamps out of range, UUIDs in every form
``uuid.UUID`` takes or refuses). Pure: no backend."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fuzz_corpus import hostile_records, hostile_strings

from protocolo.attestation.export_avro import RecordBlocks, encode_record, record_prefix
from protocolo.attestation.export_decoding import plain_decoder
from protocolo.attestation.export_rendering import (
    PARSED_RECORD_SCHEMA,
    UndecodableValue,
    canonical_json,
    csv_line,
    json_line,
)
from protocolo.schemas.catalogue import SchemaCatalogue

VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "vectors"


# --- the oracle: the rule transcribed with plain libraries -------------------------------

def _oracle_scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def _oracle_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_oracle_scalar)


def _oracle_event(value: bytes, schema_json: dict[str, Any]) -> str:
    """Raises where the value does not decode (any exception, or trailing bytes)."""
    body = io.BytesIO(value[10:])
    event = fastavro.schemaless_reader(body, fastavro.parse_schema(schema_json), None)
    if body.tell() != len(value) - 10:
        raise ValueError("trailing bytes")
    return _oracle_json(event)


def _fast_event(value: bytes, schema_json: dict[str, Any]) -> str:
    decoder = plain_decoder(schema_json)
    assert decoder is not None, "every committed schema takes the fast path"
    return canonical_json(decoder.decode(value), floats=False)


def _agree(value: bytes, schema_json: dict[str, Any]) -> str | None:
    """Both paths give the same text, or both refuse the value."""
    try:
        expected: str | None = _oracle_event(value, schema_json)
    except Exception:  # noqa: BLE001 - fastavro raises many types on bad input
        expected = None
    try:
        got: str | None = _fast_event(value, schema_json)
    except UndecodableValue:
        got = None
    assert got == expected, value.hex()
    return got


def _schema_json(catalogue: SchemaCatalogue, fingerprint: bytes) -> dict[str, Any]:
    return json.loads(catalogue.by_fingerprint(fingerprint).path.read_text(encoding="utf-8"))


# --- decoding and canonical JSON --------------------------------------------------------

def test_every_committed_vector_renders_as_the_rule_says() -> None:
    catalogue = SchemaCatalogue.load()
    seen = 0
    for path in sorted(VECTORS.glob("*.json")):
        vector = json.loads(path.read_text())
        if "single_object_hex" not in vector:
            continue  # the personal-data vectors: not events
        value = bytes.fromhex(vector["single_object_hex"])
        assert _agree(value, _schema_json(catalogue, value[2:10])) is not None, path.name
        seen += 1
    assert seen >= 20, seen


def test_hostile_records_render_or_are_refused_as_the_rule_says() -> None:
    catalogue = SchemaCatalogue.load()
    decoded = 0
    for record in hostile_records(catalogue, "2026000000000010", datetime(2026, 3, 1, tzinfo=UTC)):
        value = record.value or b""
        if len(value) < 10 or value[:2] != b"\xc3\x01":
            continue
        try:
            schema = _schema_json(catalogue, value[2:10])
        except Exception:  # noqa: BLE001 - an unknown fingerprint is not this test's case
            continue
        decoded += _agree(value, schema) is not None
    assert decoded >= 10


_EDGE_SCHEMA = {"type": "record", "name": "Edge", "namespace": "t", "fields": [
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "maybe", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
    {"name": "many", "type": {"type": "array", "items": {"type": "long", "logicalType": "timestamp-micros"}}},
    {"name": "text", "type": "string"},
    {"name": "raw", "type": "bytes"},
]}


def _edge_values(rng: random.Random) -> list[dict[str, Any]]:
    good = uuid.UUID(int=rng.getrandbits(128))
    ids = [str(good), str(good).upper(), "{" + str(good) + "}", "urn:uuid:" + str(good), good.hex]
    bad_ids = [str(good) + "\n", "not-a-uuid", "", "g" * 32]
    times = [0, -1, 1, 253402300799999999, -62135596800000000, -30610224000000000, -30610224000000001]
    times += [rng.randrange(-(2**55), 2**55) for _ in range(40)]
    bad_times = [2**63 - 1, -(2**63), 253402300800000000, -62135596800000001]
    texts = [s.text for s in hostile_strings() if not s.huge and s.rule != "lone-surrogate"]

    def pick(usual: list[Any], rare: list[Any]) -> Any:
        return rng.choice(rare if rng.random() < 0.05 else usual)

    return [{"at": pick(times, bad_times), "id": pick(ids, bad_ids), "maybe": pick([None, *ids], bad_ids),
             "many": [pick(times, bad_times) for _ in range(3)], "text": rng.choice(texts),
             "raw": rng.randbytes(5)}
            for _ in range(600)]


def test_timestamps_and_uuids_at_their_edges_match_fastavros_logical_readers() -> None:
    parsed = fastavro.parse_schema({**_EDGE_SCHEMA, "fields": [
        {**f, "type": _no_logical(f["type"])} for f in _EDGE_SCHEMA["fields"]]})
    outcomes = set()
    for datum in _edge_values(random.Random(16)):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, datum)
        outcomes.add(_agree(b"\xc3\x01" + bytes(8) + body.getvalue(), _EDGE_SCHEMA) is None)
    assert outcomes == {True, False}  # some refused (out of range, not a UUID), most rendered


def _no_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _no_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_no_logical(s) for s in schema]
    return schema


@pytest.mark.parametrize("schema", [
    {"type": "record", "name": "D", "fields": [
        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}]},
    {"type": "record", "name": "U", "fields": [
        {"name": "u", "type": ["null", "string", {"type": "string", "logicalType": "uuid"}]}]},
    {"type": "record", "name": "M", "fields": [
        {"name": "m", "type": {"type": "long", "logicalType": "timestamp-millis"}}]},
])
def test_schemas_it_cannot_follow_exactly_keep_the_logical_decoder(schema: dict[str, Any]) -> None:
    assert plain_decoder(schema) is None


def test_orjson_gives_the_standard_encoders_bytes_without_floats() -> None:
    rng = random.Random(7)
    texts = [s.text for s in hostile_strings() if not s.huge and s.rule != "lone-surrogate"]
    texts += ["".join(chr(c) for c in range(0x00, 0x100)), "\u2028\u2029\ufeff\U0010ffff"]
    for _ in range(300):
        doc = {rng.choice(texts): [rng.choice(texts), rng.randrange(-(2**63), 2**63), None, True],
               "k": {rng.choice(texts): rng.choice(texts), "b": rng.randbytes(3), "u": uuid.uuid4()},
               "t": datetime(rng.randrange(1, 10000), 1, 1, tzinfo=UTC)}
        assert canonical_json(doc, floats=False) == _oracle_json(doc)
    assert canonical_json({"big": 2**70}, floats=False) == _oracle_json({"big": 2**70})
    assert canonical_json({"f": 1e16}) == _oracle_json({"f": 1e16}) == '{"f":1e+16}'


# --- the renderings --------------------------------------------------------------------

def _record(rng: random.Random, texts: list[str]) -> dict[str, Any]:
    value = rng.randbytes(rng.randrange(0, 300))
    return {
        "topic": "protocolo.interactions", "partition": 3, "offset": rng.randrange(2**62),
        "leaf_index": rng.randrange(2**40),
        "timestamp": rng.choice([None, 0, rng.randrange(2**45)]),
        "key": rng.choice([None, b"", rng.randbytes(12), rng.choice(texts).encode("utf-8")]),
        "headers": [{"key": rng.choice(texts).encode("utf-8"), "value": rng.choice([None, rng.randbytes(4)])}
                    for _ in range(rng.randrange(3))],
        "value": value, "quarantined": rng.choice([None, rng.choice(texts)]),
        "event_type": rng.choice([None, "ContactOpened", rng.choice(texts)]),
        "event": rng.choice([None, rng.choice(texts)]),
        "inclusion_proof": [rng.randbytes(32) for _ in range(rng.choice([0, 0, 5]))],
    }


def _oracle_csv(record: dict[str, Any], event: dict[str, Any] | None) -> str:
    meta = (event or {}).get("meta") or {}
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([
        record["partition"], record["offset"], record["leaf_index"],
        "" if record["timestamp"] is None else record["timestamp"], record["event_type"] or "",
        meta.get("protocol_number") or "", meta.get("event_id") or "", meta.get("occurred_at") or "",
        record["quarantined"] or "", __import__("hashlib").sha256(record["value"]).hexdigest()])
    return out.getvalue()


def _text_or_hex(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}
    return {"hex": raw.hex()} if "\x00" in text else text


def _oracle_jsonl(record: dict[str, Any], event: Any) -> str:
    return _oracle_json({
        "partition": record["partition"], "offset": record["offset"], "leaf_index": record["leaf_index"],
        "kafka_timestamp": record["timestamp"], "key": _text_or_hex(record["key"]),
        "headers": [[_text_or_hex(h["key"]), _text_or_hex(h["value"])] for h in record["headers"]],
        "quarantined": record["quarantined"], "event_type": record["event_type"],
        "value_sha256": __import__("hashlib").sha256(record["value"]).hexdigest(), "event": event}) + "\n"


def test_csv_and_json_lines_are_the_rules_bytes() -> None:
    rng = random.Random(11)
    texts = [s.text for s in hostile_strings() if not s.huge and s.rule != "lone-surrogate"]
    texts += ['a,b', 'say "hi"', "line\nbreak", "cr\ronly", " lead", ""]
    for _ in range(500):
        record = _record(rng, texts)
        event = rng.choice([None, {"meta": {"protocol_number": rng.choice(texts), "event_id": rng.choice(texts),
                                            "occurred_at": rng.choice(texts)}, "x": rng.choice(texts)}])
        assert csv_line(record, event) == _oracle_csv(record, event)
        text = None if event is None else canonical_json(event, floats=False)
        assert json_line(record, event, text) == _oracle_jsonl(record, event)


# --- data.avro -------------------------------------------------------------------------

def test_data_avro_is_byte_for_byte_what_fastavro_writes() -> None:
    rng = random.Random(5)
    texts = [s.text for s in hostile_strings() if not s.huge and s.rule != "lone-surrogate"]
    records = [_record(rng, texts) for _ in range(700)]  # many blocks of 16,000 bytes
    marker = rng.randbytes(16)
    expected, got = io.BytesIO(), io.BytesIO()
    writer = fastavro.write.Writer(expected, PARSED_RECORD_SCHEMA, sync_marker=marker,
                                   metadata={"protocolo.format": "protocolo/export/v1"})
    blocks = RecordBlocks(got, "protocolo.interactions", 3, marker, {"protocolo.format": "protocolo/export/v1"})
    for record in records:
        writer.write(record)
        blocks.write(record)
    writer.flush()
    blocks.flush()
    assert got.getvalue() == expected.getvalue()
    assert got.getvalue().count(marker) > 5
    assert list(fastavro.reader(io.BytesIO(got.getvalue()))) == records
    for n in (0, 1, -1, 63, 64, -65, 2**63 - 1, -(2**63)):
        one = {**records[0], "offset": n, "leaf_index": n, "timestamp": n}
        plain = io.BytesIO()
        fastavro.schemaless_writer(plain, PARSED_RECORD_SCHEMA, one)
        assert encode_record(record_prefix(one["topic"], one["partition"]), one) == plain.getvalue()
