"""Compliance orders exports and reports from the console: the order runs in the
background, a progress page refreshes itself (no JavaScript) until it is done, and the
export chain page shows each export's manifest SHA-256 and the previous one's, checked
here with hashlib against the manifest files written on disk."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import date
from pathlib import Path

import pytest

from protocolo.cli.report import document_maker

REFRESH = '<meta http-equiv="refresh"'


@pytest.fixture(scope="module")
def console_api(api):  # type: ignore[no-untyped-def]
    api.services.documents.maker = document_maker(api.runtime)  # what `protocolo serve` sets
    api.settle()
    return api


def _order(api, kind: str, regulator: str) -> str:  # type: ignore[no-untyped-def]
    today = date.today().isoformat()
    with api.client("compliance") as c:
        ordered = c.post("/console/exports", data={"kind": kind, "regulator": regulator,
                                                    "period_from": "2026-01-01", "period_to": today})
        assert ordered.status_code == 303, ordered.text[:500]
        job = ordered.headers["location"]
        deadline = time.monotonic() + 120
        while True:
            shown = c.get(job)
            assert shown.status_code == 200
            if REFRESH not in shown.text or time.monotonic() > deadline:
                return shown.text
            time.sleep(1)


def _manifest_sha(api, regulator: str) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    """(manifest SHA-256 of the file on disk, the previous SHA-256 the manifest names), oldest first."""
    rows = api.query("SELECT location FROM regulator_documents WHERE regulator = %s AND kind = 'export'"
                     " ORDER BY made_at", regulator)
    found = []
    for (location,) in rows:
        data = (Path(location) / "manifest.json").read_bytes()
        previous = re.search(rb'"previous"\s*:\s*\{[^}]*"manifest_sha256"\s*:\s*"([0-9a-f]{64})"', data)
        found.append((hashlib.sha256(data).hexdigest(), previous.group(1).decode() if previous else None))
    return found


def test_compliance_makes_exports_and_a_report_and_sees_the_chain(console_api) -> None:  # type: ignore[no-untyped-def]
    api = console_api
    first = _order(api, "export", "procon-sp")
    assert "pronto e verificado" in first and "Navegação principal" in first, first[:800]
    second = _order(api, "export", "procon-sp")
    assert "pronto e verificado" in second
    report = _order(api, "report", "procon-sp")
    assert "pronto e verificado" in report
    chain = _manifest_sha(api, "procon-sp")
    assert len(chain) == 3
    with api.client("compliance") as c:
        page = c.get("/console/exports").text
    for sha, _previous in chain:
        assert sha in page
    assert chain[1][1] == chain[0][0] and chain[2][1] == chain[1][0], "each names the one before"
    with api.client("regulator") as c:  # made for procon-sp: not the anatel regulator's
        listed = c.get("/v1/regulator/documents").json()
    assert not any(d["regulator"] == "procon-sp" for d in listed)


def test_a_bad_order_is_refused_naming_the_field_and_starts_nothing(console_api) -> None:  # type: ignore[no-untyped-def]
    api = console_api
    before = len(api.services.documents.recent())
    with api.client("compliance") as c:
        bad = c.post("/console/exports", data={"kind": "export", "regulator": "Not A Name",
                                               "period_from": "2026-01-01", "period_to": "2026-01-02"})
        backwards = c.post("/console/exports", data={"kind": "report", "regulator": "anatel",
                                                     "period_from": "2026-02-01", "period_to": "2026-01-01"})
    assert bad.status_code == 422 and "regulator" in bad.text
    assert backwards.status_code == 422 and "period_to" in backwards.text
    assert len(api.services.documents.recent()) == before
