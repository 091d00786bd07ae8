"""What approvals and spend-rate alerts cost per heartbeat: ``python benchmarks/policy_features.py [--quick]``.

One real ``axme-meter gateway`` process on loopback (SQLite temp file) and three groups of agents, each
with a $1,000,000/day policy (never breached, so every heartbeat takes the full evaluation path):

- ``baseline``: ``action_on_breach: block`` (the code path before these features, plus their "off" checks),
- ``approval``: ``action_on_breach: require_approval`` (adds the read of approved raises),
- ``spend-rate``: ``alert_on_spend_rate_multiple: 3`` (adds the read of up to 32 hourly totals; the agents
  have a week of hourly spend, so the read finds rows and the rate is normal: no alert is ever claimed).

Single-entry heartbeats are sent round-robin over the three groups (so the shared machine's noise hits
each group alike); p50 / p99 of each group and the ratio to ``baseline`` in the same run are printed.
Prints; never asserts.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.gateway_process import GatewayProcess  # noqa: E402

GROUPS = {
    "baseline": {"max_cost_per_day_usd": "1000000", "action_on_breach": "block"},
    "approval": {"max_cost_per_day_usd": "1000000", "action_on_breach": "require_approval"},
    "spend-rate": {"max_cost_per_day_usd": "1000000", "action_on_breach": "block", "alert_on_spend_rate_multiple": "3"},
}
NOW = datetime(2026, 11, 28, 12, 30, tzinfo=timezone.utc)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def entry(agent: str, cost: str = "0.0001") -> dict[str, Any]:
    return {"id": f"hb_bench_{secrets.token_hex(8)}", "agent": agent, "status": "processing",
            "metrics": {"cost_usd": cost, "llm_calls": 1, "tokens_in": 900, "tokens_out": 300}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="heartbeats per group (default 400)")
    parser.add_argument("--agents", type=int, default=5, help="agents per group (default 5)")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.agents = 40, 2
    agents = {g: [f"agent://bench/production/{g}-{i}" for i in range(args.agents)] for g in GROUPS}
    with tempfile.TemporaryDirectory(prefix="axme-bench-") as work:
        clock = Path(work) / "clock.txt"
        clock.write_text((NOW - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        with GatewayProcess(Path(work) / "gw", clock_file=clock) as gw, \
                httpx.Client(base_url=gw.url, headers={"x-api-key": gw.admin_key}, timeout=60) as http:
            for group, policy in GROUPS.items():
                for agent in agents[group]:
                    http.put(f"/v1/mesh/agents/{quote(agent, safe='')}/policies/cost", json=policy).raise_for_status()
            every = [a for group in agents.values() for a in group]
            for hour in range(7 * 24):  # a week of hourly spend for every agent, in one batch per hour
                gw.set_clock((NOW - timedelta(days=7, minutes=30) + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ"))
                http.post("/v1/mesh/heartbeat", json={"heartbeats": [entry(a, "0.05") for a in every]}).raise_for_status()
            gw.set_clock(NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))
            times: dict[str, list[float]] = {g: [] for g in GROUPS}
            for r in range(args.rounds + 20):
                for group in GROUPS:
                    body = entry(agents[group][r % args.agents])
                    started = time.perf_counter()
                    http.post("/v1/mesh/heartbeat", json=body).raise_for_status()
                    if r >= 20:  # warm-up rounds are not counted
                        times[group].append(time.perf_counter() - started)
            events = http.get("/v1/mesh/events", params={"type": "alert.spend_rate"}).json()["events"]
    base50, base99 = pct(times["baseline"], 50), pct(times["baseline"], 99)
    print(f"single-entry heartbeats, SQLite, {args.rounds} per group, {args.agents} agents per group "
          f"(spend-rate alerts claimed: {len(events)})")
    print(f"{'group':<12}{'p50 ms':>9}{'p99 ms':>9}{'p50 ratio':>11}{'p99 ratio':>11}")
    for group, values in times.items():
        p50, p99 = pct(values, 50), pct(values, 99)
        print(f"{group:<12}{p50:>9.2f}{p99:>9.2f}{p50 / base50:>11.2f}{p99 / base99:>11.2f}")


if __name__ == "__main__":
    main()
