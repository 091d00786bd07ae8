"""Every metered endpoint, priced to the micro-dollar against hand-computed list prices.

Prices used (USD per 1M tokens unless noted), from openai.com/api/pricing:
gpt-4o-2024-08-06 in 2.50 / cached 1.25 / out 10.00; gpt-4o-mini in 0.15 / out 0.60;
gpt-5 in 1.25 / cached 0.125 / out 10.00 (priority 2.50 / 0.25 / 20.00, flex 0.625 / 0.0625 / 5.00);
gpt-3.5-turbo-instruct in 1.50 / out 2.00; text-embedding-3-small 0.02; whisper-1 $0.006/min;
gpt-4o-transcribe text in 2.50 / audio in 6.00 / out 10.00; tts-1 $15 per 1M characters;
dall-e-3 standard 1024x1024 $0.040, hd 1024x1024 $0.080; gpt-image-1 text in 5.00 / image in 10.00 /
image out 40.00; omni-moderation-latest free.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

import axme_meter
from support.openai_mock import FakeOpenAI, chat_body, client, http, response_body

MESSAGES = [{"role": "user", "content": "What is the answer?"}]


def cost() -> Decimal:
    return axme_meter.spend().cost_usd


def test_chat_completion_with_cached_input(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(prompt=1000, completion=500, cached=200))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    # 800 x 2.50 + 200 x 1.25 + 500 x 10.00 (per 1M) = 0.002 + 0.00025 + 0.005
    assert cost() == Decimal("0.00725")
    spend = axme_meter.spend()
    assert (spend.calls, spend.tokens_in, spend.tokens_out, spend.cached_tokens) == (1, 1000, 500, 200)
    assert set(spend.by_model) == {"gpt-4o-2024-08-06"}


def test_reasoning_tokens_are_inside_output_and_not_billed_twice(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-5-2025-08-07", prompt=2000, completion=3000, reasoning=2500))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-5", messages=MESSAGES)
    # 2000 x 1.25 + 3000 x 10.00 = 0.0025 + 0.03
    assert cost() == Decimal("0.0325")
    assert axme_meter.spend().reasoning_tokens == 2500


@pytest.mark.parametrize(("tier", "expected"), [("priority", "0.065"), ("flex", "0.01625"), ("default", "0.0325")])
def test_service_tier_is_read_off_the_response(fake: FakeOpenAI, tier: str, expected: str) -> None:
    fake.json("/chat/completions", chat_body(model="gpt-5-2025-08-07", prompt=2000, completion=3000, service_tier=tier))
    client(axme_meter.OpenAI, fake).chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert cost() == Decimal(expected)


def test_responses_create_and_parse(fake: FakeOpenAI) -> None:
    fake.json("/responses", response_body(model="gpt-4o-mini-2024-07-18", inp=10_000, out=1_000))
    c = client(axme_meter.OpenAI, fake)
    c.responses.create(model="gpt-4o-mini", input="hi")
    c.responses.parse(model="gpt-4o-mini", input="hi")
    # 2 x (10,000 x 0.15 + 1,000 x 0.60) per 1M = 2 x 0.0021
    assert cost() == Decimal("0.0042")


def test_chat_parse(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(prompt=100, completion=10, content='{"answer": 42}'))
    c = client(axme_meter.OpenAI, fake)
    parsed = c.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format={"type": "json_object"})
    assert parsed.choices[0].message.content == '{"answer": 42}'
    assert cost() == Decimal("0.00035")


def test_legacy_completions(fake: FakeOpenAI) -> None:
    fake.json("/completions", {
        "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": "42", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}})
    client(axme_meter.OpenAI, fake).completions.create(model="gpt-3.5-turbo-instruct", prompt="say 42")
    assert cost() == Decimal("0.0035")


def test_embeddings(fake: FakeOpenAI) -> None:
    fake.json("/embeddings", {"object": "list", "model": "text-embedding-3-small",
                              "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                              "usage": {"prompt_tokens": 50_000, "total_tokens": 50_000}})
    client(axme_meter.OpenAI, fake).embeddings.create(model="text-embedding-3-small", input="hello")
    assert cost() == Decimal("0.001")


def test_moderation_is_free_but_counted(fake: FakeOpenAI) -> None:
    fake.json("/moderations", {"id": "modr-1", "model": "omni-moderation-latest", "results": []})
    client(axme_meter.OpenAI, fake).moderations.create(model="omni-moderation-latest", input="hello")
    spend = axme_meter.spend()
    assert (spend.calls, spend.cost_usd, spend.unpriced_calls) == (1, Decimal(0), 0)


def test_whisper_is_priced_per_minute(fake: FakeOpenAI) -> None:
    fake.json("/audio/transcriptions", {"text": "hello", "language": "en", "duration": 90.0, "task": "transcribe"})
    client(axme_meter.OpenAI, fake).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF0000WAVE", "audio/wav"), response_format="verbose_json")
    assert cost() == Decimal("0.009")  # 1.5 min x $0.006


def test_translation_with_duration_usage(fake: FakeOpenAI) -> None:
    fake.json("/audio/translations", {"text": "hello", "usage": {"type": "duration", "seconds": 60}})
    client(axme_meter.OpenAI, fake).audio.translations.create(model="whisper-1", file=("a.wav", b"RIFF", "audio/wav"))
    assert cost() == Decimal("0.006")


def test_token_priced_transcription(fake: FakeOpenAI) -> None:
    fake.json("/audio/transcriptions", {"text": "hello", "usage": {
        "type": "tokens", "input_tokens": 1000, "input_token_details": {"text_tokens": 100, "audio_tokens": 900},
        "output_tokens": 200, "total_tokens": 1200}})
    client(axme_meter.OpenAI, fake).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", b"RIFF", "audio/wav"))
    # 100 x 2.50 + 900 x 6.00 + 200 x 10.00 per 1M
    assert cost() == Decimal("0.00765")


def test_speech_is_priced_per_character(fake: FakeOpenAI) -> None:
    fake.route("/audio/speech", lambda req, body: http.Response(200, content=b"ID3 fake mp3"))
    audio = client(axme_meter.OpenAI, fake).audio.speech.create(model="tts-1", voice="alloy", input="x" * 2000)
    assert audio.read() == b"ID3 fake mp3"
    assert cost() == Decimal("0.03")  # 2,000 chars x $15 / 1M


def test_dalle_is_priced_per_image(fake: FakeOpenAI) -> None:
    fake.json("/images/generations", {"created": 1, "data": [{"url": "https://x/1.png"}, {"url": "https://x/2.png"}]})
    c = client(axme_meter.OpenAI, fake)
    c.images.generate(model="dall-e-3", prompt="a cat", n=1, size="1024x1024", quality="hd")
    assert cost() == Decimal("0.16")  # two images came back, $0.08 each


def test_gpt_image_is_priced_per_token(fake: FakeOpenAI) -> None:
    fake.json("/images/edits", {"created": 1, "data": [{"b64_json": "aGk="}], "usage": {
        "input_tokens": 1100, "input_tokens_details": {"text_tokens": 100, "image_tokens": 1000},
        "output_tokens": 4160, "total_tokens": 5260}})
    client(axme_meter.OpenAI, fake).images.edit(model="gpt-image-1", image=("in.png", b"\x89PNG", "image/png"),
                                                prompt="add a hat")
    # 100 x 5 + 1000 x 10 + 4160 x 40 per 1M
    assert cost() == Decimal("0.1769")


def test_raw_and_streaming_response_wrappers_are_metered(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().usage.prompt_tokens == 1000
    raw.parse()  # parsing twice never books twice
    with c.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as response:
        response.parse()
    assert axme_meter.spend().calls == 2
    assert cost() == Decimal("0.015")


def test_an_unparsed_raw_response_is_still_booked(fake: FakeOpenAI) -> None:
    import gc

    c = client(axme_meter.OpenAI, fake)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.status_code == 200
    del raw
    gc.collect()
    spend = axme_meter.spend()
    assert spend.calls == 1  # booked (as unpriced: its usage was never read)


def test_unknown_model_is_recorded_unpriced_with_one_warning(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="mystery-model-9", prompt=10, completion=5))
    c = client(axme_meter.OpenAI, fake)
    with pytest.warns(axme_meter.UnpricedCallWarning, match="mystery-model-9"):
        c.chat.completions.create(model="mystery-model-9", messages=MESSAGES)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.chat.completions.create(model="mystery-model-9", messages=MESSAGES)  # second time: silent
    spend = axme_meter.spend()
    assert (spend.calls, spend.unpriced_calls, spend.tokens_in, spend.cost_usd) == (2, 2, 20, Decimal(0))


def test_strict_pricing_raises_before_sending(fake: FakeOpenAI) -> None:
    axme_meter.configure(strict_pricing=True)
    try:
        c = client(axme_meter.OpenAI, fake)
        with pytest.raises(axme_meter.UnknownModelError, match="mystery-model-9"):
            c.chat.completions.create(model="mystery-model-9", messages=MESSAGES)
        assert fake.requests == []
    finally:
        axme_meter.configure(strict_pricing=False)


def test_custom_price_for_an_openai_compatible_model(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", chat_body(model="acme-llm-1", prompt=1_000_000, completion=1_000_000))
    axme_meter.configure(extra_prices=[{"id": "acme-llm-1", "prices": [{"effective": "2024-01-01", "input": "0.10",
                                                                          "output": "0.30"}]}])
    try:
        client(axme_meter.OpenAI, fake).chat.completions.create(model="acme-llm-1", messages=MESSAGES)
        assert cost() == Decimal("0.40")
    finally:
        axme_meter.configure(extra_prices=[])


def test_azure_deployments_are_priced_through_the_mapping(fake: FakeOpenAI) -> None:
    fake.json("/deployments/prod-chat/chat/completions", chat_body(model="my-weird-name", prompt=1000, completion=500))
    axme_meter.configure(azure_deployments={"prod-chat": "gpt-4o-mini"})
    try:
        c = client(axme_meter.AzureOpenAI, fake, azure_endpoint="http://openai.test", api_version="2024-10-21")
        c.chat.completions.create(model="prod-chat", messages=MESSAGES)
    finally:
        axme_meter.configure(azure_deployments={})
    assert cost() == Decimal("0.00045")  # 1000 x 0.15 + 500 x 0.60 per 1M
