"""Cost of the transport: the budget pre-check, the per-call listener, sender memory and request rate.

Measured in one run, against a loopback stub gateway (no internet needed):

1. the pre-flight ``Budget.check(agent, intent)`` (a bound method reading one slot) that runs
   before every metered call, in ns, as a ratio to an empty Python function call and to the
   same test written against a module global (the shape it replaced), measured in the same loop;
2. ``meter.record`` alone and ``Runtime.book`` (the meter plus lease accounting and the sender's dirty flag);
3. the sender's memory after 1,000,000 recorded calls (tracemalloc; gateway down, so nothing
   leaves: the worst case), next to the same figure at 100,000 calls (it must not grow);
4. heartbeat requests per interval at a high call rate (gateway up).

Run: python benchmarks/heartbeat.py [--calls 1000000] [--interval 0.5] [--seconds 3]
No asserts: it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import tempfile
import time
import timeit
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import axme_meter  # noqa: E402
from axme_meter import _runtime  # noqa: E402
from axme_meter._meter import CallRecord, meter  # noqa: E402
from axme_meter._pricing import Usage  # noqa: E402
from axme_meter._protocol import AgentState, BlockError, PolicyState  # noqa: E402
from support.gateway_stub import StubGateway  # noqa: E402

AGENT = "agent://acme/prod/bench"
MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "o3-2025-04-16")


def _interleaved_ns(stmts: dict[str, str], namespace: dict[str, object], number: int, rounds: int = 9) -> dict[str, float]:
    """Median ns per call of each statement, rounds interleaved so machine noise hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in stmts}
    for _ in range(rounds):
        for name, stmt in stmts.items():
            samples[name].append(timeit.timeit(stmt, globals=namespace, number=number) / number * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


_ARMED = False


def _global_check(agent: str, intent: str | None) -> None:
    """The shape the pre-check had before it became a ``Budget`` method: a module global read."""
    if _ARMED:
        raise AssertionError("never armed in this benchmark")


def bench_check(number: int) -> None:
    def empty(agent: str, intent: str | None) -> None:
        pass

    rt = _runtime.default()
    ns = {"rt": rt, "empty": empty, "global_check": _global_check, "agent": AGENT, "intent": "int_1"}
    # As the client calls it: the runtime bound to the client, then its budget's method.
    stmts = {"base": "empty(agent, intent)", "global": "global_check(agent, intent)",
             "check": "rt.budget.check(agent, intent)"}
    idle = _interleaved_ns(stmts, ns, number)
    # Another agent blocked: every check now takes the slow path (a clock read and a dict lookup).
    rt.budget.apply_error(BlockError("budget_exceeded", "", "agent://acme/prod/other", "max_cost_per_day_usd", 1, 2, None))
    armed = _interleaved_ns(stmts, ns, number)
    _runtime.replace_default()
    base = idle["base"]
    print("1. pre-flight budget check (runs before every metered call; target <= 1 µs)")
    print(f"   empty function call (baseline) : {base:7.1f} ns")
    print(f"   module-global check (old shape): {idle['global']:7.1f} ns  ({idle['global'] / base:.2f}x baseline)")
    print(f"   check, nothing blocked          : {idle['check']:7.1f} ns  ({idle['check'] / base:.2f}x baseline, "
          f"{idle['check'] / idle['global']:.2f}x the module global, {idle['check'] / 1000:.3f} µs)")
    print(f"   check, another agent blocked    : {armed['check']:7.1f} ns  ({armed['check'] / armed['base']:.2f}x baseline, "
          f"{armed['check'] / 1000:.3f} µs)")


def _record(i: int, usage: Usage) -> None:
    """What the client does after every priced call: record it, then tell the runtime."""
    rec = CallRecord(AGENT if i % 2 else "agent://acme/prod/bench2", f"int_{i % 10}", MODELS[i % 3], usage,
                     1_234_567, True, False, "bench")
    _runtime.default().book(rec)


def bench_listener(number: int) -> None:
    rt = _runtime.default()
    usage = Usage(input_tokens=1000, output_tokens=500)
    rec = CallRecord(AGENT, "int_1", MODELS[0], usage, 1_234_567, True, False, "bench")

    def empty(rec: CallRecord) -> None:
        pass

    ns = {"meter": meter, "rec": rec, "empty": empty, "rt": rt}
    stmts = {"base": "empty(rec)", "book": "rt.book(rec)", "record": "meter.record(rec)"}
    plain = _interleaved_ns(stmts, ns, number)
    # With a lease from the gateway (cost policy), accounting takes its locked path.
    rt.budget.apply_answer({AGENT: AgentState("active", [PolicyState("max_cost_per_day_usd", 10**15, 0, 10**15)])},
                           rt.budget.snapshot_spent())
    leased = _interleaved_ns(stmts, ns, number)
    _runtime.replace_default()
    print("2. per recorded call (after the LLM answered; the raw call costs ~600 µs)")
    print(f"   empty function call (baseline)  : {plain['base']:7.1f} ns")
    print(f"   meter.record                    : {plain['record']:7.1f} ns")
    print(f"   runtime.book, no lease          : {plain['book']:7.1f} ns  ({plain['book'] - plain['record']:+.1f} ns over the meter)")
    print(f"   runtime.book, with lease        : {leased['book']:7.1f} ns  ({leased['book'] - leased['record']:+.1f} ns over the meter)")


def bench_memory(calls: int, gw: StubGateway) -> None:
    usage = Usage(input_tokens=1000, output_tokens=500)
    axme_meter.flush(timeout=10)
    calls_before, cost_before = gw.total_calls(), gw.total_cost()
    spend_before = axme_meter.spend()
    gw.mode = "down"
    for i in range(1, 1001):  # warm up: buckets, entries, HTTP client, spool file all exist
        _record(i, usage)
    axme_meter.flush(timeout=0.05)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    marks: dict[int, int] = {}
    checkpoints = {calls // 10, calls}
    started = time.perf_counter()
    for i in range(1, calls + 1):
        _record(i, usage)
        if i % 50_000 == 0:
            axme_meter.flush(timeout=0.05)  # send attempts during the outage freeze entries: the worst case
        if i in checkpoints:
            gc.collect()
            marks[i] = tracemalloc.get_traced_memory()[0] - base
    elapsed = time.perf_counter() - started
    tracemalloc.stop()
    sender = _runtime.default().current_sender()
    print(f"3. memory while the gateway is down (2 agents × 10 intents × 3 models; {calls / elapsed:,.0f} calls/s under tracemalloc)")
    for n, size in sorted(marks.items()):
        print(f"   after {n:>9,} calls: {size / 1024:8.1f} KiB more than after warm-up   (sender holds {sender.pending_entries()} entries)")
    gw.mode = "ok"
    ok = axme_meter.flush(timeout=30)
    spend = axme_meter.spend()
    print(f"   gateway back: flushed={ok}, delivered {gw.total_calls() - calls_before:,} calls / ${gw.total_cost() - cost_before}; "
          f"meter: {spend.calls - spend_before.calls:,} calls / ${spend.cost_usd - spend_before.cost_usd}")


def bench_rate(interval: float, seconds: float, gw: StubGateway) -> None:
    axme_meter.configure(heartbeat_interval=interval)
    axme_meter.flush(timeout=5)
    usage = Usage(input_tokens=10, output_tokens=5)
    before = gw.heartbeat_requests()
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            _record(n, usage)
            n += 1
    elapsed = time.perf_counter() - started
    requests = gw.heartbeat_requests() - before
    print(f"4. request rate at {n / elapsed:,.0f} calls/s for {elapsed:.1f}s, interval {interval}s")
    print(f"   heartbeat requests: {requests} → {requests / (elapsed / interval):.2f} per interval "
          f"({n:,} calls; requests do not grow with the call rate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--number", type=int, default=200_000, help="loop count per timing round")
    args = parser.parse_args()
    logging.getLogger("axme_meter").setLevel(logging.ERROR)  # the outage phase warns, by design
    gw = StubGateway(keep_requests=False)
    with tempfile.TemporaryDirectory() as spool:
        axme_meter.configure(gateway_url=gw.url, api_key="bench", spool_dir=spool, heartbeat_interval=3600)
        print(f"python {sys.version.split()[0]}, gateway stub at {gw.url}\n")
        bench_check(args.number)
        bench_listener(args.number // 10)
        bench_memory(args.calls, gw)
        bench_rate(args.interval, args.seconds, gw)
        axme_meter.flush(timeout=5)
        axme_meter.configure(gateway_url=None)
    gw.close()


if __name__ == "__main__":
    main()
