"""Window roll-over with the injectable clock (hour/day/week/month, a non-UTC timezone), across replicas.

Roll-over is route logic and runs in-process (``create_app`` through ``httpx.ASGITransport``, SQLite and,
when configured, PostgreSQL); "a block lifts on every replica" needs two real processes on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from axme_meter.gateway._windows import bounds, iso, parse_instant
from support.gateway_helpers import asend, entry, path, policy_path, send
from support.gateway_process import GatewayProcess
from support.inprocess import InProcessGateway, inprocess_gateway

AGENT = "agent://acme/production/clocked"


@pytest.fixture
async def clocked_gateway(tmp_path: Path, db_url: str) -> AsyncIterator[InProcessGateway]:
    """A gateway of its own whose clock the test moves (``gw.set_clock(...)``)."""
    async with inprocess_gateway(tmp_path, db_url=db_url) as gw:
        yield gw


async def windows(http: httpx.AsyncClient, agent: str = AGENT) -> dict[str, Decimal]:
    detail = (await http.get(f"/v1/mesh/agents/{path(agent)}")).json()
    return {w: Decimal(v["cost_usd"]) for w, v in detail["windows"].items()}


async def test_counters_roll_over_each_window(clocked_gateway: InProcessGateway) -> None:
    gw = clocked_gateway
    http = gw.http
    gw.set_clock("2026-11-28T12:10:00Z")  # a Saturday
    await asend(http, entry(AGENT, "1"))
    gw.set_clock("2026-11-28T13:05:00Z")  # next hour
    await asend(http, entry(AGENT, "2"))
    assert await windows(http) == {"hour": 2, "day": 3, "week": 3, "month": 3}
    gw.set_clock("2026-11-29T09:00:00Z")  # Sunday: same week
    await asend(http, entry(AGENT, "4"))
    assert await windows(http) == {"hour": 4, "day": 4, "week": 7, "month": 7}
    gw.set_clock("2026-11-30T00:00:00Z")  # Monday 00:00: new week, same month
    assert await windows(http) == {"hour": 0, "day": 0, "week": 0, "month": 7}
    await asend(http, entry(AGENT, "8"))
    gw.set_clock("2026-12-01T00:00:00Z")  # new month
    assert await windows(http) == {"hour": 0, "day": 0, "week": 8, "month": 0}
    series = (await http.get(f"/v1/mesh/agents/{path(AGENT)}/costs",
                             params={"window": "day", "from": "2026-11-27T00:00:00Z", "to": "2026-12-01T00:00:00Z"})).json()
    assert [(s["start"], s["cost_usd"]) for s in series["series"]] == [
        ("2026-11-27T00:00:00Z", "0.00"), ("2026-11-28T00:00:00Z", "3.00"),
        ("2026-11-29T00:00:00Z", "4.00"), ("2026-11-30T00:00:00Z", "8.00")]
    assert series["totals"]["cost_usd"] == "15.00"
    months = (await http.get(f"/v1/mesh/agents/{path(AGENT)}/costs", params={"window": "month"})).json()
    assert months["series"][-2:] == [
        {**months["series"][-2], "start": "2026-11-01T00:00:00Z", "cost_usd": "15.00"},
        {**months["series"][-1], "start": "2026-12-01T00:00:00Z", "cost_usd": "0.00"}]


@pytest.mark.parametrize(("window", "field", "before", "after"), [
    ("hour", "max_cost_per_hour_usd", "2026-11-28T12:59:59Z", "2026-11-28T13:00:00Z"),
    ("day", "max_cost_per_day_usd", "2026-11-28T23:59:59Z", "2026-11-29T00:00:00Z"),
    ("month", "max_cost_per_month_usd", "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z"),
])
async def test_block_lifts_when_the_window_resets(clocked_gateway: InProcessGateway, window: str, field: str, before: str,
                                                  after: str) -> None:
    gw = clocked_gateway
    http = gw.http
    await http.put(policy_path(AGENT), json={field: "1"})
    gw.set_clock(before)
    blocked = await asend(http, entry(AGENT, "1"))
    assert blocked.status_code == 429
    assert blocked.json()["error"]["resets_at"] == after
    assert blocked.headers["retry-after"] == "1"
    gw.set_clock(after)
    assert (await http.post("/v1/mesh/intents", json={"agent": AGENT})).status_code == 201
    resp = await asend(http, entry(AGENT, "0.25"))
    assert resp.status_code == 200 and resp.json()["agents"][AGENT]["state"] == "active"
    assert resp.json()["agents"][AGENT]["policies"][0]["spent"] == "0.25"


async def test_day_follows_the_policy_timezone(clocked_gateway: InProcessGateway) -> None:
    gw = clocked_gateway
    http = gw.http
    await http.put(policy_path(AGENT), json={"max_cost_per_day_usd": "10", "timezone": "America/New_York"})
    gw.set_clock("2026-11-28T06:00:00Z")  # 01:00 in New York, Nov 28
    await asend(http, entry(AGENT, "4"))
    gw.set_clock("2026-11-29T04:59:00Z")  # 23:59 in New York, still Nov 28 (UTC is already Nov 29)
    resp = await asend(http, entry(AGENT, "7"))
    assert resp.status_code == 429
    policy = resp.json()["agents"][AGENT]["policies"][0]
    assert (policy["spent"], policy["resets_at"]) == ("11.00", "2026-11-29T05:00:00Z")
    gw.set_clock("2026-11-29T05:00:00Z")  # midnight in New York
    resp = await asend(http, entry(AGENT, "1"))
    assert resp.status_code == 200 and resp.json()["agents"][AGENT]["policies"][0]["spent"] == "1.00"
    detail = (await http.get(f"/v1/mesh/agents/{path(AGENT)}")).json()
    assert detail["windows"]["day"]["start"] == "2026-11-29T05:00:00Z" and detail["timezone"] == "America/New_York"


@pytest.fixture
def two_replicas(tmp_path: Path, db_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway processes on one database, sharing one clock file."""
    a = GatewayProcess(tmp_path / "a", db_url=db_url, clock="2026-11-28T12:00:00Z")
    b = GatewayProcess(tmp_path / "b", db_url=db_url, admin_key=a.admin_key, clock_file=a.clock_file)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_block_lifts_on_every_replica(two_replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = two_replicas
    with a.client() as http_a, b.client() as http_b:
        http_a.put(policy_path(AGENT), json={"max_cost_per_day_usd": "1"})
        assert send(http_a, entry(AGENT, "1.5")).status_code == 429
        assert send(http_b, entry(AGENT, "0")).json()["agents"][AGENT]["state"] == "blocked"
        assert http_b.post("/v1/mesh/intents", json={"agent": AGENT}).status_code == 429
        http_a.put(policy_path(AGENT), json={"max_cost_per_day_usd": "2"})  # limit raised on A ...
        assert send(http_b, entry(AGENT, "0")).status_code == 200  # ... lifts the block on B at once
        assert send(http_b, entry(AGENT, "0.5")).status_code == 429  # 2.00 of 2.00
        a.set_clock("2026-11-29T00:00:00Z")  # window reset, seen by both
        for http in (http_a, http_b):
            assert http.post("/v1/mesh/intents", json={"agent": AGENT}).status_code == 201
            assert send(http, entry(AGENT, "0")).json()["agents"][AGENT]["state"] == "active"


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe"])
def test_window_bounds_contain_now_and_start_on_calendar_edges(tz: str) -> None:
    for text in ("2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", "2026-10-25T00:30:00Z", "2026-11-01T05:30:00Z",
                 "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"):
        now = parse_instant(text)
        for window in ("hour", "day", "week", "month"):
            start, end = bounds(window, now, tz)
            assert start <= now < end, (window, tz, text, iso(start), iso(end))
            assert bounds(window, start, tz)[0] == start
        from zoneinfo import ZoneInfo

        local = bounds("week", now, tz)[0].astimezone(ZoneInfo(tz))
        assert local.weekday() == 0 and (local.hour, local.minute) == (0, 0)
        assert bounds("month", now, tz)[0].astimezone(ZoneInfo(tz)).day == 1
    assert datetime(2026, 1, 1, tzinfo=timezone.utc).tzinfo is not None
