"""A new user's first hour, in headless Chromium against a real gateway fed by real heartbeats.

The agent here spends $0.0046 on gpt-4o-mini in one day, the way a busy small agent does.
Every figure is read from the rendered page and checked against the exact amounts sent:
nothing may read "$0.00", the axis is labelled from the real maximum, the budget text
and bar agree, and each table's rows add up to its total. A second agent is blocked by
the gateway and must say so: BLOCKED, the policy, the amounts, the reset time, the event.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.dashboard_helpers import NOW, agent_path, api_agent, browser_login, entry
from support.gateway_process import GatewayProcess, running_gateway

pytestmark = pytest.mark.browser

MINI = "agent://acme/prod/mini-helper"
SIDEKICK = "agent://acme/prod/sidekick"
STOPPED = "agent://acme/prod/stopped"
#: (clock, agent, cost, intent, model): MINI spends 0.0012 + 0.0015 + 0.0015 + 0.0004 = $0.0046 today,
#: $0.0027 in the 10:00 hour and $0.0019 in the 11:00 hour; $0.0004 of it outside any intent, on another model.
SPEND = [
    ("2026-11-29T10:05:00Z", MINI, "0.0012", "ticket-1", "gpt-4o-mini"),
    ("2026-11-29T10:40:00Z", MINI, "0.0015", "ticket-2", "gpt-4o-mini"),
    ("2026-11-29T11:20:00Z", MINI, "0.0015", "ticket-3", "gpt-4o-mini"),
    ("2026-11-29T11:50:00Z", MINI, "0.0004", None, "gpt-4.1-nano"),
    ("2026-11-29T11:55:00Z", SIDEKICK, "0.0021", None, "gpt-4o-mini"),
]


def _dollars(text: str) -> Decimal:
    return Decimal(text.strip().replace("$", "").replace(",", ""))


def _send(gw: GatewayProcess, agent: str, cost: str, intent: str | None, model: str) -> int:
    with gw.client() as http:
        return http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(agent, cost, intent, model)]}).status_code


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("first-hour-gw"), clock=NOW) as gateway:
        with gateway.client() as http:
            for agent in (MINI, STOPPED):
                http.put(f"/v1/mesh/agents/{agent_path(agent)}/policies/cost",
                         json={"max_cost_per_day_usd": "0.05", "action_on_breach": "block"}).raise_for_status()
        for at, agent, cost, intent, model in SPEND:
            gateway.set_clock(at)
            assert _send(gateway, agent, cost, intent, model) == 200
        gateway.set_clock("2026-11-29T11:58:00Z")
        assert _send(gateway, STOPPED, "0.0301", "run-1", "gpt-4o-mini") == 200
        assert _send(gateway, STOPPED, "0.02", "run-2", "gpt-4o-mini") == 429  # $0.0501 of $0.05: blocked
        gateway.set_clock(NOW)
        yield gateway


def test_small_spend_reads_in_significant_digits_and_adds_up_on_the_overview(page: Any, gw: GatewayProcess) -> None:
    browser_login(page, gw, gw.admin_key)
    row = page.locator(f"tr[data-agent='{MINI}']")
    for col in ("today", "week", "month"):
        cell = row.locator(f"[data-col={col}] .money")
        assert cell.inner_text() == "$0.0046" and cell.get_attribute("title") == "$0.0046"
    budget = row.locator(".budgets .policy")
    assert "$0.0454 left of $0.05" in budget.inner_text()  # text and bar tell the same story
    assert budget.locator("progress").get_attribute("value") == "9.2"
    assert row.locator(".badge").get_attribute("data-state") == "active"
    total = page.locator("table.agents tfoot tr.total")
    rows = page.locator("table.agents tbody tr").all()
    for col in ("today", "week", "month"):
        shown = sum((_dollars(r.locator(f"[data-col={col}] .money").inner_text()) for r in rows), Decimal(0))
        assert _dollars(total.locator(f"[data-col={col}] .money").inner_text()) == shown == Decimal("0.0568")
    page.screenshot(path=str(Path(gw.workdir) / "first-hour-overview.png"), full_page=True)


def test_agent_page_tiles_axis_and_breakdowns_agree(page: Any, gw: GatewayProcess) -> None:
    browser_login(page, gw, gw.admin_key)
    page.click(f"tr[data-agent='{MINI}'] a")
    page.wait_for_selector("#chart-total")
    assert page.inner_text("[data-window=day] .money") == "$0.0046"
    assert page.inner_text("#chart-total") == "$0.0046"
    # the y axis: from $0 to a nice number just above the real maximum ($0.0027 in the 10:00 hour)
    labels = [t.text_content() for t in page.locator("svg.chart text.ylabel").all()]  # SVG: no innerText
    assert labels == ["$0", "$0.001", "$0.002", "$0.003"]
    heights = {(b.locator("title").text_content() or "").split(": ")[1].split(" ·")[0]: float(b.get_attribute("height"))
               for b in page.locator("svg.chart rect.barfill").all() if float(b.get_attribute("height")) > 0}
    ticks = {t.get_attribute("data-tick"): float(t.get_attribute("y")) for t in page.locator("svg.chart text.ylabel").all()}
    full = ticks["0"] - ticks["0.003"]  # the $0 line to the $0.003 line, in SVG units
    assert set(heights) == {"$0.0027", "$0.0019"}
    assert heights["$0.0027"] == pytest.approx(full * 0.9, abs=0.2) and heights["$0.0019"] == pytest.approx(full * 19 / 30, abs=0.2)

    intents = page.locator("#by-intent tbody tr").all()
    shown = {r.locator("td").nth(0).inner_text(): _dollars(r.locator("td").nth(1).inner_text()) for r in intents}
    assert shown == {"ticket-2": Decimal("0.0015"), "ticket-3": Decimal("0.0015"), "ticket-1": Decimal("0.0012"),
                     "calls outside any intent": Decimal("0.0004"), "Total": Decimal("0.0046")}
    assert sum(v for k, v in shown.items() if k != "Total") == shown["Total"]
    models = page.locator("#by-model tbody tr").all()
    by_model = {r.locator("td").nth(0).inner_text(): _dollars(r.locator("td").nth(1).inner_text()) for r in models}
    assert by_model == {"gpt-4o-mini": Decimal("0.0042"), "gpt-4.1-nano": Decimal("0.0004"), "Total": Decimal("0.0046")}
    assert "$0.0454 left of $0.05" in page.inner_text("#agent-live .budgets")


def test_a_blocked_agent_says_blocked_with_policy_amount_reset_and_event(page: Any, gw: GatewayProcess, artifacts: Path) -> None:
    assert api_agent(gw, STOPPED)["state"] == "blocked"
    browser_login(page, gw, gw.admin_key)
    row = page.locator(f"tr[data-agent='{STOPPED}']")
    assert row.locator(".badge").inner_text() == "BLOCKED"
    assert "max cost per day: spent $0.0501 of $0.05" in row.locator(".block-note").inner_text()
    page.click(f"tr[data-agent='{STOPPED}'] a")
    banner = page.locator("#block")
    assert banner.get_attribute("data-block-source") == "gateway"
    assert banner.locator(".blocked-word").inner_text() == "BLOCKED"
    assert banner.locator("[data-block=policy]").inner_text() == "max cost per day"
    assert banner.locator("[data-block=spent]").inner_text() == "$0.0501"
    assert banner.locator("[data-block=limit]").inner_text() == "$0.05"
    assert banner.locator("[data-block=resets]").inner_text() == "2026-11-30 00:00:00 UTC"
    assert page.inner_text("#agent-live h1 .badge") == "BLOCKED"
    assert "$0.00 left of $0.05" in page.inner_text("#agent-live .budgets")
    event = page.locator("#events tbody tr", has=page.locator(".event-agent-blocked"))
    assert event.count() == 1
    details = event.locator(".details").inner_text()
    assert "policy max cost per day" in details and "limit $0.05" in details and "spent $0.0501" in details
    assert "resets at 2026-11-30 00:00:00 UTC" in details
    page.screenshot(path=str(artifacts / "dashboard-blocked-first-hour.png"), full_page=True)


def test_at_420px_tables_scroll_inside_their_card(browser: Any, gw: GatewayProcess, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 420, "height": 860}, locale="en-US")
    page = context.new_page()
    try:
        browser_login(page, gw, gw.admin_key)
        assert page.evaluate("document.documentElement.scrollWidth") <= 420  # the page itself never scrolls sideways
        box = page.locator("table.agents").evaluate("t => [t.closest('.table-scroll').scrollWidth, "
                                                    "t.closest('.table-scroll').clientWidth, getComputedStyle(t.closest('.table-scroll')).overflowX]")
        assert box[0] > box[1] and box[2] == "auto"  # the wide table scrolls within its card
        assert page.locator("table.agents").evaluate("t => t.closest('.card') !== null")
        page.screenshot(path=str(artifacts / "dashboard-420px.png"), full_page=True)
        page.click(f"tr[data-agent='{MINI}'] a")
        page.wait_for_selector("#chart-total")
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.screenshot(path=str(artifacts / "dashboard-agent-420px.png"), full_page=True)
    finally:
        context.close()


def test_favicon_and_where_to_get_a_key(page: Any, gw: GatewayProcess) -> None:
    page.goto(f"{gw.url}/dashboard/login")
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon
    served = httpx.get(gw.url + icon)
    assert served.status_code == 200 and served.headers["content-type"].startswith("image/svg+xml")
    hint = page.inner_text("#key-hint")
    assert "axme-meter keys create --org myorg" in hint and "admin key the gateway printed" in hint
