"""Agent and intent attribution: decorators, context managers, nesting, tasks, threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import axme_meter
from support.openai_mock import FakeOpenAI, client

MESSAGES = [{"role": "user", "content": "hi"}]
RESEARCH = "agent://myorg/production/research-agent"


def test_default_agent_outside_any_scope(fake: FakeOpenAI) -> None:
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert set(axme_meter.spend().by_agent) == {"agent://local/default"}
    assert set(axme_meter.spend().by_intent) == {None}


def test_configured_default_agent(fake: FakeOpenAI) -> None:
    axme_meter.configure(agent="agent://acme/batch")
    try:
        client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        axme_meter.configure(agent=None)
    assert set(axme_meter.spend().by_agent) == {"agent://acme/batch"}


@pytest.mark.parametrize("bad", ["research-agent", "agent://only-org", "agent://a/b/c/d", "http://a/b", "agent://a/ b", ""])
def test_malformed_address_shows_the_expected_form(bad: str) -> None:
    with pytest.raises(axme_meter.InvalidAgentAddress, match="agent://org/env/name"):
        axme_meter.agent(bad)


def test_decorator_on_sync_async_and_generator_functions(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    ac = client(axme_meter.AsyncOpenAI, fake)

    @axme_meter.agent("agent://acme/prod/sync")
    def sync_agent() -> None:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    @axme_meter.agent("agent://acme/prod/async")
    async def async_agent() -> None:
        await ac.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    @axme_meter.agent("agent://acme/prod/gen")
    def gen_agent():  # type: ignore[no-untyped-def]
        yield c.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    sync_agent()
    asyncio.run(async_agent())
    list(gen_agent())
    by_agent = axme_meter.spend().by_agent
    assert {k: v.calls for k, v in by_agent.items()} == {
        "agent://acme/prod/sync": 1, "agent://acme/prod/async": 1, "agent://acme/prod/gen": 1}


def test_intent_mints_ids_and_innermost_wins(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    with axme_meter.agent(RESEARCH):
        with axme_meter.intent(customer="acme") as outer:
            c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            with axme_meter.intent("inner-1"):
                c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert outer.intent_id is not None and outer.intent_id.startswith("int_")
    by_intent = {k: v.calls for k, v in axme_meter.spend().by_intent.items()}
    assert by_intent == {outer.intent_id: 2, "inner-1": 1}


def test_decorated_intent_gets_a_new_id_per_call(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)

    @axme_meter.intent()
    def handle_ticket() -> None:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    handle_ticket()
    handle_ticket()
    assert len(axme_meter.spend().by_intent) == 2


async def test_async_with_intent_and_concurrent_tasks(fake: FakeOpenAI) -> None:
    c = client(axme_meter.AsyncOpenAI, fake)

    async def work(name: str) -> None:
        async with axme_meter.intent(name):
            await asyncio.sleep(0)
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            await asyncio.sleep(0)
            await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    await asyncio.gather(*(work(f"task-{i}") for i in range(5)))
    assert {k: v.calls for k, v in axme_meter.spend().by_intent.items()} == {f"task-{i}": 2 for i in range(5)}


def test_threads_each_keep_their_own_scope(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with axme_meter.agent(f"agent://acme/prod/worker-{i}"), axme_meter.intent(f"job-{i}"):
            barrier.wait()
            c.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spend = axme_meter.spend()
    assert {k: v.calls for k, v in spend.by_intent.items()} == {f"job-{i}": 1 for i in range(4)}
    assert len(spend.by_agent) == 4


def test_thread_pool_work_keeps_its_intent_with_bind(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)

    def summarise(n: int) -> None:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    with ThreadPoolExecutor(max_workers=2) as pool, axme_meter.agent(RESEARCH), axme_meter.intent("batch-9"):
        list(pool.map(axme_meter.bind(summarise), range(6)))
        pool.submit(summarise, 0).result()  # not bound: thread pools do not inherit context
    spend = axme_meter.spend()
    assert spend.by_intent["batch-9"].calls == 6
    assert spend.by_intent[None].calls == 1
    assert spend.by_agent[RESEARCH].calls == 6


def test_spend_totals_are_exact_across_threads(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: c.chat.completions.create(model="gpt-4o", messages=MESSAGES), range(200)))
    spend = axme_meter.spend()
    assert spend.calls == 200
    assert str(spend.cost_usd) == "1.5"  # 200 x $0.0075
