"""Shared helpers for the transport tests (importable from tests and subprocess scripts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from openai_mock import chat_body

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


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` (a hang guard, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def new_client(counter: CountingOpenAI) -> Any:
    """A real ``axme_meter.OpenAI`` whose HTTP goes to ``counter`` (no retries, so counts are exact)."""
    import axme_meter

    return axme_meter.OpenAI(api_key="sk-test", base_url="http://openai.test/v1",
                             http_client=httpx.Client(transport=httpx.MockTransport(counter.handler)), max_retries=0)
