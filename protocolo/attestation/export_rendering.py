"""An export's records: the Avro schema of ``data.avro`` and the readable renderings.

One function turns a record's leaf bytes (and its writer schema) into the JSON Lines and
CSV renderings, so the writer and the verifier derive them the same way: the verifier
re-derives every line from the Avro record's ``value`` and the shipped ``.avsc`` and
compares bytes. Nothing here comes from ``journal.payload`` or a view.

Decoding rule (docs/export-format.md §4): the value is Avro single-object encoding
(``C3 01``, 8-byte CRC-64-AVRO fingerprint, body); the body is read with the writer schema
named by the fingerprint, logical types applied; JSON form: ``timestamp-micros`` as
ISO 8601 UTC with microseconds and ``Z``, ``uuid`` as its string, ``bytes``/``fixed`` as
lowercase hex, everything else as Avro's JSON mapping would give it without union branch
names; keys sorted, no spaces, UTF-8.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader

AVRO_MAGIC = b"\xc3\x01"
HEADER_SIZE = 10

#: The schema of every record of ``data.avro`` (docs/export-format.md §3).
RECORD_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "ExportRecord", "namespace": "protocolo.export",
    "doc": "One leaf of a partition's Merkle tree: the Kafka record exactly as in the log.",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "leaf_index", "type": "long"},
        {"name": "timestamp", "type": ["null", "long"], "doc": "Kafka timestamp, ms"},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "headers", "type": {"type": "array", "items": {
            "type": "record", "name": "Header",
            "fields": [{"name": "key", "type": "bytes"}, {"name": "value", "type": ["null", "bytes"]}]}}},
        {"name": "value", "type": "bytes"},
        {"name": "quarantined", "type": ["null", "string"],
         "doc": "Why the projector quarantined it; null for a journalled record"},
        {"name": "event_type", "type": ["null", "string"]},
        {"name": "event", "type": ["null", "string"],
         "doc": "The decoded value as JSON (the rendering rule), null when quarantined"},
        {"name": "inclusion_proof", "type": {"type": "array", "items": "bytes"},
         "doc": "Subset exports only: the RFC 9162 inclusion path into the end checkpoint"},
    ],
}
PARSED_RECORD_SCHEMA = parse_schema(RECORD_SCHEMA)

CSV_COLUMNS = ("partition", "offset", "leaf_index", "kafka_timestamp", "event_type",
               "protocol_number", "event_id", "occurred_at", "quarantined", "value_sha256")


class UndecodableValue(ValueError):
    """A value that is not single-object Avro of a known schema (says why)."""


def value_fingerprint(value: bytes) -> bytes | None:
    if len(value) < HEADER_SIZE or value[:2] != AVRO_MAGIC:
        return None
    return bytes(value[2:HEADER_SIZE])


def instant_text(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``. ``isoformat`` is a C call where ``strftime`` parses
    its format each time; outside years 1000-9999 (where the two could pad the year
    differently) and for naive values, ``strftime`` decides."""
    if value.utcoffset() == _ZERO and value.year >= 1000:
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_ZERO = timedelta(0)


def _scalar(value: Any) -> Any:
    """The JSON form of the values Avro decoding gives that JSON has no type for."""
    if isinstance(value, datetime):
        return instant_text(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"no JSON form for {type(value).__name__}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _scalar(value)


_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                           default=_scalar).encode


def canonical_json(value: Any, *, floats: bool = True) -> str:
    """The JSON form (docs/export-format.md §4); the C encoder walks the structure once.

    ``floats=False`` is the caller's promise that ``value`` holds no ``float`` (as for a
    value decoded with a schema that has no float or double): then orjson writes it, about
    ten times faster, and gives the same bytes as the standard library for everything else
    an Avro value decodes to (sorted keys by code point, ``\\uXXXX`` only for control
    characters, UUIDs as their string). Floats are where the two differ (``1e+16`` against
    ``1e16``, ``NaN`` against ``null``), so they keep the standard encoder; so does anything
    orjson refuses (integers beyond 64 bits, keys that are not strings)."""
    if not floats:
        try:
            return orjson.dumps(value, default=_scalar, option=_ORJSON).decode()
        except (TypeError, orjson.JSONEncodeError):
            pass
    return _ENCODE(value)


_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def has_floats(schema: Any) -> bool:
    """Whether a (parsed) schema names ``float`` or ``double`` anywhere; a doc string that
    happens to say so only costs the fast encoder."""
    if isinstance(schema, str):
        return schema in ("float", "double")
    if isinstance(schema, dict):
        return any(has_floats(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_floats(v) for v in schema)
    return False


def decode_event(value: bytes, parsed_schema: Any) -> dict[str, Any]:
    """The value's body read with its writer schema, strictly (no trailing bytes)."""
    stream = io.BytesIO(value)
    stream.seek(HEADER_SIZE)
    try:
        record = schemaless_reader(stream, parsed_schema, None)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types on bad input
        raise UndecodableValue(f"the value does not decode with its schema ({type(exc).__name__})") from None
    if stream.tell() != len(value):
        raise UndecodableValue(f"{len(value) - stream.tell()} bytes after the Avro body")
    if not isinstance(record, dict):
        raise UndecodableValue("the value is not an Avro record")
    return record


def _text_or_hex(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}
    return text if "\x00" not in text else {"hex": raw.hex()}


def json_line(record: dict[str, Any], event: dict[str, Any] | None, event_text: str | None = None,
              value_sha256: str | None = None) -> str:
    """The JSON Lines rendering of one ``data.avro`` record (with its decoded event).

    ``event_text`` (``canonical_json(event)``, when the caller has it) is spliced in rather
    than encoded again: ``"event"`` sorts first, so the bytes are those of the whole object.
    ``value_sha256``, when the caller has it, saves hashing the value again."""
    rest = canonical_json({
        "partition": record["partition"], "offset": record["offset"],
        "leaf_index": record["leaf_index"], "kafka_timestamp": record["timestamp"],
        "key": _text_or_hex(record["key"]),
        "headers": [[_text_or_hex(h["key"]), _text_or_hex(h["value"])] for h in record["headers"]],
        "quarantined": record["quarantined"], "event_type": record["event_type"],
        "value_sha256": value_sha256 or _sha256(bytes(record["value"])),
    }, floats=False)
    if event_text is None:
        event_text = canonical_json(event)
    return '{"event":' + event_text + "," + rest[1:] + "\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def csv_header() -> str:
    return _csv_row(list(CSV_COLUMNS))


def csv_line(record: dict[str, Any], event: dict[str, Any] | None, value_sha256: str | None = None) -> str:
    meta = (event or {}).get("meta") or {}
    return _csv_row([
        str(record["partition"]), str(record["offset"]), str(record["leaf_index"]),
        "" if record["timestamp"] is None else str(record["timestamp"]),
        record["event_type"] or "", str(meta.get("protocol_number") or ""),
        str(meta.get("event_id") or ""), str(_plain(meta.get("occurred_at")) or ""),
        record["quarantined"] or "", value_sha256 or _sha256(bytes(record["value"])),
    ])


def _csv_row(cells: list[str]) -> str:
    """One RFC 4180 row as Python's ``csv`` writes it (minimal quoting, ``\\n``). A row whose
    cells hold no comma, quote or line feed is the cells joined by commas, and nearly every
    row is one; the others go through the ``csv`` module."""
    line = ",".join(cells)
    if len(cells) > 1 and line.count(",") == len(cells) - 1 and '"' not in line and "\n" not in line:
        return line + "\n"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def event_json(event: dict[str, Any] | None) -> Any:
    """The decoded event as the renderings carry it (serialised by :func:`canonical_json`)."""
    return event
