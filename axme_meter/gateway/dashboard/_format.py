"""Display helpers registered as Jinja filters: money, numbers, times with their zone, progress, blocks.

Money arrives from ``_queries`` as exact decimal strings. From $1 up it is shown in
cents; below $1 it keeps three significant digits (``$0.0046``, ``$0.433``), because a
busy gpt-4o-mini agent spends fractions of a cent and "$0.00" would hide it. The exact
value stays in the ``title`` tooltip, so nothing is lost.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..._money import display_usd
from .._windows import parse_instant, zone


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value is not None else 0))
    except InvalidOperation:
        return Decimal(0)


def money(value: Any) -> str:
    """``"12.4712"`` → ``"$12.47"``; ``"0.004623"`` → ``"$0.00462"``; ``"0.05"`` → ``"$0.05"``; zero is ``"$0.00"``."""
    return display_usd(_dec(value))


def money_full(value: Any) -> str:
    """The exact amount for tooltips: ``"$12.4712345"``."""
    return "$" + format(_dec(value).normalize(), "f") if _dec(value) != 0 else "$0.00"


def number(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def when(value: str | None, tz_name: str | None = "UTC") -> str:
    """An ISO instant shown in the agent's timezone, always with the zone name: ``2026-11-29 04:01:02 CET``."""
    if not value:
        return "never"
    try:
        moment = parse_instant(value).astimezone(zone(tz_name))
    except (ValueError, OverflowError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or "UTC")


def percent_used(policy: dict[str, Any]) -> float:
    """Share of a policy's limit already spent, clamped to 0..100 for the progress bar."""
    limit, spent = _dec(policy.get("limit")), _dec(policy.get("spent"))
    if limit <= 0:
        return 100.0
    return float(min(Decimal(100), max(Decimal(0), spent * 100 / limit)))


def policy_value(policy: dict[str, Any], field: str) -> str:
    """A policy's limit / remaining in its unit: money for USD limits, a count for intent limits."""
    value = policy.get(field)
    return number(value) if policy.get("unit") == "intents" else money(value)


def duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "–"
    seconds = int((parse_instant(end) - parse_instant(start)).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def policy_name(name: Any) -> str:
    """``max_cost_per_day_usd`` → ``max cost per day``: the policy field as a person reads it."""
    return str(name or "").removesuffix("_usd").replace("_", " ")


def _amount(policy: Any, value: Any) -> str:
    """A limit or spend in its policy's unit: money for ``*_usd`` policies, a count otherwise."""
    return money(value) if str(policy or "").endswith("_usd") else number(value)


def event_details(data: Any, tz_name: str | None = "UTC") -> str:
    """An event's data as ``key value · …``: the agent is already the page's subject and nulls say nothing.

    Policy events read as people say them: ``policy max cost per day · limit $0.05 · spent $0.0501 · resets …``."""
    if not isinstance(data, dict):
        return str(data)
    parts = []
    policy = data.get("policy") if isinstance(data.get("policy"), str) else None
    for key, value in data.items():
        if key == "agent" or value is None or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            value = event_details(value, tz_name)
            if not value:
                continue
        elif key == "policy" and policy:
            value = policy_name(value)
        elif key in ("limit", "spent", "remaining") and policy:
            value = _amount(policy, value)
        elif key in ("resets_at", "at") and isinstance(value, str):
            value = when(value, tz_name)
        parts.append(f"{key.removeprefix('max_').replace('_', ' ')} {value}")
    return " · ".join(parts)[:400]


def block_of(agent: dict[str, Any]) -> dict[str, Any] | None:
    """Why ``agent`` may not spend now, or ``None``: ``{"source", "policy", "limit", "spent", "resets_at", "at"}``.

    The gateway blocks when a ``block`` policy's window is spent (``state == "blocked"``; the policy is the
    breached money limit whose window resets last, as the gateway's evaluation picks it). A client that
    stopped itself (a local limit or its lease) is reported by the gateway as ``client_block`` while current.
    """
    if agent.get("state") == "blocked":
        breached = [p for p in agent.get("policies") or [] if p.get("unit") is None and not p.get("intent_id")
                    and _dec(p.get("spent")) >= _dec(p.get("limit"))]
        if breached:
            p = max(breached, key=lambda q: str(q.get("resets_at") or ""))
            return {"source": "gateway", "policy": p.get("name"), "limit": p.get("limit"), "spent": p.get("spent"),
                    "resets_at": p.get("resets_at"), "at": None}
        return {"source": "gateway", "policy": None, "limit": None, "spent": None, "resets_at": None, "at": None}
    client = agent.get("client_block")
    if isinstance(client, dict) and agent.get("state") in (None, "active", "blocked"):
        return {"source": "client", "policy": client.get("policy"), "limit": client.get("limit"),
                "spent": client.get("spent"), "resets_at": client.get("resets_at"), "at": client.get("at")}
    return None


def shown_state(agent: dict[str, Any]) -> str:
    """The state badge: the gateway's state, except that a current client-side stop also reads ``blocked``."""
    return "blocked" if block_of(agent) is not None else str(agent.get("state") or "unknown")


def block_summary(block: dict[str, Any], tz_name: str | None = "UTC") -> str:
    """``max cost per day: spent $0.0501 of $0.05 · resets 2026-11-30 00:00:00 UTC`` (one line, for tables)."""
    if not block.get("policy"):
        return "a cost policy is spent"
    text = f"{policy_name(block['policy'])}: spent {_amount(block['policy'], block.get('spent'))} of " \
           f"{_amount(block['policy'], block.get('limit'))}"
    if block.get("resets_at"):
        text += f" · resets {when(block['resets_at'], tz_name)}"
    return text


def dumps(value: Any) -> str:
    """Raw JSON of an event for its tooltip (escaped by the template like everything else)."""
    return json.dumps(value, sort_keys=True)[:1000]


def local(moment: datetime, tz_name: str | None) -> datetime:
    return moment.astimezone(zone(tz_name))


FILTERS = {"money": money, "money_full": money_full, "number": number, "when": when, "pct": percent_used,
           "policy_value": policy_value, "duration": duration, "policy_name": policy_name,
           "event_details": event_details, "dumps": dumps, "block_of": block_of, "shown_state": shown_state,
           "block_summary": block_summary}
