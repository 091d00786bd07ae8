"""Heartbeat ingest over real HTTP: single entries, batches, replays, answers, intents."""

from __future__ import annotations

from decimal import Decimal

from support.gateway_helpers import entry, path, send, spent
from support.gateway_process import GatewayProcess


def test_single_entry_is_recorded_and_answered_with_state(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        resp = http.post("/v1/mesh/heartbeat", json=entry(agent, "0.03", id=agent + "/hb_a_1_0", intent=None, models={"gpt-4o": "0.03"}))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["results"] == [{"id": agent + "/hb_a_1_0", "status": "recorded", "error": None}]
        info = body["agents"][agent]
        assert info["state"] == "active" and info["address_id"].startswith("addr_") and info["policies"] == []
        assert spent(http, agent) == Decimal("0.03")


def test_batch_sums_exactly_and_replay_is_duplicate(gateway: GatewayProcess, agent: str) -> None:
    batch = [entry(agent, "0.1", id=f"{agent}_{i}", intent=f"int_{i % 3}_{agent[-8:]}", models={"m1": "0.07", "m2": "0.03"}) for i in range(300)]
    with gateway.client() as http:
        first = send(http, *batch)
        assert first.status_code == 200
        assert {r["status"] for r in first.json()["results"]} == {"recorded"}
        again = send(http, *batch[:150], entry(agent, "0.5", id=agent + "/hb_b_new"))
        statuses = [r["status"] for r in again.json()["results"]]
        assert statuses == ["duplicate"] * 150 + ["recorded"]
        assert spent(http, agent) == Decimal("30.5")
        costs = http.get(f"/v1/mesh/agents/{path(agent)}/costs", params={"window": "day"}).json()
        assert Decimal(costs["totals"]["cost_usd"]) == Decimal("30.5")
        assert costs["totals"]["llm_calls"] == 301
        by_model = {m["model"]: Decimal(m["cost_usd"]) for m in costs["by_model"]}
        assert by_model == {"m1": Decimal("21"), "m2": Decimal("9")}
        by_intent = {i["intent_id"]: Decimal(i["cost_usd"]) for i in costs["by_intent"]}
        assert by_intent == {f"int_{i}_{agent[-8:]}": Decimal("10") for i in range(3)}
        intent = http.get(f"/v1/mesh/intents/int_1_{agent[-8:]}").json()
        assert intent["cost_usd"] == "10.00" and intent["agent"] == agent and intent["llm_calls"] == 100


def test_same_id_twice_in_one_batch_counts_once(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        resp = send(http, entry(agent, "1", id=agent + "/dup"), entry(agent, "1", id=agent + "/dup"))
        assert [r["status"] for r in resp.json()["results"]] == ["recorded", "duplicate"]
        assert spent(http, agent) == Decimal("1")


def test_json_number_costs_and_tiny_amounts_are_exact(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        for i in range(10):
            body = entry(agent, id=f"{agent}/n{i}")
            body["metrics"]["cost_usd"] = 0.1
            assert http.post("/v1/mesh/heartbeat", json=body).status_code == 200
        send(http, entry(agent, "0.000000000001", id=agent + "/pico"))
        assert spent(http, agent) == Decimal("1.000000000001")


def test_bound_key_books_agentless_entries_to_its_agent(gateway: GatewayProcess, agent: str) -> None:
    key = gateway.create_key("acme", agent=agent)
    with gateway.client(key) as http:
        for body in ({}, {"metrics": {"intents_total": 3, "intents_succeeded": 2, "intents_failed": 1, "avg_latency_ms": 12.5, "cost_usd": 0.25}}):
            resp = http.post("/v1/mesh/heartbeat", json=body)
            assert resp.status_code == 200, resp.text
            assert list(resp.json()["agents"]) == [agent]
        assert http.post("/v1/mesh/heartbeat", content=b"").status_code == 200
        other = http.post("/v1/mesh/heartbeat", json=entry("agent://acme/production/other"))
        assert other.status_code == 403
    with gateway.client() as http:
        assert spent(http, agent) == Decimal("0.25")


def test_unbound_key_needs_an_agent(gateway: GatewayProcess, agent: str) -> None:
    key = gateway.create_key("acme")
    with gateway.client(key) as http:
        resp = http.post("/v1/mesh/heartbeat", json={"metrics": {"cost_usd": "1"}})
        assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == "agent"


def test_intents_register_and_count(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        intent_x = f"int_{agent[-8:]}"
        created = http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": intent_x, "labels": {"customer": "acme"}})
        assert created.status_code == 201, created.text
        assert created.json()["intent_id"] == intent_x and created.json()["state"] == "active"
        minted = http.post("/v1/mesh/intents", json={"agent": agent})
        assert minted.status_code == 201 and minted.json()["intent_id"].startswith("int_")
        assert http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": intent_x}).json()["created"] is False
        detail = http.get(f"/v1/mesh/agents/{path(agent)}").json()
        assert detail["intents_today"] == 2
        assert http.get(f"/v1/mesh/intents/{intent_x}").json()["labels"] == {"customer": "acme"}
        assert http.get("/v1/mesh/intents/int_missing").status_code == 404


def test_two_and_three_part_addresses(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        assert send(http, entry(agent.replace("/production", ""), "1")).status_code == 200
        assert send(http, entry(agent, "2")).status_code == 200
        listed = {a["address"]: a for a in http.get("/v1/mesh/agents").json()["agents"]}
        assert listed[agent.replace("/production", "")]["cost_today"] == "1.00"
        by_id = http.get(f"/v1/mesh/agents/{listed[agent]['address_id']}").json()
        assert by_id["address"] == agent
