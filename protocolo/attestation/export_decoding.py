"""A value's body decoded straight into its JSON form, for the export writer.

With logical types applied, fastavro builds a ``uuid.UUID`` and a ``datetime`` for every
such field, and the renderings turn each back into text (docs/export-format.md §4): most of
the decoding's cost. This decoder reads the body with the writer schema stripped of its
logical types (the stored long and string) and a converter compiled once per schema writes
exactly the ``timestamp-micros`` and ``uuid`` fields as the text :func:`_scalar
<protocolo.attestation.export_rendering._scalar>` gives the decoded objects, raising where
fastavro's logical readers raise. The event it returns renders to the same bytes.

It only takes schemas it can follow exactly: any other logical type, a union where a
converted branch sits beside another non-null branch (the stripped value could not say
which), or a name it cannot resolve gives ``None`` from :func:`plain_decoder`, and the
writer decodes that schema's values with :func:`decode_event` as before. The verifier always
re-derives with fastavro's logical types: a difference between the two paths is a failed
``verify-export``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastavro import parse_schema

from protocolo.attestation.export_rendering import UndecodableValue, decode_event, instant_text

Convert = Callable[[Any], Any]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_YEAR_1000, _YEAR_10000 = -30_610_224_000_000_000, 253_402_300_800_000_000  # in µs since 1970
_CANONICAL_UUID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Unsupported(Exception):
    """The schema has something this decoder does not reproduce exactly."""


def _timestamp_micros(value: int) -> str:
    if _YEAR_1000 <= value < _YEAR_10000:  # instant_text's fast case, without building it twice
        return (_NAIVE_EPOCH + timedelta(microseconds=value)).isoformat(timespec="microseconds") + "Z"
    return instant_text(_EPOCH + timedelta(microseconds=value))


def _uuid(value: str) -> str:
    if _CANONICAL_UUID.fullmatch(value):
        return value  # str(uuid.UUID(value)) is value itself
    return str(uuid.UUID(value))


def _logical(schema: dict[str, Any]) -> Convert:
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind == "long" and logical == "timestamp-micros":
        return _timestamp_micros
    if kind == "string" and logical == "uuid":
        return _uuid
    raise _Unsupported(f"logical type {logical!r} on {kind!r}")


def _record(schema: dict[str, Any], names: dict[str, Convert | None], namespace: str) -> Convert | None:
    converters = [(str(f["name"]), _converter(f["type"], names, namespace)) for f in schema["fields"]]
    needed = [(name, conv) for name, conv in converters if conv is not None]
    if not needed:
        return None

    def convert(datum: dict[str, Any]) -> dict[str, Any]:
        for name, conv in needed:
            datum[name] = conv(datum[name])
        return datum

    return convert


def _union(branches: list[Any], names: dict[str, Convert | None], namespace: str) -> Convert | None:
    converters = [_converter(b, names, namespace) for b in branches]
    converted = [c for c in converters if c is not None]
    if not converted:
        return None
    others = [b for b, c in zip(branches, converters, strict=True) if c is None and b != "null"]
    if len(converted) > 1 or others:
        raise _Unsupported("a union whose branches the stripped value cannot tell apart")
    only = converted[0]
    return lambda datum: None if datum is None else only(datum)


def _named(schema: dict[str, Any], names: dict[str, Convert | None], namespace: str) -> Convert | None:
    name = str(schema["name"])
    inner = str(schema.get("namespace", namespace)) if "." not in name else name.rsplit(".", 1)[0]
    full = name if "." in name else (f"{inner}.{name}" if inner else name)
    names[full] = None  # a recursive reference resolves to "nothing to convert" ...
    conv = _record(schema, names, inner) if schema["type"] in ("record", "error") else None
    if conv is not None and _refers_to(schema, full):
        raise _Unsupported(f"recursive type {full}")  # ... which is only right without conversions
    names[full] = conv
    return conv


def _refers_to(schema: Any, full: str) -> bool:
    if isinstance(schema, str):
        return schema == full or full.endswith("." + schema)
    if isinstance(schema, list):
        return any(_refers_to(s, full) for s in schema)
    if isinstance(schema, dict):
        return any(_refers_to(schema[k], full) for k in ("type", "items", "values") if k in schema) or \
            any(_refers_to(f["type"], full) for f in schema.get("fields", ()))
    return False


def _reference(name: str, names: dict[str, Convert | None], namespace: str) -> Convert | None:
    for full in (name, f"{namespace}.{name}"):
        if full in names:
            return names[full]
    raise _Unsupported(f"unresolved name {name}")


def _converter(schema: Any, names: dict[str, Convert | None], namespace: str) -> Convert | None:
    """What turns the stripped datum of ``schema`` into its JSON form (``None``: nothing)."""
    if isinstance(schema, list):
        return _union(schema, names, namespace)
    if isinstance(schema, str):
        return None if schema in _PRIMITIVES else _reference(schema, names, namespace)
    if "logicalType" in schema:
        return _logical(schema)
    kind = schema["type"]
    if isinstance(kind, list | dict) or kind in _PRIMITIVES:
        return _converter(kind, names, namespace)
    if kind in ("record", "error", "enum", "fixed"):
        return _named(schema, names, namespace)
    inner = _converter(schema["items"] if kind == "array" else schema["values"], names, namespace)
    if inner is None:
        return None
    if kind == "array":
        return lambda datum: [inner(x) for x in datum]
    return lambda datum: {k: inner(v) for k, v in datum.items()}


def _strip(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip(s) for s in schema]
    return schema


class PlainDecoder:
    """Decodes one writer schema's values into their JSON form (see the module's doc)."""

    def __init__(self, parsed: Any, convert: Convert | None) -> None:
        self.parsed, self.convert = parsed, convert

    def decode(self, value: bytes) -> dict[str, Any]:
        """Raises :class:`UndecodableValue` where :func:`decode_event` would."""
        event = decode_event(value, self.parsed)
        if self.convert is None:
            return event
        try:
            converted = self.convert(event)
        except (OverflowError, ValueError, TypeError) as exc:
            raise UndecodableValue(f"a logical value out of range ({type(exc).__name__})") from None
        assert isinstance(converted, dict)
        return converted


def plain_decoder(schema_json: dict[str, Any]) -> PlainDecoder | None:
    """The decoder of a writer schema (its ``.avsc`` as JSON), or ``None`` when it has
    something the decoder does not reproduce exactly (then use :func:`decode_event`)."""
    try:
        convert = _converter(schema_json, {}, "")
    except (_Unsupported, KeyError, TypeError):
        return None
    return PlainDecoder(parse_schema(_strip(schema_json)), convert)
