"""The dashboard's one rendering helper: typed ``_queries`` values to text, registered as Jinja filters.

Money arrives as integer pico-dollars and is shown with ``_money.display_usd``: from
$1 up in cents; below $1 with three significant digits (``$0.0046``, ``$0.433``),
because a busy gpt-4o-mini agent spends fractions of a cent and "$0.00" would hide
it. The exact value stays in the ``title`` tooltip (``money_full``) and in ``data-*``
attributes (``exact``), so nothing is lost. Instants are aware datetimes shown in the
agent's timezone, always with the zone's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..._money import display_usd, to_decimal
from ..._protocol import money as wire_money
from ..._protocol import parse_money
from .._policies import PolicyStatus
from .._results import Agent
from .._windows import parse_instant, zone


def money(pico: int | None) -> str:
    """``12_471_200_000_000`` → ``"$12.47"``; 4.623e9 pico → ``"$0.00462"``; zero is ``"$0.00"``."""
    return display_usd(to_decimal(int(pico or 0)))


def exact(pico: int | None) -> str:
    """The exact amount for ``data-*`` attributes, machine-read like the API: its own string (``"0.20"``)."""
    return wire_money(int(pico or 0))


def money_full(pico: int | None) -> str:
    """The exact amount for tooltips: ``"$12.4712345"`` (``"$0.00"`` for zero)."""
    return "$" + format(to_decimal(int(pico)), "f") if pico else "$0.00"


def number(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def when(value: datetime | None, tz_name: str | None = "UTC") -> str:
    """An instant shown in the agent's timezone, always with the zone name: ``2026-11-29 04:01:02 CET``."""
    if value is None:
        return "never"
    moment = value.astimezone(zone(tz_name))
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or "UTC")


def iso_attr(value: datetime | None) -> str:
    """``<time datetime="…">``: the instant in UTC, ISO-8601."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else ""


def percent_used(policy: PolicyStatus) -> float:
    """Share of a policy's limit already spent, clamped to 0..100 for the progress bar."""
    if policy.limit <= 0:
        return 100.0
    return float(min(Decimal(100), max(Decimal(0), Decimal(policy.spent) * 100 / Decimal(policy.limit))))


def amount(policy: PolicyStatus, value: int) -> str:
    """A limit, spend or remainder in its policy's unit: money for USD limits, a count for intent limits."""
    return money(value) if policy.kind == "usd" else number(value)


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "–"
    seconds = int((end - start).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def policy_name(name: Any) -> str:
    """``max_cost_per_day_usd`` → ``max cost per day``: the policy field as a person reads it."""
    return str(name or "").removesuffix("_usd").replace("_", " ")


def _event_amount(policy: str | None, value: Any) -> str:
    """A limit or spend stored in an event (a wire string): money for ``*_usd`` policies, a count otherwise."""
    if str(policy or "").endswith("_usd"):
        pico = parse_money(value)
        return money(pico) if pico is not None else str(value)
    return number(value)


def _event_time(value: str, tz_name: str | None) -> str:
    try:
        return when(parse_instant(value), tz_name)
    except (ValueError, OverflowError):
        return value


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
            value = _event_amount(policy, value)
        elif key in ("resets_at", "at") and isinstance(value, str):
            value = _event_time(value, tz_name)
        parts.append(f"{key.removeprefix('max_').replace('_', ' ')} {value}")
    return " · ".join(parts)[:400]


@dataclass(frozen=True, slots=True)
class Block:
    """Why an agent may not spend now: who stopped it, and the policy's amounts (pico-dollars or counts)."""

    source: str  # gateway | client
    policy: str | None
    limit: int | None
    spent: int | None
    resets_at: datetime | None
    at: datetime | None

    @property
    def in_usd(self) -> bool:
        return str(self.policy or "").endswith("_usd")

    def amount(self, value: int | None) -> str:
        return money(value) if self.in_usd else number(value)


def block_of(agent: Agent) -> Block | None:
    """Why ``agent`` may not spend now, or ``None``.

    The gateway blocks when a ``block`` policy's window is spent (``state == "blocked"``; the policy is the
    breached money limit whose window resets last, as the gateway's evaluation picks it). A client that
    stopped itself (a local limit or its lease) is reported as ``client_block`` while current.
    """
    if agent.state == "blocked":
        p = agent.status.breach
        if p is not None:
            return Block("gateway", p.name, p.limit, p.spent, p.resets_at, None)
        return Block("gateway", None, None, None, None, None)
    client = agent.client_block
    if client is not None and agent.state in ("active", "blocked"):
        return Block("client", client.policy, client.limit, client.spent, client.resets_at, client.at)
    return None


def shown_state(agent: Agent) -> str:
    """The state badge: the gateway's state, except that a current client-side stop also reads ``blocked``."""
    return "blocked" if block_of(agent) is not None else agent.state


def block_summary(block: Block, tz_name: str | None = "UTC") -> str:
    """``max cost per day: spent $0.0501 of $0.05 · resets 2026-11-30 00:00:00 UTC`` (one line, for tables)."""
    if not block.policy:
        return "a cost policy is spent"
    text = f"{policy_name(block.policy)}: spent {block.amount(block.spent)} of {block.amount(block.limit)}"
    if block.resets_at is not None:
        text += f" · resets {when(block.resets_at, tz_name)}"
    return text


def dumps(value: Any) -> str:
    """Raw JSON of an event for its tooltip (escaped by the template like everything else)."""
    return json.dumps(value, sort_keys=True)[:1000]


def local(moment: datetime, tz_name: str | None) -> datetime:
    return moment.astimezone(zone(tz_name))


FILTERS = {"money": money, "money_full": money_full, "exact": exact, "number": number, "when": when, "iso_attr": iso_attr,
           "pct": percent_used, "amount": amount, "duration": duration, "policy_name": policy_name,
           "event_details": event_details, "dumps": dumps, "block_of": block_of, "shown_state": shown_state,
           "block_summary": block_summary}
