"""The two structure validators accept and reject exactly the same inputs.

``StructureValidator`` answers "valid?" with a compiled predicate (the publisher's hot
path) and explains a failure with a second, walking implementation. If they disagree the
contract has two meanings: a record the fast path refuses but the walk finds nothing wrong
with is *accepted* (``check`` raises nothing), and one the fast path accepts is never
explained. Property tests over every schema of ``schemas/avro``: records generated from the
schema itself, and near misses (one field made wrong in a way a real producer gets wrong).

Valid records also have an independent oracle: fastavro must encode them, and decoding
gives back the record with its UUIDs in the canonical form ``canonical`` produces.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from protocolo.core.errors import EventRejected
from protocolo.schemas.catalogue import BUNDLED_ROOT, SchemaCatalogue
from protocolo.schemas.validation import StructureValidator

CATALOGUE = SchemaCatalogue.load()
SCHEMAS: dict[str, dict[str, Any]] = {
    f"{sv.event_type}/v{sv.version}": sv.schema
    for event_type in CATALOGUE.event_types() for sv in CATALOGUE.versions(event_type)
}
SCHEMAS["Meta"] = json.loads((BUNDLED_ROOT / "Meta.avsc").read_text(encoding="utf-8"))
assert len(SCHEMAS) == len(list(BUNDLED_ROOT.glob("*/*.avsc"))) + 1

HEX = "6f96e0c41b2a4c3d8e9f0a1b2c3d4e5f"
CANON = str(uuid.UUID(HEX))
NAIVE = datetime(2026, 11, 27, 12, 0)
#: Values producers really send in the wrong place.
HOSTILE: list[Any] = [
    None, True, False, 0, 1, -1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 1.5, float("nan"),
    "", "x", "UNKNOWN", "111.444.777-35", "11144477735", b"bytes", bytearray(b"x"), [], [None],
    (), {}, {"a": 1}, {1: 2}, NAIVE, NAIVE.replace(tzinfo=UTC), date(2026, 1, 1),
    uuid.UUID(HEX), int(HEX, 16), object(),
]
#: Strings that look like a UUID to some parser and not to another.
UUID_NEAR_MISSES: list[Any] = [
    f"uuid:{HEX}", f"uuid:{CANON}", f"urn:{CANON}", f"URN:UUID:{CANON}", "{" + HEX, HEX + "}",
    "{{" + HEX + "}}", f"{CANON}\n", f" {CANON}", f"{CANON} ", CANON[:-1], CANON + "0",
    CANON.replace("-", "", 1), HEX[:8] + "-" + HEX[8:], "-".join(HEX), HEX.upper(),
    "{" + CANON + "}", f"urn:uuid:{{{HEX}}}", int("1" * 32), CANON.encode(), "g" * 32,
    "\uff16" + CANON[1:],  # a full-width digit: str.isdigit-style checks take it
]


class Generator:
    """Hypothesis strategies for valid values and near misses of one (parsed) schema."""

    def __init__(self, validator: StructureValidator) -> None:
        self.names = validator.names

    def _resolve(self, schema: Any) -> Any:
        return self.names[schema] if isinstance(schema, str) and schema in self.names else schema

    def valid(self, schema: Any) -> SearchStrategy[Any]:
        schema = self._resolve(schema)
        if isinstance(schema, list):
            return st.one_of([self.valid(b) for b in schema])
        if isinstance(schema, str):
            return _PRIMITIVE_VALUES[schema]
        logical = schema.get("logicalType")
        if logical == "uuid":
            return st.uuids().flatmap(lambda u: st.sampled_from([
                u, str(u), str(u).upper(), u.hex, "{" + str(u) + "}", f"urn:uuid:{u}"]))
        if logical == "timestamp-micros":
            return st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1),
                                timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))]))
        kind = schema["type"]
        if kind == "record":
            return st.fixed_dictionaries(
                {f["name"]: self.valid(f["type"]) for f in schema["fields"] if "default" not in f},
                optional={f["name"]: self.valid(f["type"]) for f in schema["fields"] if "default" in f},
            )
        if kind == "enum":
            return st.sampled_from([s for s in schema["symbols"] if s != schema.get("default")])
        if kind == "array":
            return st.lists(self.valid(schema["items"]), max_size=3)
        return _PRIMITIVE_VALUES[kind]

    def near(self, schema: Any) -> SearchStrategy[Any]:
        """Values that are wrong in one place (some happen to be valid: that is fine, the
        property is agreement, not rejection)."""
        schema = self._resolve(schema)
        hostile = st.sampled_from(HOSTILE)
        if isinstance(schema, list):
            return st.one_of([hostile, *(self.near(b) for b in schema)])
        if isinstance(schema, str):
            return st.one_of(hostile, *(v for k, v in _PRIMITIVE_VALUES.items() if k != schema))
        logical = schema.get("logicalType")
        if logical == "uuid":
            return st.one_of(st.sampled_from(UUID_NEAR_MISSES), hostile, st.text(max_size=40))
        if logical == "timestamp-micros":
            return st.one_of(st.datetimes(), hostile, st.integers())
        kind = schema["type"]
        if kind == "record":
            return self._near_record(schema)
        if kind == "enum":
            symbols = schema["symbols"]
            return st.one_of(hostile, st.sampled_from(
                [schema.get("default", "UNKNOWN"), symbols[0].lower(), symbols[0] + " ", "FAX"]))
        if kind == "array":
            return st.one_of(hostile, st.just("not a list"), st.lists(self.near(schema["items"]), min_size=1, max_size=3),
                             st.lists(self.valid(schema["items"]), max_size=2).map(tuple))
        return hostile

    def _near_record(self, schema: Mapping[str, Any]) -> SearchStrategy[Any]:
        fields = schema["fields"]
        required = [f["name"] for f in fields if "default" not in f]

        @st.composite
        def one_wrong(draw: st.DrawFn) -> Any:
            record = draw(self.valid(schema))
            how = draw(st.sampled_from(["field", "field", "field", "extra", "missing", "not-a-record"]))
            if how == "field":
                f = draw(st.sampled_from(fields))
                record[f["name"]] = draw(self.near(f["type"]))
            elif how == "extra":
                record[draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))] = draw(st.sampled_from(HOSTILE))
            elif how == "missing" and required:
                del record[draw(st.sampled_from(required))]
            elif how == "not-a-record":
                return draw(st.one_of(st.sampled_from(HOSTILE), st.just(list(record.items()))))
            return record

        return one_wrong()


_PRIMITIVE_VALUES: dict[str, SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=16),
}

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _agree(validator: StructureValidator, record: Any) -> None:
    explained = validator.explain(record)  # anything but EventRejected escaping is a bug too
    accepted = validator.accepts(record)
    assert accepted == (explained is None), (
        f"compiled path {'accepts' if accepted else 'rejects'} {record!r:.300}, "
        f"the walk says {explained}")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@PROPERTY
@given(data=st.data())
def test_both_validators_agree_on_near_misses(name: str, data: st.DataObject) -> None:
    validator = StructureValidator(SCHEMAS[name])
    _agree(validator, data.draw(Generator(validator).near(SCHEMAS[name]), label="record"))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@PROPERTY
@given(data=st.data())
def test_both_validators_accept_what_fastavro_writes(name: str, data: st.DataObject) -> None:
    schema = SCHEMAS[name]
    validator = StructureValidator(schema)
    record = data.draw(Generator(validator).valid(schema), label="record")
    _agree(validator, record)
    assert validator.accepts(record)
    if name == "Meta":
        return
    event_type, version = name.split("/v")
    canonical = validator.canonical(record)
    encoded = CATALOGUE.encode(event_type, canonical, version=int(version))
    decoded = CATALOGUE.decode(encoded).record
    meta = canonical["meta"]
    assert str(decoded["meta"]["event_id"]) == meta["event_id"] == str(uuid.UUID(str(record["meta"]["event_id"])))
    assert decoded["meta"]["occurred_at"] == meta["occurred_at"]  # aware datetimes: same instant
    assert (decoded["meta"]["producer"], decoded["meta"]["protocol_number"]) == (
        meta["producer"], meta.get("protocol_number"))
    if "request_id" in canonical:
        assert str(decoded["request_id"]) == canonical["request_id"]


@pytest.mark.parametrize("spelling", UUID_NEAR_MISSES + HOSTILE, ids=repr)
def test_every_uuid_spelling_is_judged_alike(spelling: Any) -> None:
    """The examples found by the properties above, kept as plain regressions."""
    validator = StructureValidator(SCHEMAS["Meta"])
    record = {"event_id": spelling, "occurred_at": NAIVE.replace(tzinfo=UTC), "producer": "ivr"}
    _agree(validator, record)


def test_a_mapping_with_keys_of_mixed_types_is_explained_not_crashed() -> None:
    validator = StructureValidator(SCHEMAS["Meta"])
    record = {"event_id": CANON, "occurred_at": NAIVE.replace(tzinfo=UTC), "producer": "ivr", 1: "x", None: 2}
    err = validator.explain(record)
    assert isinstance(err, EventRejected) and err.rule == "unknown-field"


def test_canonical_rewrites_every_uuid_and_leaves_the_input_alone() -> None:
    schema = CATALOGUE.current("RetrievalRejected").schema
    validator = StructureValidator(schema)
    upper = "{" + CANON.upper() + "}"
    record = {"meta": {"event_id": f"urn:uuid:{HEX.upper()}", "occurred_at": NAIVE.replace(tzinfo=UTC),
                       "producer": "ivr"},
              "request_id": upper, "reason": "IDENTITY_NOT_VERIFIED"}
    validator.check(record)
    canonical = validator.canonical(record)
    assert (canonical["meta"]["event_id"], canonical["request_id"]) == (CANON, CANON)
    assert (record["meta"]["event_id"], record["request_id"]) == (f"urn:uuid:{HEX.upper()}", upper)
    assert canonical["reason"] == "IDENTITY_NOT_VERIFIED"
