"""Read token usage off raw response bodies and stream events.

Works on the JSON dicts the SDK hands to ``_process_response_data``, before they
become pydantic models, so one reader serves openai 2.x and 3.x alike and costs
a few dict lookups per response.
"""

from __future__ import annotations

from typing import Any

from .._pricing import Usage

#: Responses API stream events that carry the final usage.
RESPONSE_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Stream events whose ``delta`` is generated text (kept to estimate a cut stream).
RESPONSE_TEXT_EVENTS = frozenset(
    {"response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta"}
)


def _int(mapping: Any, key: str) -> int:
    if not isinstance(mapping, dict):
        return 0
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _details(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def usage_from_dict(raw: dict[str, Any], *, image_endpoint: bool = False) -> Usage:
    """Translate any OpenAI ``usage`` object (chat, responses, realtime, images, audio) to :class:`Usage`.

    Cache writes (``cache_write_tokens``, with the 12 h TTL part where openai 3.x reports
    ``cache_write_tokens_details``) and the cached count's audio / image split
    (``cached_tokens_details``) are read wherever the API puts them.
    """
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        prompt = raw.get("prompt_tokens_details")
        completion = raw.get("completion_tokens_details")
        cached_split = _details(prompt, "cached_tokens_details")
        return Usage(
            input_tokens=_int(raw, "prompt_tokens"),
            cached_tokens=_int(prompt, "cached_tokens"),
            cache_write_tokens=_int(prompt, "cache_write_tokens"),
            cache_write_12h_tokens=_int(_details(prompt, "cache_write_tokens_details"), "ttl_12h_tokens"),
            audio_input_tokens=_int(prompt, "audio_tokens"),
            image_input_tokens=_int(prompt, "image_tokens"),
            cached_audio_tokens=_int(cached_split, "audio_tokens"),
            cached_image_tokens=_int(cached_split, "image_tokens"),
            output_tokens=_int(raw, "completion_tokens"),
            reasoning_tokens=_int(completion, "reasoning_tokens"),
            audio_output_tokens=_int(completion, "audio_tokens"),
        )
    if raw.get("type") == "duration":
        seconds = raw.get("seconds")
        return Usage(audio_seconds=float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else 0.0)
    inputs = raw.get("input_tokens_details") or raw.get("input_token_details")
    outputs = raw.get("output_tokens_details") or raw.get("output_token_details")
    output_tokens = _int(raw, "output_tokens")
    image_output = _int(outputs, "image_tokens")
    if image_endpoint and not isinstance(outputs, dict):
        image_output = output_tokens  # GPT Image models: all output is image tokens unless split
    cached_split = _details(inputs, "cached_tokens_details")
    return Usage(
        input_tokens=_int(raw, "input_tokens"),
        cached_tokens=_int(inputs, "cached_tokens"),
        cache_write_tokens=_int(inputs, "cache_write_tokens"),
        cache_write_12h_tokens=_int(_details(inputs, "cache_write_tokens_details"), "ttl_12h_tokens"),
        audio_input_tokens=_int(inputs, "audio_tokens"),
        image_input_tokens=_int(inputs, "image_tokens"),
        cached_audio_tokens=_int(cached_split, "audio_tokens"),
        cached_image_tokens=_int(cached_split, "image_tokens"),
        output_tokens=output_tokens,
        reasoning_tokens=_int(outputs, "reasoning_tokens"),
        audio_output_tokens=_int(outputs, "audio_tokens"),
        image_output_tokens=image_output,
    )
