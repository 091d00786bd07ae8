"""The budget guarantee through the public API: real client processes, a real gateway process, grants.

Every worker is a separate process calling ``axme_meter.OpenAI`` (mocked OpenAI HTTP only) for one agent
whose block policy is worth a known number of calls; the gateway's recorded spend is the truth.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

pytest.importorskip("uvicorn", reason="needs the gateway extra")

import axme_meter  # noqa: E402
from support.gateway_process import GatewayProcess  # noqa: E402
from support.gateway_stub import StubGateway  # noqa: E402
from support.openai_mock import FakeOpenAI, chat_body, client as fake_client  # noqa: E402
from support.transport_helpers import API_KEY, CountingOpenAI, chat, new_client  # noqa: E402
from support.polling import wait_for  # noqa: E402
from support.workers import worker_report  # noqa: E402

WORKER = str(Path(__file__).with_name("budget_worker.py"))
AGENT = "agent://acme/prod/looper"
CALL = Decimal("0.0075")  # one mocked call: 1000 in + 500 out tokens of gpt-4o-2024-08-06


def _now_iso(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A real gateway whose clock starts at the real now (so windows and resets agree with the client)."""
    gateway = GatewayProcess(tmp_path / "gw", clock=_now_iso())
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _policy(gw: GatewayProcess, agent: str = AGENT, **fields: object) -> None:
    with gw.client() as http:
        resp = http.put(f"/v1/mesh/agents/{quote(agent, safe='')}/policies/cost", json=fields)
    assert resp.status_code == 200, resp.text


def _recorded(gw: GatewayProcess, agent: str = AGENT) -> Decimal:
    with gw.client() as http:
        body = http.get(f"/v1/mesh/agents/{quote(agent, safe='')}").json()
    return Decimal(body["windows"]["day"]["cost_usd"])


def _env(gw: GatewayProcess, tmp_path: Path, interval: str = "0.2", agent: str = AGENT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_GATEWAY_URL=gw.url, AXME_API_KEY=gw.admin_key, AXME_AGENT=agent,
               AXME_HEARTBEAT_INTERVAL=interval, AXME_METER_SPOOL_DIR=str(tmp_path / "spool"))
    return env


def _start(mode: str, env: dict[str, str], threads: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKER, mode, str(threads)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_processes_and_threads_never_pass_the_limit(gw: GatewayProcess, tmp_path: Path) -> None:
    limit = 40 * CALL  # $0.30: 40 calls
    _policy(gw, max_cost_per_day_usd=str(limit))
    procs = [_start("loop", _env(gw, tmp_path), threads=4) for _ in range(4)]
    reports = [worker_report(p) for p in procs]
    calls = sum(r["calls"] for r in reports)
    assert all(r["refused"] == 4 for r in reports)  # every thread was stopped by BudgetExceeded
    assert all(r["ungranted_calls"] == 0 for r in reports), reports  # no call went out without a grant
    assert sum(r["openai_requests"] for r in reports) == calls  # no call left without being metered
    recorded = _recorded(gw)
    assert recorded == calls * CALL  # every call reached the gateway (each process flushed at exit)
    assert recorded <= limit  # equal-cost calls: not one cent past the limit, 16 calls in flight or not
    assert recorded >= limit - 4 * CALL  # slices shrink to one call: at most one call's worth unused per process


def test_a_grant_is_returned_only_after_the_spend_held_back_behind_a_failed_send(tmp_path: Path) -> None:
    """Returning a grant at exit puts its unspent money back in the pool: spend that has not reached the
    gateway yet (held back behind an entry whose send failed) must not be counted as unspent."""
    stub = StubGateway()
    stub.grant_answer = {"state": "active", "unlimited": False, "call_cost_usd": str(CALL), "grants": [
        {"id": "gr_held", "policy": "max_cost_per_day_usd", "window": "day", "amount": "1.00", "ttl_seconds": 90,
         "resets_in_seconds": 3600}]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXME_")}
    env.update(AXME_GATEWAY_URL=stub.url, AXME_API_KEY=API_KEY, AXME_AGENT=AGENT, AXME_HEARTBEAT_INTERVAL="60",
               AXME_METER_SPOOL_DIR=str(tmp_path / "spool"))
    proc = subprocess.Popen([sys.executable, WORKER, "stepwise"], env=env, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def step(command: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok", proc.stderr.read() if proc.stderr else ""

    try:
        step("call")
        stub.mode = "down"
        step("flush")  # the first call's entry is sent and not acknowledged: it stays frozen
        stub.mode = "ok"
        step("call")  # the second call's spend waits behind it (same agent and intent)
        step("exit")
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        stub.close()
        if proc.poll() is None:
            proc.kill()
    sends = [r["body"] for r in stub.requests if r["body"].get("heartbeats") or r["body"].get("grants")]
    returned_at = next(i for i, body in enumerate(sends) if any(g.get("final") for g in body.get("grants", [])))
    later_spend = [e for body in sends[returned_at + 1:] for e in body.get("heartbeats", [])
                   if Decimal(e["metrics"]["cost_usd"]) > 0]
    assert not later_spend, "the grant was returned before all of its spend was delivered"
    final = next(g for g in sends[returned_at]["grants"] if g.get("final"))
    assert Decimal(final["used_usd"]) == 2 * CALL
    assert stub.total_cost(AGENT) == 2 * CALL


def test_a_new_process_of_a_blocked_agent_sends_nothing_to_openai(gw: GatewayProcess, tmp_path: Path) -> None:
    _policy(gw, max_cost_per_day_usd=str(4 * CALL))
    first = worker_report(_start("loop", _env(gw, tmp_path)))
    assert first["calls"] == 4 and first["refused"] == 1
    for _ in range(5):  # a crash-looping worker, restarted again and again
        again = worker_report(_start("loop", _env(gw, tmp_path)))
        assert again == {**again, "calls": 0, "openai_requests": 0, "refused": 1}
    assert _recorded(gw) == 4 * CALL


def test_a_crash_loop_sends_nothing_past_the_block_and_loses_no_spend(gw: GatewayProcess, tmp_path: Path) -> None:
    _policy(gw, max_cost_per_day_usd=str(4 * CALL))
    env = _env(gw, tmp_path)
    first = worker_report(_start("crash", env))  # spends until refused, then dies without a final heartbeat
    assert first["calls"] == 4
    for _ in range(5):  # restarted again and again: each delivers what the dead one left, then is refused
        again = worker_report(_start("crash", env))
        assert again["openai_requests"] == 0 and again["refused"] == 1
    assert _recorded(gw) == 4 * CALL  # the dead processes' spend reached the gateway through their successors


def test_sigkill_strands_money_only_until_the_grant_expires(gw: GatewayProcess, tmp_path: Path) -> None:
    limit = 40 * CALL
    _policy(gw, max_cost_per_day_usd=str(limit))
    env = _env(gw, tmp_path / "a", interval="5")  # ttl = 3 intervals = 15 s
    holder = _start("hold", env)
    assert holder.stdout is not None
    assert json.loads(holder.stdout.readline())["calls"] == 1  # it now holds half the budget
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    second = worker_report(_start("loop", _env(gw, tmp_path / "b")))
    assert 0 < second["calls"] < 22  # the dead process's unspent slice is not spendable yet
    gw.set_clock(_now_iso(30))  # past the dead process's grant expiry
    third = worker_report(_start("loop", _env(gw, tmp_path / "c")))
    assert third["calls"] > 15  # its slice is back in the pool
    # (its one priced call is in its spool, delivered by the next process of the same identity)
    assert _recorded(gw) <= limit


def test_an_exiting_process_returns_its_grant(gw: GatewayProcess, tmp_path: Path) -> None:
    limit = 40 * CALL
    _policy(gw, max_cost_per_day_usd=str(limit))
    assert worker_report(_start("once", _env(gw, tmp_path)))["calls"] == 1  # took half the budget, used one call of it
    second = worker_report(_start("loop", _env(gw, tmp_path)))
    assert second["calls"] == 39  # everything else, at once: the first process gave its slice back at exit
    assert _recorded(gw) == limit


def test_a_raised_limit_and_a_new_day_lift_the_block(gw: GatewayProcess, tmp_path: Path, spool_dir: Path,
                                                     openai_http: CountingOpenAI) -> None:
    _policy(gw, max_cost_per_day_usd=str(2 * CALL))
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=0.2)
    client = axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(openai_http.handler)))
    with axme_meter.agent(AGENT):
        chat(client)
        chat(client)
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)
        _policy(gw, max_cost_per_day_usd=str(3 * CALL))  # the owner raises the limit

        def works() -> bool:
            try:
                chat(client)
            except axme_meter.BudgetExceeded:
                return False
            return True

        wait_for(works, timeout=20, what="the raised limit to reach the blocked process")
        with pytest.raises(axme_meter.BudgetExceeded):
            chat(client)
        gw.set_clock(_now_iso(86_400))  # tomorrow, on the gateway
        wait_for(works, timeout=20, what="a new day's budget")
    assert openai_http.requests == 4
    assert axme_meter.flush(timeout=10)


async def test_async_clients_wait_for_grants_and_intents_off_the_event_loop(spool_dir: Path) -> None:
    stub = StubGateway()
    stub.slow = 0.5
    stub.grant_answer = {"state": "active", "grants": [], "unlimited": True, "call_cost_usd": "0.00"}
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    try:
        axme_meter.configure(gateway_url=stub.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=60)
        openai_side = CountingOpenAI()
        client = axme_meter.AsyncOpenAI(api_key="sk-test", base_url="http://openai.test/v1", max_retries=0,
                                        http_client=httpx.AsyncClient(transport=httpx.MockTransport(openai_side.ahandler)))
        task = asyncio.create_task(ticker())
        with axme_meter.agent(AGENT):
            async with axme_meter.intent("int_async"):  # registration waits 0.5 s for the slow gateway
                await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        task.cancel()
        assert stub.intents and stub.intents[0]["intent_id"] == "int_async"
        assert openai_side.requests == 1
        assert ticks >= 20  # ~1 s of waiting on the gateway, and the loop kept running all along
    finally:
        axme_meter.configure(gateway_url=None)
        stub.close()


def test_unpriced_calls_are_booked_at_the_policys_conservative_rates(gw: GatewayProcess, spool_dir: Path) -> None:
    _policy(gw, max_cost_per_day_usd="10", unpriced_input_usd_per_1m="100", unpriced_output_usd_per_1m="200")
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=0.2)
    fake = FakeOpenAI()
    fake.json("/chat/completions", chat_body("gpt-99-preview", prompt=1000, completion=500))
    llm = fake_client(axme_meter.OpenAI, fake)
    with axme_meter.agent(AGENT), pytest.warns(axme_meter.UnpricedCallWarning):
        llm.chat.completions.create(model="gpt-99-preview", messages=[{"role": "user", "content": "hi"}])
    spend = axme_meter.spend()
    # 1,000 input tokens at $100/1M + 500 output tokens at $200/1M, never $0 against a budget
    assert spend.cost_usd == Decimal("0.2") and spend.estimated_calls == 1 and spend.unpriced_calls == 1
    assert axme_meter.flush(timeout=10)
    assert _recorded(gw) == Decimal("0.2")


def test_a_policy_can_refuse_unpriced_calls_before_they_are_sent(gw: GatewayProcess, spool_dir: Path) -> None:
    _policy(gw, max_cost_per_day_usd="10", on_unpriced_call="refuse")
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=0.2)
    fake = FakeOpenAI()
    llm = fake_client(axme_meter.OpenAI, fake)
    with axme_meter.agent(AGENT):
        with pytest.raises(axme_meter.BudgetExceeded) as info:
            llm.chat.completions.create(model="gpt-99-preview", messages=[{"role": "user", "content": "hi"}])
        llm.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])  # known: fine
    assert info.value.policy == "on_unpriced_call" and "gpt-99-preview" in str(info.value)
    assert [body["model"] for _, body in fake.requests] == ["gpt-4o"]


def test_a_response_without_usage_is_estimated_not_free(gw: GatewayProcess, spool_dir: Path) -> None:
    _policy(gw, max_cost_per_day_usd="10")
    axme_meter.configure(gateway_url=gw.url, api_key=gw.admin_key, spool_dir=spool_dir, heartbeat_interval=0.2)
    fake = FakeOpenAI()

    answer = chat_body("gpt-4o-2024-08-06", content="a reasonably long answer " * 20)
    del answer["usage"]
    fake.json("/chat/completions", answer)
    llm = fake_client(axme_meter.OpenAI, fake)
    with axme_meter.agent(AGENT):
        llm.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "say something long"}])
    spend = axme_meter.spend()
    assert spend.estimated_calls == 1 and spend.cost_usd > 0 and spend.tokens_out > 50


def test_a_failed_heartbeat_does_not_send_calls_out_without_a_grant(spool_dir: Path) -> None:
    """A gateway that fails a heartbeat (busy, restarting) but answers grant requests: a call that needs more
    budget asks for it, rather than going out ungranted as if the gateway were down."""
    stub = StubGateway()

    def grant(amount: Decimal) -> dict[str, Any]:
        return {"state": "active", "unlimited": False, "call_cost_usd": str(CALL), "grants": [
            {"id": "gr_flaky", "policy": "max_cost_per_day_usd", "window": "day", "amount": str(amount),
             "ttl_seconds": 90, "resets_in_seconds": 3600}]}

    stub.grant_answer = grant(2 * CALL)
    openai_side = CountingOpenAI()
    try:
        axme_meter.configure(gateway_url=stub.url, api_key=API_KEY, spool_dir=spool_dir, heartbeat_interval=60)
        client = new_client(openai_side)
        with axme_meter.agent(AGENT):
            chat(client)
            stub.mode = "down"  # heartbeats get 503 from now on; grant requests are still answered
            assert not axme_meter.flush(timeout=0.5)
            stub.grant_answer = grant(10 * CALL)
            chat(client)
            chat(client)  # the first slice is spent: this call needs a top-up
        assert openai_side.requests == 3
        assert axme_meter.transport_status()["ungranted_calls"] == 0
        assert axme_meter.transport_status()["grants"][AGENT] == {"max_cost_per_day_usd": str(7 * CALL)}
    finally:
        axme_meter.configure(gateway_url=None)
        stub.close()
