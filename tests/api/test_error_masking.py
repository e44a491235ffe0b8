"""No error body echoes personal data: a CPF (bare or punctuated) or a customer code sent
in every position a caller controls (field names, field values, path ids, query values)
comes back masked, if at all."""

from __future__ import annotations

import re
from typing import Any

import pytest
from api_world import RunningApi

CPF = "06900679250"        # valid check digits
CPF_SHOWN = "069.006.792-50"
WRONG = "069.006.792-51"   # wrong check digit: rejected, and must not be echoed either
CODE = "CLI-778812"
LEAKS = re.compile(r"0690067925|069\.006\.792|CLI-7788")

CASES: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, str]]] = [
    ("field name (bare)", "analyst", "POST", "/v1/requests", {CPF: "x"}, {}),
    ("field name (punctuated)", "supervisor", "POST", "/v1/approvals",
     {"action": "CUSTOMER_ERASURE", "reason": "x", CPF_SHOWN: 1}, {}),
    ("field name (customer code)", "supervisor", "POST", "/v1/contacts/{a1}/holds", {"case_reference": "c", CODE: 1},
     {}),
    ("field value", "analyst", "POST", "/v1/requests", {"cpf": WRONG}, {}),
    ("field value in an erasure", "compliance", "POST", "/v1/approvals",
     {"action": "CUSTOMER_ERASURE", "reason": "x", "cpf": WRONG}, {}),
    ("hold id", "supervisor", "POST", "/v1/contacts/{a1}/holds/" + CPF + "/release", {"reason": "x"}, {}),
    ("hold id (punctuated)", "supervisor", "POST", "/v1/contacts/{a1}/holds/" + CPF_SHOWN + "/release",
     {"reason": "x"}, {}),
    ("hold id (customer code)", "supervisor", "POST", "/v1/contacts/{a1}/holds/" + CODE + "/release",
     {"reason": "x"}, {}),
    ("recording id", "analyst", "GET", "/v1/contacts/{a1}/recordings/" + CPF, None, {"purpose": "customer asked"}),
    ("recording id (customer code)", "analyst", "GET", "/v1/contacts/{a1}/recordings/" + CODE, None,
     {"purpose": "customer asked"}),
    ("protocol number", "analyst", "GET", "/v1/contacts/" + CPF, None, {}),
    ("protocol number (punctuated)", "analyst", "GET", "/v1/contacts/" + CPF_SHOWN, None, {}),
    ("request id", "analyst", "GET", "/v1/requests/" + CPF, None, {}),
    ("approval id", "compliance", "POST", "/v1/approvals/" + CPF + "/grant", {}, {}),
    ("query value", "compliance", "GET", "/v1/contacts", None, {"cpf": WRONG, "purpose": "audit"}),
    ("query customer code", "compliance", "GET", "/v1/contacts", None,
     {"customer_code": CODE, "opened_from": "2026-02-01T00:00:00Z", "opened_to": "2026-01-01T00:00:00Z"}),
    ("access-log cpf", "compliance", "GET", "/v1/access-log", None, {"cpf": WRONG}),
    ("login name", "customer", "POST", "/v1/auth/login", {"name": CPF, "password": "x"}, {}),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "params"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_no_error_echoes_a_cpf_or_a_customer_code(api: RunningApi, who: str, method: str, path: str,
                                                  body: dict[str, Any] | None, params: dict[str, str]) -> None:
    with api.client(who) as c:
        r = c.request(method, path.format(**api.protocols), json=body, params=params)
    assert 400 <= r.status_code < 500, r.text
    assert not LEAKS.search(r.text), r.text
