"""One delivery scenario, run against the test stub and a real gateway process, so the stub cannot drift.

An outage, a replay after a lost answer, an entry the gateway refuses (an agent the
key may not write), and an idempotency conflict (an id recorded with other amounts).
Failures are injected by a proxy in front of either gateway (``tests/support/lossy_proxy.py``), so
both see exactly the same requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import pytest

import axme_meter
from axme_meter import _runtime
from support.gateway_stub import StubGateway
from support.lossy_proxy import LossyProxy
from support.transport_helpers import AGENT, chat, dead_process_spool, wire_entry

CALL = Decimal("0.0075")
FOREIGN = "agent://globex/prod/theirs"


@dataclass
class Target:
    """A gateway behind a lossy proxy: the client talks to ``proxy.url`` with ``key`` (an org key of ``acme``)."""

    kind: str
    proxy: LossyProxy
    key: str
    cost: Callable[[str], Decimal]

    @property
    def url(self) -> str:
        return self.proxy.url


@pytest.fixture(params=["stub", "real"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "stub":
        stub = StubGateway()
        stub.keys = {"axme_sa_acme_org_key_for_the_stub": "acme"}
        proxy = LossyProxy(stub.url)
        try:
            yield Target("stub", proxy, "axme_sa_acme_org_key_for_the_stub", stub.total_cost)
        finally:
            proxy.close()
            stub.close()
        return
    pytest.importorskip("uvicorn", reason="the real gateway needs the 'gateway' extra")
    from support.gateway_process import running_gateway

    with running_gateway(tmp_path / "gw") as gw:
        def cost(agent: str) -> Decimal:
            with gw.client() as admin:
                resp = admin.get(f"/v1/mesh/agents/{quote(agent, safe='')}")
            return Decimal(resp.json()["windows"]["day"]["cost_usd"]) if resp.status_code == 200 else Decimal(0)

        proxy = LossyProxy(gw.url)
        try:
            yield Target("real", proxy, gw.create_key("acme"), cost)
        finally:
            proxy.close()


def test_outage_replay_refusal_and_conflict(target: Target, tmp_path: Path, client) -> None:
    spool = tmp_path / "spool"
    axme_meter.configure(gateway_url=target.url, api_key=target.key, spool_dir=spool, heartbeat_interval=3600)
    with axme_meter.agent(AGENT):
        chat(client)
    assert axme_meter.flush(timeout=10)

    # An outage: the spend waits, and flush() says it is pending, not refused.
    target.proxy.mode = "down"
    with axme_meter.agent(AGENT):
        for _ in range(3):
            chat(client)
    result = axme_meter.flush(timeout=0.5)
    assert not result and result.some_pending and not result.some_refused and result.outcome == "pending"
    assert result.pending_usd == 3 * CALL and result.state == "unreachable"
    assert axme_meter.transport_status()["state"] == "unreachable"

    # The gateway is back but its answer is lost: the same ids are sent again and counted once.
    target.proxy.mode = "lose_answer"
    assert not axme_meter.flush(timeout=0.5)
    assert target.proxy.forwarded >= 2  # the gateway did receive it
    target.proxy.mode = "ok"
    assert axme_meter.flush(timeout=10)
    assert target.cost(AGENT) == 4 * CALL == axme_meter.spend().cost_usd

    # An entry the key may not write travels with good spend: the good spend lands, the other is quarantined.
    with axme_meter.agent(FOREIGN):
        chat(client)
    with axme_meter.agent(AGENT):
        chat(client)
    result = axme_meter.flush(timeout=10)
    assert not result and result.outcome == "refused" and not result.some_pending
    assert result.refused_entries == 1 and result.refused_usd == CALL and result.state == "forbidden"
    assert target.cost(AGENT) == 5 * CALL and target.cost(FOREIGN) == 0
    status = axme_meter.transport_status()
    assert status["state"] == "forbidden" and status["forbidden_agents"] == [FOREIGN]
    assert status["quarantined"]["by_agent"][FOREIGN]["cost_usd"] == "0.0075"

    # The next process: a dead process left an entry that is delivered, then another reuses its id with other amounts.
    _runtime.replace_default()
    dead_process_spool(spool, target.url, target.key, [wire_entry("hb_0000dead0001_1_1", AGENT, "0.5")])
    assert axme_meter.flush(timeout=10)
    _runtime.replace_default()
    dead_process_spool(spool, target.url, target.key, [wire_entry("hb_0000dead0001_1_1", AGENT, "0.7"),
                                                       wire_entry("hb_0000dead0002_1_1", AGENT, "0.25")])
    result = axme_meter.flush(timeout=10)
    assert not result and result.refused_entries == 1 and result.refused_usd == Decimal("0.7")
    assert target.cost(AGENT) == 5 * CALL + Decimal("0.75")  # the conflicting amounts were not booked

    lines = [json.loads(line) for path in Path(axme_meter.transport_status()["spool_dir"]).glob("quarantine-*.jsonl")
             for line in path.read_text().splitlines()]
    assert sorted((line["entry"]["agent"], line["reason"]["code"]) for line in lines) == [(AGENT, "conflict"),
                                                                                       (FOREIGN, "forbidden")]
