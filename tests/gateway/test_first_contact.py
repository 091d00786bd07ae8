"""First contact on replicas: two gateway processes on one PostgreSQL see a new agent's first heartbeats at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support.gateway_helpers import entry, path
from support.gateway_process import GatewayProcess

pytestmark = pytest.mark.postgres
ROUNDS = 30
SENDERS_PER_REPLICA = 3


def test_concurrent_first_heartbeats_never_answer_500(pg_replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    """Each round, a brand-new agent's first heartbeat goes to both replicas from several senders released by one
    barrier; every answer must be 200 and the agent must exist once with every cent booked."""
    a, b = pg_replicas
    senders = [gw for gw in (a, b) for _ in range(SENDERS_PER_REPLICA)]
    clients = [httpx.Client(base_url=gw.url, headers={"x-api-key": gw.admin_key}, timeout=60) for gw in senders]
    codes: list[int] = []
    try:
        for n in range(ROUNDS):
            agent = f"agent://acme/production/newcomer-{n}"
            barrier = threading.Barrier(len(clients))

            def first(i: int) -> int:
                body = {"heartbeats": [entry(agent, "0.01", id=f"hb_first_{n}_{i}")]}
                request = clients[i].build_request("POST", "/v1/mesh/heartbeat", json=body)
                barrier.wait()
                return clients[i].send(request).status_code

            with ThreadPoolExecutor(len(clients)) as pool:
                codes += pool.map(first, range(len(clients)))
        for c in clients:
            c.close()
        clients = []
        assert set(codes) == {200}, sorted(set(codes))
        with a.client() as http:
            listed = http.get("/v1/mesh/agents").json()["agents"]
            assert sorted(x["address"] for x in listed) == sorted(f"agent://acme/production/newcomer-{n}" for n in range(ROUNDS))
            for n in (0, ROUNDS - 1):
                detail = http.get(f"/v1/mesh/agents/{path(f'agent://acme/production/newcomer-{n}')}").json()
                assert detail["windows"]["day"]["cost_usd"] == "0.06"  # 6 senders x $0.01, none lost
    finally:
        for c in clients:
            c.close()
