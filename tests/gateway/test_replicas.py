"""Two gateway processes on one database, hammered concurrently; and SIGKILL in the middle of ingest."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support.gateway_helpers import entry, path, policy_path, send
from support.gateway_process import GatewayProcess
from support.receivers import HTTPReceiver

AGENTS = [f"agent://acme/production/worker-{i}" for i in range(4)]
#: the webhook receiver listens on loopback, which webhooks may not reach unless allowed
HOOK_ENV = {"AXME_GATEWAY_ALERT_BACKOFF": "0.05", "AXME_GATEWAY_WEBHOOK_ALLOW": "127.0.0.1"}


@pytest.fixture
def replicas(tmp_path: Path, db_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    a = GatewayProcess(tmp_path / "a", db_url=db_url, clock="2026-11-28T12:00:00Z", env=HOOK_ENV)
    b = GatewayProcess(tmp_path / "b", db_url=db_url, admin_key=a.admin_key, clock_file=a.clock_file,
                       env=HOOK_ENV)
    with a, b:
        yield a, b


def test_two_replicas_hammered_totals_exact_alerts_once(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    thresholds = [round(0.1 * i, 1) for i in range(1, 11)]  # 10 %, 20 %, … 100 %
    batches = [[entry(AGENTS[(n + i) % 4], "0.013", id=f"hb_{n}_{i}", intent=f"int_{n % 7}", models={"m": "0.013"})
                for i in range(40)] for n in range(60)]
    with HTTPReceiver() as hooks:
        with a.client() as http:
            for agent in AGENTS:
                resp = http.put(policy_path(agent), json={"max_cost_per_day_usd": "7.80", "action_on_breach": "notify",
                                                   "alert_thresholds": thresholds, "notify": {"webhook": hooks.url(f"/{agent[-1]}")}})
                assert resp.status_code == 200, resp.text

        def deliver(n: int) -> list[int]:
            # every batch goes to both replicas at once: one records it, the other must see duplicates
            codes = []
            for gw in ((a, b) if n % 2 else (b, a)):
                with gw.client() as http:
                    codes.append(send(http, *batches[n]).status_code)
            return codes

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = [c for cs in pool.map(deliver, range(len(batches))) for c in cs]
        assert set(codes) == {200}
        with a.client() as http:
            for agent in AGENTS:
                detail = http.get(f"/v1/mesh/agents/{path(agent)}").json()
                assert detail["windows"]["day"]["cost_usd"] == "7.80"  # 600 entries x $0.013 exactly, no double count
                assert detail["windows"]["day"]["heartbeats"] == 600
                costs = http.get(f"/v1/mesh/agents/{path(agent)}/costs").json()
                assert costs["by_model"][0]["cost_usd"] == "7.80"
                assert sum(Decimal(i["cost_usd"]) for i in costs["by_intent"]) == Decimal("7.80")
            deadline = time.monotonic() + 30
            while sum(len(hooks.posts(f"/{i}")) for i in range(4)) < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # would let a duplicate delivery show up
            for i in range(4):
                fired = sorted(float(p["threshold"]) for p in hooks.posts(f"/{i}"))
                assert fired == thresholds, f"worker-{i}: {fired}"
            events = http.get("/v1/mesh/events", params={"type": "alert.triggered", "limit": 1000}).json()["events"]
            assert len(events) == 40


def test_sigkill_mid_ingest_leaves_no_half_applied_batch(tmp_path: Path, db_url: str) -> None:
    agent = "agent://acme/production/crashy"
    gw = GatewayProcess(tmp_path, db_url=db_url)
    gw.start()
    batches = [[entry(agent, "0.001", id=f"crash_{n}_{i}", models={"m": "0.001"}) for i in range(1000)] for n in range(40)]
    answered: list[int] = []
    stop = threading.Event()

    def pump() -> None:
        with httpx.Client(base_url=gw.url, headers={"x-api-key": gw.admin_key}, timeout=30) as http:
            for n, batch in enumerate(batches):
                if stop.is_set():
                    return
                try:
                    if send(http, *batch).status_code == 200:
                        answered.append(n)
                except httpx.HTTPError:
                    return

    worker = threading.Thread(target=pump)
    worker.start()
    deadline = time.monotonic() + 60
    while len(answered) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    gw.kill()  # SIGKILL while batches are in flight
    stop.set()
    worker.join(30)
    gw.start()
    with gw.client() as http:
        day = http.get(f"/v1/mesh/agents/{path(agent)}").json()["windows"]["day"]
        assert day["heartbeats"] % 1000 == 0 and day["heartbeats"] >= 1000 * len(answered)
        assert Decimal(day["cost_usd"]) == Decimal("0.001") * day["heartbeats"]
        model = http.get(f"/v1/mesh/agents/{path(agent)}/costs").json()["by_model"][0]
        assert model["cost_usd"] == day["cost_usd"]
        for batch in batches:  # the client re-sends everything it is unsure about; replays are exact
            assert send(http, *batch).status_code == 200
        day = http.get(f"/v1/mesh/agents/{path(agent)}").json()["windows"]["day"]
        assert day["heartbeats"] == 40_000 and day["cost_usd"] == "40.00"
    gw.stop()


def test_two_replicas_migrate_a_fresh_database_at_once(tmp_path: Path, db_url: str) -> None:
    key = "axme_sa_shared_" + "0" * 16
    gws = [GatewayProcess(tmp_path / name, db_url=db_url, admin_key=key) for name in ("x", "y")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda g: g.start(), gws))  # both create the schema concurrently
    try:
        for n, gw in enumerate(gws):
            with gw.client() as http:
                assert send(http, entry("agent://acme/production/boot", "1", id=f"boot{n}")).status_code == 200
        with gws[0].client() as http:
            assert http.get(f"/v1/mesh/agents/{path('agent://acme/production/boot')}").json()["cost_today"] == "2.00"
    finally:
        for gw in gws:
            gw.stop()


def test_database_outage_is_503_and_recovers(tmp_path: Path, postgres_url: str) -> None:
    import psycopg

    admin_url = os.environ["AXME_TEST_POSTGRES_URL"]
    name = urlsplit(postgres_url).path.lstrip("/")  # the URL may carry ?host=/socket/dir
    agent = "agent://acme/production/outage"
    with GatewayProcess(tmp_path, db_url=postgres_url) as gw, gw.client() as http:
        assert send(http, entry(agent, "1", id="before")).status_code == 200
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            down = send(http, entry(agent, "1", id="during"))
            assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
            assert down.headers["retry-after"] == "5"
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert send(http, entry(agent, "1", id="during")).status_code == 200  # the client re-sends; nothing was half-stored
        assert http.get(f"/v1/mesh/agents/{path(agent)}").json()["cost_today"] == "2.00"


def test_intent_limit_is_exact_across_replicas(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    agent = "agent://acme/production/intent-race"
    with a.client() as http:
        assert http.put(policy_path(agent), json={"max_intents_per_day": 25}).status_code == 200

    def register(n: int) -> int:
        with (a if n % 2 else b).client() as http:
            return http.post("/v1/mesh/intents", json={"agent": agent, "intent_id": f"race_{n}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(register, range(60)))
    assert codes.count(201) == 25 and codes.count(429) == 35
    with a.client() as http:
        assert http.get(f"/v1/mesh/agents/{path(agent)}").json()["intents_today"] == 25
