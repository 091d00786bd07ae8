"""Wire compatibility: AXME's own SDK (``axme`` 0.2.0 from PyPI) against our gateway, with a key bound to an agent."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from support.gateway_helpers import path, policy_path, spent
from support.gateway_process import GatewayProcess

axme = pytest.importorskip("axme", reason="needs AXME's SDK: pip install axme==0.2.0")

AGENT = "agent://acme/production/axme-sdk-agent"


def _client(gw: GatewayProcess, key: str) -> object:
    return axme.AxmeClient(axme.AxmeClientConfig(base_url=gw.url, api_key=key, max_retries=0))


def test_sdk_heartbeats_are_booked_to_the_keys_agent(clocked_gateway: GatewayProcess) -> None:
    gw = clocked_gateway
    key = gw.create_key("acme", agent=AGENT)
    client = _client(gw, key)
    mesh = client.mesh  # type: ignore[attr-defined]
    mesh.report_metric(success=True, latency_ms=120.0, cost_usd=0.25)
    mesh.report_metric(success=False, latency_ms=80.0, cost_usd=0.5)
    answer = mesh.heartbeat(metrics=mesh._flush_metrics())
    assert answer["agents"][AGENT]["state"] == "active" and answer["results"][0]["status"] == "recorded"
    assert mesh.heartbeat()["agents"][AGENT]["state"] == "active"  # the SDK's empty body
    mesh.report_metric(cost_usd=0.125)
    mesh.start_heartbeat(interval_seconds=0.05)  # the SDK's own background loop
    try:
        with gw.client() as http:
            deadline = time.monotonic() + 30
            while spent(http, AGENT) < Decimal("0.875") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert spent(http, AGENT) == Decimal("0.875")
    finally:
        mesh.stop_heartbeat()
    listed = mesh.list_agents(limit=10, health="healthy")
    assert listed["ok"] is True and [a["address"] for a in listed["agents"]] == [AGENT]
    address_id = listed["agents"][0]["address_id"]
    detail = mesh.get_agent(address_id)
    assert detail["address"] == AGENT and detail["health_status"] == "healthy"


def test_sdk_sees_429_when_blocked_and_403_when_killed(clocked_gateway: GatewayProcess) -> None:
    gw = clocked_gateway
    key = gw.create_key("acme", agent=AGENT)
    mesh = _client(gw, key).mesh  # type: ignore[attr-defined]
    admin = _client(gw, gw.admin_key).mesh  # type: ignore[attr-defined]
    with gw.client() as http:
        http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1"})
        with pytest.raises(axme.AxmeRateLimitError):
            mesh.heartbeat(metrics={"cost_usd": 1.5})
        assert spent(http, AGENT) == Decimal("1.5")  # recorded although blocked
        http.delete(policy_path(AGENT))
        address_id = http.get(f"/v1/mesh/agents/{path(AGENT)}").json()["address_id"]
    admin.kill(address_id)
    with pytest.raises(axme.AxmeError) as killed:
        mesh.heartbeat(metrics={"cost_usd": 0.1})
    assert "403" in str(killed.value) or getattr(killed.value, "status_code", 403) == 403
    events = admin.list_events()
    assert "agent.killed" in [e["type"] for e in events["events"]]
    admin.resume(address_id)
    assert mesh.heartbeat(metrics={"cost_usd": 0.1})["agents"][AGENT]["state"] == "active"
