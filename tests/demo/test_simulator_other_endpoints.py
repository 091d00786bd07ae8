"""The Responses API, embeddings, the word list and the stats, from the simulator."""

from __future__ import annotations

import httpx
import openai
import pytest

from axme_meter.demo._simulator import Simulator
from axme_meter.demo._text import OPENERS, WORDS, count_tokens


def test_every_word_is_one_token_in_both_encodings() -> None:
    for word in WORDS:
        assert count_tokens(" " + word, "gpt-4o") == 1, word
        assert count_tokens(" " + word, "gpt-4") == 1, word
    for opener in OPENERS:
        assert count_tokens(opener, "gpt-4o") == 1 and count_tokens(opener, "gpt-4") == 1, opener


def test_responses_json(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="gpt-4o", instructions="Be brief.", input="What is ticket 12 about?")
    assert reply.status == "completed" and reply.model == "gpt-4o-2024-08-06"
    assert reply.usage is not None
    assert count_tokens(reply.output_text, "gpt-4o") == reply.usage.output_tokens
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


def test_responses_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="gpt-4o", input="hi", max_output_tokens=16)
    assert reply.status == "incomplete"
    assert reply.incomplete_details and reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage and reply.usage.output_tokens == 16


def test_responses_stream_ends_with_completed_carrying_usage(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o", input=[{"role": "user", "content": "hi"}], stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"
    ]
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert final.output_text == text and final.usage is not None
    assert count_tokens(text, "gpt-4o") == final.usage.output_tokens


def test_responses_stream_helper_and_cut(client: openai.OpenAI, sim: Simulator) -> None:
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        final = stream.get_final_response()
    assert final.usage is not None
    events = list(
        client.responses.create(
            model="gpt-4o", input="hi", stream=True,
            extra_headers={"x-simulator-cut-after": "2", "x-simulator-cut-mode": "eof"},
        )
    )
    assert [e.type for e in events].count("response.output_text.delta") == 2
    assert all(e.type != "response.completed" for e in events)
    assert sim.stats.cut_streams == 1


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_embeddings(client: openai.OpenAI, encoding_format: str | None) -> None:
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}
    reply = client.embeddings.create(model="text-embedding-3-small", input=["refund request", "hello"], **kwargs)  # type: ignore[arg-type]
    assert [item.index for item in reply.data] == [0, 1]
    if encoding_format != "base64":  # the SDK decodes base64 only when it chose the format itself
        assert all(len(item.embedding) == 1536 for item in reply.data)
    assert reply.usage.prompt_tokens == count_tokens("refund request", "text-embedding-3-small") + count_tokens("hello", "text-embedding-3-small")


def test_embeddings_dimensions_and_token_arrays(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="text-embedding-3-large", input=[1, 2, 3, 4], dimensions=8)
    assert len(reply.data) == 1 and len(reply.data[0].embedding) == 8
    assert reply.usage.prompt_tokens == 4


def test_stats_count_what_was_served(sim: Simulator, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    client.embeddings.create(model="text-embedding-3-small", input="hi")
    with httpx.Client() as http:
        over_http = http.get(f"http://{sim.host}:{sim.port}/_simulator/stats").json()
    stats = sim.stats
    assert stats.requests == 2 and over_http["requests"] == 2
    assert stats.by_path == {"/v1/chat/completions": 1, "/v1/embeddings": 1}
    assert reply.usage and stats.billed_completion_tokens == reply.usage.completion_tokens
