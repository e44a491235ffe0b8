"""No console page offers a link its reader may not follow, and a refusal is a page in the
reader's language inside the normal layout (navigation included).

Every role walks the console from ``/console`` following every link and GET form target a
page shows (breadth first, each page once): none answers 403. Then each role opens every
page it was not offered: each refusal is in Portuguese (or English after the language
switch), names the role in that language and carries the navigation bar.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest

from protocolo.attestation.export_writer import ExportRequest
from protocolo.cli.export import make_export

try:
    from api_world import REGULATOR_NAME
except ImportError:
    from api.api_world import REGULATOR_NAME  # type: ignore[no-redef]

STAFF = ("analyst", "supervisor", "compliance", "regulator", "customer")
HREF = re.compile(r'<a [^>]*href="([^"]+)"')
PAGES = ("/console/search", "/console/queue", "/console/approvals", "/console/regulator",
         "/console/my/requests", "/console/my/requests/new")
SKIPPED = ("/console/language", "/console/static", "/console/login")


@pytest.fixture(scope="module")
def with_documents(api, tmp_path_factory):  # type: ignore[no-untyped-def]
    with api.client("supervisor") as c:  # the queue then links a contact
        asked = c.post("/v1/requests", json={"protocol_number": api.protocols["a1"]})
        assert asked.status_code == 201, asked.text
    api.settle()
    until = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    make_export(api.runtime, ExportRequest(until - timedelta(days=1), until, REGULATOR_NAME, "carla"),
                tmp_path_factory.mktemp("links") / "export")
    return api


def _links(html: str) -> list[str]:
    found = [unescape(h) for h in HREF.findall(html)]
    return [h for h in found if h.startswith("/console") and not h.startswith(SKIPPED)]


def _walk(api, who: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    seen: dict[str, int] = {}
    queue = deque(["/console"])
    with api.client(who, follow_redirects=True) as c:
        while queue and len(seen) < 60:
            href = queue.popleft()
            if href in seen:
                continue
            answer = c.get(href)
            seen[href] = answer.status_code
            if answer.headers.get("content-type", "").startswith("text/html"):
                queue.extend(h for h in _links(answer.text) if h not in seen)
    return seen


@pytest.mark.parametrize("who", STAFF)
def test_every_link_a_page_offers_can_be_followed(with_documents, who: str) -> None:  # type: ignore[no-untyped-def]
    seen = _walk(with_documents, who)
    assert len(seen) > 1, f"{who} was offered no page at all"
    refused = {href: status for href, status in seen.items() if status == 403}
    assert refused == {}, f"{who} was offered links it may not follow"
    if who == "regulator":
        assert any(h.startswith("/console/regulator/documents/") for h in seen), "its export is offered"
        assert not any(h.startswith(("/console/contacts", "/console/queue")) for h in seen)


@pytest.mark.parametrize("who", STAFF)
def test_a_refusal_is_a_page_in_the_readers_language_with_the_navigation(with_documents, who: str) -> None:  # type: ignore[no-untyped-def]
    api = with_documents
    offered = set(_walk(api, who))
    closed = [p for p in (*PAGES, f"/console/contacts/{api.protocols['a1']}") if p not in offered]
    assert closed, f"{who} may open every page?"
    with api.client(who) as c, api.client(who, cookies={"protocolo_lang": "en"}) as english:
        for path in closed:
            pt = c.get(path)
            en = english.get(path)
            assert pt.status_code == 403 and en.status_code == 403, (path, pt.status_code)
            assert 'lang="pt-BR"' in pt.text and "Navegação principal" in pt.text, path
            assert "may not" not in pt.text and "[rule:" not in pt.text, path
            assert "permite" in pt.text
            assert 'lang="en"' in en.text and "Main navigation" in en.text, path
            assert f"The role {who} may not open this page" in en.text, path
