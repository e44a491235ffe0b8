"""The regulator's and compliance's export pages in a real browser (Chromium via
Playwright) against the running server, real Kafka and PostgreSQL.

Compliance orders a report for the regulator from the console and watches the progress
page refresh itself (no JavaScript) until it is done; the export chain shows the manifest
hashes. The regulator then sees only its documents, downloads the export (a tar whose
files are the ones on disk, hashed here) and, typing the queue's address, gets a refusal in
Portuguese inside the normal layout."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from api.api_world import REGULATOR_NAME
from api.conftest import RunningApi
from playwright.sync_api import Browser, BrowserContext, expect

from protocolo.cli.report import document_maker

SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture()
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR", accept_downloads=True)
    try:
        yield ctx
    finally:
        ctx.close()


def log_in(ctx: BrowserContext, api: RunningApi, name: str):  # type: ignore[no-untyped-def]
    page = ctx.new_page()
    page.goto(f"{api.base_url}/console/login")
    page.get_by_label("Usuário").fill(name)
    page.get_by_label("Senha").fill(f"pw-{name}")
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("button", name="Sair")).to_be_visible()
    return page


def test_compliance_orders_a_report_and_the_regulator_downloads_what_was_made_for_it(
        context: BrowserContext, api: RunningApi) -> None:
    api.services.documents.maker = document_maker(api.runtime)  # what `protocolo serve` sets
    api.settle()
    page = log_in(context, api, "compliance")
    page.get_by_role("link", name="Exportações e relatórios").click()
    page.get_by_label("O quê").select_option("report")
    page.get_by_label("Regulador").fill(REGULATOR_NAME)
    page.get_by_label("De (data)").fill("2026-01-01")
    page.get_by_label("Até (data)").fill(date.today().isoformat())
    page.get_by_role("button", name="Fazer").click()
    expect(page.get_by_role("status")).to_contain_text("pronto e verificado", timeout=120_000)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "export-job.png"), full_page=True)
    page.get_by_role("link", name="Exportações e relatórios para reguladores").click()
    ((location,),) = api.query("SELECT location FROM regulator_documents WHERE kind = 'export'"
                               " AND regulator = %s", REGULATOR_NAME)
    manifest_sha = hashlib.sha256((Path(location) / "manifest.json").read_bytes()).hexdigest()
    expect(page.locator("table")).to_contain_text(manifest_sha)
    page.screenshot(path=str(SCREENSHOTS / "export-chain.png"), full_page=True)
    page.get_by_role("button", name="Sair").click()

    regulator = log_in(context, api, "regulator")
    expect(regulator).to_have_url(f"{api.base_url}/console/regulator")
    nav = regulator.get_by_role("navigation", name="Navegação principal")
    expect(nav.get_by_role("link")).to_have_count(1)
    rows = regulator.locator("tbody tr")
    expect(rows).to_have_count(2)  # the report and the export it was computed from
    regulator.screenshot(path=str(SCREENSHOTS / "regulator-documents.png"), full_page=True)
    with regulator.expect_download() as got:
        regulator.get_by_role("link", name=Path(location).name + ".tar").click()
    data = Path(got.value.path()).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        sent = {m.name.split("/", 1)[1]: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}
    on_disk = {p.relative_to(location).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in Path(location).rglob("*") if p.is_file()}
    assert sent == on_disk
    regulator.goto(f"{api.base_url}/console/queue")
    expect(regulator.get_by_role("alert")).to_contain_text("O papel regulador não permite abrir esta página")
    expect(regulator.get_by_role("navigation", name="Navegação principal")).to_be_visible()
    regulator.screenshot(path=str(SCREENSHOTS / "regulator-refused.png"), full_page=True)
