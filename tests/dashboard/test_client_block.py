"""A client that stopped itself (a local limit, or its lease ran out) must read BLOCKED on the dashboard.

The gateway will report such stops in two ways: an ``agent.blocked`` event whose data has
``"source": "client"``, and ``"client_block": {...}`` on ``GET /v1/mesh/agents[/{id}]`` while
the stop is current. Neither has a public way in yet (the heartbeat does not carry client
stops), so this test puts them where the gateway will: the event through the gateway's own
store, and ``client_block`` on the reads the dashboard uses (``_fleet.get_agent`` for the agent page,
``_fleet.list_agents`` for the overview), wrapping the real functions. Everything else is the real app in
process: real heartbeats, real pages.
"""

from __future__ import annotations

import dataclasses
import html
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from axme_meter._money import from_usd
from axme_meter.gateway import Settings, create_app, _fleet, _results, _store
from axme_meter.gateway._db import make_engine
from axme_meter.gateway.dashboard import dashboard_routes
from support.dashboard_helpers import agent_path, csrf_of, entry

AGENT = "agent://acme/prod/careful"
OTHER = "agent://acme/prod/relaxed"
ADMIN = "axme_sa_test_client_block_admin"
CLIENT_BLOCK = {"source": "client", "policy": "max_cost_per_day_usd", "limit": "0.50", "spent": "0.4987",
                "resets_at": "2026-11-30T00:00:00Z", "at": "2026-11-29T11:40:00Z"}


@pytest.fixture
async def dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    db_url = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    app = create_app(Settings(db_url=db_url, admin_key=ADMIN), extra_routes=dashboard_routes())
    real_get_agent, real_list_agents = _fleet.get_agent, _fleet.list_agents
    stop = _results.ClientBlock(CLIENT_BLOCK["policy"], from_usd(CLIENT_BLOCK["limit"]), from_usd(CLIENT_BLOCK["spent"]),
                                datetime.fromisoformat(CLIENT_BLOCK["resets_at"]), datetime.fromisoformat(CLIENT_BLOCK["at"]))

    def with_stop(agent: _results.Agent) -> _results.Agent:
        return dataclasses.replace(agent, client_block=stop) if agent.address == AGENT else agent

    def get_agent_with_client_block(*args: Any, **kwargs: Any) -> Any:
        found = real_get_agent(*args, **kwargs)
        return None if found is None else with_stop(found)

    def list_agents_with_client_block(*args: Any, **kwargs: Any) -> Any:
        page = real_list_agents(*args, **kwargs)
        page.agents = [with_stop(a) for a in page.agents]
        return page

    monkeypatch.setattr(_fleet, "get_agent", get_agent_with_client_block)
    monkeypatch.setattr(_fleet, "list_agents", list_agents_with_client_block)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test", headers={"x-api-key": ADMIN}) as http:
        for agent, cost in ((AGENT, "0.4987"), (OTHER, "0.01")):
            sent = await http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(agent, cost, "t-1", "gpt-4o-mini")]})
            assert sent.status_code == 200, sent.text
        aid = (await http.get(f"/v1/mesh/agents/{agent_path(AGENT)}")).json()["address_id"]
        engine = make_engine(db_url)
        try:
            with engine.begin() as conn:  # as the gateway will record a client-side stop
                _store.add_event(conn, "acme", aid, "agent.blocked", {"agent": AGENT, **{k: v for k, v in CLIENT_BLOCK.items() if k != "at"}},
                                 int(time.time()))
        finally:
            engine.dispose()
        token = csrf_of((await http.get("/dashboard/login")).text)
        assert (await http.post("/dashboard/login", data={"api_key": ADMIN, "csrf": token})).status_code == 303
        yield http


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


async def test_client_block_reads_blocked_on_the_overview(dashboard: httpx.AsyncClient) -> None:
    page = (await dashboard.get("/dashboard")).text
    row = page.split(f'data-agent="{AGENT}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="blocked"' in row and 'data-block-source="client"' in row
    assert "stopped by the client · max cost per day: spent $0.499 of $0.50" in _text(row)
    other = page.split(f'data-agent="{OTHER}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="active"' in other and "block-note" not in other


async def test_client_block_page_names_policy_amount_reset_and_lists_the_event(dashboard: httpx.AsyncClient) -> None:
    aid = (await dashboard.get(f"/v1/mesh/agents/{agent_path(AGENT)}")).json()["address_id"]
    page = (await dashboard.get(f"/dashboard/agents/{aid}")).text
    banner = page.split('id="block"', 1)[1].split("</section>", 1)[0]
    assert 'data-block-source="client"' in banner
    text = _text(banner)
    assert "BLOCKED the client stopped itself: max cost per day" in text
    assert "spent $0.499 of $0.50" in text and "Resets 2026-11-30 00:00:00 UTC" in text
    assert "Reported 2026-11-29 11:40:00 UTC" in text
    events = _text(page.split('id="events"', 1)[1].split("</table>", 1)[0])
    assert "agent.blocked source client · policy max cost per day · limit $0.50 · spent $0.499" in events
    assert 'data-state="blocked"' in page.split("<h1>", 1)[1].split("</h1>", 1)[0]
