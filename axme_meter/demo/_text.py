"""Token counts and generated text for the simulator.

Prompt tokens are counted the way OpenAI bills them: the o200k (GPT-4o and newer)
or cl100k (GPT-4, 3.5, embeddings) encoding of each message's text, plus three
framing tokens per message and three to prime the reply. The encodings come from
tiktoken seeded offline by :mod:`axme_meter._client._estimate`; if that fails, a
four-characters-a-token approximation keeps the simulator working.

Completion text is built from words that are exactly one token each in both
encodings, so the text a client receives is consistent with the usage the
simulator reports (a client estimating a cut stream gets the right count).
"""

from __future__ import annotations

import random
from typing import Any

#: Each entry is a single token (with its leading space) in o200k_base and cl100k_base;
#: tests/demo/test_simulator_text.py checks this.
WORDS: tuple[str, ...] = tuple(
    (
        "the agent ticket customer refund order account billing issue support team reply summary "
        "research source report policy request update status review answer check data user invoice "
        "payment shipping delay product service error login reset password plan upgrade cancel credit "
        "card email note priority urgent resolved pending open closed follow up next step cost budget "
        "limit model token cache query search result analysis evidence draft final and of to for with "
        "on in is was we will be this that a it as by from"
    ).split()
)


def _legacy_encoding(model: str) -> bool:
    return model.startswith(("gpt-4-", "gpt-3.5", "text-embedding", "davinci", "babbage")) or model == "gpt-4"


def count_tokens(text: str, model: str) -> int:
    """Tokens of ``text`` under ``model``'s encoding (approximate only if tiktoken is unusable)."""
    if not text:
        return 0
    try:
        from .._client._estimate import _encoding

        name = "cl100k_base" if _legacy_encoding(model) else "o200k_base"
        return len(_encoding(name).encode(text, disallowed_special=()))
    except Exception:  # no tokenizer available: a documented approximation
        return max(1, len(text) // 4)


def content_text(content: Any) -> str:
    """Flatten chat/responses content (a string or a list of typed parts) to its text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    return ""


def chat_prompt_tokens(body: dict[str, Any], model: str) -> int:
    """Prompt tokens of a chat request: message texts + 3 per message + 3, plus tool schemas."""
    messages = body.get("messages") or []
    total = 3
    for message in messages:
        if isinstance(message, dict):
            total += 3 + count_tokens(content_text(message.get("content")), model)
            if message.get("name"):
                total += 1
    tools = body.get("tools")
    if tools:
        import json

        total += count_tokens(json.dumps(tools, sort_keys=True), model)
    return total


def responses_input_tokens(body: dict[str, Any], model: str) -> int:
    """Input tokens of a Responses request: instructions and input items, framed like chat."""
    total = 3
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        total += 3 + count_tokens(instructions, model)
    items = body.get("input")
    if isinstance(items, str):
        total += 3 + count_tokens(items, model)
    elif isinstance(items, list):
        for item in items:
            text = content_text(item.get("content")) if isinstance(item, dict) else content_text(item)
            total += 3 + count_tokens(text, model)
    return total


def embedding_inputs(raw: Any) -> list[Any]:
    """Normalise ``input`` (a string, a token list, or a list of either) to a list of items."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]
    return list(raw) if isinstance(raw, list) else []


def embedding_tokens(item: Any, model: str) -> int:
    return len(item) if isinstance(item, list) else count_tokens(str(item), model)


#: Capitalised sentence openers, also one token each (checked by the same test).
OPENERS: tuple[str, ...] = ("The", "We", "This", "It", "A", "Our", "For", "In")


def generate_words(rng: random.Random, tokens: int) -> list[str]:
    """``tokens`` one-token pieces; the first is a capitalised opener with no leading space."""
    pieces = [" " + rng.choice(WORDS) for _ in range(tokens)]
    if pieces:
        pieces[0] = rng.choice(OPENERS)
    return pieces
