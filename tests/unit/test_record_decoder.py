"""The record decoder alone, on hostile records: whatever the bytes, a row comes out,
never an exception, and every row it returns is storable in PostgreSQL."""

from __future__ import annotations

import json
import os

import pytest
from ledger_records import encode, record, vector_payload

from protocolo.consumers.decoding import RecordDecoder
from protocolo.consumers.storable import clean_error, storable_json, stored_headers
from protocolo.projections.journal import JournalRow, QuarantineRow
from protocolo.schemas.storable import unstorable_reason

decoder = RecordDecoder("ledger")


def decoded_with(headers: list[tuple[str, bytes]] | None = None, timestamp: int = 1_741_177_111_250,
                 **changes: object) -> JournalRow | QuarantineRow:
    payload = vector_payload()
    payload.update(changes)
    key, value = encode(payload)
    return decoder.decode(record(0, 7, key, value, headers, timestamp), 3)


def test_clean_headers_are_journalled_as_text_pairs() -> None:
    row = decoded_with([("x-trace", "ação".encode())])
    assert isinstance(row, JournalRow)
    assert json.loads(row.headers) == [["x-trace", "ação"]]


@pytest.mark.parametrize(("field", "value"), [("text", "a\x00b"), ("agent_name", "\x00")])
def test_a_nul_in_a_string_field_is_quarantined_naming_the_field(field: str, value: str) -> None:
    row = decoded_with(**{field: value})
    assert isinstance(row, QuarantineRow)
    assert f"{field}: contains a NUL character" in row.error and "\x00" not in row.error


@pytest.mark.parametrize(("header", "says"), [
    (("x-trace", b"a\x00b"), "its value holds a NUL"),
    (("x-trace", b"\xff\xfe"), "its value is not valid UTF-8"),
    (("x-\x00", b"v"), "header key 'x-\\x00' is not text"),
])
def test_headers_text_cannot_hold_are_quarantined_and_kept_as_hex(header: tuple[str, bytes], says: str) -> None:
    row = decoded_with([("ok", b"fine"), header])
    assert isinstance(row, QuarantineRow)
    assert says in row.error, row.error
    kept = json.loads(row.headers)
    assert kept[0] == ["ok", "fine"]
    key, value = kept[1]
    raw_key = bytes.fromhex(key["hex"]) if isinstance(key, dict) else key.encode()
    raw_value = bytes.fromhex(value["hex"]) if isinstance(value, dict) else value.encode()
    assert (raw_key.decode(), raw_value) == header
    assert "\\u0000" not in row.headers, "jsonb refuses the \\u0000 escape"


def test_random_bytes_and_random_headers_are_quarantined_not_raised() -> None:
    for seed in range(50):
        rnd = os.urandom(64 + seed)
        row = decoder.decode(record(1, seed, os.urandom(8), rnd, [("k", os.urandom(12))]), 0)
        assert isinstance(row, QuarantineRow) and row.record_value == rnd
        assert "\\u0000" not in row.headers and "\x00" not in row.error


def test_a_broker_timestamp_beyond_datetime_is_kept_as_unknown() -> None:
    row = decoded_with(timestamp=10**15)  # year ~33658: PostgreSQL could, Python's datetime cannot
    assert isinstance(row, JournalRow) and row.kafka_timestamp is None


def test_the_decoder_names_the_first_unstorable_field_in_nested_records_and_lists() -> None:
    assert "a.b" in (unstorable_reason({"a": {"b": "x\x00"}, "l": ["ok"]}) or "")
    assert "l[1]" in (unstorable_reason({"a": {"b": "x"}, "l": ["ok", "\x00"]}) or "")
    assert "field name" in (unstorable_reason({"m": {"k\x00": "v"}}) or "")
    assert unstorable_reason({"a": "\u202e\u200b ok"}) is None


def test_storable_json_and_errors() -> None:
    assert json.loads(storable_json('[["k", "a\\u0000b"]]')) == [["k", {"hex": "610062"}]]
    assert clean_error("bad \x00 value") == "bad \\x00 value"
    assert clean_error("\udcff") == "\\udcff"
    assert len(clean_error("x" * 10_000)) < 4100
    assert stored_headers(None).json == "[]"
