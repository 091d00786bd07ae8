"""Small builders shared by the gateway tests."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx


def entry(agent: str, cost: str = "0.01", *, id: str | None = None, intent: str | None = None,
          models: dict[str, str] | None = None, calls: int = 1, tokens_in: int = 10, tokens_out: int = 5) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id or f"hb_test_{secrets.token_hex(6)}",
        "agent": agent,
        "status": "processing",
        "window_start": "2026-11-28T12:00:00Z",
        "window_end": "2026-11-28T12:00:30Z",
        "metrics": {"cost_usd": cost, "llm_calls": calls, "tokens_in": tokens_in, "tokens_out": tokens_out,
                    "cached_tokens": 0, "reasoning_tokens": 0, "estimated_calls": 0, "unpriced_calls": 0},
        "by_model": {m: {"cost_usd": c, "llm_calls": 1, "tokens_in": 1, "tokens_out": 1} for m, c in (models or {}).items()},
        "pricing_version": "test",
    }
    if intent is not None:
        body["intent_id"] = intent
    return body


def send(http: httpx.Client, *entries: dict[str, Any]) -> httpx.Response:
    return http.post("/v1/mesh/heartbeat", json={"heartbeats": list(entries)})


def path(agent: str) -> str:
    """The ``{address_id}`` path part for a full address (percent-encoded)."""
    return quote(agent, safe="")


def policy_path(agent: str) -> str:
    return f"/v1/mesh/agents/{path(agent)}/policies/cost"


def spent(http: httpx.Client, agent: str, window: str = "day") -> Decimal:
    body = http.get(f"/v1/mesh/agents/{path(agent)}").json()
    return Decimal(body["windows"][window]["cost_usd"])


async def asend(http: httpx.AsyncClient, *entries: dict[str, Any]) -> httpx.Response:
    """``send`` for an in-process gateway (``inprocess.inprocess_gateway``)."""
    return await http.post("/v1/mesh/heartbeat", json={"heartbeats": list(entries)})


async def aspent(http: httpx.AsyncClient, agent: str, window: str = "day") -> Decimal:
    body = (await http.get(f"/v1/mesh/agents/{path(agent)}")).json()
    return Decimal(body["windows"][window]["cost_usd"])
