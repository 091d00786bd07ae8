"""Fixtures for the dashboard suite: one real gateway process (clock file) with real heartbeats,
and a headless Chromium driven by Playwright: Debian's /usr/bin/chromium when present, else the one
``python -m playwright install chromium`` fetched (``scripts/test.sh`` tries that); skipped, with the
reason, only when neither can be launched."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.dashboard_helpers import NOW, seed
from support.gateway_process import GatewayProcess, running_gateway

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Started once for the suite (startup dominates the runtime); tests use distinct agents."""
    with running_gateway(tmp_path_factory.mktemp("dashboard-gw"), clock=NOW) as gw:
        seed(gw)
        yield gw


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: playwright's sync API keeps an event loop marked as running on this
    thread until it stops, which would break every later test that calls asyncio.run()."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("python playwright is not installed (pip install playwright)")
    debian = os.path.exists(CHROMIUM) and shutil.which(CHROMIUM) is not None
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=CHROMIUM if debian else None, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            first = (str(exc).strip().splitlines() or ["?"])[0][:200]
            pytest.skip(f"no browser: no Debian chromium at {CHROMIUM}, and playwright's own chromium does not launch "
                        f"({first}); apt-get install chromium, or python -m playwright install chromium")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.dialogs = []  # every alert()/confirm() seen, so XSS and confirm tests can assert on them
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.accept()))
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
