"""Gateway throughput and latency: ``python benchmarks/gateway_ingest.py [--quick]``.

Starts real ``axme-meter gateway`` processes on loopback (SQLite temp file; PostgreSQL when
reachable at ``AXME_TEST_POSTGRES_URL`` or postgresql://postgres@127.0.0.1:5432/test, in a scratch
database dropped afterwards), with 1 and 2 replicas, and reports:

- heartbeat entries/s with concurrent clients sending batches (as the client library does),
- p50/p99 of one batch request and of a single-entry heartbeat,
- p50/p99 of the policy check: ``POST /v1/mesh/intents`` over HTTP, and the in-process evaluation
  (``_queries.load_status``: read the window counters + evaluate the policy).

Targets on a 2-core machine: >= 2,000 entries/s on SQLite; policy check p99 <= 5 ms. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.gateway_process import GatewayProcess  # noqa: E402

AGENTS = [f"agent://bench/production/agent-{i}" for i in range(20)]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000 if ordered else float("nan")


def entry(n: int, agent: str) -> dict[str, Any]:
    return {"id": f"hb_bench_{n}_{secrets.token_hex(4)}", "agent": agent, "intent_id": f"int_{n % 50}", "status": "processing",
            "metrics": {"cost_usd": "0.0013", "llm_calls": 1, "tokens_in": 900, "tokens_out": 300},
            "by_model": {"gpt-4o-2024-08-06": {"cost_usd": "0.0013", "llm_calls": 1, "tokens_in": 900, "tokens_out": 300}}}


def ingest(urls: list[str], key: str, *, clients: int, batches: int, batch_size: int) -> tuple[float, list[float]]:
    """``clients`` threads, round-robin over replicas, each sending ``batches`` batches; returns (entries/s, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    payloads = [[{"heartbeats": [entry(c * 10**6 + b * batch_size + i, AGENTS[(b + i) % len(AGENTS)]) for i in range(batch_size)]}
                 for b in range(batches)] for c in range(clients)]

    def run(c: int) -> None:
        with httpx.Client(headers={"x-api-key": key}, timeout=60) as http:
            for b, body in enumerate(payloads[c]):
                started = time.perf_counter()
                resp = http.post(f"{urls[(c + b) % len(urls)]}/v1/mesh/heartbeat", json=body)
                elapsed = time.perf_counter() - started
                if resp.status_code not in (200, 429):
                    raise RuntimeError(f"ingest failed: {resp.status_code} {resp.text[:200]}")
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * batches * batch_size / (time.perf_counter() - started), latencies


def sequential(url: str, key: str, count: int, make: Any, path: str) -> list[float]:
    out = []
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as http:
        for n in range(count):
            started = time.perf_counter()
            resp = http.post(path, json=make(n))
            out.append(time.perf_counter() - started)
            if resp.status_code >= 500:
                raise RuntimeError(resp.text)
    return out


def server_quantile(url: str, name: str, q: float) -> float:
    """Upper bound (bucket edge, ms) of the ``q`` quantile of a server-side Prometheus histogram."""
    buckets: list[tuple[float, float]] = []
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            edge = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if edge == "+Inf" else float(edge), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    for edge, count in buckets:
        if total and count >= q * total:
            return edge * 1000
    return float("nan")


def in_process_policy_check(db_url: str, count: int) -> list[float]:
    """Time the policy evaluation itself (counters read + evaluate) against the benchmark's database."""
    from axme_meter.gateway import _queries, _store
    from axme_meter.gateway._db import make_engine
    from axme_meter.gateway._windows import Clock

    engine = make_engine(db_url)
    out = []
    try:
        with engine.connect() as conn:
            row = _store.load_agents(conn, [_store.address_id(AGENTS[0])])[_store.address_id(AGENTS[0])]
            now = Clock().now()
            for _ in range(count):
                started = time.perf_counter()
                _queries.load_status(conn, row, now)
                out.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return out


@contextmanager
def postgres_db() -> Iterator[str | None]:
    base = os.environ.get("AXME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        name = "axme_bench_" + secrets.token_hex(4)
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no server: skip, say why
        print(f"PostgreSQL: skipped ({type(exc).__name__}: {exc})".splitlines()[0])
        yield None
        return
    try:
        yield base.rpartition("/")[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench(label: str, db_url: str, replicas: int, args: argparse.Namespace, workdir: Path) -> None:
    key = "axme_sa_bench_" + secrets.token_hex(8)
    with ExitStack() as stack:
        gws = [stack.enter_context(GatewayProcess(workdir / f"{label}-{replicas}-{i}", db_url=db_url, admin_key=key))
               for i in range(replicas)]
        urls = [g.url for g in gws]
        with httpx.Client(base_url=urls[0], headers={"x-api-key": key}) as http:
            for agent in AGENTS:
                http.put(f"/v1/mesh/agents/{quote(agent, safe='')}/policies/cost",
                         json={"max_cost_per_day_usd": "100000", "max_intents_per_day": 10**9, "notify": {}})
        ingest(urls, key, clients=2, batches=2, batch_size=args.batch)  # warm-up
        rate, lat = ingest(urls, key, clients=args.clients, batches=args.batches, batch_size=args.batch)
        single = sequential(urls[0], key, args.samples, lambda n: entry(n + 10**8, AGENTS[n % len(AGENTS)]), "/v1/mesh/heartbeat")
        intents = sequential(urls[-1], key, args.samples, lambda n: {"agent": AGENTS[n % len(AGENTS)]}, "/v1/mesh/intents")
        check = in_process_policy_check(db_url, args.samples)
        server_p99 = server_quantile(urls[-1], "axme_gateway_policy_check_seconds", 0.99)
    print(f"{label:<10} {replicas:>8} {rate:>12,.0f} {pct(lat, 50):>9.1f} {pct(lat, 99):>9.1f} {pct(single, 50):>9.2f} "
          f"{pct(single, 99):>9.2f} {pct(intents, 50):>9.2f} {pct(intents, 99):>9.2f} {pct(check, 50):>8.3f} {pct(check, 99):>8.3f} {server_p99:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--batches", type=int, default=10, help="batches per client (default 10)")
    parser.add_argument("--batch", type=int, default=250, help="entries per batch (default 250)")
    parser.add_argument("--samples", type=int, default=300, help="sequential requests for the latency figures (default 300)")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.batches, args.batch, args.samples = 2, 3, 100, 50
    print(f"{args.clients} clients x {args.batches} batches x {args.batch} entries over {len(AGENTS)} agents; "
          f"{args.samples} sequential samples. Latencies in ms (HTTP on loopback, client side).")
    print(f"{'backend':<10} {'replicas':>8} {'entries/s':>12} {'batch p50':>9} {'batch p99':>9} {'1-hb p50':>9} {'1-hb p99':>9} "
          f"{'intent50':>9} {'intent99':>9} {'eval p50':>8} {'eval p99':>8} {'srv p99<=':>9}")
    with tempfile.TemporaryDirectory(prefix="axme-bench-") as tmp:
        work = Path(tmp)
        for replicas in (1, 2):
            bench("sqlite", f"sqlite:///{work / f'bench-{replicas}.sqlite3'}", replicas, args, work)
        with postgres_db() as pg:
            if pg:
                for replicas in (1, 2):
                    bench("postgres", pg, replicas, args, work)
    print("intent = POST /v1/mesh/intents round trip (HTTP + auth + policy check + register, client side); "
          "eval = in-process policy check (window counters read + evaluation); "
          "srv p99<= = bucket bound of the server-side intent check histogram (axme_gateway_policy_check_seconds).")


if __name__ == "__main__":
    main()
