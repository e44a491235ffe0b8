"""The dispute console in a real browser (Chromium via Playwright) against the running
server, real Kafka and PostgreSQL. What the pages show is checked against the views
(``api.query``) and the policy table, not against numbers written here.

Screenshots of the main pages land in tests/browser/screenshots/ (git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api.conftest import RunningApi
from playwright.sync_api import Browser, BrowserContext, Page, expect

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import load_log_key
from protocolo.core.policy import profile_version
from protocolo.core.protocol_number import format_protocol_number
from protocolo.evidence.bundle import BundleTrust, Expected, verify_bundle
from protocolo.evidence.checkpoint import log_origin

CPF_A = "111.444.777-35"
PHONE = {"width": 390, "height": 844}
BRASILIA = ZoneInfo("America/Sao_Paulo")
SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture()
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    try:
        yield ctx
    finally:
        ctx.close()


def log_in(ctx: BrowserContext, api: RunningApi, name: str, password: str) -> Page:
    page = ctx.new_page()
    page.goto(f"{api.base_url}/console/login")
    page.get_by_label("Usuário").fill(name)
    page.get_by_label("Senha").fill(password)
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("button", name="Sair")).to_be_visible()
    return page


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def one(api: RunningApi, text: str, *args: object) -> object:
    rows = api.query(text, *args)
    assert len(rows) == 1, rows
    return rows[0][0]


def test_analyst_finds_a_contact_by_cpf_opens_it_and_asks_for_its_proof(context: BrowserContext,
                                                                        api: RunningApi) -> None:
    page = log_in(context, api, "analyst", "pw-analyst")
    assert page.url.endswith("/console/search")
    page.get_by_label("CPF", exact=True).fill(CPF_A)
    page.get_by_label("Finalidade da consulta").fill("disputa de cobrança")
    page.get_by_role("button", name="Buscar").click()

    cpf_index = api.runtime.sealer().index.cpf(CPF_A)
    theirs = sorted(r[0] for r in api.query("SELECT protocol_number FROM interactions WHERE cpf_index = %s",
                                            cpf_index))
    results = page.get_by_role("region", name=f"{len(theirs)} atendimento(s) encontrado(s)")
    expect(results).to_be_visible()
    shown = sorted(results.locator("tbody th a").all_inner_texts())
    assert shown == [format_protocol_number(n) for n in theirs]  # grouped as read aloud
    assert api.protocols["b1"] not in page.content()
    shot(page, "search-results")

    # the search by CPF is on the ledger, with its purpose
    api.settle()
    assert one(api, "SELECT count(*) FROM access_log WHERE actor = 'analyst' AND action = 'SEARCH_BY_CPF'"
                    " AND subject_ref = %s AND purpose = 'disputa de cobrança'", cpf_index) == 1

    number = api.protocols["a1"]
    page.get_by_role("link", name=format_protocol_number(number)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Atendimento {format_protocol_number(number)}")
    profile = one(api, "SELECT policy_profile FROM interactions WHERE protocol_number = %s", number)
    rules = page.get_by_role("region", name="Conformidade")
    name, version = str(profile).split("@")
    expect(rules).to_contain_text(profile_version(name, int(version)).source)
    expect(rules).to_contain_text("Informar o número de protocolo")
    expect(page.get_by_role("region", name="Gravações")).to_contain_text(api.recordings["a1"])
    expect(page.get_by_text("Dados pessoais ocultos.")).to_be_visible()
    assert CPF_A not in page.content() and "Cliente a1" not in page.content()  # masked for an analyst
    shot(page, "contact")

    # the proof: signed checkpoints must cover the contact's records first (the daemon's job)
    key = load_log_key(api.runtime.settings, "dev")
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        checkpoint_partitions(conn, key, api.topic, "dev")
    page.get_by_label("Finalidade (registrada)").last.fill("Procon complaint 2026-311")
    with page.expect_download() as download:
        page.get_by_role("button", name="Baixar prova de atendimento").click()
    bundle = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == f"{number}.zip"
    pinned = BundleTrust(tuple(key.vkey(log_origin("dev", api.topic, p))
                               for p in range(api.runtime.settings.partitions)))
    assert verify_bundle(bundle, pinned).ok, "the downloaded proof verifies offline, keys pinned"
    api.settle()
    assert one(api, "SELECT count(*) FROM access_log WHERE action = 'BUNDLE_DOWNLOAD' AND actor = 'analyst'"
               " AND protocol_number = %s", number) == 1


def test_a_customer_on_a_phone_asks_for_a_recording_without_the_protocol_and_follows_it(
        browser: Browser, api: RunningApi) -> None:
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="pt-BR")
    try:
        page = log_in(ctx, api, "customer", "pw-customer")
        assert page.url.endswith("/console/my/requests/new")
        expect(page.get_by_text("Não é preciso justificar.")).to_be_visible()
        opened = one(api, "SELECT opened_at FROM interactions WHERE protocol_number = %s", api.protocols["a2"])
        page.get_by_label("CPF").fill(CPF_A)
        page.get_by_label("Data do atendimento").fill(opened.astimezone(BRASILIA).date().isoformat())  # type: ignore[attr-defined]
        shot(page, "customer-request-phone")
        page.get_by_role("button", name="Enviar pedido").click()

        expect(page.get_by_role("status")).to_have_text("Pedido recebido. O prazo de entrega começou agora.")
        request_id = page.url.rsplit("/", 1)[1].split("?")[0]
        row = api.query("SELECT protocol_number, requested_via, window_from IS NOT NULL, status, due_at"
                        " FROM retrieval_request_status WHERE request_id = %s::uuid", request_id)
        assert len(row) == 1 and row[0][:4] == (None, "WEB_FORM", True, "requested"), row
        expect(page.get_by_text("(sem protocolo: pelo CPF e data)")).to_be_visible()
        expect(page.get_by_text("Recebido", exact=True)).to_be_visible()
        days_left = (row[0][4] - datetime.now(UTC)).days  # the delivery clock started at the request
        expect(page.get_by_text(f"faltam {days_left} d")).to_be_visible()
        shot(page, "customer-follow-phone")
        # no horizontal scrolling on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        page.get_by_role("link", name="Meus pedidos").first.click()
        expect(page.locator(f"a[href='/console/my/requests/{request_id}']")).to_be_visible()
    finally:
        ctx.close()


def _ask_early_deletion(page: Page, api: RunningApi, label: str, reason: str) -> str:
    page.goto(f"{api.base_url}/console/contacts/{api.protocols[label]}")
    page.get_by_label("Motivo da exclusão").fill(reason)
    page.get_by_role("button", name="Pedir exclusão antecipada").click()
    expect(page.locator("p.notice[role=status]")).to_contain_text("aguarda a aprovação de outra pessoa")
    return str(one(api, "SELECT approval_id FROM approvals WHERE recording_id = %s AND decision IS NULL",
                   api.recordings[label]))


def test_a_supervisor_asks_for_an_early_deletion_and_a_second_person_approves(
        browser: Browser, api: RunningApi) -> None:
    asker = browser.new_context(locale="pt-BR")
    decider = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    try:
        approval_id = _ask_early_deletion(log_in(asker, api, "supervisor", "pw-supervisor"), api, "b1",
                                          "ordem judicial 0001234-56.2026")
        page = log_in(decider, api, "compliance", "pw-compliance")
        page.goto(f"{api.base_url}/console/approvals")
        item = page.get_by_role("article").filter(has_text=api.recordings["b1"])
        expect(item).to_contain_text("supervisor")
        expect(item).to_contain_text("ordem judicial 0001234-56.2026")
        shot(page, "approvals")
        item.get_by_label("Comentário (opcional)").fill("conferido")
        item.get_by_role("button", name="Aprovar").click()
        expect(page.get_by_role("status")).to_have_text("Aprovado e executado.")

        decision = api.query("SELECT decision, decided_by FROM approvals WHERE approval_id = %s::uuid", approval_id)
        assert decision == [("GRANTED", "compliance")]
        assert one(api, "SELECT status FROM recordings WHERE recording_id = %s", api.recordings["b1"]) == "deleted"
    finally:
        asker.close()
        decider.close()


def test_nobody_approves_their_own_request(context: BrowserContext, api: RunningApi) -> None:
    page = log_in(context, api, "compliance", "pw-compliance")
    approval_id = _ask_early_deletion(page, api, "a1", "pedido do titular")
    page.goto(f"{api.base_url}/console/approvals")
    item = page.get_by_role("article").filter(has_text=api.recordings["a1"])
    expect(item).to_contain_text("Você fez este pedido: outra pessoa precisa decidir.")
    expect(item.get_by_role("button", name="Aprovar")).to_have_count(0)

    # and the server refuses it even when the form is forged, with or without the CSRF token
    csrf = page.locator("form[action='/console/logout'] input[name=csrf_token]").input_value()
    forged = page.request.post(f"{api.base_url}/console/approvals/{approval_id}/grant",
                               form={"csrf_token": csrf, "comment": "eu mesmo"})
    assert forged.status == 403
    assert "Ninguém aprova o próprio pedido" in forged.text()
    no_token = page.request.post(f"{api.base_url}/console/approvals/{approval_id}/grant", form={"comment": "x"})
    assert no_token.status == 403 and "csrf" in no_token.text()
    assert one(api, "SELECT decision IS NULL FROM approvals WHERE approval_id = %s::uuid", approval_id) is True
    assert one(api, "SELECT status FROM recordings WHERE recording_id = %s", api.recordings["a1"]) == "retained"


def _tab_to(page: Page, element_id: str, limit: int = 25) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"#{element_id} has no visible focus"
            return
    raise AssertionError(f"#{element_id} is not reachable with the Tab key")


def test_login_and_search_work_from_the_keyboard_alone(context: BrowserContext, api: RunningApi) -> None:
    page = context.new_page()
    page.goto(f"{api.base_url}/console/login")
    shot(page, "login")
    _tab_to(page, "name")
    page.keyboard.type("analyst")
    _tab_to(page, "password")
    page.keyboard.type("pw-analyst")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/search")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"  # first stop: skip to content
    _tab_to(page, "protocol_number")
    page.keyboard.type(api.protocols["a2"])
    page.keyboard.press("Enter")
    results = page.get_by_role("region", name="1 atendimento(s) encontrado(s)")
    expect(results.get_by_role("link", name=format_protocol_number(api.protocols["a2"]))).to_be_visible()


def test_the_queue_lists_open_requests_soonest_deadline_first_in_english(
        context: BrowserContext, api: RunningApi) -> None:
    page = log_in(context, api, "analyst", "pw-analyst")
    page.get_by_role("link", name="English").click()
    page.get_by_role("link", name="Request queue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Request queue by deadline")
    open_requests = [str(r[0]) for r in api.query(
        "SELECT protocol_number FROM retrieval_request_status WHERE status IN ('requested', 'located')"
        " ORDER BY due_at, request_id")]
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(len(open_requests))
    shown = [cell.strip() for cell in rows.locator("td:nth-child(3)").all_inner_texts()]
    assert shown == [format_protocol_number(n) if n != "None" else "(no protocol: by CPF and date)"
                     for n in open_requests]
    shot(page, "queue")


def test_a_customer_downloads_the_proof_of_all_their_contacts(context: BrowserContext,
                                                            api: RunningApi) -> None:
    """The customer's LGPD access: one bundle of every contact of theirs, from their own
    page; it verifies offline with the deployment's keys pinned, names them by blind index
    only, holds exactly their contacts (the views' list), and the download is recorded."""
    key = load_log_key(api.runtime.settings, "dev")
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        checkpoint_partitions(conn, key, api.topic, "dev")
    page = log_in(context, api, "customer", "pw-customer")
    page.goto(f"{api.base_url}/console/my/requests")
    expect(page.get_by_role("heading", name="Todos os meus atendimentos (LGPD)")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Baixar a prova de todos os meus atendimentos").click()
    assert download.value.suggested_filename == "customer.zip"
    bundle = Path(download.value.path()).read_bytes()
    cpf_index = api.runtime.sealer().index.cpf(CPF_A)
    pinned = BundleTrust(tuple(key.vkey(log_origin("dev", api.topic, p))
                               for p in range(api.runtime.settings.partitions)))
    report = verify_bundle(bundle, pinned, Expected(customer_index=cpf_index))
    assert report.verdict == "VALID", report.reasons
    theirs = {r[0] for r in api.query("SELECT protocol_number FROM interactions WHERE cpf_index = %s",
                                      cpf_index)}
    assert set(report.subject["protocol_numbers"]) == theirs and api.protocols["b1"] not in theirs
    assert CPF_A.encode() not in bundle
    api.settle()
    assert one(api, "SELECT count(*) FROM access_log WHERE action = 'BUNDLE_DOWNLOAD' AND actor = 'customer'"
               " AND subject_ref = %s AND target = 'customer.zip'", cpf_index) == 1
