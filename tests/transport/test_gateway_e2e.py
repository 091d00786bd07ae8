"""End to end against the real gateway process: policy → block → ``BudgetExceeded`` before any request."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("uvicorn", reason="the real gateway needs the 'gateway' extra (pip install 'axme_meter[gateway]')")
pytest.importorskip("sqlalchemy", reason="the real gateway needs the 'gateway' extra")

import axme_meter  # noqa: E402
from axme_meter import _runtime  # noqa: E402
from support.gateway_process import GatewayProcess, running_gateway  # noqa: E402
from support.transport_helpers import AGENT, CountingOpenAI, chat  # noqa: E402
from support.polling import wait_for  # noqa: E402

CALL = Decimal("0.0075")
AGENT_PATH = f"/v1/mesh/agents/{quote(AGENT, safe='')}"


@pytest.fixture
def real_gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gw") as gw:
        yield gw


@pytest.fixture
def connected(real_gw: GatewayProcess, tmp_path: Path) -> GatewayProcess:
    key = real_gw.create_key("acme")
    axme_meter.configure(gateway_url=real_gw.url, api_key=key, spool_dir=tmp_path / "spool", heartbeat_interval=0.2)
    return real_gw


def _policy(gw: GatewayProcess, **fields: object) -> None:
    with gw.client() as admin:
        resp = admin.put(f"{AGENT_PATH}/policies/cost", json=fields)
    assert resp.status_code in (200, 201), resp.text


def _gateway_cost(gw: GatewayProcess) -> Decimal:
    with gw.client() as admin:
        agents = admin.get("/v1/mesh/agents", params={"window": "day"}).json()["agents"]
    return sum((Decimal(a["cost_today"]) for a in agents if a["address"] == AGENT), Decimal(0))


def test_cost_policy_blocks_before_the_next_request(connected: GatewayProcess, client, openai_http: CountingOpenAI) -> None:
    limit = Decimal("0.05")
    _policy(connected, max_cost_per_day_usd=str(limit))
    raised = None
    with axme_meter.agent(AGENT):
        chat(client)  # the first call waits for this process's grant: a slice of the $0.05
        assert axme_meter.flush(timeout=10)
        for _ in range(100):
            try:
                chat(client)
            except axme_meter.BudgetExceeded as exc:
                raised = exc
                break
        assert raised is not None
        sent = openai_http.requests
        for _ in range(5):
            with pytest.raises(axme_meter.BudgetExceeded):
                chat(client)
    assert openai_http.requests == sent  # not one more request reached OpenAI
    assert raised.agent == AGENT and raised.policy == "max_cost_per_day_usd" and raised.limit == limit
    assert raised.resets_at is not None
    spent = axme_meter.spend().cost_usd
    assert spent <= limit + CALL  # a sequential loop overshoots by at most the one call in flight
    assert axme_meter.flush(timeout=10)
    assert _gateway_cost(connected) == spent  # every priced call reached the gateway exactly once
    # The grant stopped the loop one call *before* the limit ($0.045 of $0.05: the next $0.0075 call would
    # cross it): the gateway refused a slice that could not hold one more call.
    assert spent == Decimal("0.045")
    assert "$0.005 left of its max_cost_per_day_usd" in str(raised) and "not enough for the next call" in str(raised)
    with axme_meter.agent(AGENT), pytest.raises(axme_meter.BudgetExceeded):
        chat(client)  # later answers show $0.005 remaining, but no grant can hold a $0.0075 call
    assert openai_http.requests == sent


def test_intent_limit_refuses_new_work(connected: GatewayProcess, client, openai_http: CountingOpenAI) -> None:
    _policy(connected, max_intents_per_day=1)
    ran = []
    with axme_meter.agent(AGENT):
        with axme_meter.intent("ticket-1"):
            chat(client)
            ran.append(1)
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            with axme_meter.intent("ticket-2"):
                ran.append(2)
    assert ran == [1]
    assert info.value.policy == "max_intents_per_day" and info.value.intent == "ticket-2"
    assert openai_http.requests == 1


def test_kill_blocks_and_resume_unblocks(connected: GatewayProcess, client, openai_http: CountingOpenAI) -> None:
    with axme_meter.agent(AGENT):
        chat(client)
        assert axme_meter.flush(timeout=10)
        with connected.client() as admin:
            assert admin.post(f"{AGENT_PATH}/kill").status_code == 200
        chat(client)  # in flight when the kill landed: recorded, and its answer blocks the agent
        wait_for(lambda: AGENT in _runtime.default().blocked_agents(), what="the kill to reach the client")
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            chat(client)
        assert info.value.state == "killed"
        assert openai_http.requests == 2
        with connected.client() as admin:
            assert admin.post(f"{AGENT_PATH}/resume").status_code == 200
        wait_for(lambda: AGENT not in _runtime.default().blocked_agents(), what="a probe heartbeat to learn of the resume")
        chat(client)
    assert openai_http.requests == 3
    assert axme_meter.flush(timeout=10)
    assert _gateway_cost(connected) == axme_meter.spend().cost_usd == 3 * CALL


def test_gateway_crash_and_restart_loses_and_duplicates_nothing(connected: GatewayProcess, client, monkeypatch) -> None:
    import support.gateway_process as gateway_process

    with axme_meter.agent(AGENT):
        chat(client)
        assert axme_meter.flush(timeout=10)
        connected.kill()  # a crash: the client keeps the spend in its spool
        for _ in range(3):
            chat(client)
        assert not axme_meter.flush(timeout=0.5)
    port = connected.port
    monkeypatch.setattr(gateway_process, "free_port", lambda: port)  # same URL: same gateway, same spool
    connected.start()
    assert axme_meter.flush(timeout=15)
    assert _gateway_cost(connected) == axme_meter.spend().cost_usd == 4 * CALL
