"""The grant ledger over HTTP, against real gateway processes: spent + outstanding grants never pass the limit."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import httpx
import pytest

from support.gateway_helpers import entry, policy_path, send
from support.gateway_process import GatewayProcess


def ask(http: httpx.Client, agent: str, instance: str, call_cost: str | None = "0.01", **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"agent": agent, "instance": instance, **extra}
    if call_cost is not None:
        body["call_cost_usd"] = call_cost
    return http.post("/v1/mesh/grants", json=body)


def amounts(resp: httpx.Response) -> dict[str, Decimal]:
    assert resp.status_code == 200, resp.text
    return {g["policy"]: Decimal(g["amount"]) for g in resp.json()["grants"]}


def set_policy(http: httpx.Client, agent: str, **fields: Any) -> None:
    resp = http.put(policy_path(agent), json=fields)
    assert resp.status_code == 200, resp.text


def test_an_agent_without_money_policy_needs_no_grant(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        body = ask(http, agent, "p1").json()
        assert body["unlimited"] is True and body["grants"] == [] and body["state"] == "active"
        set_policy(http, agent, max_intents_per_day=5)  # a count limit grants no money
        assert ask(http, agent, "p1").json()["unlimited"] is True


def test_slices_shrink_to_one_call_and_never_pass_the_limit(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="1.00", max_cost_per_hour_usd="0.40")
        granted = {"max_cost_per_day_usd": Decimal(0), "max_cost_per_hour_usd": Decimal(0)}
        sizes = []
        for n in range(200):
            resp = ask(http, agent, f"p{n}")
            if resp.status_code == 429:
                break
            got = amounts(resp)
            for name, value in got.items():
                granted[name] += value
            sizes.append(got["max_cost_per_hour_usd"])
        else:
            pytest.fail("the gateway never refused")
        assert granted["max_cost_per_hour_usd"] <= Decimal("0.40")
        assert Decimal("0.40") - granted["max_cost_per_hour_usd"] < Decimal("0.01")  # the last cents were granted
        assert sizes[0] == Decimal("0.20") and sizes[-1] == Decimal("0.01")  # half of free, down to one call
        assert sizes == sorted(sizes, reverse=True)
        err = resp.json()["error"]
        assert err["code"] == "budget_exceeded" and err["policy"] == "max_cost_per_hour_usd" and err["reserved"] is True
        assert "granted to running processes and not reported spent yet" in err["message"]
        assert "not enough for the next call" in err["message"]
        assert resp.headers["x-should-retry"] == "false" and int(resp.headers["Retry-After"]) <= 5


def granted_concurrently(gateways: list[GatewayProcess], agent: str, call_cost: str, requests: int) -> Decimal:
    """8 threads (spread over ``gateways``) each ask ``requests`` times, as new processes; the total granted."""
    total = Decimal(0)
    lock = threading.Lock()

    def worker(n: int) -> None:
        nonlocal total
        with gateways[n % len(gateways)].client() as http:
            for i in range(requests):
                resp = ask(http, agent, f"w{n}-{i}", call_cost=call_cost)
                if resp.status_code == 200:
                    with lock:
                        total += sum(amounts(resp).values())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total


def test_concurrent_requests_stay_within_the_limit(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="2.00")
    assert Decimal("1.98") < granted_concurrently([gateway], agent, "0.02", 15) <= Decimal("2.00")


def test_settled_and_returned_money_flows_back(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="1.00")
        first = ask(http, agent, "p1").json()["grants"][0]
        assert Decimal(first["amount"]) == Decimal("0.50")
        # p1 spends $0.10 of it and says so in a heartbeat: spent 0.10, outstanding 0.40, free 0.50
        resp = http.post("/v1/mesh/heartbeat", json={
            "heartbeats": [entry(agent, "0.10", id="hb_p1_1_1", calls=10)],
            "grants": [{"id": first["id"], "used_usd": "0.10"}]})
        assert resp.status_code == 200 and resp.json()["grants"] == {first["id"]: "held"}
        assert amounts(ask(http, agent, "p2"))["max_cost_per_day_usd"] == Decimal("0.125")  # 0.50 free / (2 × 2)
        # p1 exits and returns the rest of its slice with its last heartbeat: 0.40 is free again at once
        resp = http.post("/v1/mesh/heartbeat", json={
            "heartbeats": [], "grants": [{"id": first["id"], "used_usd": "0.10", "final": True}]})
        assert resp.status_code == 200 and resp.json()["grants"] == {first["id"]: "returned"}
        # free = 1.00 - 0.10 spent - 0.125 (p2) = 0.775; p3 and p2 hold: 0.775 / 4
        assert amounts(ask(http, agent, "p3"))["max_cost_per_day_usd"] == Decimal("0.19375")
        # a replayed report changes nothing
        again = http.post("/v1/mesh/heartbeat", json={
            "heartbeats": [], "grants": [{"id": first["id"], "used_usd": "0.10", "final": True}]})
        assert again.json()["grants"] == {first["id"]: "returned"}


def test_top_up_keeps_one_grant_per_process_and_window(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="1.00")
        first = ask(http, agent, "p1").json()["grants"][0]
        again = ask(http, agent, "p1", held=[{"id": first["id"], "used_usd": "0.30"}]).json()["grants"][0]
        assert again["id"] == first["id"]
        assert Decimal(again["amount"]) == Decimal("0.75")  # 0.50 + half of the 0.50 still free


def test_expired_grants_return_to_the_pool(clocked_gateway: GatewayProcess, agent: str) -> None:
    with clocked_gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="1.00")
        held = ask(http, agent, "crashed", heartbeat_interval=10).json()["grants"][0]
        assert held["ttl_seconds"] == 30
        assert amounts(ask(http, agent, "p2"))["max_cost_per_day_usd"] == Decimal("0.125")
        clocked_gateway.set_clock("2026-11-28T12:00:31Z")  # "crashed" sent nothing for its ttl; p2's default is 90 s
        assert amounts(ask(http, agent, "p3"))["max_cost_per_day_usd"] == Decimal("0.21875")  # (1 - .125) / 4


def test_a_new_window_and_a_raised_limit_grant_again(clocked_gateway: GatewayProcess, agent: str) -> None:
    with clocked_gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="0.05")
        send(http, entry(agent, "0.05"))
        refused = ask(http, agent, "p1")
        assert refused.status_code == 429 and refused.json()["error"]["policy"] == "max_cost_per_day_usd"
        assert "reserved" not in refused.json()["error"]  # really spent, not held by others
        set_policy(http, agent, max_cost_per_day_usd="0.10")  # the owner raises the limit: granted at once
        assert amounts(ask(http, agent, "p1"))["max_cost_per_day_usd"] == Decimal("0.025")
        set_policy(http, agent, max_cost_per_day_usd="0.05")
        assert ask(http, agent, "p2").status_code == 429
        clocked_gateway.set_clock("2026-11-29T00:00:01Z")
        assert amounts(ask(http, agent, "p2"))["max_cost_per_day_usd"] == Decimal("0.025")


def test_paused_and_killed_agents_get_no_grant(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="1.00")
        ask(http, agent, "p1")
        http.post(f"/v1/mesh/agents/{policy_path(agent).split('/')[4]}/pause")
        paused = ask(http, agent, "p1")
        assert paused.status_code == 429 and paused.json()["error"]["code"] == "agent_paused"
        http.post(f"/v1/mesh/agents/{policy_path(agent).split('/')[4]}/kill")
        assert ask(http, agent, "p1").status_code == 403


def test_bad_grant_requests_are_refused_and_store_nothing(gateway: GatewayProcess, agent: str) -> None:
    with gateway.client() as http:
        set_policy(http, agent, max_cost_per_day_usd="1.00")
        mine = ask(http, agent, "p1").json()["grants"][0]
        cases = [
            ({"held": [{"id": "gr_0123456789abcdef01234567", "used_usd": "0"}]}, 422, "held.0.id"),  # forged
            ({"held": [{"id": mine["id"], "used_usd": "0"}], "instance": "p2"}, 422, "held.0.id"),  # another process's
            ({"call_cost_usd": "-0.01"}, 422, "call_cost_usd"),
            ({"call_cost_usd": "20000"}, 422, "call_cost_usd"),  # absurd for one call
            ({"call_cost_usd": "NaN"}, 422, "call_cost_usd"),
            ({"want_usd": "0"}, 422, "want_usd"),
            ({"held": [{"id": "not-a-grant", "used_usd": "0"}]}, 422, "held.0.id"),
            ({"instance": "has space"}, 422, "instance"),
            ({"surprise": 1}, 422, "surprise"),
        ]
        for fields, status, field in cases:
            body = {"agent": agent, "instance": "p3", "call_cost_usd": "0.01", **fields}
            resp = http.post("/v1/mesh/grants", json=body)
            assert resp.status_code == status, (fields, resp.text)
            assert resp.json()["error"]["details"]["field"] == field, (fields, resp.text)
        # nothing was granted or changed by any of them: the next slice is what it would have been
        assert amounts(ask(http, agent, "p3"))["max_cost_per_day_usd"] == Decimal("0.125")


def test_a_grant_for_another_orgs_agent_is_not_found(gateway: GatewayProcess, agent: str) -> None:
    other = gateway.create_key("otherorg")
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": other}) as http:
        resp = ask(http, agent, "p1")
    assert resp.status_code == 404 and resp.json()["error"]["details"]["resource"] == "agent"
    with gateway.client() as http:
        assert http.get(f"/v1/mesh/agents/{policy_path(agent).split('/')[4]}").status_code == 404  # nothing created


@pytest.mark.postgres
def test_two_replicas_hand_out_exactly_the_limit(postgres_url: str, tmp_path: Any, agent: str) -> None:
    replicas = [GatewayProcess(tmp_path / f"r{i}", db_url=postgres_url, admin_key="axme_sa_shared_admin_key_for_tests")
                for i in range(2)]
    for gw in replicas:
        gw.start()
    try:
        with replicas[0].client() as http:
            set_policy(http, agent, max_cost_per_day_usd="3.00")
        assert Decimal("2.97") < granted_concurrently(replicas, agent, "0.03", 20) <= Decimal("3.00")
    finally:
        for gw in replicas:
            gw.stop()
