"""Overshoot: how many calls past a block policy do many client processes get, grants vs the lease baseline?

One agent per phase with a ``$/day, block`` policy worth ``--budget-calls`` calls, on a real
``axme-meter gateway`` (SQLite; and two replicas sharing PostgreSQL with ``--postgres URL``).
Worker processes call ``axme_meter.OpenAI`` against the loopback OpenAI simulator (every call
costs the same) as fast as they can, each thread until ``BudgetExceeded``. The simulator counts
what really reached "OpenAI": overshoot in calls = upstream calls - budget calls.

Shapes (processes x threads): 1x8, 4x4, 8x8, and a crash loop: 20 short-lived processes in a
row, each calling until refused and then dying without a clean exit (``os._exit``), as a
crash-looping worker does. Two modes per shape, in the same run, fresh agent each:

* ``lease``  - the baseline: the client bounds spend with the lease from heartbeat answers
  (``remaining``, or our gateway's per-process ``lease``), as against a gateway without grants;
* ``grants`` - the client spends only what the gateway granted it (``POST /v1/mesh/grants``).

The guarantee under test: at most one call's cost per process past the limit, and only when a
call cost more than predicted (here every call costs the same, so: zero), and a new process of a
blocked agent sends nothing.

Run: python benchmarks/overshoot.py [--budget-calls 200] [--interval 5] [--postgres URL] [--shapes 1x8,4x4,8x8,crash]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout without installing

MESSAGES = [
    {"role": "system", "content": "You are the research agent of the support team."},
    {"role": "user", "content": "Ticket T-4711: charged twice for the Pro plan. Research it and draft a reply."},
]


# ----------------------------------------------------------------------------- worker process


def worker(config: dict[str, Any]) -> None:
    import axme_meter
    from axme_meter import _runtime

    axme_meter.configure(gateway_url=config["gateway"], api_key=config["key"], heartbeat_interval=config["interval"],
                         spool_dir=config["spool"])
    if config["mode"] == "lease":
        _runtime.default().budget.granting = False  # the baseline: leases from heartbeat answers only
    client = axme_meter.OpenAI(base_url=config["base_url"], api_key="sk-sim", max_retries=0)
    counts: dict[str, Any] = {"calls": 0, "blocked": 0, "errors": {}}
    lock = threading.Lock()
    stop_at = time.monotonic() + config["seconds"]
    go = threading.Event()

    def hammer() -> None:
        go.wait()
        calls, blocked, errors = 0, False, {}
        while time.monotonic() < stop_at:
            try:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                calls += 1
            except axme_meter.BudgetExceeded:
                blocked = True
                break
            except Exception as exc:  # counted and reported, never hidden
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        with lock:
            counts["calls"] += calls
            counts["blocked"] += blocked
            for kind, n in errors.items():
                counts["errors"][kind] = counts["errors"].get(kind, 0) + n

    with axme_meter.agent(config["agent"]):
        threads = [threading.Thread(target=axme_meter.bind(hammer)) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    if config["wait_for_go"]:
        print("READY", flush=True)
        sys.stdin.readline()  # the parent says GO once every worker is ready
    go.set()
    for thread in threads:
        thread.join()
    status = axme_meter.transport_status()
    counts["grant_requests"] = int(status.get("grant_requests", 0) or 0)
    counts["ungranted_calls"] = int(status.get("ungranted_calls", 0) or 0)
    if config["crash"]:
        print("RESULT " + json.dumps(counts), flush=True)
        os._exit(0)  # a crash: no final flush, no grant returned; the spool keeps the spend for the next process
    counts["flushed"] = bool(axme_meter.flush(timeout=20))
    counts["heartbeat_requests"] = int(axme_meter.transport_status().get("requests", 0) or 0)
    print("RESULT " + json.dumps(counts), flush=True)


# ----------------------------------------------------------------------------- parent


@dataclass
class Phase:
    backend: str
    shape: str
    mode: str
    processes: int
    upstream: int
    budget_calls: int
    recorded: Decimal
    blocked_threads: int
    threads: int
    grant_requests: int
    ungranted: int
    errors: dict[str, int]
    seconds: float

    @property
    def over_calls(self) -> int:
        return self.upstream - self.budget_calls


def _spawn(config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _collect(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"worker exited {proc.returncode} without a result")
    return json.loads(line[len("RESULT "):])


def run_phase(backend: str, urls: list[str], key: str, shape: str, mode: str, args: argparse.Namespace, api: Any,
              sim: Any, call_cost: Decimal, work: Path) -> Phase:
    crash = shape == "crash"
    processes, threads = (args.crash_processes, 2) if crash else map(int, shape.split("x"))
    agent = f"agent://bench/production/{backend}-{shape}-{mode}-{secrets.token_hex(3)}"
    limit = call_cost * args.budget_calls
    api.put_policy(agent, {"max_cost_per_day_usd": str(limit), "action_on_breach": "block"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    spool = str(work / f"spool-{backend}-{shape}-{mode}")
    base = {"key": key, "interval": args.interval, "mode": mode, "spool": spool, "base_url": sim.base_url,
            "agent": agent, "threads": threads, "seconds": args.phase_seconds, "crash": crash}
    before = sim.stats.requests
    started = time.monotonic()
    results = []
    if crash:  # one after the other: a crash-looping worker
        for i in range(processes):
            proc = _spawn({**base, "gateway": urls[i % len(urls)], "wait_for_go": False}, env)
            results.append(_collect(proc, args.phase_seconds + 60))
    else:
        procs = [_spawn({**base, "gateway": urls[i % len(urls)], "wait_for_go": True}, env) for i in range(processes)]
        for proc in procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.startswith("READY"):
                raise SystemExit(f"worker failed to start: {line!r}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results = [_collect(proc, args.phase_seconds + 60) for proc in procs]
    seconds = time.monotonic() - started
    upstream = sim.stats.requests - before
    calls = sum(r["calls"] for r in results)
    if calls != upstream:
        print(f"  note: workers counted {calls} answered calls, the simulator {upstream} requests", file=sys.stderr)
    errors: dict[str, int] = {}
    for r in results:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    return Phase(backend, shape, mode, processes, upstream, args.budget_calls, _recorded(api, agent),
                 sum(r["blocked"] for r in results), processes * threads, sum(r["grant_requests"] for r in results),
                 sum(r["ungranted_calls"] for r in results), errors, seconds)


def _recorded(api: Any, agent: str) -> Decimal:
    costs = api.costs(agent, "day")
    totals = costs.get("totals") if isinstance(costs, dict) else None
    return Decimal(str(totals["cost_usd"])) if isinstance(totals, dict) else Decimal(0)


def _call_cost(sim: Any) -> Decimal:
    """What one benchmark call costs (the simulator answers every call with the same token counts)."""
    import axme_meter

    client = axme_meter.OpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0)
    before = axme_meter.spend().cost_usd
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    after = axme_meter.spend().cost_usd
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert axme_meter.spend().cost_usd - after == after - before, "calls must cost the same"
    return after - before


def _backends(args: argparse.Namespace, work: Path) -> list[tuple[str, list[Any]]]:
    from support.gateway_process import GatewayProcess

    out: list[tuple[str, list[Any]]] = [("sqlite", [GatewayProcess(work / "sqlite")])]
    if args.postgres:
        import psycopg

        name = "axme_overshoot_" + secrets.token_hex(4)
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = args.postgres.rpartition("/")[0] + "/" + name
        key = "axme_sa_bench_" + secrets.token_hex(12)
        out.append(("pg-2-replicas", [GatewayProcess(work / f"pg{i}", db_url=url, admin_key=key) for i in range(2)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--budget-calls", type=int, default=200, help="the policy limit, in calls (default 200)")
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval in seconds (default 5)")
    parser.add_argument("--shapes", default="1x8,4x4,8x8,crash", help="processes x threads, and 'crash' (default all)")
    parser.add_argument("--crash-processes", type=int, default=20)
    parser.add_argument("--phase-seconds", type=float, default=40.0, help="upper bound per phase (default 40)")
    parser.add_argument("--postgres", default=os.environ.get("AXME_TEST_POSTGRES_URL"),
                        help="also run two gateway replicas on this PostgreSQL server (default $AXME_TEST_POSTGRES_URL)")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    from axme_meter.cli._policy import GatewayAPI
    from axme_meter.demo._simulator import Simulator, SimulatorConfig

    work = Path(tempfile.mkdtemp(prefix="axme-overshoot-"))
    sim_config = SimulatorConfig(seed=1, completion_tokens=150, cache_hit_rate=0.0)
    phases: list[Phase] = []
    with Simulator(sim_config) as sim:
        call_cost = _call_cost(sim)
        print(f"overshoot: policy worth {args.budget_calls} calls of ${call_cost} (gpt-4o via the simulator), "
              f"heartbeat interval {args.interval:g}s", flush=True)
        for backend, gateways in _backends(args, work):
            for gw in gateways:
                gw.start()
            try:
                with GatewayAPI(gateways[0].url, gateways[0].admin_key) as api:
                    for shape in args.shapes.split(","):
                        for mode in ("lease", "grants"):
                            phase = run_phase(backend, [g.url for g in gateways], gateways[0].admin_key, shape, mode,
                                              args, api, sim, call_cost, work)
                            phases.append(phase)
                            print(f"  {backend:<14}{shape:<7}{mode:<8} over {phase.over_calls:+6d} calls "
                                  f"({phase.seconds:.1f}s)", flush=True)
            finally:
                for gw in gateways:
                    gw.stop()
    _report(phases)


def _report(phases: list[Phase]) -> None:
    print(f"\n{'backend':<15}{'shape':<7}{'mode':<8}{'upstream':>9}{'over calls':>11}{'per process':>12}"
          f"{'recorded $':>12}{'blocked':>10}{'grant reqs':>11}{'ungranted':>10}{'errors':>8}")
    for p in phases:
        print(f"{p.backend:<15}{p.shape:<7}{p.mode:<8}{p.upstream:>9}{p.over_calls:>+11d}{p.over_calls / p.processes:>+12.2f}"
              f"{p.recorded:>12.4f}{p.blocked_threads:>6}/{p.threads:<4}{p.grant_requests:>10}{p.ungranted:>10}"
              f"{sum(p.errors.values()):>8}")
    for backend in dict.fromkeys(p.backend for p in phases):
        for shape in dict.fromkeys(p.shape for p in phases if p.backend == backend):
            pair = {p.mode: p for p in phases if p.backend == backend and p.shape == shape}
            if "lease" in pair and "grants" in pair:
                print(f"{backend} {shape}: overshoot {pair['grants'].over_calls:+d} calls with grants vs "
                      f"{pair['lease'].over_calls:+d} with the lease baseline")
    worst = max((p.over_calls / p.processes for p in phases if p.mode == "grants"), default=0.0)
    print(f"worst grants overshoot: {worst:+.2f} calls per process (the guarantee: <= 1, here 0 with equal-cost calls)")


if __name__ == "__main__":
    main()
