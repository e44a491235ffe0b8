"""``protocolo user add|token|revoke``: the secret printed once works against the running
API; revoking it locks it out; bad input is one line, no traceback."""

from __future__ import annotations

import re
import time

import pytest
from api_world import CPF_A, RunningApi

from protocolo.cli import main


@pytest.fixture
def cli_env(api: RunningApi, monkeypatch: pytest.MonkeyPatch) -> None:
    s = api.runtime.settings
    monkeypatch.setenv("PROTOCOLO_HOME", str(s.home))  # the same deployment keys (blind index)
    monkeypatch.setenv("PROTOCOLO_KAFKA_BOOTSTRAP", s.kafka_bootstrap or "")
    monkeypatch.setenv("PROTOCOLO_DATABASE_URL", s.database_url or "")
    monkeypatch.setenv("PROTOCOLO_TOPIC", s.topic)
    monkeypatch.setenv("PROTOCOLO_DEV_KEYS", "1")


def test_user_add_prints_a_working_token_once_and_revoke_locks_it_out(
        api: RunningApi, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "add", "--name", "maria.cliente", "--role", "customer", "--cpf", CPF_A]) == 0
    out = capsys.readouterr().out
    token = re.search(r"token:\s+(\S+)", out)
    password = re.search(r"password:\s+(\S+)", out)
    assert token and password
    with api.client() as c:
        me = c.get("/v1/me", headers={"Authorization": f"Bearer {token[1]}"})
        assert me.json()["role"] == "customer"
        # the password opens a console session (cookie + CSRF token)
        login = c.post("/v1/auth/login", json={"name": "maria.cliente", "password": password[1]})
        assert login.status_code == 200 and login.json()["csrf_token"]
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert api.query("SELECT count(*) FROM api_credentials WHERE secret_hash LIKE %s",
                     f"%{token[1].split('.')[1]}%") == [(0,)]  # stored hashed only
    assert main(["user", "revoke", token[1].split(".")[0]]) == 0
    with api.client() as c:
        assert c.get("/v1/me", headers={"Authorization": f"Bearer {token[1]}"}).status_code == 401


def test_bad_input_is_one_line(api: RunningApi, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "add", "--name", "x y", "--role", "analyst"]) == 2
    assert main(["user", "add", "--name", "ana", "--role", "customer"]) == 2  # a customer needs a CPF
    assert main(["user", "add", "--name", "ana2", "--role", "customer", "--cpf", "111.111.111-11"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line.split(":")[0] for line in err.strip().splitlines()] == ["protocolo"] * 3


def test_session_cookie_needs_the_csrf_token_for_writes(api: RunningApi) -> None:
    with api.client() as c:
        login = c.post("/v1/auth/login", json={"name": "supervisor", "password": "pw-supervisor"})
        session = login.headers["set-cookie"].split(";")[0]
        headers = {"Cookie": session}
        assert c.get("/v1/me", headers=headers).json()["user_name"] == "supervisor"
        start = api.log_end()
        body = {"case_reference": "proc-1"}
        path = f"/v1/contacts/{api.protocols['a1']}/holds"
        refused = c.post(path, json=body, headers=headers)
        assert refused.status_code == 403 and "csrf" in refused.json()["detail"]
        assert c.post(path, json=body, headers={**headers, "X-CSRF-Token": "wrong"}).status_code == 403
        assert api.log_end() == start
        placed = c.post(path, json=body, headers={**headers, "X-CSRF-Token": login.json()["csrf_token"]})
        assert placed.status_code == 201
        assert c.post("/v1/auth/logout", headers={**headers, "X-CSRF-Token": login.json()["csrf_token"]}
                      ).status_code == 204
        assert c.get("/v1/me", headers=headers).status_code == 401  # the session is revoked


def test_login_is_rate_limited(api: RunningApi) -> None:
    with api.client() as c:
        statuses = [c.post("/v1/auth/login", json={"name": "analyst", "password": "wrong"}).status_code
                    for _ in range(15)]
    assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429


def test_serve_refuses_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "localhost"]) == 2
    assert "is not HOST:PORT" in capsys.readouterr().err


def test_the_customer_channel_is_rate_limited(api: RunningApi) -> None:
    """20 requests at once, then 30 a minute (CUSTOMER_RATE); the refused one publishes nothing."""
    from protocolo.api.services import CUSTOMER_RATE

    with api.client("customer") as c:
        accepted, began = 0, time.monotonic()
        while True:  # the bucket refills meanwhile (slow requests on a busy machine let more pass)
            start = api.log_end()
            refused = c.post("/v1/requests", json={"protocol_number": api.protocols["a2"]})
            if refused.status_code != 201:
                break
            accepted += 1
            refilled = (time.monotonic() - began) * CUSTOMER_RATE.per_minute / 60
            assert accepted <= CUSTOMER_RATE.burst + refilled + 1, "never rate limited"
    assert accepted >= CUSTOMER_RATE.burst
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert api.log_end() == start
    with api.client("other-customer") as c:  # per customer: the other one is not held back
        assert c.post("/v1/requests", json={"cpf": "123.456.789-09", "window_from": "2024-01-01T00:00:00Z",
                                            "window_to": "2031-01-01T00:00:00Z"}).status_code == 201


def test_a_regulator_user_is_added_with_its_regulator(api: RunningApi, cli_env: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "add", "--name", "fiscal.sem", "--role", "regulator"]) == 2
    assert main(["user", "add", "--name", "ana.reg", "--role", "analyst", "--regulator", "anatel"]) == 2
    assert main(["user", "add", "--name", "fiscal.maiusc", "--role", "regulator", "--regulator", "Anatel"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("--regulator") == 3, err
    assert main(["user", "add", "--name", "fiscal.1", "--role", "regulator", "--regulator", "senacon"]) == 0
    out = capsys.readouterr().out
    assert "(regulator, senacon)" in out
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("token:"))
    assert api.query("SELECT regulator FROM api_users WHERE user_name = 'fiscal.1'") == [("senacon",)]
    assert api.query("SELECT count(*) FROM api_users WHERE user_name IN ('fiscal.sem', 'ana.reg', 'fiscal.maiusc')"
                     ) == [(0,)]
    with api.client() as c:
        listed = c.get("/v1/regulator/documents", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200 and listed.json() == []  # nothing made for senacon here
