"""OpenAI-shaped response bodies and stream events, built from plain dicts.

Field names and nesting follow what api.openai.com returns today for chat
completions, the Responses API and embeddings, so the real ``openai`` SDK (and
axme_meter's usage readers) parse them exactly as they parse the real thing.
"""

from __future__ import annotations

import base64
import random
import struct
import time
from dataclasses import dataclass
from typing import Any

#: What the API reports for an alias (the snapshot the alias pointed at when checked).
SNAPSHOTS: dict[str, str] = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
}
EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def snapshot(model: str) -> str:
    return SNAPSHOTS.get(model, model)


def is_reasoning(model: str) -> bool:
    return model.startswith(REASONING_PREFIXES)


@dataclass(slots=True)
class Tokens:
    """The usage of one simulated call. ``completion`` includes ``reasoning``, as in OpenAI's usage."""

    prompt: int
    cached: int
    completion: int
    reasoning: int


def new_id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))


def chat_usage(t: Tokens) -> dict[str, Any]:
    return {
        "prompt_tokens": t.prompt,
        "completion_tokens": t.completion,
        "total_tokens": t.prompt + t.completion,
        "prompt_tokens_details": {"cached_tokens": t.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": t.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(t: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": t.prompt,
        "input_tokens_details": {"cached_tokens": t.cached},
        "output_tokens": t.completion,
        "output_tokens_details": {"reasoning_tokens": t.reasoning},
        "total_tokens": t.prompt + t.completion,
    }


@dataclass(slots=True)
class ChatFrame:
    """What every chunk of one chat completion shares."""

    id: str
    created: int
    model: str
    service_tier: str
    fingerprint: str

    def head(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "service_tier": self.service_tier,
            "system_fingerprint": self.fingerprint,
        }


def chat_completion(frame: ChatFrame, text: str, finish: str, t: Tokens) -> dict[str, Any]:
    body = frame.head("chat.completion")
    body["choices"] = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": finish,
        }
    ]
    body["usage"] = chat_usage(t)
    return body


def chat_chunk(frame: ChatFrame, delta: dict[str, Any], finish: str | None, with_usage: bool) -> dict[str, Any]:
    body = frame.head("chat.completion.chunk")
    body["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    if with_usage:
        body["usage"] = None  # OpenAI sends an explicit null on every chunk but the last
    return body


def chat_usage_chunk(frame: ChatFrame, t: Tokens) -> dict[str, Any]:
    body = frame.head("chat.completion.chunk")
    body["choices"] = []
    body["usage"] = chat_usage(t)
    return body


def response_object(
    rid: str, mid: str, created: int, model: str, body: dict[str, Any], text: str | None, status: str, t: Tokens | None
) -> dict[str, Any]:
    """A Responses API ``response``; ``text=None`` gives the in-progress shape with no output yet."""
    output: list[dict[str, Any]] = []
    if text is not None:
        output.append(
            {
                "id": mid,
                "type": "message",
                "status": "completed" if status == "completed" else "incomplete",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": body.get("service_tier") or "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": responses_usage(t) if t is not None else None,
        "user": None,
    }


def embedding_vector(rng: random.Random, dimensions: int, encoding_format: str) -> list[float] | str:
    """A unit-ish random vector; base64 is little-endian float32, which the SDK decodes by default."""
    values = [rng.uniform(-1.0, 1.0) / (dimensions**0.5) for _ in range(dimensions)]
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode("ascii")
    return values


def now() -> int:
    return int(time.time())
