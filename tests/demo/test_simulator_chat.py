"""Chat completions from the simulator, through the unmodified openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from axme_meter.demo._simulator import Simulator, SimulatorConfig
from axme_meter.demo._text import count_tokens

MESSAGES = [
    {"role": "system", "content": "You are a support research agent."},
    {"role": "user", "content": "Summarise ticket 4711: the customer was double charged."},
]


def test_json_answer_has_openai_shape_and_consistent_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-4o-2024-08-06"
    assert reply.choices[0].finish_reason == "stop"
    usage = reply.usage
    assert usage is not None
    expected_prompt = 3 + sum(3 + count_tokens(m["content"], "gpt-4o") for m in MESSAGES)
    assert usage.prompt_tokens == expected_prompt
    assert 20 <= usage.completion_tokens <= 40
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The text is exactly as many tokens as billed: a client estimating a cut stream gets it right.
    assert count_tokens(reply.choices[0].message.content or "", "gpt-4o") == usage.completion_tokens


def test_prompt_tokens_grow_with_the_messages(client: openai.OpenAI) -> None:
    short = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    long = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi " * 500}])
    assert short.usage and long.usage
    assert long.usage.prompt_tokens > short.usage.prompt_tokens + 400


def test_same_seed_same_answers_other_seed_differs() -> None:
    def run(seed: int) -> list[str]:
        with Simulator(SimulatorConfig(seed=seed)) as sim:
            with openai.OpenAI(base_url=sim.base_url, api_key="sk", max_retries=0) as c:
                return [c.chat.completions.create(model="gpt-4o", messages=MESSAGES).model_dump_json(exclude={"created"}) for _ in range(3)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_with_include_usage_ends_with_usage_only_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(chunk.choices and chunk.usage is None for chunk in body)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in body)
    assert count_tokens(text, "gpt-4o") == last.usage.completion_tokens


def test_raw_sse_framing_matches_openai(sim: Simulator) -> None:
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client() as http:
        raw = http.post(f"{sim.base_url}/chat/completions", json=body, headers={"authorization": "Bearer sk"})
    events = [block for block in raw.text.split("\n\n") if block]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert all(block.startswith("data: ") for block in events)
    assert events[-1] == "data: [DONE]"
    usage_chunk = json.loads(events[-2][len("data: "):])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] > 0
    first = json.loads(events[0][len("data: "):])
    assert first["usage"] is None  # an explicit null on every chunk but the last, as OpenAI sends


def test_cut_abort_drops_the_connection_mid_stream(sim: Simulator, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-simulator-cut-after": "3"},
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert len(received) == 4  # the role chunk plus three content chunks
    stats = sim.stats
    assert stats.cut_streams == 1
    assert stats.billed_completion_tokens == 3


def test_cut_eof_ends_cleanly_without_usage(sim: Simulator, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-simulator-cut-after": "5", "x-simulator-cut-mode": "eof"},
        )
    )
    assert len(chunks) == 6
    assert all(chunk.usage is None and chunk.choices[0].finish_reason is None for chunk in chunks)


def test_simulator_wide_cut_setting() -> None:
    with Simulator(SimulatorConfig(cut_after=2, cut_mode="eof")) as sim:
        with openai.OpenAI(base_url=sim.base_url, api_key="sk", max_retries=0) as c:
            chunks = list(c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert len(chunks) == 3


def test_max_tokens_caps_with_finish_reason_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage and reply.usage.completion_tokens == 5


def test_completion_tokens_header_and_service_tier_echo(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, service_tier="flex",
        extra_headers={"x-simulator-completion-tokens": "77", "x-simulator-latency-ms": "1"},
    )
    assert reply.usage and reply.usage.completion_tokens == 77
    assert reply.service_tier == "flex"


def test_reasoning_models_report_reasoning_inside_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="o4-mini", messages=MESSAGES)
    usage = reply.usage
    assert usage and usage.completion_tokens_details
    reasoning = usage.completion_tokens_details.reasoning_tokens or 0
    assert reasoning > 0
    visible = count_tokens(reply.choices[0].message.content or "", "o4-mini")
    assert usage.completion_tokens == visible + reasoning


def test_repeated_long_prompt_gets_cached_tokens_in_128_steps() -> None:
    long_messages = [{"role": "system", "content": "policy " * 1500}, {"role": "user", "content": "ticket 1"}]
    with Simulator(SimulatorConfig(cache_hit_rate=1.0, completion_tokens=5)) as sim:
        with openai.OpenAI(base_url=sim.base_url, api_key="sk", max_retries=0) as c:
            first = c.chat.completions.create(model="gpt-4o", messages=long_messages)
            second = c.chat.completions.create(model="gpt-4o", messages=long_messages)
            short = c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            short_again = c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert first.usage and second.usage and short_again.usage and short.usage
    assert first.usage.prompt_tokens_details and second.usage.prompt_tokens_details
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert 1024 <= cached <= second.usage.prompt_tokens and (cached - 1024) % 128 == 0
    assert short_again.usage.prompt_tokens_details and short_again.usage.prompt_tokens_details.cached_tokens == 0


def test_missing_key_and_injected_errors_look_like_openai(sim: Simulator, client: openai.OpenAI) -> None:
    with httpx.Client() as http:
        unauth = http.post(f"{sim.base_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert unauth.status_code == 401 and unauth.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-simulator-status": "429"})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="", messages=MESSAGES)
    assert sim.stats.errors == 2


async def test_async_client_streams(sim: Simulator) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].model == "gpt-4o-mini-2024-07-18"
