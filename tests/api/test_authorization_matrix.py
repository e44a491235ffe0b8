"""The authorization matrix: every route x every role (and no token, an expired token, a
revoked token, another customer's token), from ONE table.

``ROUTES`` says, per route, who may call it and what an allowed caller gets for the
sample request (write routes are sent an invalid body, so an allowed caller gets 422 and
nothing is published; a denied one gets 403 first, an unauthenticated one 401, or for a
console page 303 to the login page). A route
of the application missing from the table fails ``test_every_route_is_in_the_table``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from protocolo import permission_docs
from protocolo.api.roles import Role
from protocolo.app_assembly import ROUTERS, create_app

ANALYST, SUPERVISOR, COMPLIANCE, REGULATOR, SERVICE, CUSTOMER = (
    "analyst", "supervisor", "compliance", "regulator", "service", "customer")
OTHER_CUSTOMER = "other-customer"
ROLES = (ANALYST, SUPERVISOR, COMPLIANCE, REGULATOR, SERVICE, CUSTOMER)
ANONYMOUS, EXPIRED, REVOKED = "no token", "expired", "revoked"
PRINCIPALS = (*ROLES, OTHER_CUSTOMER, ANONYMOUS, EXPIRED, REVOKED)
PUBLIC = frozenset(PRINCIPALS)
ANY_USER = frozenset({*ROLES, OTHER_CUSTOMER})
CUSTOMERS = frozenset({CUSTOMER, OTHER_CUSTOMER})
STAFF_READERS = frozenset({ANALYST, SUPERVISOR, COMPLIANCE})


@dataclass(frozen=True)
class Case:
    allowed: frozenset[str]
    ok: int                                  # what an allowed caller gets for the sample
    body: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)  # principal -> status


INVALID = {"unexpected": "field"}


def console(allowed: frozenset[str], ok: int, body: dict[str, Any] | None = None,
            exceptions: dict[str, int] | None = None) -> Case:
    """A console page: like an API route, except that no valid credential means the login page."""
    return Case(allowed, ok, body, exceptions={ANONYMOUS: 303, EXPIRED: 303, REVOKED: 303, **(exceptions or {})})


ROUTES: dict[tuple[str, str], Case] = {
    ("GET", "/"): Case(PUBLIC, 303),  # to the console
    ("GET", "/healthz"): Case(PUBLIC, 200),
    ("GET", "/readyz"): Case(PUBLIC, 200),
    ("GET", "/metrics"): Case(PUBLIC, 200),
    ("GET", "/openapi.json"): Case(PUBLIC, 200),
    ("GET", "/docs"): Case(PUBLIC, 200),
    ("GET", "/docs/oauth2-redirect"): Case(PUBLIC, 200),
    ("GET", "/redoc"): Case(PUBLIC, 200),
    ("POST", "/v1/auth/login"): Case(PUBLIC, 422, body=INVALID),
    ("POST", "/v1/auth/logout"): Case(ANY_USER, 204),
    ("GET", "/v1/me"): Case(ANY_USER, 200),
    ("GET", "/v1/contacts"): Case(STAFF_READERS, 200),
    ("GET", "/v1/contacts/{protocol_number}"): Case(STAFF_READERS, 200),
    ("GET", "/v1/contacts/{protocol_number}/recordings/{recording_id}"):
        Case(frozenset({ANALYST, SUPERVISOR}), 422),  # no purpose given: refused before anything is recorded
    ("GET", "/v1/contacts/{protocol_number}/proof"):
        Case(STAFF_READERS, 422),  # no purpose given: refused before anything is written
    ("GET", "/v1/customers/me/proof"): Case(CUSTOMERS, 409),  # this world has no checkpoint yet
    ("GET", "/v1/customers/proof"):
        Case(STAFF_READERS, 422),  # no purpose given: refused before anything is written
    ("POST", "/v1/contacts/{protocol_number}/holds"): Case(frozenset({SUPERVISOR, COMPLIANCE}), 422, INVALID),
    ("POST", "/v1/contacts/{protocol_number}/holds/{hold_id}/release"):
        Case(frozenset({SUPERVISOR, COMPLIANCE}), 422, INVALID),
    ("GET", "/v1/requests"): Case(frozenset({*STAFF_READERS, REGULATOR, *CUSTOMERS}), 200),
    ("POST", "/v1/requests"): Case(frozenset({ANALYST, SUPERVISOR, *CUSTOMERS}), 422, INVALID),
    ("GET", "/v1/requests/{request_id}"): Case(frozenset({*STAFF_READERS, REGULATOR, *CUSTOMERS}), 200,
                                               exceptions={OTHER_CUSTOMER: 404}),
    ("POST", "/v1/requests/{request_id}/locate"): Case(frozenset({ANALYST, SUPERVISOR}), 422, INVALID),
    ("POST", "/v1/requests/{request_id}/fulfil"): Case(frozenset({ANALYST, SUPERVISOR}), 422, INVALID),
    ("POST", "/v1/requests/{request_id}/reject"): Case(frozenset({ANALYST, SUPERVISOR}), 422, INVALID),
    ("POST", "/v1/approvals"): Case(frozenset({SUPERVISOR, COMPLIANCE}), 422, INVALID),
    ("GET", "/v1/approvals"): Case(frozenset({SUPERVISOR, COMPLIANCE}), 200),
    ("GET", "/v1/approvals/{approval_id}"): Case(frozenset({SUPERVISOR, COMPLIANCE}), 404),
    ("POST", "/v1/approvals/{approval_id}/grant"): Case(frozenset({COMPLIANCE}), 404, body={}),
    ("POST", "/v1/approvals/{approval_id}/deny"): Case(frozenset({COMPLIANCE}), 422, INVALID),
    ("GET", "/v1/access-log"): Case(frozenset({COMPLIANCE, REGULATOR}), 200),
    ("GET", "/v1/me/access-log"): Case(CUSTOMERS, 200),
    ("POST", "/v1/events"): Case(frozenset({SERVICE}), 422, INVALID),
    # The console (protocolo/console): the same rule, answered as pages. Without a valid
    # credential a page sends the caller to the login page (303) instead of 401.
    ("GET", "/console/login"): Case(PUBLIC, 200),
    ("POST", "/console/login"): Case(PUBLIC, 422, body=INVALID),
    ("GET", "/console/language"): Case(PUBLIC, 303),
    ("GET", "/console/static/console.css"): Case(PUBLIC, 200),
    ("POST", "/console/logout"): console(ANY_USER, 303, INVALID),
    ("GET", "/console"): console(ANY_USER, 303, exceptions={SERVICE: 200}),  # 303: to the role's first page
    ("GET", "/console/search"): console(STAFF_READERS, 200),
    ("GET", "/console/contacts/{protocol_number}"): console(STAFF_READERS, 200),
    ("GET", "/console/contacts/{protocol_number}/proof"): console(STAFF_READERS, 422),  # no purpose: refused
    ("POST", "/console/contacts/{protocol_number}/recordings/{recording_id}/early-deletion"):
        console(frozenset({SUPERVISOR, COMPLIANCE}), 422, INVALID),
    ("GET", "/console/queue"): console(frozenset({*STAFF_READERS, REGULATOR}), 200),
    ("GET", "/console/approvals"): console(frozenset({SUPERVISOR, COMPLIANCE}), 200),
    ("POST", "/console/approvals/{approval_id}/grant"): console(frozenset({COMPLIANCE}), 404, INVALID),
    ("POST", "/console/approvals/{approval_id}/deny"): console(frozenset({COMPLIANCE}), 422, INVALID),
    ("GET", "/console/my/requests/new"): console(CUSTOMERS, 200),
    ("POST", "/console/my/requests"): console(CUSTOMERS, 422, INVALID),
    ("GET", "/console/my/requests"): console(CUSTOMERS, 200),
    ("GET", "/console/my/proof"): console(CUSTOMERS, 409),  # this world has no checkpoint yet
    ("GET", "/console/my/requests/{request_id}"): console(CUSTOMERS, 200, exceptions={OTHER_CUSTOMER: 404}),
}


def application_routes() -> set[tuple[str, str]]:
    """The app's own routes (OpenAPI, docs) and every route of every router it includes."""
    app = create_app()
    routes = [r for r in app.routes if isinstance(r, Route)]
    routes += [r for router in ROUTERS for r in router.routes]
    assert len(app.routes) == len([r for r in app.routes if isinstance(r, Route)]) + len(ROUTERS), (
        "the app includes something that is not in protocolo.app_assembly.ROUTERS")
    found = set()
    for route in routes:
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def expected(case: Case, who: str) -> int:
    if who in case.exceptions:
        return case.exceptions[who]
    if who in case.allowed:
        return case.ok
    return 401 if who in (ANONYMOUS, EXPIRED, REVOKED) else 403


def test_every_route_is_in_the_table() -> None:
    routes = application_routes()
    assert routes - set(ROUTES) == set(), "routes without a row in the authorization matrix"
    assert set(ROUTES) - routes == set(), "rows of the matrix for routes that do not exist"


def test_the_roles_reach_no_route_beyond_the_matrix() -> None:
    """Computed from the code alone (each route's required permissions, the one role
    table): a permission added to a role, or a route's rule loosened, changes some route's
    roles and fails here, before any request is sent."""
    rules = permission_docs.route_rules()
    assert rules, "no route declares a permission"
    computed = {(r.method, r.path): {role.value for role in Role if r.allows(role)} for r in rules}
    specified = {key: set(ROUTES[key].allowed) & set(ROLES) for key in computed}
    assert computed == specified


def test_the_docs_permission_tables_are_the_codes() -> None:
    """docs/api.md carries the role x permission and route x permission tables generated
    from the code; regenerate with ``python -m protocolo.permission_docs``."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert permission_docs.markdown() in docs, (
        "docs/api.md's permission tables differ from the code: run python -m protocolo.permission_docs")


@pytest.fixture(scope="module")
def path_values(api) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with api.client(SUPERVISOR) as c:
        created = c.post("/v1/requests", json={"protocol_number": api.protocols["a1"]})
        assert created.status_code == 201, created.text
    return {"protocol_number": api.protocols["a1"], "recording_id": api.recordings["a1"],
            "request_id": created.json()["request_id"], "hold_id": "hold-none",
            "approval_id": str(uuid.uuid4())}


CELLS = [(method, path, who) for (method, path) in ROUTES for who in PRINCIPALS]


@pytest.mark.parametrize(("method", "path", "who"), CELLS,
                         ids=[f"{m} {p} as {w}" for m, p, w in CELLS])
def test_matrix_cell(api, path_values, method: str, path: str, who: str) -> None:  # type: ignore[no-untyped-def]
    case = ROUTES[(method, path)]
    token = None if who == ANONYMOUS else api.tokens[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with api.client() as c:
        response = c.request(method, path.format(**path_values), headers=headers, params=case.params,
                             json=case.body if method == "POST" else None)
    assert response.status_code == expected(case, who), response.text[:300]
