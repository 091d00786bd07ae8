"""How fast an org may create agents (``AXME_GATEWAY_NEW_AGENTS_PER_MINUTE``): a clear 429, per-entry errors in a
batch, per org, exact across two replicas."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from axme_meter._protocol import RETRYABLE_ENTRY_CODES, EntryResult
from axme_meter.gateway._agent_quota import ENV, limit_from
from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import GatewayProcess
from support.inprocess import InProcessGateway, inprocess_gateway

LIMIT = 3
CODE = "agent_creation_rate_limited"


def agent(n: int, org: str = "acme") -> str:
    return f"agent://{org}/production/new-{n}"


@pytest.fixture
async def gw(tmp_path: Path, db_url: str) -> AsyncIterator[InProcessGateway]:
    async with inprocess_gateway(tmp_path, db_url=db_url, new_agents_per_minute=LIMIT) as gateway:
        yield gateway


async def _batch(gw: InProcessGateway, *entries: dict[str, Any]) -> Any:
    return await gw.http.post("/v1/mesh/heartbeat", json={"heartbeats": list(entries)})


def _assert_429(resp: Any, address: str) -> dict[str, Any]:
    assert resp.status_code == 429, resp.text
    error = resp.json()["error"]
    assert error["code"] == CODE and ENV in error["message"] and address in error["message"]
    details = error["details"]
    assert details["limit"] == LIMIT and details["setting"] == ENV and details["agent"] == address
    assert 1 <= details["retry_after"] <= 60 and resp.headers["retry-after"] == str(details["retry_after"])
    return details


async def test_a_batch_records_the_agents_within_the_limit_and_answers_the_rest_entry_by_entry(gw: InProcessGateway) -> None:
    assert (await _batch(gw, entry(agent(0), "1", id="hb_known"))).status_code == 200  # one of the three
    entries = [entry(agent(n), "1", id=f"hb_n{n}") for n in range(1, 6)] + [entry(agent(0), "2", id="hb_known_2")]
    resp = await _batch(gw, *entries)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["recorded", "recorded", "error", "error", "error", "recorded"]
    for r, n in zip(results[2:5], (3, 4, 5)):
        assert r["id"] == f"hb_n{n}" and r["error"]["code"] == CODE and agent(n) in r["error"]["message"]
        assert EntryResult(r["status"], r["error"]["message"], r["error"]["code"]).final is False  # the client re-sends it
    assert CODE in RETRYABLE_ENTRY_CODES
    listed = (await gw.http.get("/v1/mesh/agents")).json()["agents"]
    assert sorted(a["address"] for a in listed) == [agent(0), agent(1), agent(2)]
    assert (await gw.http.get(f"/v1/mesh/agents/{path(agent(0))}")).json()["cost_today"] == "3.00"
    # a minute after the first ones were created there is room again, and the refused entry's id was never used
    gw.set_clock("2026-11-28T12:01:00Z")
    resp = await _batch(gw, entry(agent(3), "1", id="hb_n3"))
    assert resp.json()["results"][0]["status"] == "recorded"


async def test_single_entries_intents_grants_and_policies_for_new_agents_beyond_the_limit_get_429(gw: InProcessGateway) -> None:
    for n in range(LIMIT):
        assert (await gw.http.put(policy_path(agent(n)), json={"max_cost_per_day_usd": "5"})).status_code == 200
    details = _assert_429(await gw.http.post("/v1/mesh/heartbeat", json=entry(agent(7), "1")), agent(7))
    assert details["retry_after"] == 60  # all three were created at this very second
    _assert_429(await gw.http.post("/v1/mesh/intents", json={"agent": agent(8)}), agent(8))
    _assert_429(await gw.http.put(policy_path(agent(9)), json={"max_cost_per_day_usd": "5"}), agent(9))
    _assert_429(await gw.http.post("/v1/mesh/grants", json={"agent": agent(10), "instance": "p1"}), agent(10))
    assert len((await gw.http.get("/v1/mesh/agents")).json()["agents"]) == LIMIT
    # agents that exist are never limited, and another org has its own allowance
    assert (await gw.http.post("/v1/mesh/intents", json={"agent": agent(1)})).status_code == 201
    assert (await gw.http.post("/v1/mesh/heartbeat", json=entry(agent(1, "other"), "1"))).status_code == 200
    gw.set_clock("2026-11-28T12:00:59Z")  # the oldest agent leaves the minute at 12:01:00
    assert _assert_429(await gw.http.post("/v1/mesh/heartbeat", json=entry(agent(7), "1")), agent(7))["retry_after"] == 1
    gw.set_clock("2026-11-28T12:01:00Z")
    assert (await gw.http.post("/v1/mesh/heartbeat", json=entry(agent(7), "1"))).status_code == 200


async def test_zero_means_unlimited(tmp_path: Path) -> None:
    async with inprocess_gateway(tmp_path, new_agents_per_minute=0) as gw:
        resp = await _batch(gw, *(entry(agent(n), "1") for n in range(50)))
        assert [r["status"] for r in resp.json()["results"]] == ["recorded"] * 50


def test_the_setting_is_checked() -> None:
    assert limit_from(None) == limit_from("") == 600 and limit_from(" 25 ") == 25 and limit_from("0") == 0
    for bad in ("-1", "many", "1.5"):
        with pytest.raises(ValueError, match=ENV):
            limit_from(bad)


@pytest.mark.postgres
def test_the_limit_is_exact_across_two_replicas(tmp_path: Path, postgres_url: str) -> None:
    env = {ENV: "10"}
    a = GatewayProcess(tmp_path / "a", db_url=postgres_url, clock="2026-11-28T12:00:00Z", env=env)
    b = GatewayProcess(tmp_path / "b", db_url=postgres_url, admin_key=a.admin_key, clock_file=a.clock_file, env=env)
    senders = 6
    with a, b:
        barrier = threading.Barrier(senders)

        def create(s: int) -> list[str]:
            with (a if s % 2 else b).client() as http:
                batch = [entry(agent(s * 100 + n), "0.01", id=f"hb_{s}_{n}") for n in range(5)]
                barrier.wait()
                resp = send(http, *batch)
                assert resp.status_code == 200, resp.text
                return [r["status"] for r in resp.json()["results"]]

        with ThreadPoolExecutor(senders) as pool:
            statuses = [s for result in pool.map(create, range(senders)) for s in result]
        assert statuses.count("recorded") == 10 and statuses.count("error") == 20
        with a.client() as http:
            listed = http.get("/v1/mesh/agents").json()
            assert listed["summary"]["total"] == 10
