"""Reads with the protocol's fields: agents list (AXME shape), detail, costs, events, health, metrics."""

from __future__ import annotations

from decimal import Decimal

from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import GatewayProcess

AGENT_FIELDS = {"address_id", "address", "display_name", "health_status", "last_heartbeat_at", "created_at",
                "intents_period", "cost_period", "metadata", "state", "cost_today", "intents_today", "policies"}


def test_agents_list_has_axme_fields_and_health(clocked_gateway: GatewayProcess) -> None:
    gw = clocked_gateway
    fresh, stale, never = "agent://acme/prod/fresh", "agent://acme/prod/stale", "agent://acme/prod/never"
    with gw.client() as http:
        gw.set_clock("2026-11-28T11:50:00Z")
        send(http, entry(stale, "1.25"))
        gw.set_clock("2026-11-28T11:58:00Z")
        send(http, entry(fresh, "0.5", intent="int_r1"), entry(fresh, "0.25", intent="int_r2"))
        http.put(policy_path(never), json={"max_cost_per_day_usd": "5"})
        gw.set_clock("2026-11-28T11:59:00Z")
        body = http.get("/v1/mesh/agents", params={"window": "week"}).json()
        assert body["ok"] is True
        agents = {a["address"]: a for a in body["agents"]}
        for a in agents.values():
            assert AGENT_FIELDS <= set(a)
        assert agents[fresh]["health_status"] == "healthy"
        assert agents[stale]["health_status"] == "unreachable"
        assert agents[never]["health_status"] == "unknown"
        assert agents[fresh]["cost_period"] == "0.75" and agents[fresh]["intents_period"] == 2
        assert agents[fresh]["last_heartbeat_at"] == "2026-11-28T11:58:00Z"
        assert agents[never]["policies"][0]["limit"] == "5.00"
        assert body["summary"] == {"total": 3, "healthy": 1, "degraded": 0, "unreachable": 1, "killed": 0, "unknown": 1,
                                   "blocked": 0, "paused": 0, "cost_period": "2.00", "intents_period": 2}
        gw.set_clock("2026-11-28T12:01:00Z")  # 3 minutes after the last heartbeat
        degraded = {a["address"]: a["health_status"] for a in http.get("/v1/mesh/agents").json()["agents"]}
        assert degraded[fresh] == "degraded"


def test_costs_series_and_breakdowns(gateway: GatewayProcess, agent: str) -> None:
    tag = agent.rsplit("/", 1)[-1]  # intent ids may not contain "/"
    with gateway.client() as http:
        send(http, entry(agent, "0.30", intent=f"a-{tag}", models={"gpt-4o": "0.20", "gpt-4o-mini": "0.10"}),
             entry(agent, "0.70", intent=f"b-{tag}", models={"gpt-4o": "0.70"}))
        costs = http.get(f"/v1/mesh/agents/{path(agent)}/costs", params={"window": "hour"}).json()
        assert set(costs) >= {"address_id", "address", "window", "from", "to", "totals", "series", "by_intent", "by_model"}
        assert len(costs["series"]) == 24 and costs["series"][-1]["start"] == "2026-11-28T12:00:00Z"
        assert costs["series"][-1]["cost_usd"] == "1.00" and costs["totals"]["cost_usd"] == "1.00"
        assert [(m["model"], m["cost_usd"]) for m in costs["by_model"]] == [("gpt-4o", "0.90"), ("gpt-4o-mini", "0.10")]
        assert [(i["intent_id"], i["cost_usd"]) for i in costs["by_intent"]] == [(f"b-{tag}", "0.70"), (f"a-{tag}", "0.30")]
        by_id = http.get(f"/v1/mesh/agents/{costs['address_id']}/costs").json()
        assert by_id["totals"] == costs["totals"] and len(by_id["series"]) == 30
        detail = http.get(f"/v1/mesh/agents/{costs['address_id']}").json()
        assert Decimal(detail["windows"]["month"]["cost_usd"]) == 1 and detail["policy"] is None


def test_events_list_and_page(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        http.post(f"/v1/mesh/agents/{path(agent)}/pause")
        http.post(f"/v1/mesh/agents/{path(agent)}/resume")
        http.post(f"/v1/mesh/agents/{path(agent)}/kill")
        events = http.get("/v1/mesh/events", params={"agent": agent}).json()
        assert [e["type"] for e in events["events"]] == ["agent.killed", "agent.resumed", "agent.paused"]
        first = events["events"][-1]
        assert set(first) == {"id", "type", "agent", "address_id", "created_at", "data"} and first["agent"] == agent
        page = http.get("/v1/mesh/events", params={"agent": agent, "after_id": first["id"], "limit": 1}).json()
        assert [e["type"] for e in page["events"]] == ["agent.resumed"]
        only = http.get("/v1/mesh/events", params={"agent": agent, "type": "agent.killed"}).json()
        assert [e["type"] for e in only["events"]] == ["agent.killed"]


def test_metrics_and_openapi(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        send(http, entry(agent, "0.1"))
        http.post("/v1/mesh/heartbeat", json={"bad": 1})
        text = http.get("/metrics").text
        for name in ("axme_gateway_heartbeat_entries_total", "axme_gateway_rejects_total", "axme_gateway_blocked_agents",
                     "axme_gateway_ingest_seconds_bucket", "axme_gateway_policy_check_seconds_bucket"):
            assert name in text
        spec = http.get("/openapi.json").json()
        assert "/v1/mesh/heartbeat" in spec["paths"] and "HeartbeatEntry" in spec["components"]["schemas"]
