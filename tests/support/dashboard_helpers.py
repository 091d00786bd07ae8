"""Data for the dashboard suite, sent as real heartbeats, and small helpers to log in and read the JSON API.

The gateway's clock is moved between heartbeats so the month, week and day views
each have spend of their own, with exact amounts the tests can add up by hand.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from support.gateway_process import GatewayProcess

NOW = "2026-11-29T12:00:00Z"  # a Sunday: the week started Monday Nov 23, the month Nov 1
MAIN = "agent://acme/prod/researcher"
XSS = "<script>alert(1)"  # no "/": intent ids may not contain one (an unclosed script tag still runs if unescaped)
XSS_MODEL = "<img src=x onerror=alert(2)>"
OTHER = "agent://globex/dev/summarizer"

#: (gateway clock, agent, cost, intent, model) — every heartbeat of the suite's seed data
SEED: list[tuple[str, str, str, str | None, str]] = [
    ("2026-11-03T10:00:00Z", MAIN, "1.250000001", "research-1", "gpt-4o"),
    ("2026-11-24T08:30:00Z", MAIN, "0.75", "research-2", "gpt-4o-mini"),
    ("2026-11-29T02:15:00Z", MAIN, "0.3333333", "research-3", "gpt-4o"),
    ("2026-11-29T09:40:00Z", MAIN, "0.10", XSS, XSS_MODEL),
    ("2026-11-29T11:05:00Z", OTHER, "0.02", None, "claude-3-5-haiku"),
]
EXPECTED = {"day": Decimal("0.4333333"), "week": Decimal("1.1833333"), "month": Decimal("2.433333301")}


def entry(agent: str, cost: str, intent: str | None, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"hb_dash_{secrets.token_hex(6)}", "agent": agent, "status": "processing",
        "metrics": {"cost_usd": cost, "llm_calls": 2, "tokens_in": 120, "tokens_out": 40},
        "by_model": {model: {"cost_usd": cost, "llm_calls": 2, "tokens_in": 120, "tokens_out": 40}},
    }
    if intent is not None:
        body["intent_id"] = intent
    return body


def heartbeat(gw: GatewayProcess, agent: str, cost: str, intent: str | None = None, model: str = "gpt-4o") -> httpx.Response:
    with gw.client() as http:
        return http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(agent, cost, intent, model)]})


def seed(gw: GatewayProcess) -> None:
    for at, agent, cost, intent, model in SEED:
        gw.set_clock(at)
        resp = heartbeat(gw, agent, cost, intent, model)
        assert resp.status_code == 200, resp.text
    gw.set_clock(NOW)


def agent_path(agent: str) -> str:
    return quote(agent, safe="")


def api_agent(gw: GatewayProcess, agent: str) -> dict[str, Any]:
    with gw.client() as http:
        resp = http.get(f"/v1/mesh/agents/{agent_path(agent)}")
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def api_costs(gw: GatewayProcess, agent: str, bucket: str, start: str, end: str) -> dict[str, Any]:
    with gw.client() as http:
        resp = http.get(f"/v1/mesh/agents/{agent_path(agent)}/costs", params={"window": bucket, "from": start, "to": end})
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextmanager
def http_login(gw: GatewayProcess, key: str) -> Iterator[httpx.Client]:
    """A plain-HTTP dashboard session (cookie jar) logged in with ``key``."""
    with httpx.Client(base_url=gw.url, timeout=30.0, follow_redirects=False) as client:
        token = csrf_of(client.get("/dashboard/login").text)
        resp = client.post("/dashboard/login", data={"api_key": key, "csrf": token})
        assert resp.status_code == 303, resp.text
        yield client


def browser_login(page: Any, gw: GatewayProcess, key: str) -> None:
    page.goto(f"{gw.url}/dashboard/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gw.url}/dashboard")
