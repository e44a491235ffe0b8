"""Avro single-object encoding: the bytes of every Kafka record value on the ledger topic.

Layout (Avro specification, "Single object encoding")::

    C3 01 | fingerprint (8 bytes) | Avro binary body
    magic | CRC-64-AVRO of the writer schema's Parsing Canonical Form, little-endian

This module only frames and unframes bytes and reads or writes one body strictly; finding
the writer schema for a fingerprint is :mod:`protocolo.schemas.catalogue`'s job.
"""

from __future__ import annotations

import io
import json
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

MAGIC = b"\xc3\x01"
FINGERPRINT_SIZE = 8
HEADER_SIZE = len(MAGIC) + FINGERPRINT_SIZE

Schema = dict[str, Any] | list[Any] | str
"""A schema as JSON text, as a ``json.loads`` result, or as returned by ``fastavro.parse_schema``."""


class DecodeError(Exception):
    """Bytes that cannot be turned into an event. The message says what is wrong."""


class MalformedRecord(DecodeError):
    """The bytes are not a well-formed single-object encoded record for their schema."""


class UnknownFingerprint(DecodeError):
    """The writer-schema fingerprint in the header matches no known schema."""

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = bytes(fingerprint)
        super().__init__(
            f"unknown writer-schema fingerprint {self.fingerprint.hex()} (wire byte order): "
            "no schema in the catalogue has it; the producer used a schema that was never "
            "added to schemas/avro (or edited one in place)"
        )


def schema_object(schema: Schema) -> Any:
    """``schema`` as a JSON-like object; JSON text is loaded, anything else returned as is.

    A bare primitive name (``int``) is not valid JSON; it is taken as the schema ``"int"``.
    """
    if isinstance(schema, str):
        try:
            return json.loads(schema)
        except json.JSONDecodeError:
            return schema
    return schema


def canonical_form(schema: Schema) -> str:
    """The Parsing Canonical Form of ``schema`` (the text the fingerprint is taken over)."""
    return to_parsing_canonical_form(schema_object(schema))


def fingerprint_of_canonical_form(canonical: str) -> bytes:
    """CRC-64-AVRO of an already computed canonical form, as the 8 bytes put on the wire."""
    # fastavro returns the hex of the little-endian bytes (as Java's
    # SchemaNormalization.parsingFingerprint and the spec's single-object header do),
    # not the hex of the integer; tests cross-check this against the spec algorithm.
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


def fingerprint(schema: Schema) -> bytes:
    """CRC-64-AVRO fingerprint of ``schema``'s Parsing Canonical Form, in wire byte order."""
    return fingerprint_of_canonical_form(canonical_form(schema))


def write_body(schema: Any, record: Any) -> bytes:
    """The Avro binary body of ``record``.

    ``schema`` should be parsed (``fastavro.parse_schema``) when called often. Unknown
    fields in ``record`` are refused, and a missing field is only allowed if the schema
    gives it a default, so a misspelt field name cannot be dropped silently.
    """
    out = io.BytesIO()
    schemaless_writer(out, schema, record, strict_allow_default=True)
    return out.getvalue()


def frame(fingerprint: bytes, body: bytes) -> bytes:
    """Prefix ``body`` with the single-object header for ``fingerprint`` (8 wire bytes)."""
    if len(fingerprint) != FINGERPRINT_SIZE:
        raise ValueError(f"a fingerprint has {FINGERPRINT_SIZE} bytes, got {len(fingerprint)}")
    return MAGIC + fingerprint + body


def encode(schema: Schema, record: Any) -> bytes:
    """Single-object encode ``record`` with writer schema ``schema``.

    Computes the fingerprint on every call; :class:`~protocolo.schemas.catalogue.SchemaCatalogue`
    caches it and is what producers should use.
    """
    parsed = parse_schema(schema_object(schema))
    return frame(fingerprint(parsed), write_body(parsed, record))


def split(data: bytes | bytearray | memoryview) -> tuple[bytes, memoryview]:
    """Split single-object encoded ``data`` into (fingerprint, body) without copying the body.

    Raises :class:`MalformedRecord` if ``data`` is too short to hold the header or does not
    start with the magic bytes.
    """
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise MalformedRecord(
            f"too short for single-object encoding: {len(view)} bytes, the header alone is "
            f"{HEADER_SIZE} (2 magic bytes C3 01 + 8 fingerprint bytes)"
        )
    if view[:2] != MAGIC:
        raise MalformedRecord(
            f"not single-object encoding: expected magic bytes c3 01, got {view[:2].hex(' ')}"
        )
    return bytes(view[2:HEADER_SIZE]), view[HEADER_SIZE:]


def read_body(
    data: bytes | bytearray | memoryview,
    writer_schema: Any,
    reader_schema: Any = None,
    *,
    start: int = 0,
    what: str = "record",
) -> Any:
    """Read exactly one Avro body from ``data[start:]`` and resolve it into ``reader_schema``.

    Strict: the body must end exactly where ``data`` ends. Pass ``reader_schema=None`` when
    it equals the writer schema, which skips schema resolution. ``what`` names the record
    in error messages. Every failure is a :class:`MalformedRecord` chained to its cause.
    """
    stream = io.BytesIO(data)  # shares, does not copy, a bytes object
    if start:
        stream.seek(start)
    try:
        record = schemaless_reader(stream, writer_schema, reader_schema)
    except Exception as exc:
        # fastavro raises EOFError for most reads past the end, but e.g. IndexError for a
        # boolean or a varint cut short; having consumed all the data identifies those.
        if isinstance(exc, EOFError) or stream.tell() >= len(data):
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise MalformedRecord(
                f"{what}: truncated body, the data ended before the record was complete "
                f"(body is {len(data) - start} bytes; {detail})"
            ) from exc
        raise MalformedRecord(
            f"{what}: body does not match its writer schema: {type(exc).__name__}: {exc}"
        ) from exc
    end = stream.tell()
    if end != len(data):
        raise MalformedRecord(
            f"{what}: {len(data) - end} trailing bytes after the Avro body "
            f"(the record ended after {end - start} of {len(data) - start} body bytes)"
        )
    return record
