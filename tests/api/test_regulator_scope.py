"""A regulator user is scoped to its regulator: the exports and reports made for it (list,
download, each download an access on the ledger) and the proof bundles of the contacts a
report given to it names; another regulator's documents and any other contact are
answered as unknown, and the queue and the access log are closed to it (the matrix).

Made for real: exports and a report written by the same code as ``protocolo export`` and
``protocolo report`` over the module's ledger (real Kafka and PostgreSQL); downloads are
checked against the files on disk with hashlib and tarfile, not with the project's code.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocolo.attestation.export_writer import ExportRequest
from protocolo.cli.export import make_export
from protocolo.cli.report import make_report
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

try:
    from api_world import REGULATOR_NAME
except ImportError:
    from api.api_world import REGULATOR_NAME  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def made(api, tmp_path_factory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """An export for the regulator's own regulator, one for another, and a JSON report for
    its own; then a contact opened after the report (named by no report)."""
    api.settle()
    out = tmp_path_factory.mktemp("regulator-docs")
    since = datetime.now(UTC) - timedelta(days=1)
    until = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    own = make_export(api.runtime, ExportRequest(since, until, REGULATOR_NAME, "carla"), out / "own")
    other = make_export(api.runtime, ExportRequest(since, until, "senacon", "carla"), out / "other")
    report_file = out / "report.json"
    report_export, report_id = make_report(api.runtime, since, until, report_file, "json", REGULATOR_NAME, "carla")
    later = ProtocolIssuer(api.runtime.registry_url).issue()
    publisher = api.runtime.publisher("test-regulator")
    try:
        publisher.publish_many([Event("ContactOpened", {
            "channel": "CHAT", "direction": "INBOUND", "service_type": "MOBILE",
            "customer": {"cpf": "52998224725", "customer_code": "C-late", "name": "Tarde"},
            "agent_id": "agent-007", "subject": "depois", "recorded": False, "language": "pt-BR"},
            protocol_number=later)])
    finally:
        publisher.close()
    api.settle()
    return {"own": own, "own_dir": out / "own", "other": other, "report_file": report_file,
            "report_id": report_id, "report_export": report_export, "later": later}


def _files(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in directory.rglob("*") if p.is_file()}


def _named_in(report: Any) -> set[str]:
    """The protocol numbers the report's figures list as breaking a rule (read from its JSON)."""
    named: set[str] = set()
    for group in report["groups"]:
        for figure in group["figures"]:
            named |= {e["protocol_number"] for e in figure["broken_by"] if e.get("protocol_number")}
    return named


def test_a_regulator_lists_only_what_was_made_for_its_regulator(api, made) -> None:  # type: ignore[no-untyped-def]
    with api.client("regulator") as c:
        listed = c.get("/v1/regulator/documents")
    assert listed.status_code == 200, listed.text
    ids = {d["document_id"] for d in listed.json()}
    assert ids == {made["own"].export_id, made["report_export"].export_id, made["report_id"]}
    assert made["other"].export_id not in ids
    assert {d["regulator"] for d in listed.json()} == {REGULATOR_NAME}


def test_downloads_are_the_files_and_each_is_an_access_on_the_ledger(api, made) -> None:  # type: ignore[no-untyped-def]
    with api.client("regulator") as c:
        export = c.get(f"/v1/regulator/documents/{made['own'].export_id}", params={"purpose": "fiscalização 2026"})
        report = c.get(f"/v1/regulator/documents/{made['report_id']}")
        foreign = c.get(f"/v1/regulator/documents/{made['other'].export_id}")
    assert export.status_code == 200, export.text
    assert export.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(export.content)) as tar:
        got = {m.name.split("/", 1)[1]: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
               for m in tar.getmembers() if m.isfile()}
    assert got == _files(made["own_dir"]) and "manifest.json" in got
    assert report.status_code == 200 and report.content == made["report_file"].read_bytes()
    assert foreign.status_code == 404 and "senacon" not in foreign.text
    api.settle()
    with api.client("compliance") as c:
        log = c.get("/v1/access-log", params={"actor": "regulator"})
    assert log.status_code == 200, log.text
    downloads = [r for r in log.json() if r["action"] == "EXPORT_DOWNLOAD"]
    targets = {r["target"] for r in downloads}
    assert f"export {made['own'].export_id} for {REGULATOR_NAME}" in targets
    assert f"report {made['report_id']} for {REGULATOR_NAME}" in targets
    assert not any(made["other"].export_id in t for t in targets), "a refused download is no access"
    assert {r["role"] for r in downloads} == {"REGULATOR"}
    assert "fiscalização 2026" in {r["purpose"] for r in downloads}


def test_a_regulator_pulls_proofs_of_contacts_its_report_names_and_no_other(api, made) -> None:  # type: ignore[no-untyped-def]
    named = _named_in(json.loads(made["report_file"].read_bytes()))
    assert api.protocols["a1"] in named, "the seeded contacts break a rule: the report names them"
    assert made["later"] not in named
    deadline = time.monotonic() + 60
    with api.client("regulator") as c:
        while True:  # the bundle needs every record under a signed checkpoint (409 until then)
            proof = c.get(f"/v1/contacts/{api.protocols['a1']}/proof", params={"purpose": "auditoria"})
            if proof.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(1)
        unnamed = c.get(f"/v1/contacts/{made['later']}/proof", params={"purpose": "auditoria"})
        contact = c.get(f"/v1/contacts/{api.protocols['a1']}")
        queue = c.get("/v1/requests")
        access_log = c.get("/v1/access-log")
    assert proof.status_code == 200, proof.text
    assert proof.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(proof.content)).testzip()
    assert unnamed.status_code == 404, unnamed.text
    assert (contact.status_code, queue.status_code, access_log.status_code) == (403, 403, 403)


def test_a_regulator_user_needs_its_regulator_and_only_regulators_have_one(api) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from protocolo.api import identities
    from protocolo.api.roles import Role
    from protocolo.core.errors import EventRejected

    with psycopg.connect(api.runtime.registry_url, autocommit=True) as conn:
        with pytest.raises(EventRejected) as missing:
            identities.add_user(conn, "reg-none", Role.REGULATOR, password="x")
        with pytest.raises(EventRejected) as wrong_role:
            identities.add_user(conn, "ana-reg", Role.ANALYST, password="x", regulator="anatel")
        with pytest.raises(EventRejected) as bad_name:
            identities.add_user(conn, "reg-bad", Role.REGULATOR, password="x", regulator="Anatel; DROP")
        made = conn.execute("SELECT count(*) FROM api_users WHERE user_name IN ('reg-none', 'ana-reg', 'reg-bad')"
                            ).fetchone()
    assert (missing.value.field, missing.value.rule) == ("regulator", "required")
    assert (wrong_role.value.field, wrong_role.value.rule) == ("regulator", "regulator-only")
    assert (bad_name.value.field, bad_name.value.rule) == ("regulator", "regulator-name")
    assert made == (0,)


def test_the_regulators_console_gives_the_same_proofs_and_refuses_the_rest_as_a_page(api, made) -> None:  # type: ignore[no-untyped-def]
    with api.client("regulator") as c:
        page = c.get("/console/regulator")
        named = c.get("/console/regulator/proof", params={"protocol_number": api.protocols["a1"],
                                                            "purpose": "auditoria"})
        other = c.get("/console/regulator/proof", params={"protocol_number": made["later"], "purpose": "auditoria"})
    assert page.status_code == 200 and 'action="/console/regulator/proof"' in page.text
    assert named.status_code == 200 and named.headers["content-type"] == "application/zip", named.text[:300]
    assert other.status_code == 404 and "Navegação principal" in other.text and "Não encontrado" in other.text
