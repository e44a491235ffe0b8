"""Validation of events against the contract before anything is published.

Two layers, both raising :class:`~protocolo.core.errors.EventRejected` with the field
path and the rule broken:

* structure, walked from the Avro schema itself (required fields, types, enum symbols,
  unions), so the rules can never drift from the ``.avsc`` files;
* domain rules the schema cannot say (check digits, digests, clocks, which events need a
  protocol number).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from protocolo.core.errors import EventRejected, shown_field_name, shown_value
from protocolo.core.policy import PROFILES, PolicyError, profile_in_force
from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.core.uuids import canonical_uuid, is_uuid_spelling

MAX_CLOCK_SKEW = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLIND_INDEX = _SHA256

#: Events about an interaction: they must name its protocol number.
NEEDS_PROTOCOL = frozenset({
    "ContactOpened", "DisclosureMade", "RecordingCaptured", "ContactClosed", "NoteAdded",
    "RecordingDeleted", "LegalHoldPlaced", "LegalHoldReleased",
})
#: Events keyed by their own id when they name no protocol: event type -> field.
OWN_KEY_FIELD = {
    "RetrievalRequested": "request_id",
    "RetrievalLocated": "request_id",
    "RetrievalFulfilled": "request_id",
    "RetrievalRejected": "request_id",
    "CustomerDataErased": "subject_ref",
    "AccessRecorded": "access_id",
    "ApprovalRequested": "approval_id",
    "ApprovalGranted": "approval_id",
    "ApprovalDenied": "approval_id",
}

_PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63,
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "bytes": lambda v: isinstance(v, bytes | bytearray | memoryview),
}


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, list):
        return " or ".join(_describe(s) for s in schema)
    if schema.get("logicalType"):
        return str(schema["logicalType"])
    return str(schema.get("name", schema["type"]))


class StructureValidator:
    """Walks one (self-contained) Avro schema and checks a Python record against it."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.names: dict[str, Mapping[str, Any]] = {}
        self._collect(schema, schema.get("namespace", ""))
        self.schema = schema
        self._valid = self._compile(schema)
        self._canonicaliser = self._compile_canonical(schema)

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for s in schema:
                self._collect(s, namespace)
        elif isinstance(schema, dict):
            if schema.get("type") in ("record", "enum", "fixed"):
                ns = schema.get("namespace", namespace)
                self.names[f"{ns}.{schema['name']}"] = schema
                self.names[schema["name"]] = schema
                namespace = ns
            for f in schema.get("fields", ()):
                self._collect(f["type"], namespace)
            for key in ("items", "values"):
                if key in schema:
                    self._collect(schema[key], namespace)

    def check(self, record: Any) -> None:
        """Raise :class:`EventRejected` (field, rule) unless ``record`` fits the schema."""
        # The compiled predicate answers "valid?" fast (publishing is a hot path); only a
        # record that fails it is walked again to say which field broke which rule. The
        # two must agree on every input (tests/unit/test_validators_agree.py).
        if not self._valid(record):
            self._check(self.schema, record, "")

    def accepts(self, record: Any) -> bool:
        """The fast path alone: whether ``record`` fits the schema."""
        return self._valid(record)

    def explain(self, record: Any) -> EventRejected | None:
        """The explaining walk alone: the first rule ``record`` breaks, or None."""
        try:
            self._check(self.schema, record, "")
        except EventRejected as exc:
            return exc
        return None

    def canonical(self, record: Any) -> Any:
        """``record`` with every ``uuid`` value in canonical text (see :mod:`.uuids`).

        Call it on a record that passed :meth:`check`; records without UUIDs are returned
        as they are, others as shallow copies along the paths that hold a UUID.
        """
        return record if self._canonicaliser is None else self._canonicaliser(record)

    def _compile_canonical(self, schema: Any) -> Callable[[Any], Any] | None:
        """A function rewriting the UUIDs under ``schema``, or None if there are none."""
        if isinstance(schema, str):
            return None if schema in _PRIMITIVES else self._compile_canonical(self.names[schema])
        if isinstance(schema, list):
            branches = [(self._compile(b), self._compile_canonical(b)) for b in schema]
            if all(canon is None for _, canon in branches):
                return None

            def union(v: Any) -> Any:
                for valid, canon in branches:
                    if valid(v):
                        return v if canon is None else canon(v)
                return v

            return union
        if schema.get("logicalType") == "uuid":
            return lambda v: canonical_uuid(v, "uuid")
        if schema["type"] == "record":
            subs = [(f["name"], c) for f in schema["fields"]
                    if (c := self._compile_canonical(f["type"])) is not None]
            if not subs:
                return None

            def record(v: Any) -> Any:
                out = dict(v)
                for name, canon in subs:
                    if name in out:
                        out[name] = canon(out[name])
                return out

            return record
        if schema["type"] == "array":
            item = self._compile_canonical(schema["items"])
            return None if item is None else (lambda v: [item(i) for i in v])
        return None

    def _compile(self, schema: Any) -> Callable[[Any], bool]:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            return self._compile(self.names[schema])
        if isinstance(schema, list):
            return self._compile_union(schema)
        kind, logical = schema["type"], schema.get("logicalType")
        if logical == "timestamp-micros":
            return lambda v: isinstance(v, datetime) and v.tzinfo is not None
        if logical == "uuid":
            return is_uuid_spelling
        if kind == "record":
            return self._compile_record(schema)
        if kind == "enum":
            allowed = frozenset(s for s in schema["symbols"] if s != schema.get("default"))
            return lambda v: isinstance(v, str) and v in allowed
        if kind == "array":
            item = self._compile(schema["items"])
            return lambda v: isinstance(v, list | tuple) and all(item(i) for i in v)
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        return lambda v: False  # unsupported: the slow walk explains

    def _compile_union(self, schema: list[Any]) -> Callable[[Any], bool]:
        preds = [self._compile(b) for b in schema]
        if len(schema) == 2 and schema[0] == "null":
            other = preds[1]
            return lambda v: v is None or other(v)
        return lambda v: any(p(v) for p in preds)

    def _compile_record(self, schema: Mapping[str, Any]) -> Callable[[Any], bool]:
        fields = [(f["name"], self._compile(f["type"]), "default" in f) for f in schema["fields"]]
        known = frozenset(name for name, _, _ in fields)

        def record_ok(v: Any) -> bool:
            if not isinstance(v, Mapping) or not known.issuperset(v):
                return False
            for name, pred, has_default in fields:
                if name in v:
                    if not pred(v[name]):
                        return False
                elif not has_default:
                    return False
            return True

        return record_ok

    def _matches(self, schema: Any, value: Any) -> bool:
        try:
            self._check(schema, value, "")
        except EventRejected:
            return False
        return True

    def _check(self, schema: Any, value: Any, path: str) -> None:
        """Raise the first rule ``value`` breaks against ``schema``, named at ``path``."""
        where = path or "event"
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                if not _PRIMITIVES[schema](value):
                    raise EventRejected(where, "type", f"expected {schema}, got {type(value).__name__} {shown_value(value)}")
                return
            schema = self.names[schema]
        if isinstance(schema, list):
            self._check_union(schema, value, path)
            return
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical == "timestamp-micros":
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise EventRejected(where, "timestamp", f"expected a timezone-aware datetime, got {shown_value(value)}")
        elif logical == "uuid":
            canonical_uuid(value, where)  # raises the rule broken
        elif kind == "record":
            self._check_record(schema, value, path)
        elif kind == "enum":
            symbols = [s for s in schema["symbols"] if s != schema.get("default")]
            if value not in symbols:
                raise EventRejected(where, "enum", f"{shown_value(value)} is not a known {schema['name']}; use one of {', '.join(symbols)}")
        elif kind == "array":
            if not isinstance(value, list | tuple):
                raise EventRejected(where, "type", f"expected a list, got {type(value).__name__}")
            for i, item in enumerate(value):
                self._check(schema["items"], item, f"{where}[{i}]")
        elif kind in _PRIMITIVES:
            self._check(kind, value, path)
        else:  # map, fixed: not used by the contract yet
            raise EventRejected(where, "schema", f"unsupported schema type {kind}")

    def _check_union(self, schema: list[Any], value: Any, path: str) -> None:
        where = path or "event"
        if any(self._matches(branch, value) for branch in schema):
            return
        if value is None:
            raise EventRejected(where, "required", "is required")
        branches = [b for b in schema if b != "null"]
        if len(branches) == 1:
            self._check(branches[0], value, path)  # names the rule inside the one branch
        raise EventRejected(where, "type", f"expected {_describe(schema)}, got {shown_value(value)}")

    def _check_record(self, schema: Mapping[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise EventRejected(path or "event", "type", f"expected a {schema['name']} record, got {type(value).__name__}")
        known = {f["name"] for f in schema["fields"]}
        extra = sorted(shown_field_name(k) for k in value if k not in known)
        if extra:
            raise EventRejected(f"{path + '.' if path else ''}{extra[0]}", "unknown-field",
                                f"is not a field of {schema['name']} (fields: {', '.join(sorted(known))})")
        for f in schema["fields"]:
            sub = f"{path}.{f['name']}" if path else f["name"]
            if f["name"] not in value:
                if "default" in f:
                    continue
                raise EventRejected(sub, "required", "is required")
            self._check(f["type"], value[f["name"]], sub)


def check_domain_rules(
    event_type: str, record: Mapping[str, Any], now: datetime | None = None, *, at_publish: bool = True
) -> None:
    """Rules the Avro schema cannot express. ``record`` has passed the structure check.

    ``at_publish=False`` (records already on the log) skips the rules that depend on when
    they are checked: an event in the future, and retention below the *current* minimum
    of its profile (a profile's values may change in a later version).
    """
    meta = record["meta"]
    now = now or datetime.now(UTC)
    occurred = meta["occurred_at"]
    if at_publish and occurred > now + MAX_CLOCK_SKEW:
        raise EventRejected("meta.occurred_at", "future",
                            f"{occurred.isoformat()} is more than {MAX_CLOCK_SKEW} in the future (clock skew?)")
    if occurred < EARLIEST:
        raise EventRejected("meta.occurred_at", "too-old", f"{occurred.isoformat()} is before {EARLIEST.date()}")
    if not meta["producer"].strip():
        raise EventRejected("meta.producer", "required", "must name the publishing service")
    protocol = meta.get("protocol_number")
    if protocol is not None:
        if not _is_canonical_protocol(protocol) and (
            normalise_protocol_number(protocol, "meta.protocol_number") != protocol  # raises the rule broken
        ):
            raise EventRejected("meta.protocol_number", "canonical", f"{shown_value(protocol)} must be the 15 digits without separators")
    elif event_type in NEEDS_PROTOCOL:
        raise EventRejected("meta.protocol_number", "required", f"a {event_type} event must name its protocol number")
    for name in ("sha256", "delivered_sha256"):
        if name in record and not _SHA256.match(record[name]):
            raise EventRejected(name, "sha256", f"{shown_value(record[name])} is not a SHA-256 digest (64 lowercase hex digits)")
    customer = record.get("customer")
    for name in ("cpf_index", "customer_code_index"):
        if customer and customer.get(name) is not None and not _BLIND_INDEX.match(customer[name]):
            raise EventRejected(f"customer.{name}", "blind-index", "must be an HMAC-SHA256 in 64 lowercase hex digits")
    for i, number in enumerate(record.get("protocol_numbers", ())):
        field = f"protocol_numbers[{i}]"
        if normalise_protocol_number(number, field) != number:
            raise EventRejected(field, "canonical", f"{shown_value(number)} must be the 15 digits without separators")
    checker = _EXTRA_RULES.get(event_type)
    if checker:
        checker(record)
    if at_publish and event_type == "RecordingCaptured":
        _retention_minimum(record)


@functools.lru_cache(maxsize=65536)
def _is_canonical_protocol(value: str) -> bool:
    """Cached: one contact's events repeat its protocol number (the publisher's hot path)."""
    try:
        return normalise_protocol_number(value) == value
    except EventRejected:
        return False


def _recording_captured(record: Mapping[str, Any]) -> None:
    if record["duration_ms"] < 0:
        raise EventRejected("duration_ms", "range", "must not be negative")
    if not record["media_uri"].strip():
        raise EventRejected("media_uri", "required", "must say where the media is stored")
    if not record["recording_id"].strip():
        raise EventRejected("recording_id", "required", "must not be empty")
    profile = PROFILES.get(record["retention_profile"])
    if profile is None:
        raise EventRejected("retention_profile", "unknown-profile",
                            f"{shown_value(record['retention_profile'])} is not a policy profile ({', '.join(sorted(PROFILES))})")
    if record["retention_days"] < 1:
        raise EventRejected("retention_days", "range", "must be at least 1 day")


def _retention_minimum(record: Mapping[str, Any]) -> None:
    try:
        profile = profile_in_force(record["retention_profile"], record["meta"]["occurred_at"])
    except PolicyError as exc:
        raise EventRejected("retention_profile", "profile-not-in-force", str(exc)) from None
    if record["retention_days"] < profile.recording_retention_days:
        raise EventRejected("retention_days", "legal-minimum",
                            f"{record['retention_days']} days is below the {profile.recording_retention_days}-day minimum of {profile.key}")


def _contact_opened(record: Mapping[str, Any]) -> None:
    _not_blank("subject")(record)
    name = record.get("policy_profile")
    if name is not None and name not in PROFILES:
        raise EventRejected("policy_profile", "unknown-profile",
                            f"{name!r:.60} is not a policy profile ({', '.join(sorted(PROFILES))})")


def _retrieval_requested(record: Mapping[str, Any]) -> None:
    if record["meta"].get("protocol_number") is not None:
        return
    customer = record.get("customer")
    if not customer or (customer.get("cpf_index") is None and customer.get("customer_code_index") is None):
        raise EventRejected("customer", "required",
                            "a request without protocol number must identify the customer by CPF or customer code")
    start, end = record.get("window_from"), record.get("window_to")
    if start is None or end is None:
        raise EventRejected("window_from" if start is None else "window_to", "required",
                            "a request without protocol number needs a date window (window_from and window_to)")
    if start > end:
        raise EventRejected("window_to", "range", "must not be before window_from")


def _access_recorded(record: Mapping[str, Any]) -> None:
    _not_blank("actor", "purpose")(record)
    subject = record.get("subject_ref")
    if subject is not None and not _BLIND_INDEX.match(subject):
        raise EventRejected("subject_ref", "blind-index", "must be an HMAC-SHA256 in 64 lowercase hex digits")


def _approval_requested(record: Mapping[str, Any]) -> None:
    _not_blank("requested_by", "reason")(record)
    if record["action"] == "EARLY_DELETION":
        if record["meta"].get("protocol_number") is None:
            raise EventRejected("meta.protocol_number", "required", "an early deletion names the contact")
        if not (record.get("recording_id") or "").strip():
            raise EventRejected("recording_id", "required", "an early deletion names the recording")
    if record["action"] == "CUSTOMER_ERASURE":
        subject = record.get("subject_ref")
        if subject is None or not _BLIND_INDEX.match(subject):
            raise EventRejected("subject_ref", "blind-index",
                                "an erasure names the customer by blind index (64 lowercase hex digits)")


def _not_blank(*fields: str) -> Callable[[Mapping[str, Any]], None]:
    def check(record: Mapping[str, Any]) -> None:
        for f in fields:
            if not str(record[f]).strip():
                raise EventRejected(f, "required", "must not be empty")
    return check


_EXTRA_RULES: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "RecordingCaptured": _recording_captured,
    "RetrievalRequested": _retrieval_requested,
    "NoteAdded": _not_blank("agent_id", "text"),
    "ContactOpened": _contact_opened,
    "RecordingDeleted": _not_blank("recording_id"),
    "LegalHoldPlaced": _not_blank("hold_id", "case_reference", "placed_by"),
    "LegalHoldReleased": _not_blank("hold_id", "released_by"),
    "CustomerDataErased": _not_blank("subject_ref", "legal_basis"),
    "AccessRecorded": _access_recorded,
    "ApprovalRequested": _approval_requested,
    "ApprovalGranted": _not_blank("approved_by"),
    "ApprovalDenied": _not_blank("denied_by", "reason"),
}


def entity_key(event_type: str, record: Mapping[str, Any]) -> str:
    """The Kafka key of an event: its protocol number, else its own id (wire contract).

    ``record`` holds UUIDs as decoded (:class:`uuid.UUID`) or canonical text
    (:meth:`StructureValidator.canonical`): the key is compared byte for byte.
    """
    protocol = record["meta"].get("protocol_number")
    if protocol is not None:
        return str(protocol)
    field = OWN_KEY_FIELD.get(event_type)
    if field is None:
        raise EventRejected("meta.protocol_number", "required", f"a {event_type} event must name its protocol number")
    return str(record[field])


def record_headers(event_type: str, event_id: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of an event's record (wire contract): a convenience for routing
    and debugging; readers trust the value, never the headers."""
    return [("event_type", event_type.encode()), ("event_id", event_id.encode())]
