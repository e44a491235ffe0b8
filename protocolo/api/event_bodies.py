"""The request bodies of ``POST /v1/events``, one per event type, from the wire contract.

An outside team publishing over HTTP needs the shape of each event's ``fields``, which the
Avro schemas (``schemas/avro``) define. This module turns the current schema of every event
type a service may publish into a JSON Schema for the OpenAPI document, and turns the JSON a
client sends back into the values the publisher validates. Two places where JSON differs
from the Avro record:

* ``customer`` is sent **in clear** (``{cpf, customer_code, name}``); the publisher computes
  the blind indexes and seals it (docs/wire-contract.md), so the sealed ``CustomerRef`` of
  the schema is never what a client writes.
* ``timestamp-micros`` fields are RFC 3339 date-times with a zone (``2026-03-03T14:00:00Z``),
  as ``occurred_at`` is; they become timezone-aware datetimes here.

The validation itself stays the publisher's (the wire contract's rules, with the field and
the rule named), so the document can never accept what the ledger refuses silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from protocolo.core.errors import EventRejected, shown_value
from protocolo.schemas.catalogue import SchemaCatalogue

__all__ = ["CLEAR_CUSTOMER", "event_bodies", "fields_from_json"]

CUSTOMER_RECORD = "protocolo.events.CustomerRef"

CLEAR_CUSTOMER: dict[str, Any] = {
    "type": "object",
    "title": "ClearCustomer",
    "description": "The customer in clear; the ledger stores only blind indexes and the sealed "
                   "values (erasable). At least one of cpf or customer_code identifies them; "
                   "a customer with neither is unidentified (allowed: asking for the CPF must "
                   "not be a precondition to reach an agent).",
    "properties": {
        "cpf": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}],
                "description": "CPF, 11 digits with or without punctuation (123.456.789-09)."},
        "customer_code": {"anyOf": [{"type": "string", "maxLength": 100}, {"type": "null"}],
                          "description": "The company's own customer code."},
        "name": {"anyOf": [{"type": "string", "maxLength": 300}, {"type": "null"}],
                 "description": "The customer's name (needs a cpf or customer_code)."},
    },
    "additionalProperties": False,
}


def _short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Converter:
    """Avro schema -> JSON Schema, resolving named types as the Avro parser does."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {}

    def convert(self, schema: Any) -> dict[str, Any]:
        if isinstance(schema, str):
            return self._primitive(schema) if schema not in self.names else self.convert(self.names[schema])
        if isinstance(schema, list):
            branches = [self.convert(branch) for branch in schema]
            return branches[0] if len(branches) == 1 else {"anyOf": branches}
        if "name" in schema:
            self.names[schema["name"]] = schema
            self.names[_short_name(schema["name"])] = schema
        logical = schema.get("logicalType")
        if logical == "timestamp-micros":
            return {"type": "string", "format": "date-time"}
        if logical == "uuid":
            return {"type": "string", "format": "uuid"}
        kind = schema["type"]
        if kind == "record":
            return self._record(schema)
        if kind == "enum":
            symbols = [s for s in schema["symbols"] if s != schema.get("default")]
            return _described({"type": "string", "enum": symbols}, schema)
        if kind == "array":
            return {"type": "array", "items": self.convert(schema["items"])}
        return self._primitive(kind)

    def _record(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        if schema["name"] in (CUSTOMER_RECORD, _short_name(CUSTOMER_RECORD)):
            return CLEAR_CUSTOMER
        return _described(self.object(schema["fields"]), schema)

    def object(self, fields: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        properties = {}
        required = []
        for field in fields:
            properties[field["name"]] = _described(self.convert(field["type"]), field)
            if "default" not in field:
                required.append(field["name"])
        return {"type": "object", "properties": properties, "required": required,
                "additionalProperties": False}

    @staticmethod
    def _primitive(kind: str) -> dict[str, Any]:
        return _PRIMITIVES.get(kind, {})


_PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "long": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "string": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}


def _described(json_schema: dict[str, Any], avro: Mapping[str, Any]) -> dict[str, Any]:
    doc = avro.get("doc")
    return {**json_schema, "description": doc} if doc and "description" not in json_schema else json_schema


def _event_body(event_type: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    converter = _Converter()
    own = [f for f in schema["fields"] if f["name"] != "meta"]
    fields = converter.object(own)
    return {
        "type": "object",
        "title": event_type,
        "description": schema.get("doc", event_type),
        "properties": {
            "event_type": {"const": event_type},
            "protocol_number": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}],
                                "description": "The contact's protocol number, any spacing "
                                               "(required unless the event type is keyed by "
                                               "its own id)."},
            "occurred_at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
                            "description": "When it happened (RFC 3339 with a zone); default: now."},
            "correlation_id": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "null"}]},
            "event_id": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}],
                         "description": "The event's UUID (idempotency); default: a new one."},
            "fields": fields,
        },
        "required": ["event_type", "fields"],
        "additionalProperties": False,
    }


def event_bodies(catalogue: SchemaCatalogue, excluded: Iterable[str]) -> list[dict[str, Any]]:
    """JSON Schemas of the request body, one per event type a service may publish."""
    skip = set(excluded)
    return [_event_body(event_type, catalogue.current(event_type).schema)
            for event_type in catalogue.event_types() if event_type not in skip]


def fields_from_json(schema: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with every ``timestamp-micros`` value read from its RFC 3339 text.

    Only what the schema says is a timestamp is touched; anything else (and a value that is
    not text) goes on unchanged for the publisher's validation to name.
    """
    stamps = {f["name"] for f in schema["fields"] if _is_timestamp(f["type"])}
    return {name: _datetime(name, value) if name in stamps and isinstance(value, str) else value
            for name, value in fields.items()}


def _is_timestamp(avro: Any) -> bool:
    if isinstance(avro, list):
        return any(_is_timestamp(branch) for branch in avro)
    return isinstance(avro, Mapping) and avro.get("logicalType") == "timestamp-micros"


def _datetime(name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise EventRejected(name, "timestamp",
                            f"expected an RFC 3339 date-time (2026-03-03T14:00:00Z), got {shown_value(text)}") from None
    if value.tzinfo is None:
        raise EventRejected(name, "timestamp", "needs a zone (Z or an offset such as -03:00)")
    return value
