"""Gateway throughput and latency: ``python benchmarks/gateway_ingest.py [--quick]``.

Starts real ``axme-meter gateway`` processes on loopback (SQLite temp file; PostgreSQL when
reachable at ``AXME_TEST_POSTGRES_URL`` or postgresql://postgres@127.0.0.1:5432/test, in a scratch
database dropped afterwards), with 1 and 2 replicas, and reports:

- heartbeat entries/s with concurrent clients sending batches (as the client library does),
- p50/p99 of one batch request and of a single-entry heartbeat,
- p50/p99 of the policy check: ``POST /v1/mesh/intents`` over HTTP, and the in-process evaluation
  (``_queries.load_status``: read the window counters + evaluate the policy).

Targets on a 2-core machine: >= 2,000 entries/s on SQLite; policy check p99 <= 5 ms. Prints; never asserts.

``--shared`` measures the shape of issue 12 instead: 20 concurrent clients (each its own client instance,
sending one batch of 20 entries at a time, back to back, for ``--seconds``) over 50 agents shared by all of
them, on SQLite (1 gateway) and PostgreSQL with 1 and 2 replicas (clients alternate replicas). Each shape
runs twice: first the code of ``--base`` (extracted with ``git archive`` into a temp dir and run from
there), then this checkout, each on a fresh database; it prints requests/s, p50/p99/max latency, whether
the recorded totals are exact to the pico-dollar, and the ratios new/base.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
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


# -- the shared-agent shape (--shared) ---------------------------------------------------------------

SHARED_AGENTS = [f"agent://bench/production/shared-{i:02d}" for i in range(50)]
#: The commit before the sharded counters: the baseline of ``--shared`` unless ``--base`` says otherwise.
DEFAULT_BASE = "010f715"
ENTRY_COST = Decimal("0.0013")


def shared_entry(client: int, seq: int, i: int, run: str) -> dict[str, Any]:
    """An entry as client process ``client`` sends it: its own instance in the id, its own intents."""
    cost = str(ENTRY_COST)
    return {"id": f"hb_{run}c{client}_{seq}_{i}", "agent": SHARED_AGENTS[(seq * 20 + i + client * 7) % len(SHARED_AGENTS)],
            "intent_id": f"int_{run}c{client}_{seq % 5}", "status": "processing",
            "metrics": {"cost_usd": cost, "llm_calls": 1, "tokens_in": 900, "tokens_out": 300},
            "by_model": {"gpt-4o-2024-08-06": {"cost_usd": cost, "llm_calls": 1, "tokens_in": 900, "tokens_out": 300}}}


def shared_load(urls: list[str], key: str, *, clients: int, batch: int, seconds: float, run: str) -> tuple[float, list[float], int, int]:
    """Closed loop: every client sends its next batch when the last one was answered, until ``seconds`` pass.

    Returns (requests/s, latencies, entries recorded, requests that failed)."""
    latencies: list[float] = []
    recorded = [0]
    failed = [0]
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def run_client(c: int) -> None:
        mine: list[float] = []
        ok = bad = 0
        with httpx.Client(headers={"x-api-key": key}, timeout=120) as http:
            start_gate.wait()
            seq = 0
            while time.perf_counter() < deadline[0]:
                body = {"heartbeats": [shared_entry(c, seq, i, run) for i in range(batch)]}
                started = time.perf_counter()
                try:
                    resp = http.post(f"{urls[(c + seq) % len(urls)]}/v1/mesh/heartbeat", json=body)
                except httpx.HTTPError:
                    bad += 1
                    seq += 1
                    continue
                mine.append(time.perf_counter() - started)
                if resp.status_code == 200:
                    ok += sum(1 for r in resp.json()["results"] if r["status"] == "recorded")
                else:
                    bad += 1
                seq += 1
        with lock:
            latencies.extend(mine)
            recorded[0] += ok
            failed[0] += bad

    threads = [threading.Thread(target=run_client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, recorded[0], failed[0]


def shared_totals_exact(url: str, key: str, recorded: int) -> bool:
    """Every recorded entry booked exactly once: the agents' day totals and heartbeats add up to the entries."""
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=120) as http:
        cost = Decimal(0)
        beats = 0
        for agent in SHARED_AGENTS:
            day = http.get(f"/v1/mesh/agents/{quote(agent, safe='')}").json()["windows"]["day"]
            cost += Decimal(day["cost_usd"])
            beats += int(day["heartbeats"])
    return cost == ENTRY_COST * recorded and beats == recorded


def extract(base: str, into: Path) -> Path:
    """The source tree of commit ``base`` (``git archive``), to run its gateway as the baseline."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", base], check=True, capture_output=True).stdout
    target = into / f"base-{base}"
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target)
    return target


def shared_run(label: str, code: str, root: Path, db_url: str, replicas: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    key = "axme_sa_bench_" + secrets.token_hex(8)
    with ExitStack() as stack:
        gws = [stack.enter_context(GatewayProcess(workdir / f"{label}-{replicas}-{code}-{i}", db_url=db_url, admin_key=key, root=root,
                                                  startup_timeout=60))
               for i in range(replicas)]
        urls = [g.url for g in gws]
        with httpx.Client(base_url=urls[0], headers={"x-api-key": key}, timeout=60) as http:
            for agent in SHARED_AGENTS:  # a policy on every agent: each heartbeat evaluates it on the fresh totals
                http.put(f"/v1/mesh/agents/{quote(agent, safe='')}/policies/cost",
                         json={"max_cost_per_day_usd": "100000", "notify": {}})
        warm = shared_load(urls, key, clients=4, batch=args.batch, seconds=1.0, run="w")
        rate, lat, recorded, failed = shared_load(urls, key, clients=args.clients, batch=args.batch, seconds=args.seconds, run="r")
        exact = shared_totals_exact(urls[0], key, recorded + warm[2])
    row = {"label": label, "replicas": replicas, "code": code, "rate": rate, "p50": pct(lat, 50), "p99": pct(lat, 99),
           "max": max(lat) * 1000 if lat else float("nan"), "requests": len(lat), "failed": failed, "exact": exact}
    print(f"{label:<10} {replicas:>8} {code:>5} {rate:>9.1f} {rate * args.batch:>10.0f} {row['p50']:>9.1f} {row['p99']:>9.1f} "
          f"{row['max']:>9.1f} {len(lat):>8} {failed:>6} {'yes' if exact else 'NO':>6}", flush=True)
    return row


def shared_main(args: argparse.Namespace) -> None:
    base = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], check=True, capture_output=True,
                          text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"shared agents: {args.clients} clients x batches of {args.batch} over {len(SHARED_AGENTS)} agents shared by all, "
          f"{args.seconds:g} s per run; base = {base}, new = this checkout ({head}). Latencies in ms, client side.")
    print(f"{'backend':<10} {'replicas':>8} {'code':>5} {'req/s':>9} {'entries/s':>10} {'p50':>9} {'p99':>9} {'max':>9} "
          f"{'requests':>8} {'failed':>6} {'exact':>6}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="axme-bench-shared-") as tmp:
        work = Path(tmp)
        trees = {"base": extract(base, work), "new": ROOT}
        for code, root in trees.items():
            rows.append(shared_run("sqlite", code, root, f"sqlite:///{work / f'shared-{code}.sqlite3'}", 1, args, work))
        for replicas in (1, 2):
            for code, root in trees.items():
                with postgres_db() as pg:
                    if pg:
                        rows.append(shared_run("postgres", code, root, pg, replicas, args, work))
    print("ratios new/base (req/s: higher is better; latency: lower is better):")
    for label, replicas in dict.fromkeys((r["label"], r["replicas"]) for r in rows):
        pair = {r["code"]: r for r in rows if (r["label"], r["replicas"]) == (label, replicas)}
        if len(pair) == 2:
            b, n = pair["base"], pair["new"]
            print(f"  {label} x{replicas}: req/s {n['rate'] / b['rate']:.2f}  p50 {n['p50'] / b['p50']:.2f}  p99 {n['p99'] / b['p99']:.2f}")
    new = {(r["label"], r["replicas"]): r for r in rows if r["code"] == "new"}
    if ("postgres", 1) in new and ("postgres", 2) in new:
        print(f"new code, PostgreSQL 2 replicas / 1 replica req/s: {new[('postgres', 2)]['rate'] / new[('postgres', 1)]['rate']:.2f}")
    print(f"goals: p99 <= 250 ms: {', '.join(f'{k[0]}x{k[1]} ' + ('met' if r['p99'] <= 250 else 'NOT met') for k, r in new.items())}; "
          f"totals exact: {'all runs' if all(r['exact'] for r in rows) else 'NOT in every run'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--batches", type=int, default=10, help="batches per client (default 10)")
    parser.add_argument("--batch", type=int, default=250, help="entries per batch (default 250)")
    parser.add_argument("--samples", type=int, default=300, help="sequential requests for the latency figures (default 300)")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    parser.add_argument("--shared", action="store_true", help="the shared-agent shape against --base (see the docstring)")
    parser.add_argument("--seconds", type=float, default=20.0, help="--shared: seconds per run (default 20)")
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"--shared: the baseline commit (default {DEFAULT_BASE})")
    args = parser.parse_args()
    if args.shared:
        args.clients = args.clients if args.clients != 4 else 20
        args.batch = args.batch if args.batch != 250 else 20
        shared_main(args)
        return
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
