"""The dashboard at fleet scale: ``python benchmarks/dashboard_overview.py [--agents 5000] [--samples 60]``.

Starts a real ``axme-meter gateway`` process on loopback (a SQLite temp file, then PostgreSQL when
``AXME_TEST_POSTGRES_URL`` is set, in a scratch database dropped afterwards), creates the fleet
through the real API (heartbeat batches on four different days, so day / week / month differ; a
policy on every fifth agent, in four timezones, some spent so the agent is blocked; a few paused
and killed), logs into the dashboard, and times, client side over loopback, interleaved so that
machine load hits every path alike:

- ``/dashboard`` — the overview page (page 1 of 50 agents, biggest spender first),
- ``/dashboard/live/overview`` — what the open tab's poller fetches on every refresh,
- the same refresh searching (``q``) and sorted by state, and a page deep in the list,
- ``GET /v1/mesh/agents?limit=50`` and the same sorted by cost at offset 2,500,
- ``GET /v1/mesh/agents`` without paging (every agent: what AXME's SDK asks for),
- ``GET /healthz`` — the baseline: the ratio column is each path's p50 over its p50.

Target: a refresh under 300 ms at 5,000 agents on the 2-core machine. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.gateway_process import GatewayProcess  # noqa: E402

NOW = "2026-11-29T12:00:00Z"  # a Sunday: the week started Nov 23, the month Nov 1
#: (gateway clock, share of the fleet reporting then): month-only, week, and today's spend
DAYS = [("2026-11-03T09:00:00Z", 1), ("2026-11-24T15:00:00Z", 2), ("2026-11-29T08:00:00Z", 1), ("2026-11-29T11:59:00Z", 1)]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
BATCH = 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000 if ordered else float("nan")


def address(i: int) -> str:
    return f"agent://fleet/{('prod', 'staging', 'dev')[i % 3]}/agent-{i:05d}"


def entry(i: int, n: int) -> dict[str, Any]:
    cost = f"0.{(i * 7919 + n * 104729) % 100000:05d}1"
    return {"id": f"hb_dashbench_{n}_{i}", "agent": address(i), "intent_id": f"task-{i % 97}",
            "metrics": {"cost_usd": cost, "llm_calls": 3, "tokens_in": 1200, "tokens_out": 400},
            "by_model": {"gpt-4o-mini": {"cost_usd": cost, "llm_calls": 3, "tokens_in": 1200, "tokens_out": 400}}}


def create_fleet(gw: GatewayProcess, agents: int) -> None:
    """Every agent through the real API: heartbeats (first contact creates it), policies, state changes."""
    with gw.client(timeout=300) as http:
        for n, (at, every) in enumerate(DAYS):
            gw.set_clock(at)
            ids = [i for i in range(agents) if i % every == 0]
            for start in range(0, len(ids), BATCH):
                resp = http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(i, n) for i in ids[start:start + BATCH]]})
                if resp.status_code not in (200, 429):
                    raise RuntimeError(f"heartbeat failed: {resp.status_code} {resp.text[:300]}")
        gw.set_clock(NOW)
        for i in range(0, agents, 5):
            limit = "0.10" if i % 25 == 0 else "50"  # a fifth of these are spent today: blocked
            resp = http.put(f"/v1/mesh/agents/{quote(address(i), safe='')}/policies/cost",
                            json={"max_cost_per_day_usd": limit, "max_cost_per_month_usd": "500", "timezone": ZONES[i // 5 % len(ZONES)]})
            resp.raise_for_status()
        for i in range(1, agents, 97):
            http.post(f"/v1/mesh/agents/{quote(address(i), safe='')}/{'kill' if i % 2 else 'pause'}").raise_for_status()
        listed = http.get("/v1/mesh/agents", params={"limit": 1}).json()
        if listed["summary"]["total"] != agents:
            raise RuntimeError(f"expected {agents} agents, the gateway lists {listed['summary']['total']}")


@contextmanager
def login(gw: GatewayProcess) -> Iterator[httpx.Client]:
    """A dashboard session (cookie jar) of the super-admin, who sees the whole fleet."""
    with httpx.Client(base_url=gw.url, timeout=60, follow_redirects=False) as http:
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', http.get("/dashboard/login").text)
        assert token
        resp = http.post("/dashboard/login", data={"api_key": gw.admin_key, "csrf": token.group(1)})
        if resp.status_code != 303:
            raise RuntimeError(f"login failed: {resp.status_code}")
        yield http


def measure(gw: GatewayProcess, samples: int, agents: int) -> dict[str, list[float]]:
    """Each path timed ``samples`` times, round-robin, after one warm-up round."""
    deep = max(1, agents // 100)
    dash = [("/dashboard", {}), ("/dashboard/live/overview", {}),
            ("/dashboard/live/overview", {"q": "agent-012", "sort": "state"}), ("/dashboard/live/overview", {"page": str(deep)})]
    api = [("/v1/mesh/agents", {"limit": "50"}), ("/v1/mesh/agents", {"limit": "50", "sort": "cost", "offset": str(agents // 2)}),
           ("/healthz", {})]
    full = ("/v1/mesh/agents", {})
    times: dict[str, list[float]] = {}
    with login(gw) as session, gw.client(timeout=120) as http:
        def timed(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[str, float]:
            started = time.perf_counter()
            resp = client.get(path, params=params)
            elapsed = time.perf_counter() - started
            if resp.status_code != 200:
                raise RuntimeError(f"{path} {params}: {resp.status_code} {resp.text[:200]}")
            return (path + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")), elapsed

        for round_ in range(samples + 1):
            for client, paths in ((session, dash), (http, api)):
                for path, params in paths:
                    label, elapsed = timed(client, path, params)
                    if round_:
                        times.setdefault(label, []).append(elapsed)
            if round_ % 6 == 0:  # every agent at once is slow by nature: fewer samples
                label, elapsed = timed(http, *full)
                if round_:
                    times.setdefault(label + " (all agents)", []).append(elapsed)
    return times


def report(label: str, times: dict[str, list[float]]) -> None:
    base = pct(times["/healthz"], 50)
    print(f"\n{label}")
    print(f"{'path':<62} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'p50/healthz':>12}")
    for path, values in times.items():
        print(f"{path:<62} {len(values):>4} {pct(values, 50):>8.1f} {pct(values, 99):>8.1f} {pct(values, 50) / base:>12.1f}")


def run(label: str, db_url: str | None, work: Path, args: argparse.Namespace) -> None:
    gw = GatewayProcess(work / label, db_url=db_url, clock=NOW, startup_timeout=60,
                        env={"AXME_GATEWAY_NEW_AGENTS_PER_MINUTE": "0"})  # the fleet is created at once
    with gw:
        started = time.perf_counter()
        create_fleet(gw, args.agents)
        print(f"{label}: created {args.agents:,} agents through the API in {time.perf_counter() - started:.1f} s")
        report(f"{label}, {args.agents:,} agents, {args.samples} samples per path", measure(gw, args.samples, args.agents))


@contextmanager
def postgres_db() -> Iterator[str | None]:
    base = os.environ.get("AXME_TEST_POSTGRES_URL")
    if not base:
        print("\nPostgreSQL: skipped (set AXME_TEST_POSTGRES_URL)")
        yield None
        return
    import psycopg

    name = "axme_dashbench_" + secrets.token_hex(4)
    with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rpartition("/")[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5000, help="fleet size (default 5000)")
    parser.add_argument("--samples", type=int, default=60, help="timed requests per path (default 60)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; latencies client side over loopback")
    with tempfile.TemporaryDirectory(prefix="axme-dashbench-") as tmp:
        run("sqlite", None, Path(tmp), args)
        with postgres_db() as pg:
            if pg:
                run("postgres", pg, Path(tmp), args)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
