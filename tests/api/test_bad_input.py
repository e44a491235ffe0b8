"""Every write route, fed malformed, oversized and hostile input, answers 4xx naming the
field and the rule, and publishes nothing (the topic's log end does not move)."""

from __future__ import annotations

from typing import Any

import pytest
from api_world import CPF_A, RunningApi

WINDOW = {"window_from": "2024-01-01T00:00:00Z", "window_to": "2030-01-01T00:00:00Z"}
HUGE = "x" * 100_000

#: (id, who, method, path (formatted with the fixture's values), body, expected field, rule or None)
CASES: list[tuple[str, str, str, str, Any, str, str | None]] = [
    ("request: protocol typo", "analyst", "POST", "/v1/requests", {"protocol_number": "2026-0000000001-9"},
     "protocol_number", None),
    ("request: invalid CPF", "analyst", "POST", "/v1/requests", {"cpf": "111.111.111-11", **WINDOW},
     "cpf", "repeated-digits"),
    ("request: CPF check digit", "analyst", "POST", "/v1/requests", {"cpf": "111.444.777-36", **WINDOW},
     "cpf", "check-digit"),
    ("request: no window", "analyst", "POST", "/v1/requests", {"cpf": CPF_A}, "window_from", "required"),
    ("request: window reversed", "analyst", "POST", "/v1/requests",
     {"cpf": CPF_A, "window_from": "2030-01-01T00:00:00Z", "window_to": "2024-01-01T00:00:00Z"},
     "window_to", "range"),
    ("request: nobody named", "analyst", "POST", "/v1/requests", {**WINDOW}, "customer", "required"),
    ("request: unknown kind", "analyst", "POST", "/v1/requests", {"kind": "VIDEO"}, "kind", None),
    ("request: oversized code", "analyst", "POST", "/v1/requests", {"customer_code": HUGE, **WINDOW},
     "customer_code", "string_too_long"),
    ("request: NUL in name", "analyst", "POST", "/v1/requests", {"cpf": CPF_A, "name": "Ana\x00", **WINDOW},
     "customer.name", None),
    ("request: extra field", "analyst", "POST", "/v1/requests", {"cpf": CPF_A, "admin": True, **WINDOW},
     "admin", "extra_forbidden"),
    ("request: not an object", "analyst", "POST", "/v1/requests", ["cpf"], "body", None),
    ("request: another customer's contact", "customer", "POST", "/v1/requests", {"protocol_number": "{b1}"},
     "protocol_number", "unknown-contact"),
    ("request: another customer's CPF", "other-customer", "POST", "/v1/requests", {"cpf": CPF_A, **WINDOW},
     "cpf", "own-cpf"),
    ("locate: bad protocol", "analyst", "POST", "/v1/requests/{request_id}/locate", {"protocol_numbers": ["12"]},
     "protocol_numbers[0]", None),
    ("locate: request id", "analyst", "POST", "/v1/requests/not-a-uuid/locate", {"protocol_numbers": []},
     "request_id", "uuid"),
    ("fulfil: digest", "analyst", "POST", "/v1/requests/{request_id}/fulfil",
     {"delivered_sha256": "ABC", "delivered_via": "EMAIL"}, "delivered_sha256", "sha256"),
    ("fulfil: channel", "analyst", "POST", "/v1/requests/{request_id}/fulfil",
     {"delivered_sha256": "a" * 64, "delivered_via": "PIGEON"}, "delivered_via", None),
    ("reject: reason outside the list", "analyst", "POST", "/v1/requests/{request_id}/reject",
     {"reason": "UNKNOWN"}, "reason", None),
    ("reject: oversized detail", "analyst", "POST", "/v1/requests/{request_id}/reject",
     {"reason": "NOT_FOUND", "detail": HUGE}, "detail", "string_too_long"),
    ("hold: empty case", "supervisor", "POST", "/v1/contacts/{a1}/holds", {"case_reference": ""},
     "case_reference", "string_too_short"),
    ("hold: bad protocol", "supervisor", "POST", "/v1/contacts/12345/holds", {"case_reference": "x"},
     "protocol_number", None),
    ("release: no reason", "supervisor", "POST", "/v1/contacts/{a1}/holds/h/release", {}, "reason", "missing"),
    ("approval: deletion without contact", "supervisor", "POST", "/v1/approvals",
     {"action": "EARLY_DELETION", "reason": "court"}, "protocol_number", "required"),
    ("approval: unknown recording", "supervisor", "POST", "/v1/approvals",
     {"action": "EARLY_DELETION", "reason": "court", "protocol_number": "{a1}", "recording_id": "nope"},
     "recording_id", "unknown-recording"),
    ("approval: erasure CPF", "compliance", "POST", "/v1/approvals",
     {"action": "CUSTOMER_ERASURE", "reason": "LGPD", "cpf": "123"}, "cpf", "length"),
    ("approval: unknown action", "compliance", "POST", "/v1/approvals", {"action": "DROP_TABLE", "reason": "x"},
     "action", None),
    ("grant: comment type", "compliance", "POST", "/v1/approvals/{request_id}/grant", {"comment": 5},
     "comment", "string_type"),
    ("deny: empty reason", "compliance", "POST", "/v1/approvals/{request_id}/deny", {"reason": ""},
     "reason", "string_too_short"),
    ("event: unknown type", "service", "POST", "/v1/events", {"event_type": "ContactOpend", "fields": {}},
     "event_type", "unknown-event-type"),
    ("event: blank agent", "service", "POST", "/v1/events",
     {"event_type": "NoteAdded", "protocol_number": "{a1}", "fields": {"agent_id": " ", "text": "x"}},
     "agent_id", "required"),
    ("event: forged audit record", "service", "POST", "/v1/events",
     {"event_type": "AccessRecorded", "fields": {}}, "event_type", "service-allow-list"),
    ("event: forged approval", "service", "POST", "/v1/events",
     {"event_type": "ApprovalGranted", "fields": {}}, "event_type", "service-allow-list"),
    ("approval: NUL in recording id", "supervisor", "POST", "/v1/approvals",
     {"action": "EARLY_DELETION", "reason": "x", "protocol_number": "{a1}", "recording_id": "r\x00"},
     "recording_id", "string_pattern_mismatch"),
    ("release: NUL in hold id", "supervisor", "POST", "/v1/contacts/{a1}/holds/h%00/release", {"reason": "x"},
     "hold_id", "string_pattern_mismatch"),
    ("login: NUL in name", "customer", "POST", "/v1/auth/login", {"name": "a\x00", "password": "x"}, "name",
     "string_pattern_mismatch"),
    ("login: empty name", "customer", "POST", "/v1/auth/login", {"name": "", "password": "x"}, "name", None),
]


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str) and "{" in value and value != HUGE:
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def values(api: RunningApi) -> dict[str, str]:
    with api.client("analyst") as c:
        created = c.post("/v1/requests", json={"protocol_number": api.protocols["a1"]})
    assert created.status_code == 201
    return {**api.protocols, "request_id": created.json()["request_id"]}


@pytest.mark.parametrize(("who", "method", "path", "body", "field", "rule"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_field_and_rule_and_publishes_nothing(
        api: RunningApi, values: dict[str, str], who: str, method: str, path: str, body: Any, field: str,
        rule: str | None) -> None:
    start = api.log_end()
    with api.client(who) as c:
        response = c.request(method, _fill(path, values), json=_fill(body, values))
    assert 400 <= response.status_code < 500, response.text[:300]
    problem = response.json()
    assert problem["field"] == field, problem
    assert problem["rule"], problem
    if rule is not None:
        assert problem["rule"] == rule, problem
    assert api.log_end() == start, "a refused write published something"


def test_malformed_json_is_refused(api: RunningApi) -> None:
    start = api.log_end()
    with api.client("analyst") as c:
        response = c.post("/v1/requests", content=b'{"cpf": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["rule"] == "json_invalid"
    assert api.log_end() == start


def test_nul_in_a_query_is_refused_not_a_server_error(api: RunningApi) -> None:
    """Found by schemathesis: a NUL reached PostgreSQL in a lookup and made a 500."""
    with api.client("compliance") as c:
        for path, params in (("/v1/access-log", {"actor": "a\x00"}), ("/v1/contacts", {"agent_id": "\x00"})):
            response = c.get(path, params=params)
            assert response.status_code == 422, response.text
            assert response.json()["rule"] == "string_pattern_mismatch"
