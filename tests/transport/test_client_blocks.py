"""A process that stops an agent on its own (local limit, lease, fail-closed) says so in its next heartbeat,
and the real gateway shows it: an ``agent.blocked`` event with ``"source": "client"`` and ``client_block`` on reads."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("uvicorn", reason="the real gateway needs the 'gateway' extra (pip install 'axme_meter[gateway]')")

import axme_meter  # noqa: E402
from support.gateway_process import GatewayProcess, running_gateway  # noqa: E402
from support.lossy_proxy import LossyProxy  # noqa: E402
from support.transport_helpers import AGENT, chat  # noqa: E402
from support.polling import wait_for  # noqa: E402

PATH = f"/v1/mesh/agents/{quote(AGENT, safe='')}"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gw") as gateway:
        yield gateway


def _listed(gw: GatewayProcess) -> dict[str, Any]:
    with gw.client() as admin:
        agents = admin.get("/v1/mesh/agents").json()["agents"]
    return next((a for a in agents if a["address"] == AGENT), {})


def _detail(gw: GatewayProcess) -> dict[str, Any]:
    with gw.client() as admin:
        return admin.get(PATH).json()


def _client_events(gw: GatewayProcess) -> list[dict[str, Any]]:
    with gw.client() as admin:
        events = admin.get("/v1/mesh/events", params={"agent": AGENT, "type": "agent.blocked"}).json()["events"]
    return [e for e in events if e["data"].get("source") == "client"]


def _spend_until_blocked(client: Any) -> axme_meter.BudgetExceeded:
    with axme_meter.agent(AGENT):
        for _ in range(50):
            try:
                chat(client)
            except axme_meter.BudgetExceeded as exc:
                return exc
            axme_meter.flush(timeout=10)
    raise AssertionError("never blocked")


def test_a_local_limit_block_shows_on_the_gateway(gw: GatewayProcess, tmp_path: Path, client) -> None:
    axme_meter.configure(gateway_url=gw.url, api_key=gw.create_key("acme"), spool_dir=tmp_path / "spool",
                         heartbeat_interval=0.1, local_limits={"max_cost_per_day_usd": "0.02"})
    stopped = _spend_until_blocked(client)
    assert "(local limit)" in str(stopped)
    block = wait_for(lambda: _listed(gw).get("client_block"), what="client_block on GET /v1/mesh/agents")
    assert block["source"] == "local" and block["policy"] == "max_cost_per_day_usd"
    assert block["limit"] == "0.02" and Decimal(block["spent"]) == Decimal("0.015")
    assert block["resets_at"] and block["at"]
    assert _detail(gw)["client_block"] == block
    assert _listed(gw)["state"] == "active"  # the gateway itself has no policy: only the client stopped it
    events = wait_for(lambda: _client_events(gw), what="the agent.blocked event")
    for _ in range(3):
        assert axme_meter.flush(timeout=10)  # the block is repeated with every heartbeat ...
    assert len(_client_events(gw)) == len(events) == 1  # ... and recorded once per agent × policy × window
    data = events[0]["data"]
    assert data["source"] == "client" and data["client_source"] == "local"
    assert data["policy"] == "max_cost_per_day_usd" and data["limit"] == "0.02" and data["resets_at"] == block["resets_at"]


def test_a_lease_block_shows_until_the_policy_changes(gw: GatewayProcess, tmp_path: Path, client) -> None:
    """Against a gateway without grants (as AXME Cloud), the client bounds spend with a lease, and says so."""
    with gw.client() as admin:
        assert admin.put(f"{PATH}/policies/cost", json={"max_cost_per_day_usd": "0.05"}).status_code in (200, 201)
    proxy = LossyProxy(gw.url)
    proxy.hidden.add("/v1/mesh/grants")
    try:
        axme_meter.configure(gateway_url=proxy.url, api_key=gw.create_key("acme"), spool_dir=tmp_path / "spool",
                             heartbeat_interval=3600)
        _lease_block_shows(gw, client)
    finally:
        proxy.close()


def test_a_refused_grant_shows_the_agent_stopped(gw: GatewayProcess, tmp_path: Path, client) -> None:
    """With grants, the gateway itself refuses the next call's slice: it knows the agent is stopped."""
    with gw.client() as admin:
        assert admin.put(f"{PATH}/policies/cost", json={"max_cost_per_day_usd": "0.05"}).status_code in (200, 201)
    axme_meter.configure(gateway_url=gw.url, api_key=gw.create_key("acme"), spool_dir=tmp_path / "spool",
                         heartbeat_interval=3600)
    stopped = _spend_until_blocked(client)
    # $0.045 spent of $0.05: $0.005 left, less than a $0.0075 call. (The refusal may come from a background
    # top-up before the last call's heartbeat, so the "reported spent" figure in it may lag by that call.)
    assert "$0.005 left" in str(stopped) and "not enough for the next call" in str(stopped)
    assert stopped.limit == Decimal("0.05") and stopped.policy == "max_cost_per_day_usd"
    assert axme_meter.flush(timeout=10)
    assert Decimal(_listed(gw)["cost_today"]) == Decimal("0.045")
    block = _listed(gw)["client_block"]
    assert block["source"] == "grant" and block["policy"] == "max_cost_per_day_usd" and block["limit"] == "0.05"
    assert [e["data"]["client_source"] for e in _client_events(gw)] == ["grant"]
    with gw.client() as admin:
        assert admin.put(f"{PATH}/policies/cost", json={"max_cost_per_day_usd": "5"}).status_code == 200
    assert "client_block" not in _listed(gw)


def _lease_block_shows(gw: GatewayProcess, client: Any) -> None:
    stopped = _spend_until_blocked(client)
    assert "would exceed the remaining budget" in str(stopped)
    assert axme_meter.flush(timeout=10)
    block = _listed(gw)["client_block"]
    assert block["source"] == "lease" and block["policy"] == "max_cost_per_day_usd" and block["limit"] == "0.05"
    assert _listed(gw)["state"] == "active"  # $0.045 of $0.05: the gateway alone would not show it stopped
    with gw.client() as admin:
        assert admin.put(f"{PATH}/policies/cost", json={"max_cost_per_day_usd": "5"}).status_code == 200
    assert "client_block" not in _listed(gw)  # an admin raised the limit: the client's view is stale


def test_fail_closed_is_reported_when_the_gateway_is_back_and_cleared_by_the_next_spend(gw: GatewayProcess,
                                                                                       tmp_path: Path, client) -> None:
    proxy = LossyProxy(gw.url)
    try:
        axme_meter.configure(gateway_url=proxy.url, api_key=gw.create_key("acme"), spool_dir=tmp_path / "spool",
                             heartbeat_interval=3600, fail_mode="closed", fail_after=0)
        with axme_meter.agent(AGENT):
            chat(client)
            assert axme_meter.flush(timeout=10)
            proxy.mode = "down"
            chat(client)  # the gateway just went away: not known yet
            assert not axme_meter.flush(timeout=0.5)
            with pytest.raises(axme_meter.BudgetExceeded):
                chat(client)  # failing closed
            proxy.mode = "ok"
            assert axme_meter.flush(timeout=10)
            block = _listed(gw)["client_block"]
            assert block["source"] == "fail_closed" and block["policy"] == "gateway_unreachable"
            assert [e["data"]["client_source"] for e in _client_events(gw)] == ["fail_closed"]
            chat(client)  # allowed again; this process's next spend for the agent clears its block
            assert axme_meter.flush(timeout=10)
        assert "client_block" not in _listed(gw)
    finally:
        proxy.close()
