"""``GET /v1/mesh/agents``: paging, search and sorting done in the database, and the answer without them
unchanged (AXME's SDK reads it). In-process on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from support.gateway_helpers import asend, entry, path, policy_path
from support.inprocess import InProcessGateway, inprocess_gateway

NOW = "2026-11-28T12:00:00Z"


@pytest.fixture
async def gw(tmp_path: Path, db_url: str) -> AsyncIterator[InProcessGateway]:
    async with inprocess_gateway(tmp_path, db_url=db_url, clock=NOW) as gateway:
        yield gateway


async def _list(gw: InProcessGateway, **params: Any) -> dict[str, Any]:
    resp = await gw.http.get("/v1/mesh/agents", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def _all_pages(gw: InProcessGateway, **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow ``next_offset`` from the first page; the addresses in order, and every page's ``page`` object."""
    addresses, pages, offset = [], [], 0
    while offset is not None:
        body = await _list(gw, offset=offset, **params)
        addresses += [a["address"] for a in body["agents"]]
        pages.append(body["page"])
        offset = body["page"]["next_offset"]
    return addresses, pages


def _agent(n: int) -> str:
    return f"agent://acme/{('prod', 'dev')[n % 2]}/bot-{n:02d}"


async def _fleet(gw: InProcessGateway, count: int = 23) -> dict[str, Decimal]:
    """``count`` agents with distinct spend today (bot-00 the most); returns address → cost."""
    costs = {_agent(n): Decimal(count - n) / 100 for n in range(count)}
    resp = await asend(gw.http, *(entry(a, str(c)) for a, c in costs.items()))
    assert resp.status_code == 200, resp.text
    return costs


async def test_without_paging_parameters_the_answer_is_as_before(gw: InProcessGateway) -> None:
    costs = await _fleet(gw, 5)
    body = await _list(gw)
    assert list(body) == ["ok", "window", "agents", "summary"]  # no "page": AXME's SDK sees what it always saw
    assert [a["address"] for a in body["agents"]] == sorted(costs)  # every agent, by address
    assert list(body["agents"][0]) == ["address_id", "address", "display_name", "org", "state", "health_status",
                                       "last_heartbeat_at", "created_at", "window", "intents_period", "cost_period",
                                       "intents_today", "cost_today", "timezone", "metadata", "policies"]
    assert body["summary"] == {"total": 5, "healthy": 5, "degraded": 0, "unreachable": 0, "killed": 0, "unknown": 0,
                               "blocked": 0, "paused": 0, "cost_period": "0.15", "intents_period": 0}
    healthy = await _list(gw, health="healthy")
    assert len(healthy["agents"]) == 5 and "page" not in healthy
    assert (await _list(gw, health="unknown"))["agents"] == [] and (await _list(gw, health="unknown"))["summary"]["total"] == 5


async def test_pages_list_every_agent_once_in_cost_order(gw: InProcessGateway) -> None:
    costs = await _fleet(gw)
    addresses, pages = await _all_pages(gw, limit=5, sort="cost")
    assert addresses == sorted(costs, key=lambda a: (-costs[a], a))  # biggest spender first, each agent once
    assert [p["offset"] for p in pages] == [0, 5, 10, 15, 20] and pages[-1]["next_offset"] is None
    assert {(p["total"], p["limit"], p["sort"], p["order"]) for p in pages} == {(23, 5, "cost", "desc")}
    ascending, _ = await _all_pages(gw, limit=7, sort="cost", order="asc")
    assert ascending == addresses[::-1]
    page = await _list(gw, limit=5, offset=5, sort="cost")
    assert page["summary"]["total"] == 23 and page["summary"]["cost_period"] == format(sum(costs.values()), "f")
    assert [Decimal(a["cost_today"]) for a in page["agents"]] == [costs[a] for a in addresses[5:10]]
    beyond = await _list(gw, limit=5, offset=100)
    assert beyond["agents"] == [] and beyond["page"]["total"] == 23 and beyond["summary"]["total"] == 23


async def test_search_is_a_case_insensitive_address_substring_taken_literally(gw: InProcessGateway) -> None:
    await _fleet(gw)
    literal = ["agent://acme/prod/a_b", "agent://acme/prod/axb"]
    assert (await asend(gw.http, *(entry(a, "0.01") for a in literal))).status_code == 200
    found = await _list(gw, q="DEV/BOT-1", limit=50)
    assert [a["address"] for a in found["agents"]] == [_agent(n) for n in (11, 13, 15, 17, 19)]
    assert found["page"]["total"] == 5 and found["page"]["q"] == "DEV/BOT-1" and found["summary"]["total"] == 25
    assert [a["address"] for a in (await _list(gw, q="a_b"))["agents"]] == ["agent://acme/prod/a_b"]  # "_" is not a wildcard
    assert (await _list(gw, q="%"))["agents"] == []
    assert (await _list(gw, q="nothing-like-it"))["page"]["total"] == 0


async def test_sort_by_name_last_heartbeat_and_state(gw: InProcessGateway) -> None:
    http = gw.http
    early, late, silent = "agent://acme/prod/early", "agent://acme/prod/late", "agent://acme/prod/silent"
    blocked, paused, killed = "agent://acme/prod/blocked", "agent://acme/prod/paused", "agent://acme/prod/killed"
    gw.set_clock("2026-11-28T10:00:00Z")
    assert (await asend(http, entry(early, "0.01"), entry(blocked, "0.50"), entry(paused, "0.02"), entry(killed, "0.03"))).status_code == 200
    gw.set_clock("2026-11-28T11:59:00Z")
    assert (await asend(http, entry(late, "0.04"))).status_code == 200
    assert (await http.put(policy_path(silent), json={"max_cost_per_day_usd": "1"})).status_code == 200  # never reported
    assert (await http.put(policy_path(blocked), json={"max_cost_per_day_usd": "0.25"})).status_code == 200
    assert (await http.post(f"/v1/mesh/agents/{path(paused)}/pause")).status_code == 200
    assert (await http.post(f"/v1/mesh/agents/{path(killed)}/kill")).status_code == 200
    gw.set_clock(NOW)

    names = [a["address"] for a in (await _list(gw, sort="name", limit=10))["agents"]]
    assert names == sorted([early, late, silent, blocked, paused, killed])
    assert [a["address"] for a in (await _list(gw, sort="name", order="desc", limit=10))["agents"]] == names[::-1]
    newest = [a["address"] for a in (await _list(gw, sort="last_heartbeat", limit=10))["agents"]]
    assert newest[0] == late and newest[-1] == silent  # never reported: last
    oldest = [a["address"] for a in (await _list(gw, sort="last_heartbeat", order="asc", limit=10))["agents"]]
    assert oldest[-2:] == [late, silent] and set(oldest[:4]) == {early, blocked, paused, killed}
    by_state = (await _list(gw, sort="state", limit=10))["agents"]
    assert [(a["address"], a["state"]) for a in by_state[:3]] == [(killed, "killed"), (paused, "paused"), (blocked, "blocked")]
    assert [a["address"] for a in by_state[3:]] == [late, early, silent]  # active ones: the biggest spender first


async def test_state_counts_and_state_order_agree_with_each_agents_evaluated_state(gw: InProcessGateway) -> None:
    """The summary and ``sort=state`` use the state as SQL derives it; each listed agent's ``state`` is the
    policy evaluation the heartbeat answers use. They must agree, whatever the policy, action and timezone."""
    http = gw.http
    policies = {
        "day-over": {"max_cost_per_day_usd": "0.10"},
        "day-under": {"max_cost_per_day_usd": "5"},
        "hour-over": {"max_cost_per_hour_usd": "0.10", "max_cost_per_month_usd": "100"},
        "month-over": {"max_cost_per_month_usd": "0.20", "timezone": "Asia/Tokyo"},
        "exact-limit": {"max_cost_per_day_usd": "0.30", "timezone": "America/New_York"},
        "notify-over": {"max_cost_per_day_usd": "0.10", "action_on_breach": "notify"},
        "intents-only": {"max_intents_per_day": 1},
        "per-intent": {"max_cost_per_intent_usd": "0.01"},
        "kathmandu": {"max_cost_per_day_usd": "0.20", "timezone": "Asia/Kathmandu"},
        "loop-over": {"max_identical_requests_per_hour": 2},  # one request sent 3 times this hour
        "loop-under": {"max_identical_requests_per_hour": 3},
    }
    for name, policy in policies.items():
        assert (await http.put(policy_path(f"agent://acme/prod/{name}"), json=policy)).status_code == 200
    spend = [entry(f"agent://acme/prod/{name}", "0.30", intent=f"i-{name}") for name in policies]
    for e in spend:
        if "/loop-" in e["agent"]:
            e["repeats"] = {"0123456789abcdef": 3}
    spend.append(entry("agent://acme/prod/no-policy", "0.30"))
    assert (await asend(http, *spend)).status_code == 200
    body = await _list(gw, sort="state", limit=100)
    states = {a["address"].rsplit("/", 1)[1]: a["state"] for a in body["agents"]}
    assert {n for n, s in states.items() if s == "blocked"} == {"day-over", "hour-over", "month-over", "exact-limit",
                                                                "kathmandu", "loop-over"}
    assert body["summary"]["blocked"] == 6 and body["summary"]["total"] == 12
    assert [a["state"] for a in body["agents"]] == ["blocked"] * 6 + ["active"] * 6  # the order agrees with the states
    kathmandu = next(a for a in body["agents"] if a["address"].endswith("/kathmandu"))
    assert kathmandu["timezone"] == "Asia/Kathmandu" and kathmandu["cost_today"] == "0.30"  # its own day window, not UTC's


async def test_bad_listing_parameters_are_422_naming_the_parameter(gw: InProcessGateway) -> None:
    for params, field in [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "ten"}, "limit"),
                          ({"offset": "-1"}, "offset"), ({"offset": "1e3"}, "offset"), ({"sort": "price"}, "sort"),
                          ({"order": "up"}, "order"), ({"q": "x" * 201}, "q"), ({"q": "a\x00b"}, "q"),
                          ({"window": "year"}, "window")]:
        resp = await gw.http.get("/v1/mesh/agents", params=params)
        assert resp.status_code == 422, (params, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "validation_error" and error["details"]["field"] == field and error["message"].startswith(field)


async def test_fleet_sums_are_exact_past_64_bits(gw: InProcessGateway) -> None:
    """Two agents at $5,000,000 each today: $10M is 1e19 pico-dollars, past a 64-bit integer."""
    big = [entry(f"agent://acme/prod/big-{n % 2}", "10000") for n in range(1000)]
    assert (await asend(gw.http, *big)).status_code == 200
    body = await _list(gw, limit=1, sort="cost")
    assert body["summary"]["cost_period"] == "10000000.00"
    assert body["agents"][0]["cost_today"] == "5000000.00" and body["page"]["total"] == 2


async def test_dashboard_filters_that_match_no_address_answer_an_empty_page(tmp_path: Path, db_url: str) -> None:
    """The overview's ``q`` and ``org`` come from the URL: a control character (PostgreSQL refuses NUL in any
    string) or an unknown health must give "no match", never an error."""
    async with inprocess_gateway(tmp_path, db_url=db_url, clock=NOW, dashboard=True) as gw:
        await _fleet(gw, 3)
        login = await gw.http.get("/dashboard/login")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', login.text)
        assert token and (await gw.http.post("/dashboard/login", data={"api_key": gw.admin_key, "csrf": token.group(1)})).status_code == 303
        for params in ({"q": "bot\x00"}, {"org": "ac\x00me"}, {"q": "\x7f", "sort": "state"}):
            page = await gw.http.get("/dashboard/live/overview", params=params)
            assert page.status_code == 200 and "No agent matches the filter" in page.text, params
        assert (await _list(gw, health="he\x00"))["agents"] == []
        full = await gw.http.get("/dashboard", params={"q": "BOT-0", "sort": "name"})
        assert re.findall(r'<tr data-agent="([^"]+)">', full.text) == sorted(_agent(n) for n in range(3))
