"""Cost policies over HTTP: PUT/GET/DELETE, validation, and enforcement (block, pause, notify, kill).

Route logic, so in-process (``create_app`` through ``httpx.ASGITransport``), on SQLite and, when
configured, PostgreSQL; replicas, SIGKILL and the CLI are tested with real processes elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from support.gateway_helpers import asend as send
from support.gateway_helpers import aspent as spent
from support.gateway_helpers import entry, path, policy_path
from support.inprocess import InProcessGateway, inprocess_gateway


@pytest.fixture
async def gateway(tmp_path: Path, db_url: str) -> AsyncIterator[InProcessGateway]:
    """A gateway of its own per test (clock at 2026-11-28T12:00:00Z unless the test moves it)."""
    async with inprocess_gateway(tmp_path, db_url=db_url) as gw:
        yield gw


async def test_put_get_delete_roundtrip_before_the_agent_ever_reported(gateway: InProcessGateway, agent: str) -> None:
    policy = {"max_cost_per_day_usd": "50.00", "max_intents_per_hour": 10, "action_on_breach": "block",
              "timezone": "Europe/Berlin", "alert_thresholds": [0.8, 0.5], "notify": {"email": ["ops@example.com"]}}
    http = gateway.http
    put = await http.put(policy_path(agent), json=policy)
    assert put.status_code == 200, put.text
    got = (await http.get(policy_path(agent))).json()
    assert got["max_cost_per_day_usd"] == "50.00" and got["max_intents_per_hour"] == 10
    assert got["alert_thresholds"] == [0.5, 0.8] and got["timezone"] == "Europe/Berlin"
    address_id = got["address_id"]
    assert (await http.get(f"/v1/mesh/agents/{address_id}/policies/cost")).json()["policy"] == got["policy"]
    listed = (await http.get("/v1/mesh/agents")).json()["agents"]
    assert [a["health_status"] for a in listed if a["address"] == agent] == ["unknown"]
    assert (await http.delete(policy_path(agent))).status_code == 200
    assert (await http.get(policy_path(agent))).status_code == 404
    assert (await http.delete(policy_path(agent))).status_code == 404


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
        ({"max_identical_requests_per_hour": 0}, "max_identical_requests_per_hour"),
        ({"max_identical_requests_per_hour": -3}, "max_identical_requests_per_hour"),
        ({"max_identical_requests_per_hour": 2.5}, "max_identical_requests_per_hour"),
        ({"max_identical_requests_per_hour": "10"}, "max_identical_requests_per_hour"),
        ({"max_identical_requests_per_hour": True}, "max_identical_requests_per_hour"),
        ({"max_identical_requests_per_hour": 10**13}, "max_identical_requests_per_hour"),
    ],
)
async def test_bad_policies_are_422_naming_the_field(gateway: InProcessGateway, agent: str, body: dict[str, Any], field: str) -> None:
    http = gateway.http
    resp = await http.put(policy_path(agent), json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "validation_error" and error["details"]["field"] == field
    assert (await http.get(policy_path(agent))).status_code == 404  # nothing stored


async def test_policies_need_an_admin_key(gateway: InProcessGateway, agent: str) -> None:
    key = {"x-api-key": await gateway.create_key("acme")}
    resp = await gateway.http.put(policy_path(agent), json={"max_cost_per_day_usd": "1"}, headers=key)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    assert (await gateway.http.post(f"/v1/mesh/agents/{path(agent)}/kill", headers=key)).status_code == 403


async def test_block_records_spend_answers_429_and_refuses_intents(gateway: InProcessGateway, agent: str) -> None:
    other = agent + "-other"
    http = gateway.http
    await http.put(policy_path(agent), json={"max_cost_per_day_usd": "1.00"})
    first = await send(http, entry(agent, "0.60"))
    assert first.status_code == 200
    assert first.json()["agents"][agent]["policies"][0] == {
        "name": "max_cost_per_day_usd", "limit": "1.00", "spent": "0.60", "remaining": "0.40",
        "resets_at": "2026-11-29T00:00:00Z", "window": "day", "lease": "0.40"}
    assert (await http.post("/v1/mesh/intents", json={"agent": agent})).status_code == 201
    blocked = await send(http, entry(agent, "0.60"))
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
    assert await spent(http, agent) == Decimal("1.20")  # money already spent is a fact
    refused = await http.post("/v1/mesh/intents", json={"agent": agent})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.headers["x-should-retry"] == "false"
    mixed = await send(http, entry(agent, "0"), entry(other, "0.01"))
    assert mixed.status_code == 200  # not every agent in the batch is blocked
    assert {a: s["state"] for a, s in mixed.json()["agents"].items()} == {agent: "blocked", other: "active"}
    assert (await http.get(f"/v1/mesh/agents/{path(agent)}")).json()["state"] == "blocked"


async def test_raising_the_limit_lifts_the_block_at_once(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    await http.put(policy_path(agent), json={"max_cost_per_hour_usd": "1"})
    assert (await send(http, entry(agent, "1"))).status_code == 429
    await http.put(policy_path(agent), json={"max_cost_per_hour_usd": "5"})
    resp = await send(http, entry(agent, "0.5"))
    assert resp.status_code == 200 and resp.json()["agents"][agent]["state"] == "active"
    assert resp.json()["agents"][agent]["policies"][0]["remaining"] == "3.50"


async def test_notify_only_alerts(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    await http.put(policy_path(agent), json={"max_cost_per_day_usd": "1", "action_on_breach": "notify"})
    resp = await send(http, entry(agent, "2"))
    assert resp.status_code == 200 and resp.json()["agents"][agent]["state"] == "active"
    assert resp.json()["agents"][agent]["policies"][0]["remaining"] == "0.00"
    assert (await http.post("/v1/mesh/intents", json={"agent": agent})).status_code == 201
    types = [e["type"] for e in (await http.get("/v1/mesh/events", params={"agent": agent})).json()["events"]]
    assert "policy.breached" in types and "alert.triggered" in types


async def test_pause_on_breach_until_resumed(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    await http.put(policy_path(agent), json={"max_cost_per_day_usd": "1", "action_on_breach": "pause"})
    paused = await send(http, entry(agent, "1.5"))
    assert paused.status_code == 429 and paused.json()["agents"][agent]["state"] == "paused"
    assert paused.headers["x-should-retry"] == "false"
    intent = await http.post("/v1/mesh/intents", json={"agent": agent})
    assert intent.status_code == 429 and intent.json()["error"]["code"] == "agent_paused"
    resumed = await http.post(f"/v1/mesh/agents/{path(agent)}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "active"
    again = await send(http, entry(agent, "0.1"))  # the breach was handled once; the resume sticks
    assert again.status_code == 200 and again.json()["agents"][agent]["state"] == "active"
    assert (await http.post("/v1/mesh/intents", json={"agent": agent})).status_code == 201
    types = [e["type"] for e in (await http.get("/v1/mesh/events", params={"agent": agent})).json()["events"]]
    assert types.count("agent.paused") == 1 and "agent.resumed" in types


async def test_manual_pause_resume_kill(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    assert (await http.post(f"/v1/mesh/agents/{path(agent)}/pause")).json()["state"] == "paused"  # before it ever reported
    assert (await send(http, entry(agent, "0.1"))).status_code == 429
    assert (await http.post(f"/v1/mesh/agents/{path(agent)}/resume")).json()["state"] == "active"
    assert (await send(http, entry(agent, "0.1"))).status_code == 200
    killed = await http.post(f"/v1/mesh/agents/{path(agent)}/kill")
    assert killed.status_code == 200 and killed.json()["state"] == "killed"
    hb = await send(http, entry(agent, "0.1"))
    assert hb.status_code == 403 and hb.json()["agents"][agent]["state"] == "killed"
    assert hb.json()["error"]["code"] == "agent_killed" and hb.json()["results"][0]["status"] == "recorded"
    assert (await http.post("/v1/mesh/intents", json={"agent": agent})).status_code == 403
    listed = [a for a in (await http.get("/v1/mesh/agents")).json()["agents"] if a["address"] == agent]
    assert listed[0]["health_status"] == "killed" and listed[0]["state"] == "killed"
    assert await spent(http, agent) == Decimal("0.3")
    assert (await http.post(f"/v1/mesh/agents/{path(agent)}/resume")).json()["state"] == "active"
    assert (await http.post("/v1/mesh/intents", json={"agent": agent})).status_code == 201
    types = [e["type"] for e in (await http.get("/v1/mesh/events", params={"agent": agent})).json()["events"]]
    assert types == ["agent.resumed", "agent.killed", "agent.resumed", "agent.paused"]


async def test_intent_count_limit(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    await http.put(policy_path(agent), json={"max_intents_per_day": 2})
    ids = [(await http.post("/v1/mesh/intents", json={"agent": agent})).json()["intent_id"] for _ in range(2)]
    third = await http.post("/v1/mesh/intents", json={"agent": agent})
    assert third.status_code == 429
    assert third.json()["error"]["details"]["dimension"] == "max_intents_per_day"
    assert third.json()["error"]["limit"] == "2"
    assert (await http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": ids[0]})).status_code == 201  # already counted
    assert (await send(http, entry(agent, "0.1"))).status_code == 200  # running work is not blocked


async def test_per_intent_budget(gateway: InProcessGateway, agent: str) -> None:
    big, small = f"int_big_{agent[-8:]}", f"int_small_{agent[-8:]}"
    http = gateway.http
    await http.put(policy_path(agent), json={"max_cost_per_intent_usd": "1"})
    resp = await send(http, entry(agent, "1.5", intent=big), entry(agent, "0.2", intent=small))
    assert resp.status_code == 200
    policies = {p["intent_id"]: p for p in resp.json()["agents"][agent]["policies"]}
    assert policies[big]["remaining"] == "0.00" and policies[small]["remaining"] == "0.80"
    refused = await http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": big})
    assert refused.status_code == 429 and refused.json()["error"]["intent_id"] == big
    assert (await http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": small})).status_code == 201


async def test_lease_splits_remaining_between_live_client_instances(gateway: InProcessGateway, agent: str) -> None:
    """Each policy's ``lease`` is remaining / distinct ``hb_<instance>_…`` senders of the last minute."""
    gw = gateway
    http = gw.http
    await http.put(policy_path(agent), json={"max_cost_per_day_usd": "1.00"})
    one = (await send(http, entry(agent, "0.20", id="hb_aaaa_1_0"))).json()["agents"][agent]["policies"][0]
    assert one["remaining"] == "0.80" and one["lease"] == "0.80"
    two = (await send(http, entry(agent, "0.20", id="hb_bbbb_1_0"))).json()["agents"][agent]["policies"][0]
    assert two["remaining"] == "0.60" and two["lease"] == "0.30"
    again = (await send(http, entry(agent, "0.00", id="hb_aaaa_2_0"))).json()["agents"][agent]["policies"][0]
    assert again["lease"] == "0.30"  # the same instance again is not a third one
    made = await http.post("/v1/mesh/intents", json={"agent": agent})
    assert made.status_code == 201 and made.json()["policies"][0]["lease"] == "0.30"
    gw.set_clock("2026-11-28T12:01:30Z")  # instance bbbb has gone quiet for 90 s
    alone = (await send(http, entry(agent, "0.00", id="hb_aaaa_3_0"))).json()["agents"][agent]["policies"][0]
    assert alone["remaining"] == "0.60" and alone["lease"] == "0.60"


# -- loop detection: max_identical_requests_per_hour --------------------------------------------------------------

FP_A, FP_B = "0123456789abcdef", "fedcba9876543210"


def _repeats(agent: str, counts: dict[str, int], *, id: str | None = None, intent: str | None = "int_loop") -> dict[str, Any]:
    return {**entry(agent, "0.01", id=id, intent=intent), "repeats": counts}


async def test_loop_policy_sums_repeats_across_processes_and_blocks_past_the_limit(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    await http.put(policy_path(agent), json={"max_identical_requests_per_hour": 5, "action_on_breach": "block"})
    first = await send(http, _repeats(agent, {FP_A: 3, FP_B: 1}, id="hb_aaaa_1_0"))
    assert first.status_code == 200
    loop = first.json()["agents"][agent]["loop"]
    assert (loop["limit"], loop["action"], loop["max"], loop["breached"]) == (5, "block", 3, False)
    assert loop["counts"] == {FP_A: 3, FP_B: 1} and len(bytes.fromhex(loop["key"])) == 32
    assert loop["resets_at"] == "2026-11-28T13:00:00Z"
    assert all(p["name"] != "max_identical_requests_per_hour" for p in first.json()["agents"][agent]["policies"])
    replay = await send(http, _repeats(agent, {FP_A: 3, FP_B: 1}, id="hb_aaaa_1_0"))
    assert replay.json()["results"][0]["status"] == "duplicate" and replay.json()["agents"][agent]["loop"]["max"] == 3
    other = await send(http, _repeats(agent, {FP_A: 2}, id="hb_bbbb_1_0"))  # another process: 3 + 2 = 5, at the limit
    assert other.status_code == 200 and other.json()["agents"][agent]["loop"]["counts"][FP_A] == 5
    assert other.json()["agents"][agent]["loop"]["key"] == loop["key"]  # one key per org
    past = await send(http, _repeats(agent, {FP_A: 1}, id="hb_cccc_1_0"))
    assert past.status_code == 429
    err = past.json()["error"]
    assert err["policy"] == "max_identical_requests_per_hour" and (err["limit"], err["spent"]) == ("5", "6")
    assert past.json()["agents"][agent]["state"] == "blocked"
    refused = await http.post("/v1/mesh/intents", json={"agent": agent})
    assert refused.status_code == 429
    events = (await http.get("/v1/mesh/events")).json()["events"]
    detected = [e["data"] for e in events if e["type"] == "loop.detected"]
    assert detected == [{**detected[0], "agent": agent, "intent": "int_loop", "count": 6, "limit": "5", "fingerprint": FP_A}]
    gateway.set_clock("2026-11-28T13:00:01Z")  # a new hour: counts start again and the block lifts
    fresh = await send(http, _repeats(agent, {FP_A: 1}, id="hb_cccc_2_0"))
    assert fresh.status_code == 200 and fresh.json()["agents"][agent]["loop"]["counts"] == {FP_A: 1}


async def test_loop_pause_pauses_once_per_hour(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    await http.put(policy_path(agent), json={"max_identical_requests_per_hour": 2, "action_on_breach": "pause"})
    paused = await send(http, _repeats(agent, {FP_A: 3}))
    assert paused.status_code == 429 and paused.json()["agents"][agent]["state"] == "paused"
    assert (await http.post(f"/v1/mesh/agents/{path(agent)}/resume")).status_code == 200
    again = await send(http, _repeats(agent, {FP_A: 1}))  # an admin's resume sticks for the rest of the hour
    assert again.status_code == 200 and again.json()["agents"][agent]["state"] == "active"


async def test_other_orgs_get_another_key_and_policies_without_the_field_no_loop(gateway: InProcessGateway, agent: str) -> None:
    http = gateway.http
    other = "agent://otherorg/prod/bot"
    for a in (agent, other):
        await http.put(policy_path(a), json={"max_identical_requests_per_hour": 5})
    keys = {a: (await send(http, _repeats(a, {FP_A: 1}))).json()["agents"][a]["loop"]["key"] for a in (agent, other)}
    assert keys[agent] != keys[other]
    plain = agent + "-plain"
    await http.put(policy_path(plain), json={"max_cost_per_day_usd": "5"})
    answer = (await send(http, _repeats(plain, {FP_A: 50}))).json()["agents"][plain]
    assert "loop" not in answer and answer["state"] == "active"  # counts for an agent without the field are ignored


@pytest.mark.parametrize("repeats", [{"XYZ": 1}, {FP_A: 0}, {FP_A: "3"}, {FP_A: 1.5}, {"0123456789ABCDEF": 1}, []])
async def test_bad_repeats_refuse_only_their_entry(gateway: InProcessGateway, agent: str, repeats: Any) -> None:
    resp = await send(gateway.http, {**entry(agent), "repeats": repeats}, entry(agent))
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert results[0]["status"] == "error" and results[0]["error"]["field"].startswith("heartbeats.0.repeats")
    assert results[1]["status"] == "recorded"


def test_schema_4_databases_upgrade_to_loop_detection(tmp_path: Path, db_url: str) -> None:
    """A database a gateway before loop detection made (no org secrets, no repeat counts) upgrades on start."""
    from sqlalchemy import text

    from axme_meter.gateway._db import SCHEMA_VERSION, make_engine
    from support.gateway_helpers import send as send_sync
    from support.gateway_process import GatewayProcess

    agent = "agent://acme/production/upgraded"
    with GatewayProcess(tmp_path / "a", db_url=db_url) as gw, gw.client() as http:
        assert http.put(policy_path(agent), json={"max_cost_per_day_usd": "5"}).status_code == 200
        assert send_sync(http, entry(agent, "1.00", id="hb_old_1_1")).json()["results"][0]["status"] == "recorded"
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE axme_repeats"))
            conn.execute(text("DROP TABLE axme_org_secrets"))
            conn.execute(text("UPDATE axme_schema_version SET version = 4"))
    finally:
        engine.dispose()
    with GatewayProcess(tmp_path / "b", db_url=db_url) as gw, gw.client() as http:
        assert send_sync(http, entry(agent, "1.00", id="hb_old_1_1")).json()["results"][0]["status"] == "duplicate"
        put = http.put(policy_path(agent), json={"max_cost_per_day_usd": "5", "max_identical_requests_per_hour": 2})
        assert put.status_code == 200
        answer = send_sync(http, _repeats(agent, {FP_A: 3}))
        assert answer.status_code == 429 and answer.json()["agents"][agent]["loop"]["max"] == 3
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM axme_schema_version")).scalar() == SCHEMA_VERSION == 7
            assert conn.execute(text("SELECT count(*) FROM axme_org_secrets")).scalar() == 1
    finally:
        engine.dispose()
