"""The swap is invisible: same classes, same return types, same errors, same request bodies."""

from __future__ import annotations

import openai
import pytest

import axme_meter
from support.openai_mock import FakeOpenAI, client, http

MESSAGES = [{"role": "user", "content": "What is the answer?"}]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (axme_meter.OpenAI, openai.OpenAI),
        (axme_meter.AsyncOpenAI, openai.AsyncOpenAI),
        (axme_meter.AzureOpenAI, openai.AzureOpenAI),
        (axme_meter.AsyncAzureOpenAI, openai.AsyncAzureOpenAI),
    ],
)
def test_clients_are_subclasses_taking_the_same_arguments(ours: type, theirs: type) -> None:
    kwargs = {"api_key": "sk-test"}
    if "Azure" in theirs.__name__:
        kwargs.update(azure_endpoint="https://example.openai.azure.com", api_version="2024-10-21")
    c = ours(**kwargs)
    assert isinstance(c, theirs)
    assert issubclass(ours, theirs)


def test_return_types_are_the_sdks(fake: FakeOpenAI) -> None:
    c = client(axme_meter.OpenAI, fake)
    completion = c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert type(completion) is openai.types.chat.ChatCompletion
    stream = c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    stream.close()


def test_request_body_is_unchanged_for_non_streaming_calls(fake: FakeOpenAI) -> None:
    plain = client(openai.OpenAI, fake)
    metered = client(axme_meter.OpenAI, fake)
    kwargs = dict(model="gpt-4o", messages=MESSAGES, temperature=0.2, user="u-1", max_tokens=50)
    plain.chat.completions.create(**kwargs)
    metered.chat.completions.create(**kwargs)
    assert fake.requests[0] == fake.requests[1]


def test_only_include_usage_is_added_to_streams(fake: FakeOpenAI) -> None:
    plain = client(openai.OpenAI, fake)
    metered = client(axme_meter.OpenAI, fake)
    list(plain.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    list(metered.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    theirs, ours = fake.requests[0][1], fake.requests[1][1]
    assert ours.pop("stream_options") == {"include_usage": True}
    assert ours == theirs


def test_caller_stream_options_are_respected(fake: FakeOpenAI) -> None:
    metered = client(axme_meter.OpenAI, fake)
    chunks = list(metered.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": False}))
    assert fake.requests[0][1]["stream_options"] == {"include_usage": False}
    assert all(chunk.choices for chunk in chunks)


def test_sdk_errors_pass_through_untouched(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", {"error": {"message": "boom", "type": "server_error"}}, status=500)
    c = client(axme_meter.OpenAI, fake)
    with pytest.raises(openai.InternalServerError) as info:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert type(info.value) is openai.InternalServerError
    assert axme_meter.spend().calls == 0  # a failed call costs nothing and is not booked


def test_rate_limit_error_type_is_preserved(fake: FakeOpenAI) -> None:
    fake.json("/chat/completions", {"error": {"message": "slow down", "type": "rate_limit"}}, status=429)
    c = client(axme_meter.OpenAI, fake)
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_a_failure_inside_metering_never_breaks_the_call(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    from axme_meter._pricing import table

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("pricing exploded")

    monkeypatch.setattr(type(table()), "quote", broken)
    c = client(axme_meter.OpenAI, fake)
    errors_before = axme_meter._meter.errors
    completion = c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello!"
    assert axme_meter._meter.errors == errors_before + 1


def test_unmetered_endpoints_pass_straight_through(fake: FakeOpenAI) -> None:
    fake.route("/models", lambda req, body: http.Response(200, json={"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"}]}))
    c = client(axme_meter.OpenAI, fake)
    assert [m.id for m in c.models.list()] == ["gpt-4o"]
    assert axme_meter.spend().calls == 0

