"""A small, schema-driven decoder of Avro binary data, for the offline verifier.

The verifier re-derives every readable part of a bundle from the records' bytes
(docs/evidence-format.md §9.5), so it must decode Avro; it may import only the standard
library and ``cryptography``, so it cannot use fastavro. This decoder follows the Avro
specification ("Binary Encoding") for the schemas a bundle ships: Parsing Canonical Form,
which has no logical types and no defaults, so the result is the plain datum:

* null → ``None``, boolean, int/long (zig-zag varint) → ``int``, float/double → ``float``;
* string → ``str`` (UTF-8, strict), bytes and fixed → lowercase hex ``str``;
* enum → its symbol, union → the bare branch value, array → ``list``, map → ``dict``;
* record → ``dict`` in field order.

That is the convention of the committed vectors' ``record`` (schemas/vectors), where
``timestamp-micros`` stay integer microseconds. Every malformed input (schema or data)
raises :class:`AvroError` with what is wrong; nothing else escapes. The tests check it
against fastavro on every schema and every vector.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from protocolo.evidence.errors import EvidenceError

#: Bounds that keep a hostile schema or datum from exhausting memory or the stack (items:
#: over the whole datum, nested arrays included).
MAX_DEPTH = 64
MAX_ITEMS = 1_000_000


class AvroError(EvidenceError):
    """The schema or the data is not valid Avro (reason ``avro-undecodable``)."""

    def __init__(self, detail: str) -> None:
        super().__init__("avro-undecodable", detail)


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def parse_schema(text: bytes | str) -> Any:
    """The schema's JSON with named types resolved by full name (a dict ``name -> schema``)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AvroError(f"schema is not JSON ({type(exc).__name__})") from None
    return doc


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.items = 0  # array and map items read so far, over the whole datum

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise AvroError(f"data ends before byte {self.pos + n}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def long(self) -> int:
        shift = result = 0
        while True:
            if self.pos >= len(self.data):
                raise AvroError("varint runs past the end")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise AvroError("varint longer than 10 bytes")
        return (result >> 1) ^ -(result & 1)


def decode(schema: Any, body: bytes) -> Any:
    """Decode one datum of ``schema`` (parsed JSON) from ``body``; every byte must be used."""
    reader = _Reader(body)
    named: dict[str, Any] = {}
    _collect(schema, "", named, 0)
    value = _read(schema, reader, named, "", 0)
    if reader.pos != len(body):
        raise AvroError(f"{len(body) - reader.pos} bytes left after the datum")
    return value


def _collect(schema: Any, namespace: str, named: dict[str, Any], depth: int) -> None:
    """Register every named type (record, enum, fixed) by full name before decoding, so a
    reference may appear before the branch that defines it is read."""
    if depth > MAX_DEPTH:
        raise AvroError(f"schema nested deeper than {MAX_DEPTH}")
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, named, depth + 1)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed", "error"):
        full, namespace = _full_name(schema, namespace)
        named.setdefault(full, schema)
    for f in schema.get("fields") or () if isinstance(schema.get("fields"), list) else ():
        if isinstance(f, dict):
            _collect(f.get("type"), namespace, named, depth + 1)
    for part in ("items", "values"):
        if part in schema:
            _collect(schema[part], namespace, named, depth + 1)
    if isinstance(kind, list | dict):
        _collect(kind, namespace, named, depth + 1)


def _full_name(schema: dict[str, Any], namespace: str) -> tuple[str, str]:
    name = schema.get("name")
    if not isinstance(name, str):
        raise AvroError("a named type has no name")
    space = schema.get("namespace", namespace if "." not in name else "")
    full = name if "." in name or not space else f"{space}.{name}"
    return full, full.rpartition(".")[0]


def _read(schema: Any, r: _Reader, named: dict[str, Any], namespace: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise AvroError(f"schema nested deeper than {MAX_DEPTH}")
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _primitive(schema, r)
        ref = named.get(schema) or named.get(f"{namespace}.{schema}")
        if ref is None:
            raise AvroError(f"unknown type name {schema[:80]!r}")
        return _read(ref, r, named, namespace, depth + 1)
    if isinstance(schema, list):
        index = r.long()
        if not 0 <= index < len(schema):
            raise AvroError(f"union branch {index} out of range")
        return _read(schema[index], r, named, namespace, depth + 1)
    if not isinstance(schema, dict):
        raise AvroError("a schema is a name, a list or an object")
    return _complex(schema, r, named, namespace, depth)


def _complex(schema: dict[str, Any], r: _Reader, named: dict[str, Any], namespace: str,
             depth: int) -> Any:
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed", "error"):
        full, namespace = _full_name(schema, namespace)
        named.setdefault(full, schema)
    if kind in ("record", "error"):
        fields = schema.get("fields")
        if not isinstance(fields, list):
            raise AvroError("a record has no field list")
        out: dict[str, Any] = {}
        for f in fields:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                raise AvroError("a record field has no name")
            out[f["name"]] = _read(f.get("type"), r, named, namespace, depth + 1)
        return out
    if kind == "enum":
        symbols = schema.get("symbols")
        index = r.long()
        if not isinstance(symbols, list) or not 0 <= index < len(symbols):
            raise AvroError(f"enum index {index} out of range")
        return symbols[index]
    if kind == "fixed":
        size = schema.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise AvroError("a fixed type has no size")
        return r.take(size).hex()
    if kind == "array":
        return [item for item, _ in _blocks(r, lambda: (_read(schema.get("items"), r, named,
                                                               namespace, depth + 1), None))]
    if kind == "map":
        return dict(_blocks(r, lambda: (_string(r), _read(schema.get("values"), r, named,
                                                          namespace, depth + 1))))
    if isinstance(kind, str | list | dict):
        return _read(kind, r, named, namespace, depth + 1)
    raise AvroError(f"unknown schema type {str(kind)[:80]!r}")


def _blocks(r: _Reader, item: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    while True:
        count = r.long()
        if count == 0:
            return out
        if count < 0:
            count = -count
            r.long()  # the block's size in bytes, for skipping; not needed to decode
        r.items += count
        if r.items > MAX_ITEMS:  # zero-byte items (null) would otherwise cost nothing to send
            raise AvroError(f"more than {MAX_ITEMS} array or map items in one datum")
        for _ in range(count):
            out.append(item())


def _string(r: _Reader) -> str:
    try:
        return r.take(r.long()).decode("utf-8")
    except UnicodeDecodeError:
        raise AvroError("a string is not UTF-8") from None


def _primitive(kind: str, r: _Reader) -> Any:
    if kind == "null":
        return None
    if kind == "boolean":
        byte = r.take(1)[0]
        if byte > 1:
            raise AvroError(f"boolean byte {byte}")
        return byte == 1
    if kind in ("int", "long"):
        value = r.long()
        if kind == "int" and not -(2**31) <= value < 2**31:
            raise AvroError("int out of range")
        return value
    if kind == "float":
        return struct.unpack("<f", r.take(4))[0]
    if kind == "double":
        return struct.unpack("<d", r.take(8))[0]
    if kind == "bytes":
        return r.take(r.long()).hex()
    return _string(r)


__all__ = ["AvroError", "decode", "parse_schema"]
