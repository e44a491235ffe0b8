"""The console for people: ``/`` leads to it, protocol numbers read as they are said aloud
(``2026 00000 00001 6``) wherever a person reads one, and typed with any spacing they are
found, in the console and in the API's search."""

from __future__ import annotations

import re

from api_world import RunningApi
from test_console_forms import session

from protocolo.core.protocol_number import format_protocol_number


def _spaced(number: str, space: str) -> str:
    return space.join((number[:4], number[4:9], number[9:14], number[14:]))


def test_the_root_leads_to_the_console(api: RunningApi) -> None:
    with api.client() as client:
        answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/console"


def test_console_pages_show_numbers_grouped_and_find_them_typed_with_any_spacing(api: RunningApi) -> None:
    number = api.protocols["a1"]
    grouped = format_protocol_number(number)
    assert grouped == _spaced(number, " ")  # the documented grouping, written out
    with session(api, "supervisor", "pw-supervisor") as client:
        page = client.get(f"/console/contacts/{number}")
        assert page.status_code == 200
        title = re.search(r"<h1>(.*?)</h1>", page.text, re.S)
        assert title and grouped in title.group(1), title
        found = client.get("/console/search", params={"protocol_number": _spaced(number, "\u00a0")})
        assert found.status_code == 200
        assert f">{grouped}</a>" in found.text and f'href="/console/contacts/{number}"' in found.text
        queue = client.get("/console/queue")
        bare = re.findall(r">(\d{15})</a>", queue.text)
        assert bare == [], f"bare 15-digit numbers on the queue page: {bare}"


def test_the_api_search_takes_any_spacing(api: RunningApi) -> None:
    number = api.protocols["a1"]
    with api.client("analyst") as client:
        for typed in (_spaced(number, "  "), _spaced(number, "\t"), _spaced(number, "\u200b")):
            answer = client.get("/v1/contacts", params={"protocol_number": typed})
            assert answer.status_code == 200, answer.text
            assert [c["protocol_number"] for c in answer.json()["items"]] == [number]
