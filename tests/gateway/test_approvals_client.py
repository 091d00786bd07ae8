"""The real ``axme_meter.OpenAI`` client (OpenAI HTTP mocked) against a real gateway with ``require_approval``:
the agent stops at its limit, and spends again only after an approval (a denial keeps it stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import axme_meter
from axme_meter import _config, _runtime
from support.gateway_helpers import path, policy_path
from support.gateway_process import GatewayProcess, running_gateway
from support.polling import wait_for
from support.transport_helpers import CountingOpenAI, chat, new_client

AGENT = "agent://acme/prod/research"
CALL = Decimal("0.0075")  # one mocked call
_DEFAULTS = {f.name: getattr(_config.settings, f.name) for f in fields(_config.Settings)}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    axme_meter.reset_spend()
    _runtime.replace_default()
    with running_gateway(tmp_path / "gw") as gateway:
        with gateway.client() as http:
            assert http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "0.03", "action_on_breach": "require_approval",
                                                      "approval_raise_usd": "0.015"}).status_code == 200
        key = gateway.create_key("acme", agent=AGENT)
        axme_meter.configure(gateway_url=gateway.url, api_key=key, spool_dir=tmp_path / "spool", heartbeat_interval=0.2)
        yield gateway
    _config.configure(**{k: v for k, v in _DEFAULTS.items() if k != "agent"})
    _runtime.replace_default()
    axme_meter.reset_spend()


def _spend_until_refused(client: Any, openai: CountingOpenAI) -> axme_meter.BudgetExceeded:
    for _ in range(50):
        try:
            chat(client)
        except axme_meter.BudgetExceeded as exc:
            return exc
    raise AssertionError(f"never refused after {openai.requests} calls")


def _pending(http: httpx.Client) -> dict[str, Any]:
    def found() -> Any:
        listed = http.get("/v1/mesh/approvals", params={"state": "pending"}).json()["approvals"]
        return listed[0] if listed else None

    return wait_for(found, "the approval request the breach opens")  # type: ignore[no-any-return]


def _paused_client_refuses(client: Any) -> None:
    wait_for(lambda: AGENT in _runtime.default().blocked_agents(), "the pause to reach the client")
    with pytest.raises(axme_meter.BudgetExceeded) as info:
        chat(client)
    assert info.value.state == "paused"


def test_the_agent_spends_again_only_after_an_approval(gw: GatewayProcess) -> None:
    openai = CountingOpenAI()
    client = new_client(openai)
    with axme_meter.agent(AGENT), gw.client() as http:
        _spend_until_refused(client, openai)
        assert openai.requests == 4  # $0.03 / $0.0075: grants never let it overshoot
        assert axme_meter.flush(timeout=10)
        request = _pending(http)
        assert (request["spent"], request["limit"], request["raise"]) == ("0.03", "0.03", "0.015")
        assert http.get(f"/v1/mesh/agents/{path(AGENT)}").json()["state"] == "paused"
        _paused_client_refuses(client)
        assert openai.requests == 4

        assert http.post(f"/v1/mesh/approvals/{request['id']}/approve").status_code == 200
        wait_for(lambda: AGENT not in _runtime.default().blocked_agents(), "the resume to reach the client")
        refused = _spend_until_refused(client, openai)
        assert openai.requests == 6  # the $0.015 raise: two more calls, then the raised limit holds
        assert refused.limit is not None
        assert axme_meter.flush(timeout=10)
        second = _pending(http)  # the raised limit was reached: paused again, a new request
        assert second["id"] != request["id"] and second["limit"] == "0.045"


def test_a_denied_agent_stays_stopped(gw: GatewayProcess) -> None:
    openai = CountingOpenAI()
    client = new_client(openai)
    with axme_meter.agent(AGENT), gw.client() as http:
        _spend_until_refused(client, openai)
        assert axme_meter.flush(timeout=10)
        request = _pending(http)
        assert http.post(f"/v1/mesh/approvals/{request['id']}/deny").json()["agent_state"] == "paused"
        _paused_client_refuses(client)
        assert openai.requests == 4
        assert http.get(f"/v1/mesh/approvals/{request['id']}").json()["approval"]["state"] == "denied"
