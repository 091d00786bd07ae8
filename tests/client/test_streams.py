"""Streams: usage from the final chunk or event, hidden injected chunk, and exactly-once
metering however the stream ends (exhausted, break, close, cut connection, GC)."""

from __future__ import annotations

import gc
from decimal import Decimal

import openai
import pytest

import axme_meter
from support.openai_mock import FakeOpenAI, client

MESSAGES = [{"role": "user", "content": "What is the answer to everything?"}]
FULL_CALL = Decimal("0.0075")  # gpt-4o: 1000 in x 2.50 + 500 out x 10.00 per 1M


def test_whole_stream_is_priced_from_the_usage_chunk_which_the_caller_never_sees(fake: FakeOpenAI) -> None:
    stream = client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    texts = [chunk.choices[0].delta.content for chunk in stream]  # would IndexError on the usage chunk
    assert "".join(t or "" for t in texts) == "The answer is forty-two."
    spend = axme_meter.spend()
    assert (spend.calls, spend.cost_usd, spend.estimated_calls) == (1, FULL_CALL, 0)


def test_caller_who_asked_for_usage_still_gets_the_usage_chunk(fake: FakeOpenAI) -> None:
    stream = client(axme_meter.OpenAI, fake).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1000
    assert axme_meter.spend().cost_usd == FULL_CALL


def test_break_then_close_books_an_estimate_once(fake: FakeOpenAI) -> None:
    stream = client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    stream.close()
    stream.close()
    spend = axme_meter.spend()
    assert (spend.calls, spend.estimated_calls) == (1, 1)
    assert spend.tokens_in > 0 and 0 < spend.cost_usd < FULL_CALL


def test_break_and_drop_is_booked_by_garbage_collection(fake: FakeOpenAI) -> None:
    def consume_one() -> None:
        stream = client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        next(iter(stream))

    consume_one()
    gc.collect()
    assert axme_meter.spend().estimated_calls == 1


def test_never_iterated_stream_is_booked_on_close(fake: FakeOpenAI) -> None:
    with client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
        pass
    spend = axme_meter.spend()
    assert (spend.calls, spend.estimated_calls) == (1, 1)
    assert spend.tokens_out == 0 and spend.tokens_in > 0


def test_cut_connection_is_estimated_from_prompt_and_text_received(fake: FakeOpenAI) -> None:
    fake.cut_after = 3  # role chunk + "The " + "answer "
    stream = client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(Exception):
        for _ in stream:
            pass
    spend = axme_meter.spend()
    assert (spend.calls, spend.estimated_calls) == (1, 1)
    import tiktoken

    assert spend.tokens_out == len(tiktoken.get_encoding("o200k_base").encode("The answer "))
    record_model = next(iter(spend.by_model))
    assert record_model == "gpt-4o"


def test_responses_stream_uses_the_completed_event(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    events = list(c.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert "stream_options" not in fake.requests[-1][1]  # never injected into /responses
    assert axme_meter.spend().cost_usd == FULL_CALL


def test_stream_helpers_are_metered(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    with c.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        for _ in stream:
            pass
        assert stream.get_final_completion().choices[0].message.content == "The answer is forty-two."
    with c.responses.stream(model="gpt-4o", input="hi") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == "The answer is forty-two."
    spend = axme_meter.spend()
    assert (spend.calls, spend.cost_usd, spend.estimated_calls) == (2, 2 * FULL_CALL, 0)


def test_streaming_raw_response(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    stream = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True).parse()
    gc.collect()  # the raw wrapper is gone; the stream now owns the call
    assert isinstance(stream, openai.Stream)
    list(stream)
    spend = axme_meter.spend()
    assert (spend.calls, spend.cost_usd, spend.estimated_calls) == (1, FULL_CALL, 0)


def test_a_stream_keeps_the_attribution_it_was_created_under(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    with axme_meter.agent("agent://acme/prod/writer"), axme_meter.intent("ticket-7"):
        stream = c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    list(stream)  # consumed outside the scopes
    spend = axme_meter.spend()
    assert set(spend.by_agent) == {"agent://acme/prod/writer"}
    assert set(spend.by_intent) == {"ticket-7"}


async def test_async_stream_whole_and_cut(fake: FakeOpenAI) -> None:
    c = client(axme_meter.AsyncOpenAI, fake)
    stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.AsyncStream)
    contents = [chunk.choices[0].delta.content async for chunk in stream]
    assert contents[1] == "The "
    fake.cut_after = 2
    stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(Exception):
        async for _ in stream:
            pass
    spend = axme_meter.spend()
    assert (spend.calls, spend.estimated_calls) == (2, 1)


async def test_async_stream_aclose_books_once(fake: FakeOpenAI) -> None:
    c = client(axme_meter.AsyncOpenAI, fake)
    stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    async for _ in stream:
        break
    if hasattr(stream, "aclose"):  # openai 3.x adds aclose() as an alias of close()
        await stream.aclose()
    await stream.close()
    assert axme_meter.spend().calls == 1
