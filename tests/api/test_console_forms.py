"""The console's forms over plain HTTP with a session (no browser needed for these): the
CSRF field, bad input answered on the page with the field and publishing nothing, the
audited unmask, no open redirect after login, the language switch."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest
from api_world import CPF_A, RunningApi


@contextlib.contextmanager
def session(api: RunningApi, name: str, password: str) -> Iterator[httpx.Client]:
    with api.client() as client:
        answer = client.post("/console/login", data={"name": name, "password": password, "then": "/console/search"})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/search", answer.text[:300]
        # the cookies are Secure; this test speaks plain HTTP to 127.0.0.1, so send them by hand
        jar = {c.name: c.value for c in client.cookies.jar}
        assert {"protocolo_session", "protocolo_csrf"} <= set(jar)
        client.cookies.clear()
        client.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        yield client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


@pytest.fixture(scope="module")  # one login: the login rate limit counts per address
def customer(api: RunningApi) -> Iterator[httpx.Client]:
    with session(api, "customer", "pw-customer") as client:
        yield client


def test_a_form_post_needs_its_session_csrf_token(api: RunningApi, customer: httpx.Client) -> None:
    before = api.log_end()
    form = customer.get("/console/my/requests/new")
    assert form.status_code == 200
    body = {"protocol_number": api.protocols["a1"], "delivery_channel": "EMAIL"}
    assert customer.post("/console/my/requests", data=body).status_code == 403
    assert customer.post("/console/my/requests", data={**body, "csrf_token": "ps_x.forged"}).status_code == 403
    assert api.log_end() == before
    filed = customer.post("/console/my/requests", data={**body, "csrf_token": csrf_of(form.text)})
    assert filed.status_code == 303 and filed.headers["location"].startswith("/console/my/requests/")


@pytest.mark.parametrize(("body", "field"), [
    ({"cpf": "111.444.777-36", "day": "2026-01-02"}, "cpf"),             # wrong check digit
    ({"cpf": "123.456.789-09", "day": "2026-01-02"}, "cpf"),             # somebody else's CPF
    ({"cpf": CPF_A, "day": "2026-13-45"}, "day"),                         # not a date
    ({"cpf": CPF_A}, "day"),                                              # no date, no protocol
    ({"protocol_number": "<script>alert(1)</script>"}, "protocol_number"),
    ({"protocol_number": "9" * 500}, "protocol_number"),                  # oversized
    ({"cpf": "111.444.777-35\x00", "day": "2026-01-02"}, "cpf"),          # a NUL PostgreSQL cannot hold
])
def test_bad_input_is_answered_on_the_page_and_publishes_nothing(
        api: RunningApi, customer: httpx.Client, body: dict[str, str], field: str) -> None:
    before = api.log_end()
    token = csrf_of(customer.get("/console/my/requests/new").text)
    answer = customer.post("/console/my/requests", data={**body, "csrf_token": token})
    assert answer.status_code == 422, answer.text[:300]
    assert 'role="alert"' in answer.text and field in answer.text
    assert "<script>alert(1)</script>" not in answer.text  # escaped, never markup
    assert api.log_end() == before


def test_unmasking_needs_a_purpose_and_is_recorded(api: RunningApi) -> None:
    number = api.protocols["a1"]
    with session(api, "supervisor", "pw-supervisor") as client:
        masked = client.get(f"/console/contacts/{number}", params={"unmask": "true"})
        assert masked.status_code == 200 and 'role="alert"' in masked.text and CPF_A not in masked.text
        shown = client.get(f"/console/contacts/{number}", params={"unmask": "true", "purpose": "processo 123"})
        customer_line = re.search(r"<dt>Cliente</dt>\s*<dd>(.*?)</dd>", shown.text, re.S)
        assert shown.status_code == 200 and customer_line, shown.text[:500]
        assert CPF_A in customer_line.group(1), customer_line.group(1)
    api.settle()
    rows = api.query("SELECT actor, purpose FROM access_log WHERE action = 'UNMASK' AND protocol_number = %s", number)
    assert rows == [("supervisor", "processo 123")]


def test_login_never_sends_the_browser_to_another_site(api: RunningApi) -> None:
    with api.client() as client:
        answer = client.post("/console/login", data={"name": "analyst", "password": "pw-analyst",
                                                     "then": "https://evil.example/console"})
        assert answer.status_code == 303 and answer.headers["location"] == "/console"
        wrong = client.post("/console/login", data={"name": "analyst", "password": "nope"})
        assert wrong.status_code == 401 and 'role="alert"' in wrong.text


def test_the_language_switch_changes_every_word_of_the_page(api: RunningApi) -> None:
    with api.client() as client:
        assert "Entrar" in client.get("/console/login").text
        switched = client.get("/console/language", params={"lang": "en", "then": "//evil.example"})
        assert switched.status_code == 303 and switched.headers["location"] == "/console"
        page = client.get("/console/login")
        assert page.headers["content-language"] == "en" and "Log in" in page.text and "Entrar" not in page.text
