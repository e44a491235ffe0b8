"""Single-object framing, fingerprints (against the Avro spec's algorithm) and strict bodies."""

from __future__ import annotations

import pytest
from fastavro import parse_schema

from protocolo.schemas import codec
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import DecodeError, MalformedRecord, UnknownFingerprint

# --- CRC-64-AVRO exactly as the Avro specification writes it ("Schema Fingerprints") ---
EMPTY64 = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


FP_TABLE = _table()


def spec_fingerprint64(data: bytes) -> int:
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# Values published in Avro's share/test/data/schema-tests.txt (signed Java longs).
SPEC_VALUES = [
    ('"int"', 8247732601305521295),
    ('"null"', 7195948357588979594),
    ('"string"', -8142146995180207161),
    ('{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
]


@pytest.mark.parametrize(("canonical", "expected"), SPEC_VALUES)
def test_spec_implementation_reproduces_the_published_values(canonical: str, expected: int) -> None:
    assert signed(spec_fingerprint64(canonical.encode())) == expected


@pytest.mark.parametrize(("canonical", "expected"), SPEC_VALUES)
def test_fingerprint_is_the_spec_value_little_endian(canonical: str, expected: int) -> None:
    wire = codec.fingerprint(canonical)
    assert wire == (expected & (2**64 - 1)).to_bytes(8, "little")
    assert wire != (expected & (2**64 - 1)).to_bytes(8, "big")


def test_int_fingerprint_on_the_wire() -> None:
    # The header the spec's example schema "int" gets: c3 01 8f 5c 39 3f 1a d5 75 72.
    assert codec.encode("int", 0)[:10].hex() == "c3018f5c393f1ad57572"
    assert codec.fingerprint("int") == codec.fingerprint({"type": "int"})


def test_every_catalogue_fingerprint_matches_the_spec_algorithm() -> None:
    catalogue = SchemaCatalogue.load()
    for event_type in catalogue.event_types():
        for sv in catalogue.versions(event_type):
            expected = spec_fingerprint64(sv.canonical_form.encode("utf-8")).to_bytes(8, "little")
            assert sv.fingerprint == expected, (event_type, sv.version)


def test_canonical_form_follows_the_spec_transformations() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "namespace": "a.b",
        "doc": "dropped",
        "aliases": ["Old"],
        "fields": [
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"},
             "default": 0, "doc": "dropped"},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"],
                                   "default": "X"}},
            {"name": "again", "type": "E"},
        ],
    }
    assert codec.canonical_form(schema) == (
        '{"name":"a.b.R","type":"record","fields":['
        '{"name":"t","type":"long"},'
        '{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X","Y"]}},'
        '{"name":"again","type":"a.b.E"}]}'
    )


def test_docs_do_not_change_the_fingerprint_but_field_names_do() -> None:
    base = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    documented = {**base, "doc": "x", "fields": [{"name": "a", "type": "int", "doc": "y"}]}
    renamed = {**base, "fields": [{"name": "b", "type": "int"}]}
    assert codec.fingerprint(base) == codec.fingerprint(documented)
    assert codec.fingerprint(base) != codec.fingerprint(renamed)


def test_split_returns_fingerprint_and_body() -> None:
    data = codec.encode("string", "olá")
    fp, body = codec.split(data)
    assert fp == codec.fingerprint("string")
    assert bytes(body) == b"\x08ol\xc3\xa1"


@pytest.mark.parametrize("data", [b"", b"\xc3", b"\xc3\x01" + b"\x00" * 7])
def test_split_rejects_short_input(data: bytes) -> None:
    with pytest.raises(MalformedRecord, match=rf"too short .*: {len(data)} bytes"):
        codec.split(data)


@pytest.mark.parametrize("magic", [b"\xc3\x00", b"\x00\x01", b'{"'])
def test_split_rejects_bad_magic(magic: bytes) -> None:
    with pytest.raises(MalformedRecord, match=f"magic bytes c3 01, got {magic.hex(' ')}"):
        codec.split(magic + b"\x00" * 10)


def test_read_body_is_strict() -> None:
    schema = parse_schema({"type": "record", "name": "R",
                           "fields": [{"name": "a", "type": "long"}, {"name": "s", "type": "string"}]})
    body = codec.write_body(schema, {"a": 7, "s": "abc"})
    assert codec.read_body(body, schema) == {"a": 7, "s": "abc"}
    for cut in range(len(body)):
        with pytest.raises(MalformedRecord, match="truncated"):
            codec.read_body(body[:cut], schema)
    with pytest.raises(MalformedRecord, match="1 trailing bytes"):
        codec.read_body(body + b"\x00", schema)
    with pytest.raises(MalformedRecord, match="UnicodeDecodeError") as caught:
        codec.read_body(b"\x0e\x02\xff", schema)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_write_body_refuses_unknown_and_missing_fields() -> None:
    schema = parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": "long"},
        {"name": "o", "type": ["null", "string"], "default": None},
    ]})
    assert codec.write_body(schema, {"a": 1}) == b"\x02\x00"  # default filled in
    with pytest.raises(ValueError, match="more fields"):
        codec.write_body(schema, {"a": 1, "typo": 2})
    with pytest.raises(ValueError, match="missing"):
        codec.write_body(schema, {"o": "x"})


def test_error_hierarchy_and_unknown_fingerprint_message() -> None:
    error = UnknownFingerprint(bytes.fromhex("0011223344556677"))
    assert isinstance(error, DecodeError)
    assert issubclass(MalformedRecord, DecodeError)
    assert "0011223344556677" in str(error)
    assert error.fingerprint == bytes.fromhex("0011223344556677")
