"""Shared helpers for the transport tests (importable from tests and subprocess scripts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from support.openai_mock import chat_body

MODEL = "gpt-4o-2024-08-06"
AGENT = "agent://acme/prod/research"
API_KEY = "axme_sa_test_secret_key_123"
#: One mocked call: 1000 input + 500 output tokens of gpt-4o-2024-08-06 = $0.0075.


class CountingOpenAI:
    """The OpenAI HTTP side: counts requests and answers chat completions with usage."""

    def __init__(self) -> None:
        self.requests = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, json=chat_body(MODEL, prompt=1000, completion=500))

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


def chat(client: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])



def new_client(counter: CountingOpenAI) -> Any:
    """A real ``axme_meter.OpenAI`` whose HTTP goes to ``counter`` (no retries, so counts are exact)."""
    import axme_meter

    return axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1",
                             http_client=httpx.Client(transport=httpx.MockTransport(counter.handler)), max_retries=0)


def wire_entry(entry_id: str, agent: str, cost: str, *, calls: int = 1, intent: str | None = None) -> dict[str, Any]:
    """A heartbeat entry as the client writes it to its spool (and sends it)."""
    entry: dict[str, Any] = {
        "id": entry_id, "agent": agent, "status": "processing",
        "window_start": "2026-11-28T23:00:00Z", "window_end": "2026-11-28T23:00:30Z",
        "metrics": {"cost_usd": cost, "llm_calls": calls, "tokens_in": 10, "tokens_out": 5, "cached_tokens": 0,
                    "reasoning_tokens": 0, "estimated_calls": 0, "unpriced_calls": 0},
        "by_model": {MODEL: {"cost_usd": cost, "llm_calls": calls, "tokens_in": 10, "tokens_out": 5}},
        "pricing_version": "v1",
    }
    if intent is not None:
        entry["intent_id"] = intent
    return entry


def dead_process_spool(spool_dir: Path, gateway_url: str, api_key: str | None, entries: list[dict[str, Any]] | None = None,
                       *, raw: bytes | None = None, instance: str | None = None) -> Path:
    """What a process killed with unsent spend leaves behind: its state file in its identity's spool directory."""
    import json
    import secrets

    from axme_meter._transport._spool import namespace

    directory = spool_dir / namespace(gateway_url, api_key)
    directory.mkdir(parents=True, exist_ok=True)
    instance = instance or secrets.token_hex(6)
    path = directory / f"proc-{instance}.json"
    path.write_bytes(raw if raw is not None else json.dumps({"instance": instance, "pid": 1, "entries": entries}).encode())
    return path
