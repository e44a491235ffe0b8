"""The edges of the API: login CSRF, who the client is (X-Forwarded-For only from trusted
proxies), a login limiter that a flood of fresh addresses cannot reset, and a customer's
access log that names roles and purposes, not staff logins or addresses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from api_world import RunningApi, free_port

from protocolo.api.rate_limit import Rate, TokenBuckets
from protocolo.api.server import server
from protocolo.api.services import LOGIN_RATE
from protocolo.app_assembly import create_app

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def behind_proxy(api: RunningApi) -> Iterator[str]:
    """The same services served again, configured to trust a proxy on 127.0.0.1."""
    port = free_port()
    with server(create_app(api.services), "127.0.0.1", port, trusted_proxies="127.0.0.1").running():
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("headers", [{"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
                         ids=["origin", "fetch-metadata", "both", "null-origin"])
def test_a_cross_site_login_gets_no_session(api: RunningApi, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=api.base_url, follow_redirects=False) as c:
        api_login = c.post("/v1/auth/login", json={"name": "supervisor", "password": "pw-supervisor"},
                           headers=headers)
        form_login = c.post("/console/login", data={"name": "supervisor", "password": "pw-supervisor"},
                            headers=headers)
    for r in (api_login, form_login):
        assert r.status_code == 403, r.text[:300]
        assert "set-cookie" not in r.headers


def test_a_same_site_login_still_works(api: RunningApi) -> None:
    with httpx.Client(base_url=api.base_url, follow_redirects=False) as c:
        own = {"Origin": api.base_url, "Sec-Fetch-Site": "same-origin"}
        assert c.post("/v1/auth/login", json={"name": "supervisor", "password": "pw-supervisor"},
                      headers=own).status_code == 200
        form = c.post("/console/login", data={"name": "supervisor", "password": "pw-supervisor"}, headers=own)
        assert form.status_code == 303 and "protocolo_session" in form.headers.get("set-cookie", "")


def _unmask(base_url: str, api: RunningApi, forwarded_for: str, purpose: str) -> None:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api.tokens['supervisor']}",
                                                  "X-Forwarded-For": forwarded_for}) as c:
        r = c.get(f"/v1/contacts/{api.protocols['a1']}", params={"unmask": "true", "purpose": purpose})
    assert r.status_code == 200, r.text


def _recorded_address(api: RunningApi, purpose: str) -> str:
    api.settle()
    [(address,)] = api.query("SELECT source_address FROM access_log WHERE purpose = %s", purpose)
    return str(address)


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(api: RunningApi, behind_proxy: str) -> None:
    direct, proxied = f"direct {uuid.uuid4()}", f"proxied {uuid.uuid4()}"
    _unmask(api.base_url, api, "203.0.113.9", direct)
    _unmask(behind_proxy, api, "203.0.113.9", proxied)
    assert _recorded_address(api, direct) == "127.0.0.1"
    assert _recorded_address(api, proxied) == "203.0.113.9"


def test_a_flood_of_fresh_addresses_does_not_reset_an_offender(api: RunningApi, behind_proxy: str) -> None:
    """A bounded flood: the limiter holds 40 keys here; an offender exhausts their logins,
    then 60 forged addresses (through the trusted proxy) each try once. The offender is
    still limited, and the table stays bounded."""
    limit = api.services.login_limit
    # the login burst, refilled so slowly that no bucket refills during the test (the
    # scrypt checks of the flood take seconds: at the real rate the offender would earn a
    # legitimate new attempt meanwhile)
    api.services.login_limit = small = TokenBuckets(Rate(burst=LOGIN_RATE.burst, per_minute=0.001), max_keys=40)
    try:
        with httpx.Client(base_url=behind_proxy) as c:
            def attempt(address: str) -> int:
                return c.post("/v1/auth/login", json={"name": "supervisor", "password": "wrong"},
                              headers={"X-Forwarded-For": address}).status_code
            codes = [attempt("198.51.100.1") for _ in range(LOGIN_RATE.burst + 1)]
            assert codes[-1] == 429 and set(codes[:-1]) == {401}
            flood = [attempt(f"10.9.{i // 250}.{i % 250}") for i in range(60)]
            assert 429 in flood  # the newcomers beyond the bound share one bucket
            assert attempt("198.51.100.1") == 429
            assert len(small) <= 41
    finally:
        api.services.login_limit = limit


def test_a_customer_sees_roles_and_purposes_not_staff_logins_or_addresses(api: RunningApi) -> None:
    purpose = f"dispute {uuid.uuid4()}"
    _unmask(api.base_url, api, "198.51.100.77", purpose)
    api.settle()
    with api.client("customer") as c:
        mine = [r for r in c.get("/v1/me/access-log").json() if r["purpose"] == purpose]
    assert len(mine) == 1
    assert mine[0]["role"] == "SUPERVISOR" and mine[0]["action"] == "UNMASK"
    assert not {"actor", "source_address", "subject_ref"} & set(mine[0])
    with api.client("compliance") as c:  # staff still see who and from where
        staff = [r for r in c.get("/v1/access-log", params={"actor": "supervisor"}).json() if r["purpose"] == purpose]
    assert staff[0]["actor"] == "supervisor" and staff[0]["source_address"] == "127.0.0.1"
