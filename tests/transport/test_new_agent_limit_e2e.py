"""A client against a real gateway whose org may create one new agent a minute: the limit is not a budget block,
intents go on, and the refused agent's spend is re-sent until the gateway may create it, then booked exactly."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the real gateway needs the 'gateway' extra (pip install 'axme_meter[gateway]')")
pytest.importorskip("sqlalchemy", reason="the real gateway needs the 'gateway' extra")

import axme_meter  # noqa: E402
from axme_meter import _runtime  # noqa: E402
from support.gateway_process import GatewayProcess, running_gateway  # noqa: E402
from support.polling import wait_for  # noqa: E402
from support.transport_helpers import chat  # noqa: E402

FIRST = "agent://acme/production/first"
SECOND = "agent://acme/production/second"


@pytest.fixture
def limited_gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gw", clock="2026-11-28T12:00:00Z", env={"AXME_GATEWAY_NEW_AGENTS_PER_MINUTE": "1"}) as gw:
        yield gw


def _cost_today(gw: GatewayProcess) -> dict[str, Decimal]:
    with gw.client() as admin:
        agents = admin.get("/v1/mesh/agents").json()["agents"]
    return {a["address"]: Decimal(a["cost_today"]) for a in agents}


def test_a_rate_limited_new_agent_is_not_blocked_and_its_spend_arrives_later(limited_gw: GatewayProcess, client,
                                                                            tmp_path: Path) -> None:
    key = limited_gw.create_key("acme")
    axme_meter.configure(gateway_url=limited_gw.url, api_key=key, spool_dir=tmp_path / "spool", heartbeat_interval=3600)
    with axme_meter.agent(FIRST):
        chat(client)
    assert axme_meter.flush(timeout=10)
    with axme_meter.agent(SECOND):
        with axme_meter.intent("int_second"):  # the gateway answers 429 agent_creation_rate_limited: not a block
            chat(client)
    assert _runtime.default().blocked_agents() == []
    result = axme_meter.flush(timeout=3)
    assert not result and result.some_pending and not result.some_refused  # kept for a re-send, never quarantined
    assert set(_cost_today(limited_gw)) == {FIRST}
    limited_gw.set_clock("2026-11-28T12:01:01Z")  # a minute later the org may create another agent
    wait_for(lambda: bool(axme_meter.flush(timeout=3)), "the second agent's spend delivered", timeout=60)
    costs = _cost_today(limited_gw)
    assert costs[SECOND] == costs[FIRST] == axme_meter.spend().by_agent[FIRST].cost_usd
