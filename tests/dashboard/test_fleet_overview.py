"""The overview at 5,000 agents, through a real gateway process fed through its real API: server-side
paging, search and sorting give the right agents on each page, and every page answers. (How fast is
``benchmarks/dashboard_overview.py``'s business; nothing here is timed.)"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.dashboard_helpers import NOW, agent_path, http_login
from support.gateway_process import GatewayProcess, running_gateway

FLEET = 5000
PAGE = 50
KILLED = {f"agent://fleet/{('prod', 'staging', 'dev')[i % 3]}/agent-{i:04d}" for i in (7, 4999)}
BLOCKED = "agent://fleet/staging/agent-0001"  # its day limit is under what it spent


def address(i: int) -> str:
    return f"agent://fleet/{('prod', 'staging', 'dev')[i % 3]}/agent-{i:04d}"


def cost(i: int) -> Decimal:
    """Distinct for every agent (7919 and 5000 are coprime): $0.0001 … $0.5000."""
    return Decimal(i * 7919 % FLEET + 1) / 10_000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("fleet-gw"), clock=NOW,
                         env={"AXME_GATEWAY_NEW_AGENTS_PER_MINUTE": "0"}) as gw:
        with gw.client(timeout=120) as http:
            for start in range(0, FLEET, 1000):
                batch = [{"id": f"hb_fleet_{i}", "agent": address(i), "metrics": {"cost_usd": str(cost(i)), "llm_calls": 1}}
                         for i in range(start, start + 1000)]
                resp = http.post("/v1/mesh/heartbeat", json={"heartbeats": batch})
                assert resp.status_code == 200, resp.text[:300]
            resp = http.put(f"/v1/mesh/agents/{agent_path(BLOCKED)}/policies/cost", json={"max_cost_per_day_usd": "0.0001"})
            assert resp.status_code == 200, resp.text
            for agent in KILLED:
                assert http.post(f"/v1/mesh/agents/{agent_path(agent)}/kill").status_code == 200
        yield gw


@pytest.fixture(scope="module")
def session(fleet: GatewayProcess) -> Iterator[httpx.Client]:
    with http_login(fleet, fleet.admin_key) as http:
        yield http


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-agent="([^"]+)">', page)


def _get(session: httpx.Client, path: str, **params: Any) -> str:
    resp = session.get(path, params=params)
    assert resp.status_code == 200, resp.text[:300]
    return resp.text


BY_COST = sorted((address(i) for i in range(FLEET)), key=lambda a: (-cost(int(a[-4:])), a))


def test_the_first_page_shows_the_biggest_spenders_and_the_whole_fleets_totals(session: httpx.Client) -> None:
    page = _get(session, "/dashboard")
    assert _rows(page) == BY_COST[:PAGE]
    assert 'data-matching="5000"' in page and 'data-pages="100"' in page
    assert re.search(r"data-showing>1–50 of 5,000<", page)
    footer = html.unescape(re.sub(r"<[^>]+>", " ", page.split('<tfoot>', 1)[1].split("</tfoot>", 1)[0]))
    total = sum((cost(i) for i in range(FLEET)), Decimal(0))  # every agent spent today, so today = week = month
    assert "All 5,000 matching agents" in footer and footer.count(f"${total:,.2f}") == 3
    assert _rows(_get(session, "/dashboard/live/overview")) == BY_COST[:PAGE]  # what the open tab refreshes


def test_pages_follow_on_and_end(session: httpx.Client) -> None:
    assert _rows(_get(session, "/dashboard/live/overview", page=2)) == BY_COST[PAGE:2 * PAGE]
    last = _get(session, "/dashboard", page=100)
    assert _rows(last) == BY_COST[-PAGE:] and 'rel="next"' not in last and 'rel="prev"' in last
    beyond = _get(session, "/dashboard", page=101)
    assert _rows(beyond) == [] and "No agents on this page" in beyond


def test_search_narrows_the_fleet_to_matching_addresses(session: httpx.Client) -> None:
    page = _get(session, "/dashboard", q="AGENT-012")
    expected = sorted((a for a in BY_COST if "agent-012" in a), key=BY_COST.index)
    assert len(expected) == 10 and _rows(page) == expected and 'data-matching="10"' in page and "pager" not in page
    assert "No agent matches the filter" in _get(session, "/dashboard/live/overview", q="agent-9999")


def test_sorting_by_name_state_and_last_heartbeat(session: httpx.Client) -> None:
    by_name = sorted(address(i) for i in range(FLEET))
    assert _rows(_get(session, "/dashboard", sort="name")) == by_name[:PAGE]
    assert _rows(_get(session, "/dashboard", sort="name", order="desc", page=2)) == by_name[::-1][PAGE:2 * PAGE]
    trouble = _get(session, "/dashboard", sort="state")
    states = re.findall(r'<tr data-agent="[^"]+">\s*<td class="agent-name">.*?data-state="([a-z]+)"', trouble, re.S)
    assert states[:3] == ["killed", "killed", "blocked"] and set(states[3:]) == {"active"}
    assert set(_rows(trouble)[:3]) == {*KILLED, BLOCKED}
    newest = _rows(_get(session, "/dashboard", sort="last_heartbeat"))
    assert len(newest) == PAGE  # all reported at the same instant: ties broken by address, a full page still


def test_the_api_pages_the_same_fleet(fleet: GatewayProcess) -> None:
    with fleet.client() as http:
        body = http.get("/v1/mesh/agents", params={"limit": 50, "sort": "cost", "offset": 4950}).json()
    assert [a["address"] for a in body["agents"]] == BY_COST[-PAGE:]
    assert body["page"]["total"] == FLEET and body["page"]["next_offset"] is None
    summary = body["summary"]
    assert (summary["total"], summary["killed"], summary["blocked"], summary["healthy"]) == (FLEET, 2, 1, FLEET - 2)


def test_the_overview_page_renders_for_an_org_key_too(fleet: GatewayProcess, tmp_path: Path) -> None:
    with http_login(fleet, fleet.create_key("fleet")) as http:
        page = http.get("/dashboard", params={"sort": "cost", "page": 3})
    assert page.status_code == 200 and _rows(page.text) == BY_COST[2 * PAGE:3 * PAGE]
