"""The contact page says, in words, whether what it shows matches the signed log: a view
row altered in the database shows the red MISMATCH badge with the verified value (and
the altered one named), in Portuguese first and in English."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from api.conftest import RunningApi
from playwright.sync_api import Browser, BrowserContext, expect

from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.log_key import load_log_key


@pytest.fixture()
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    try:
        yield ctx
    finally:
        ctx.close()


def test_an_altered_view_row_shows_the_red_mismatch_badge_and_the_verified_value(
        context: BrowserContext, api: RunningApi) -> None:
    number = api.protocols["a1"]
    api.settle()
    key = load_log_key(api.runtime.settings, "dev")  # the key the console's server pins
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        checkpoint_partitions(conn, key, api.topic, "dev")
    page = context.new_page()
    page.goto(f"{api.base_url}/console/login")
    page.get_by_label("Usuário").fill("analyst")
    page.get_by_label("Senha").fill("pw-analyst")
    page.get_by_role("button", name="Entrar").click()
    page.goto(f"{api.base_url}/console/contacts/{number}")
    badge = page.locator("#verification")
    expect(badge).to_contain_text("VERIFICADO")
    api.query("UPDATE interactions SET outcome = 'ABANDONED' WHERE protocol_number = %s RETURNING 1", number)
    try:
        page.reload()
        expect(badge.get_by_role("alert")).to_contain_text("DIVERGÊNCIA")
        expect(badge).to_contain_text("interactions.outcome")
        expect(badge).to_contain_text("o banco mostra ABANDONED (alterado)")
        expect(badge).to_contain_text("o registro assinado diz RESOLVED")
        # red, and in words: the badge's colour is the console's "bad" colour
        colour = badge.locator(".badge.bad").evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(161, 26, 26)", colour
        # the summary shows the verified outcome, never the altered one
        summary = page.locator("section[aria-labelledby=summary-h]")
        expect(summary).to_contain_text("RESOLVED")
        expect(summary).not_to_contain_text("ABANDONED")
        page.get_by_role("link", name="English").click()
        expect(badge.get_by_role("alert")).to_contain_text("MISMATCH")
        expect(badge).to_contain_text("the signed log says RESOLVED")
    finally:
        api.query("UPDATE interactions SET outcome = 'RESOLVED' WHERE protocol_number = %s RETURNING 1", number)
