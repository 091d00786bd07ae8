"""Cost policies over HTTP: PUT/GET/DELETE, validation, and enforcement (block, pause, notify, kill)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway_helpers import entry, path, policy_path, send, spent
from gateway_process import GatewayProcess


def test_put_get_delete_roundtrip_before_the_agent_ever_reported(gateway: GatewayProcess, agent: str) -> None:
    policy = {"max_cost_per_day_usd": "50.00", "max_intents_per_hour": 10, "action_on_breach": "block",
              "timezone": "Europe/Berlin", "alert_thresholds": [0.8, 0.5], "notify": {"email": ["ops@example.com"]}}
    with gateway.client() as http:
        put = http.put(policy_path(agent), json=policy)
        assert put.status_code == 200, put.text
        got = http.get(policy_path(agent)).json()
        assert got["max_cost_per_day_usd"] == "50.00" and got["max_intents_per_hour"] == 10
        assert got["alert_thresholds"] == [0.5, 0.8] and got["timezone"] == "Europe/Berlin"
        address_id = got["address_id"]
        assert http.get(f"/v1/mesh/agents/{address_id}/policies/cost").json()["policy"] == got["policy"]
        listed = http.get("/v1/mesh/agents").json()["agents"]
        assert [a["health_status"] for a in listed if a["address"] == agent] == ["unknown"]
        assert http.delete(policy_path(agent)).status_code == 200
        assert http.get(policy_path(agent)).status_code == 404
        assert http.delete(policy_path(agent)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_cost_per_day_usd": "50", "max_cost_per_week": "1"}, "max_cost_per_week"),
        ({"max_cost_per_day_usd": "-1"}, "max_cost_per_day_usd"),
        ({"max_cost_per_day_usd": "0"}, "max_cost_per_day_usd"),
        ({"max_cost_per_day_usd": "NaN"}, "max_cost_per_day_usd"),
        ({"max_cost_per_day_usd": "Infinity"}, "max_cost_per_day_usd"),
        ({"max_cost_per_day_usd": "fifty"}, "max_cost_per_day_usd"),
        ({"max_cost_per_day_usd": True}, "max_cost_per_day_usd"),
        ({"max_intents_per_day": 1.5}, "max_intents_per_day"),
        ({"max_intents_per_day": 0}, "max_intents_per_day"),
        ({"max_cost_per_day_usd": "5", "action_on_breach": "explode"}, "action_on_breach"),
        ({"max_cost_per_day_usd": "5", "timezone": "Mars/Olympus"}, "timezone"),
        ({"max_cost_per_day_usd": "5", "alert_thresholds": [1.5]}, "alert_thresholds.0"),
        ({"max_cost_per_day_usd": "5", "notify": {"email": ["not-an-email"]}}, "notify.email.0"),
        ({"max_cost_per_day_usd": "5", "notify": {"pager": "x"}}, "notify.pager"),
        ({}, ""),
        ({"action_on_breach": "block"}, ""),
    ],
)
def test_bad_policies_are_422_naming_the_field(gateway: GatewayProcess, agent: str, body: dict[str, Any], field: str) -> None:
    with gateway.client() as http:
        resp = http.put(policy_path(agent), json=body)
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        assert error["code"] == "validation_error" and error["details"]["field"] == field
        assert http.get(policy_path(agent)).status_code == 404  # nothing stored


def test_policies_need_an_admin_key(gateway: GatewayProcess, agent: str) -> None:
    key = gateway.create_key("acme")
    with gateway.client(key) as http:
        resp = http.put(policy_path(agent), json={"max_cost_per_day_usd": "1"})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
        assert http.post(f"/v1/mesh/agents/{path(agent)}/kill").status_code == 403


def test_block_records_spend_answers_429_and_refuses_intents(gateway: GatewayProcess, agent: str) -> None:
    other = agent + "-other"
    with gateway.client() as http:
        http.put(policy_path(agent), json={"max_cost_per_day_usd": "1.00"})
        first = send(http, entry(agent, "0.60"))
        assert first.status_code == 200
        assert first.json()["agents"][agent]["policies"][0] == {
            "name": "max_cost_per_day_usd", "limit": "1.00", "spent": "0.60", "remaining": "0.40",
            "resets_at": "2026-11-29T00:00:00Z", "window": "day", "lease": "0.40"}
        assert http.post("/v1/mesh/intents", json={"agent": agent}).status_code == 201
        blocked = send(http, entry(agent, "0.60"))
        assert blocked.status_code == 429
        assert blocked.headers["x-should-retry"] == "false"
        assert blocked.headers["retry-after"] == str(12 * 3600)  # clock is 12:00 UTC, the day resets at 00:00
        body = blocked.json()
        assert body["results"][0]["status"] == "recorded"
        assert body["agents"][agent]["state"] == "blocked"
        err = body["error"]
        assert err["code"] == "budget_exceeded" and err["policy"] == "max_cost_per_day_usd"
        assert (err["limit"], err["spent"], err["resets_at"]) == ("1.00", "1.20", "2026-11-29T00:00:00Z")
        assert err["details"] == {"dimension": "max_cost_per_day_usd", "used": "1.20", "limit": "1.00", "reset_at": "2026-11-29T00:00:00Z"}
        assert spent(http, agent) == Decimal("1.20")  # money already spent is a fact
        refused = http.post("/v1/mesh/intents", json={"agent": agent})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        assert refused.headers["x-should-retry"] == "false"
        mixed = send(http, entry(agent, "0"), entry(other, "0.01"))
        assert mixed.status_code == 200  # not every agent in the batch is blocked
        assert {a: s["state"] for a, s in mixed.json()["agents"].items()} == {agent: "blocked", other: "active"}
        assert http.get(f"/v1/mesh/agents/{path(agent)}").json()["state"] == "blocked"


def test_raising_the_limit_lifts_the_block_at_once(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        http.put(policy_path(agent), json={"max_cost_per_hour_usd": "1"})
        assert send(http, entry(agent, "1")).status_code == 429
        http.put(policy_path(agent), json={"max_cost_per_hour_usd": "5"})
        resp = send(http, entry(agent, "0.5"))
        assert resp.status_code == 200 and resp.json()["agents"][agent]["state"] == "active"
        assert resp.json()["agents"][agent]["policies"][0]["remaining"] == "3.50"


def test_notify_only_alerts(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        http.put(policy_path(agent), json={"max_cost_per_day_usd": "1", "action_on_breach": "notify"})
        resp = send(http, entry(agent, "2"))
        assert resp.status_code == 200 and resp.json()["agents"][agent]["state"] == "active"
        assert resp.json()["agents"][agent]["policies"][0]["remaining"] == "0.00"
        assert http.post("/v1/mesh/intents", json={"agent": agent}).status_code == 201
        types = [e["type"] for e in http.get("/v1/mesh/events", params={"agent": agent}).json()["events"]]
        assert "policy.breached" in types and "alert.triggered" in types


def test_pause_on_breach_until_resumed(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        http.put(policy_path(agent), json={"max_cost_per_day_usd": "1", "action_on_breach": "pause"})
        paused = send(http, entry(agent, "1.5"))
        assert paused.status_code == 429 and paused.json()["agents"][agent]["state"] == "paused"
        assert paused.headers["x-should-retry"] == "false"
        intent = http.post("/v1/mesh/intents", json={"agent": agent})
        assert intent.status_code == 429 and intent.json()["error"]["code"] == "agent_paused"
        resumed = http.post(f"/v1/mesh/agents/{path(agent)}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] == "active"
        again = send(http, entry(agent, "0.1"))  # the breach was handled once; the resume sticks
        assert again.status_code == 200 and again.json()["agents"][agent]["state"] == "active"
        assert http.post("/v1/mesh/intents", json={"agent": agent}).status_code == 201
        types = [e["type"] for e in http.get("/v1/mesh/events", params={"agent": agent}).json()["events"]]
        assert types.count("agent.paused") == 1 and "agent.resumed" in types


def test_manual_pause_resume_kill(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        assert http.post(f"/v1/mesh/agents/{path(agent)}/pause").json()["state"] == "paused"  # before it ever reported
        assert send(http, entry(agent, "0.1")).status_code == 429
        assert http.post(f"/v1/mesh/agents/{path(agent)}/resume").json()["state"] == "active"
        assert send(http, entry(agent, "0.1")).status_code == 200
        killed = http.post(f"/v1/mesh/agents/{path(agent)}/kill")
        assert killed.status_code == 200 and killed.json()["state"] == "killed"
        hb = send(http, entry(agent, "0.1"))
        assert hb.status_code == 403 and hb.json()["agents"][agent]["state"] == "killed"
        assert hb.json()["error"]["code"] == "agent_killed" and hb.json()["results"][0]["status"] == "recorded"
        assert http.post("/v1/mesh/intents", json={"agent": agent}).status_code == 403
        listed = [a for a in http.get("/v1/mesh/agents").json()["agents"] if a["address"] == agent]
        assert listed[0]["health_status"] == "killed" and listed[0]["state"] == "killed"
        assert spent(http, agent) == Decimal("0.3")
        assert http.post(f"/v1/mesh/agents/{path(agent)}/resume").json()["state"] == "active"
        assert http.post("/v1/mesh/intents", json={"agent": agent}).status_code == 201
        types = [e["type"] for e in http.get("/v1/mesh/events", params={"agent": agent}).json()["events"]]
        assert types == ["agent.resumed", "agent.killed", "agent.resumed", "agent.paused"]


def test_intent_count_limit(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        http.put(policy_path(agent), json={"max_intents_per_day": 2})
        ids = [http.post("/v1/mesh/intents", json={"agent": agent}).json()["intent_id"] for _ in range(2)]
        third = http.post("/v1/mesh/intents", json={"agent": agent})
        assert third.status_code == 429
        assert third.json()["error"]["details"]["dimension"] == "max_intents_per_day"
        assert third.json()["error"]["limit"] == "2"
        assert http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": ids[0]}).status_code == 201  # already counted
        assert send(http, entry(agent, "0.1")).status_code == 200  # running work is not blocked


def test_per_intent_budget(gateway: GatewayProcess, agent: str) -> None:
    big, small = f"int_big_{agent[-8:]}", f"int_small_{agent[-8:]}"
    with gateway.client() as http:
        http.put(policy_path(agent), json={"max_cost_per_intent_usd": "1"})
        resp = send(http, entry(agent, "1.5", intent=big), entry(agent, "0.2", intent=small))
        assert resp.status_code == 200
        policies = {p["intent_id"]: p for p in resp.json()["agents"][agent]["policies"]}
        assert policies[big]["remaining"] == "0.00" and policies[small]["remaining"] == "0.80"
        refused = http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": big})
        assert refused.status_code == 429 and refused.json()["error"]["intent_id"] == big
        assert http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": small}).status_code == 201


def test_lease_splits_remaining_between_live_client_instances(clocked_gateway: GatewayProcess, agent: str) -> None:
    """Each policy's ``lease`` is remaining / distinct ``hb_<instance>_…`` senders of the last minute."""
    gw = clocked_gateway
    with gw.client() as http:
        http.put(policy_path(agent), json={"max_cost_per_day_usd": "1.00"})
        one = send(http, entry(agent, "0.20", id="hb_aaaa_1_0")).json()["agents"][agent]["policies"][0]
        assert one["remaining"] == "0.80" and one["lease"] == "0.80"
        two = send(http, entry(agent, "0.20", id="hb_bbbb_1_0")).json()["agents"][agent]["policies"][0]
        assert two["remaining"] == "0.60" and two["lease"] == "0.30"
        again = send(http, entry(agent, "0.00", id="hb_aaaa_2_0")).json()["agents"][agent]["policies"][0]
        assert again["lease"] == "0.30"  # the same instance again is not a third one
        made = http.post("/v1/mesh/intents", json={"agent": agent})
        assert made.status_code == 201 and made.json()["policies"][0]["lease"] == "0.30"
        gw.set_clock("2026-11-28T12:01:30Z")  # instance bbbb has gone quiet for 90 s
        alone = send(http, entry(agent, "0.00", id="hb_aaaa_3_0")).json()["agents"][agent]["policies"][0]
        assert alone["remaining"] == "0.60" and alone["lease"] == "0.60"
