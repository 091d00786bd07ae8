"""Issue 11 through the public client: new models, cache writes, cached audio, tiers, warnings.

Every expected cost is hand-computed from the list prices (USD per 1M tokens), written out
in the comments; the calls go through the real openai SDK to the mocked HTTP boundary.
"""

from __future__ import annotations

import logging
import warnings
from decimal import Decimal
from typing import Any

import pytest

import axme_meter
from axme_meter._client._call import EstimatedPriceWarning
from axme_meter._meter import meter
from support.openai_mock import FakeOpenAI, chat_body, client, response_body

MESSAGES = [{"role": "user", "content": "What is the answer?"}]


def cost() -> Decimal:
    return axme_meter.spend().cost_usd


def chat_with_usage(model: str, prompt: int, completion: int, prompt_details: dict[str, Any],
                    service_tier: str = "default") -> dict[str, Any]:
    body = chat_body(model=model, prompt=prompt, completion=completion, service_tier=service_tier)
    body["usage"]["prompt_tokens_details"] = prompt_details
    return body


def test_new_model_gpt_5_5(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-5.5-2026-04-23", prompt=10_000, completion=1_000, cached=4_000))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-5.5", messages=MESSAGES)
    assert cost() == Decimal("0.062")  # 6000 x 5 + 4000 x 0.50 + 1000 x 30
    assert axme_meter.spend().estimated_calls == 0


def test_cache_writes_on_chat_completions(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_with_usage("gpt-5.6-sol", 10_000, 1_000,
                                                   {"cached_tokens": 2_000, "cache_write_tokens": 1_000}))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-5.6-sol", messages=MESSAGES)
    # after the 2026-08-21 cut: 7000 x 4 + 2000 x 0.40 + 1000 x 5 (cache writes, 1.25x input) + 1000 x 20
    assert cost() == Decimal("0.0538")


def test_cache_writes_on_responses_with_the_ttl_split(fake: FakeOpenAI) -> None:
    body = response_body(model="gpt-6.1-terra", inp=10_000, out=1_000)
    body["usage"]["input_tokens_details"] = {
        "cached_tokens": 4_000, "cache_write_tokens": 3_000,
        "cache_write_tokens_details": {"ttl_30m_tokens": 2_000, "ttl_12h_tokens": 1_000},
    }
    fake.json("/responses", body)
    client(axme_meter.OpenAI, fake).responses.create(model="gpt-6.1-terra", input="hi")
    # 3000 x 1 + 4000 x 0.05 + 2000 x 1.25 (30-minute writes) + 1000 x 2.50 (12-hour writes) + 1000 x 5
    assert cost() == Decimal("0.0132")


def test_cached_audio_is_billed_once(fake: FakeOpenAI) -> None:
    # The gpt-realtime-mini example. Chat completions report only the totals: 750 prompt
    # tokens of which 550 audio, 500 cached. 500 + 550 > 750, so 300 cached tokens are audio.
    fake.json("/chat/completions", chat_with_usage("gpt-realtime-mini", 750, 210,
                                                   {"cached_tokens": 500, "audio_tokens": 550}))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-realtime-mini", messages=MESSAGES)
    # 200 x 0.06 (cached text) + 300 x 0.30 (cached audio) + 250 x 10 (audio) + 210 x 2.40; it was $0.006034
    assert cost() == Decimal("0.003106")


def test_cached_split_reported_by_the_api_is_used(fake: FakeOpenAI) -> None:
    body = response_body(model="gpt-realtime-2", inp=1_000, out=500)
    body["usage"]["input_tokens_details"] = {
        "cached_tokens": 400, "audio_tokens": 800,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 300},
    }
    body["usage"]["output_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 400}
    fake.json("/responses", body)
    client(axme_meter.OpenAI, fake).responses.create(model="gpt-realtime-2", input="hi")
    # 100 x 4 + 100 x 0.40 + 500 x 32 + 300 x 0.40 (cached audio) + 100 x 24 + 400 x 64
    assert cost() == Decimal("0.04456")


def test_gpt_image_2_output_is_image_tokens(fake: FakeOpenAI) -> None:
    fake.json("/images/generations", {"created": 1, "data": [{"b64_json": "aGk="}], "usage": {
        "input_tokens": 100, "input_tokens_details": {"text_tokens": 100, "image_tokens": 0},
        "output_tokens": 4_000, "total_tokens": 4_100}})
    client(axme_meter.OpenAI, fake).images.generate(model="gpt-image-2", prompt="a cat")
    assert cost() == Decimal("0.1205")  # 100 x 5 + 4000 x 30


def test_gpt_transcribe_is_priced_per_second(fake: FakeOpenAI) -> None:
    fake.json("/audio/transcriptions", {"text": "hello", "usage": {"type": "duration", "seconds": 61.2}})
    client(axme_meter.OpenAI, fake).audio.transcriptions.create(
        model="gpt-transcribe", file=("a.wav", b"RIFF0000WAVE", "audio/wav"))
    assert cost() == Decimal("0.00465")  # 62 s x $0.0045 / 60


def test_fast_is_priority(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-5-2025-08-07", prompt=2000, completion=3000, service_tier="fast"))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert cost() == Decimal("0.065")  # 2000 x 2.50 + 3000 x 20


def test_priority_is_not_applied_to_long_prompts(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-5.4", prompt=200_000, completion=1_000, service_tier="priority"))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-5.4", messages=MESSAGES)
    assert cost() == Decimal("0.515")  # standard: 200000 x 2.50 + 1000 x 15
    assert axme_meter.spend().estimated_calls == 0


def test_tier_without_rates_is_estimated_and_warned_once_per_model_and_tier(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-4o-2024-08-06", prompt=1000, completion=500, service_tier="flex"))
    c = client(axme_meter.OpenAI, fake)
    with pytest.warns(EstimatedPriceWarning, match=r"'gpt-4o-2024-08-06'.*'flex'.*standard rates"):
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # same model and tier: silent
    spend = axme_meter.spend()
    # standard rates: 2 x (1000 x 2.50 + 500 x 10)
    assert (spend.calls, spend.estimated_calls, spend.unpriced_calls, spend.cost_usd) == (2, 2, 0, Decimal("0.015"))


def test_unpriced_call_is_booked_when_warnings_are_errors(fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake.json("/chat/completions", chat_body(model="mystery-model-10", prompt=10, completion=5))
    c = client(axme_meter.OpenAI, fake)
    errors = meter.errors
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="axme_meter"):
        warnings.simplefilter("error")  # pytest's filterwarnings = error, python -W error
        reply = c.chat.completions.create(model="mystery-model-10", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello!"
    spend = axme_meter.spend()
    assert (spend.calls, spend.unpriced_calls, spend.tokens_in, spend.tokens_out) == (1, 1, 10, 5)
    assert meter.errors == errors
    assert "mystery-model-10" in caplog.text and "without a price" in caplog.text
    assert "failed to meter" not in caplog.text


async def test_estimated_call_is_booked_when_warnings_are_errors(fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-4o-2024-08-06", prompt=1000, completion=500, service_tier="scale"))
    c = client(axme_meter.AsyncOpenAI, fake)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="axme_meter"):
        warnings.simplefilter("error")
        await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    spend = axme_meter.spend()
    assert (spend.calls, spend.estimated_calls, spend.cost_usd) == (1, 1, Decimal("0.0075"))
    assert "'scale'" in caplog.text and "failed to meter" not in caplog.text


def test_unpriced_stream_is_booked_when_warnings_are_errors(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    errors = meter.errors
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stream = c.chat.completions.create(model="mystery-model-11", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "The answer is forty-two."
    spend = axme_meter.spend()
    assert (spend.calls, spend.unpriced_calls, spend.tokens_in, spend.tokens_out) == (1, 1, 1000, 500)
    assert meter.errors == errors
