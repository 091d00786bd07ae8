"""The OpenAI HTTP boundary, mocked: the only thing the client tests fake.

``FakeOpenAI`` answers like api.openai.com for the endpoints axme_meter meters and
records every request it receives. ``client(cls, fake)`` builds a real
``axme_meter`` (or ``openai``) client whose HTTP goes to it, through
``httpx2.MockTransport`` on openai 3.x and ``httpx.MockTransport`` on 2.x, so the
whole real SDK runs unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai

OPENAI_MAJOR = int(openai.__version__.split(".")[0])
if OPENAI_MAJOR >= 3:
    import httpx2 as http
else:
    http = httpx  # type: ignore[no-redef]

BASE_URL = "http://openai.test/v1"


def chat_body(model: str = "gpt-4o-2024-08-06", prompt: int = 1000, completion: int = 500, cached: int = 0,
              reasoning: int = 0, service_tier: str | None = "default", content: str = "Hello!") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764370000, "model": model,
        "service_tier": service_tier,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0}},
    }


def chat_chunks(model: str, words: list[str], usage: dict[str, int] | None) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1764370000, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        chunks.append({**base, "choices": [], "usage": {
            "prompt_tokens": usage["prompt"], "completion_tokens": usage["completion"],
            "total_tokens": usage["prompt"] + usage["completion"],
            "prompt_tokens_details": {"cached_tokens": usage.get("cached", 0)}}})
    return chunks


def response_body(model: str = "gpt-4o-2024-08-06", inp: int = 1000, out: int = 500, cached: int = 0,
                  reasoning: int = 0, text: str = "Hi") -> dict[str, Any]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1764370000, "model": model, "status": "completed",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
                  "output_tokens": out, "output_tokens_details": {"reasoning_tokens": reasoning},
                  "total_tokens": inp + out},
    }


def response_events(model: str, words: list[str], usage: tuple[int, int] | None) -> list[dict[str, Any]]:
    created = {**response_body(model, text=""), "status": "in_progress", "output": [], "usage": None}
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": created, "sequence_number": 0},
        {"type": "response.output_item.added", "output_index": 0, "item": item, "sequence_number": 1},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}, "sequence_number": 2},
    ]
    seq = 3
    for word in words:
        events.append({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                       "content_index": 0, "delta": word, "sequence_number": seq, "logprobs": []})
        seq += 1
    if usage is not None:
        body = response_body(model, usage[0], usage[1], text="".join(words))
        events.append({"type": "response.completed", "response": body, "sequence_number": seq})
    return events


def sse(events: list[dict[str, Any]], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


class FakeOpenAI:
    """Routes requests to per-path handlers; records (path, json body) of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.routes: dict[str, Callable[[Any, Any], Any]] = {}
        self.stream_words = ["The ", "answer ", "is ", "forty-two."]
        self.cut_after: int | None = None  # stream: raise a read error after this many events

    def route(self, path: str, handler: Callable[[Any, Any], Any]) -> None:
        self.routes[path] = handler

    def json(self, path: str, body: dict[str, Any] | Callable[[Any], dict[str, Any]], status: int = 200) -> None:
        self.route(path, lambda req, payload: http.Response(status, json=body(payload) if callable(body) else body))

    def __call__(self, request: Any) -> Any:
        path = re.sub(r"^/(v1|openai)", "", request.url.path)
        try:
            payload = json.loads(request.content) if request.content else None
        except (ValueError, UnicodeDecodeError):
            payload = None  # multipart (audio / image uploads)
        self.requests.append((path, payload))
        if path in self.routes:
            return self.routes[path](request, payload)
        if path == "/chat/completions":
            return self._chat(payload)
        if path == "/responses":
            return self._responses(payload)
        return http.Response(404, json={"error": {"message": f"no fake for {path}", "type": "invalid_request_error"}})

    def _chat(self, payload: dict[str, Any]) -> Any:
        if not payload.get("stream"):
            return http.Response(200, json=chat_body(model=payload["model"]))
        include = (payload.get("stream_options") or {}).get("include_usage")
        chunks = chat_chunks(payload["model"], self.stream_words, {"prompt": 1000, "completion": 500} if include else None)
        return self._sse_response(chunks)

    def _responses(self, payload: dict[str, Any]) -> Any:
        if not payload.get("stream"):
            return http.Response(200, json=response_body(model=payload["model"]))
        return self._sse_response(response_events(payload["model"], self.stream_words, (1000, 500)))

    def _sse_response(self, events: list[dict[str, Any]]) -> Any:
        headers = {"content-type": "text/event-stream"}
        if self.cut_after is None:
            return http.Response(200, headers=headers, content=sse(events))
        return http.Response(200, headers=headers, stream=_CutStream(sse(events[: self.cut_after], done=False)))

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class _CutStream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc]
    """A response body that sends some events, then fails like a dropped connection."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise http.ReadError("connection reset by peer")

    async def __aiter__(self) -> Any:
        yield self.head
        raise http.ReadError("connection reset by peer")


def client(cls: type, fake: FakeOpenAI, **kwargs: Any) -> Any:
    """A real (metered or plain) openai client whose HTTP goes to ``fake``."""
    is_async = issubclass(cls, openai.AsyncOpenAI)
    transport = http.MockTransport(fake)
    http_client = http.AsyncClient(transport=transport) if is_async else http.Client(transport=transport)
    kwargs.setdefault("api_key", "sk-test")
    if not issubclass(cls, (openai.AzureOpenAI, openai.AsyncAzureOpenAI)):
        kwargs.setdefault("base_url", BASE_URL)
    return cls(http_client=http_client, max_retries=0, **kwargs)
