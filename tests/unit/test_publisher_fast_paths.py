"""The publisher's fast paths give the answers of the full checks: canonical UUID text as the
standard library prints it, and every unstorable value found with its field path."""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from protocolo.core.errors import EventRejected
from protocolo.core.uuids import canonical_uuid
from protocolo.schemas.storable import unstorable


def test_canonical_uuid_is_the_standard_librarys_text_for_every_spelling() -> None:
    rng = random.Random(7)
    for _ in range(200):
        u = uuid.UUID(int=rng.getrandbits(128))
        oracle = str(u)
        for spelling in (oracle, oracle.upper(), u.hex, u.hex.upper(), "{" + oracle + "}", "urn:uuid:" + oracle, u):
            assert canonical_uuid(spelling, "meta.event_id") == oracle


@pytest.mark.parametrize("value", [" " + str(uuid.UUID(int=5)), str(uuid.UUID(int=5))[:-1], "", 17, None])
def test_canonical_uuid_still_refuses_what_is_no_uuid(value: object) -> None:
    with pytest.raises(EventRejected) as caught:
        canonical_uuid(value, "meta.event_id")
    assert caught.value.field == "meta.event_id" and caught.value.rule == "uuid"


CLEAN = {"meta": {"event_id": str(uuid.UUID(int=1)), "occurred_at": datetime(2026, 1, 1, tzinfo=UTC)},
         "n": 3, "ok": True, "none": None, "raw": b"\x00\xff", "when": date(2026, 1, 2), "id": uuid.UUID(int=2),
         "amount": Decimal("1.5"), "x": 1.25, "tags": ["a", "ção", {"deep": "zero-width\u200b"}],
         "pair": ("a", "b"), "ordered": OrderedDict(a="b")}


def test_a_clean_record_is_storable() -> None:
    assert unstorable(CLEAN) is None


@pytest.mark.parametrize(("record", "field", "rule"), [
    ({"a": {"b": ["ok", "n\x00l"]}}, "a.b[1]", "nul-character"),
    ({"a": [{"\udc80": 1}]}, "a[0] (a field name)", "lone-surrogate"),
    ({"a": float("nan")}, "a", "non-finite-number"),
    ({"a": ("x", "\ud800")}, "a[1]", "lone-surrogate"),
    ({"a": OrderedDict(b="\x00")}, "a.b", "nul-character"),
    ({**CLEAN, "z": {"inf": float("inf")}}, "z.inf", "non-finite-number"),
])
def test_every_unstorable_value_is_found_with_its_path(record: object, field: str, rule: str) -> None:
    found = unstorable(record)
    assert found is not None
    assert (found.field, found.rule) == (field, rule)
