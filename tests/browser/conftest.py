"""One real Chromium for the session (Debian's ``chromium``, driven by Playwright), and the
running API of tests/api/conftest.py (uvicorn on 127.0.0.1 over the session's Kafka and
PostgreSQL) for the console's pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api.conftest import api  # noqa: F401  (the running server fixture, shared)
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
