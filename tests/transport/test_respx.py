"""The same contract through respx (httpx-level mocking), for teams that mock the gateway that way."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

import axme_meter
from support.transport_helpers import AGENT, API_KEY, CountingOpenAI, chat

GATEWAY = "https://gateway.example.com"


def test_429_from_a_respx_gateway_blocks_the_next_call(spool_dir: Path, client, openai_http: CountingOpenAI) -> None:
    seen: list[httpx.Request] = []

    def heartbeat(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        ids = [e["id"] for e in json.loads(request.content)["heartbeats"]]
        return httpx.Response(429, headers={"retry-after": "3600", "x-should-retry": "false"}, json={
            "results": [{"id": i, "status": "recorded", "error": None} for i in ids],
            "agents": {AGENT: {"address_id": "addr_1", "state": "blocked", "policies": [
                {"name": "max_cost_per_day_usd", "limit": "50.00", "spent": "50.12", "remaining": "0.00",
                 "resets_at": "2099-01-01T00:00:00Z"}]}},
            "error": {"code": "budget_exceeded", "message": f"{AGENT} is over max_cost_per_day_usd", "agent": AGENT,
                      "policy": "max_cost_per_day_usd", "limit": "50.00", "spent": "50.12",
                      "resets_at": "2099-01-01T00:00:00Z"}})

    with respx.mock(base_url=GATEWAY, assert_all_called=False) as router:
        router.post("/v1/mesh/heartbeat").mock(side_effect=heartbeat)
        router.post("/v1/mesh/grants").respond(404)  # like AXME Cloud: no grants, leases from heartbeat answers
        axme_meter.configure(gateway_url=GATEWAY, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=0.1)
        with axme_meter.agent(AGENT):
            chat(client)
            assert axme_meter.flush(timeout=10)  # a 429 that recorded the entries is a delivery
            with pytest.raises(axme_meter.BudgetExceeded) as info:
                chat(client)
        axme_meter.configure(gateway_url=None)
    assert openai_http.requests == 1
    assert info.value.spent is not None and str(info.value.spent) == "50.12"
    assert seen and seen[0].headers["x-api-key"] == API_KEY
    body = json.loads(seen[0].content)
    assert body["heartbeats"][0]["agent"] == AGENT and body["heartbeats"][0]["metrics"]["llm_calls"] == 1
