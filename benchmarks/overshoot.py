"""Overshoot: how far past a cost policy do 8 processes x 8 threads get before they are stopped?

One agent, one policy ($X/day, block) on a real gateway process (SQLite), 64
threads calling ``axme_meter.OpenAI`` against the loopback OpenAI simulator as
fast as they can. The spend the gateway records beyond $X is the overshoot. Two
phases in the same run, same settings, fresh agent each:

* ``leases``   - the transport as shipped: leases from the gateway's per-process
  ``lease`` (``remaining`` / live client instances; ``remaining`` when absent)
  and early heartbeats when half of it is used;
* ``interval`` - the baseline: blocks arrive only with the regular heartbeat
  (leases and early wake-ups switched off by a ``Budget`` subclass in the
  worker processes; the library has no public switch for this);
* ``shared`` (with --shared, an experiment from before the gateway sent ``lease``) -
  as ``leases``, further divided by ``processes``; now that the gateway splits, this
  divides twice and only shows what an even smaller share would do.

The target is an overshoot no larger than the calls in flight (64).
Everything stays on 127.0.0.1; each phase is bounded by --phase-seconds.

Run: python benchmarks/overshoot.py [--budget 1.00] [--interval 5] [--processes 8] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

MESSAGES = [
    {"role": "system", "content": "You are the research agent of the support team."},
    {"role": "user", "content": "Ticket T-4711: charged twice for the Pro plan. Research it and draft a reply."},
]


# ----------------------------------------------------------------------------- worker process


def _budget_for(mode: str, processes: int) -> Any:
    """The ``Budget`` a worker uses: as shipped, or a baseline/experiment variant (subclasses, no patching)."""
    from axme_meter._budget import LEASE, Budget

    class IntervalOnly(Budget):
        """Baseline: blocks arrive only with the regular heartbeat (no leases, no early wake-ups)."""

        def apply_answer(self, agents: Any, base: Any) -> None:
            super().apply_answer(agents, base)
            with self._lock:
                self._leases.clear()
                for agent in list(self._agents):
                    self._lift_locked(agent, LEASE)

        def account(self, agent: str, intent: str | None, cost: int, at: float) -> bool:
            super().account(agent, intent, cost, at)
            return False

    class Shared(Budget):
        """Experiment: each process leases ``lease / processes``."""

        def apply_answer(self, agents: Any, base: Any) -> None:
            super().apply_answer(agents, base)
            with self._lock:
                for lease in self._leases.values():
                    lease.remaining //= processes

    return {"interval": IntervalOnly, "shared": Shared}.get(mode, Budget)()


def worker(config: dict[str, Any]) -> None:
    import axme_meter
    from axme_meter import _runtime

    _runtime.default().budget = _budget_for(config["mode"], config["processes"])  # before the sender exists
    axme_meter.configure(gateway_url=config["gateway"], api_key=config["key"],
                         heartbeat_interval=config["interval"], spool_dir=config["spool"])
    client = axme_meter.OpenAI(base_url=config["base_url"], api_key="sk-sim", max_retries=0)
    counts: dict[str, Any] = {"calls": 0, "blocked": 0, "errors": 0, "error_types": {}}
    lock = threading.Lock()
    stop_at = time.monotonic() + config["seconds"]
    go = threading.Event()

    def hammer() -> None:
        go.wait()
        calls = errors = 0
        blocked = False
        kinds: dict[str, int] = {}
        while time.monotonic() < stop_at:
            try:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                calls += 1
            except axme_meter.BudgetExceeded:
                blocked = True
                break
            except Exception as exc:  # counted and reported, never hidden
                errors += 1
                kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        with lock:
            for kind, n in kinds.items():
                counts["error_types"][kind] = counts["error_types"].get(kind, 0) + n
            counts["calls"] += calls
            counts["blocked"] += blocked
            counts["errors"] += errors

    with axme_meter.agent(config["agent"]):
        threads = [threading.Thread(target=axme_meter.bind(hammer)) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    print("READY", flush=True)
    sys.stdin.readline()  # the parent says GO once every worker is ready
    started = time.monotonic()
    go.set()
    for thread in threads:
        thread.join()
    counts["seconds"] = round(time.monotonic() - started, 3)
    counts["flushed"] = bool(axme_meter.flush(timeout=20))
    counts["heartbeat_requests"] = int(axme_meter.transport_status().get("requests", 0) or 0)
    print("RESULT " + json.dumps(counts), flush=True)


# ----------------------------------------------------------------------------- parent


@dataclass
class Phase:
    mode: str
    agent: str
    calls: int
    blocked_threads: int
    errors: int
    seconds: float
    gateway_spent: Decimal
    upstream_calls: int
    heartbeat_requests: int

    def overshoot(self, budget: Decimal) -> Decimal:
        return self.gateway_spent - budget

    def overshoot_calls(self, budget: Decimal) -> float:
        per_call = self.gateway_spent / self.calls if self.calls else Decimal(0)
        return float(self.overshoot(budget) / per_call) if per_call else 0.0


def _gateway_spent(api: Any, agent: str) -> Decimal:
    costs = api.costs(agent, "day")
    for key in ("total", "totals"):
        block = costs.get(key) if isinstance(costs, dict) else None
        if isinstance(block, dict) and block.get("cost_usd") is not None:
            return Decimal(str(block["cost_usd"]))
    for entry in api.agents("day"):
        if entry.get("address") == agent:
            return Decimal(str(entry.get("cost_period") or 0))
    return Decimal(0)


def run_phase(mode: str, args: argparse.Namespace, gateway: Any, api: Any, sim: Any, work: Path) -> Phase:
    agent = f"agent://bench/production/hammer-{mode}"
    api.put_policy(agent, {"max_cost_per_day_usd": str(args.budget), "action_on_breach": "block"})
    config = {"gateway": gateway.url, "key": gateway.admin_key, "interval": args.interval, "mode": mode,
              "spool": str(work / f"spool-{mode}"), "base_url": sim.base_url, "agent": agent,
              "threads": args.threads, "seconds": args.phase_seconds, "processes": args.processes}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(args.processes)]
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY"):
            raise SystemExit(f"worker failed to start: {line!r}")
    before = sim.stats.requests
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("GO\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.phase_seconds + 60)
        line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"worker exited {proc.returncode} without a result")
        results.append(json.loads(line[len("RESULT "):]))
    kinds: dict[str, int] = {}
    for r in results:
        for kind, n in r["error_types"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    if kinds:
        print(f"[{mode}] errors by type: {kinds}", file=sys.stderr)
    return Phase(mode, agent, sum(r["calls"] for r in results), sum(r["blocked"] for r in results),
                 sum(r["errors"] for r in results), max(r["seconds"] for r in results),
                 _gateway_spent(api, agent), sim.stats.requests - before,
                 sum(r["heartbeat_requests"] for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=Decimal, default=Decimal("1.00"), help="policy limit in USD (default 1.00)")
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval in seconds (default 5)")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--phase-seconds", type=float, default=40.0, help="upper bound per phase (default 40)")
    parser.add_argument("--shared", action="store_true",
                        help="add an experimental phase where each process leases remaining/processes")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    from axme_meter.cli._policy import GatewayAPI
    from axme_meter.demo._gateway import EmbeddedGateway
    from axme_meter.demo._simulator import Simulator, SimulatorConfig

    in_flight = args.processes * args.threads
    work = Path(tempfile.mkdtemp(prefix="axme-overshoot-"))
    sim_config = SimulatorConfig(seed=1, completion_tokens=(100, 200), cache_hit_rate=0.0)
    with EmbeddedGateway(work / "gateway") as gateway, Simulator(sim_config) as sim, \
            GatewayAPI(gateway.url, gateway.admin_key) as api:
        modes = ("interval", "leases", "shared") if args.shared else ("interval", "leases")
        phases = [run_phase(mode, args, gateway, api, sim, work) for mode in modes]
    print(f"\novershoot: {args.processes} processes x {args.threads} threads = {in_flight} calls in flight, "
          f"policy ${args.budget}/day (block), heartbeat interval {args.interval:g}s, gpt-4o via the simulator")
    print(f"{'mode':<10}{'calls':>8}{'recorded $':>13}{'over $':>10}{'over calls':>12}{'x in-flight':>13}"
          f"{'blocked thr':>13}{'errors':>8}{'HB reqs':>9}{'secs':>7}")
    for p in phases:
        over_calls = p.overshoot_calls(args.budget)
        print(f"{p.mode:<10}{p.calls:>8}{p.gateway_spent:>13.4f}{p.overshoot(args.budget):>10.4f}{over_calls:>12.1f}"
              f"{over_calls / in_flight:>13.2f}{p.blocked_threads:>9}/{in_flight:<3}{p.errors:>8}"
              f"{p.heartbeat_requests:>9}{p.seconds:>7.1f}")
    base = phases[0]
    if base.overshoot(args.budget) > 0:
        for other in phases[1:]:
            print(f"ratio {other.mode}/interval overshoot: {other.overshoot(args.budget) / base.overshoot(args.budget):.3f}")
    unaccounted = [p.mode for p in phases if p.upstream_calls != p.calls]
    if unaccounted:
        print(f"note: simulator saw a different number of calls than the workers metered in {unaccounted}")


if __name__ == "__main__":
    main()
