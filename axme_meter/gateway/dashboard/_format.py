"""Display helpers registered as Jinja filters: money, numbers, times with their zone, progress.

Money arrives from ``_queries`` as exact decimal strings; it is shown rounded to
cents with the exact value kept for the ``title`` tooltip, so nothing is lost.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .._windows import parse_instant, zone


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value is not None else 0))
    except InvalidOperation:
        return Decimal(0)


def money(value: Any) -> str:
    """``"12.4712"`` → ``"$12.47"`` (cents, thousands separators)."""
    return "$" + format(_dec(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), ",f")


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


def event_details(data: Any) -> str:
    """An event's data as ``key value · …``: the agent is already the page's subject and nulls say nothing."""
    if not isinstance(data, dict):
        return str(data)
    parts = []
    for key, value in data.items():
        if key == "agent" or value is None or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            value = event_details(value)
            if not value:
                continue
        parts.append(f"{key.removeprefix('max_').replace('_', ' ')} {value}")
    return " · ".join(parts)[:400]


def dumps(value: Any) -> str:
    """Raw JSON of an event for its tooltip (escaped by the template like everything else)."""
    return json.dumps(value, sort_keys=True)[:1000]


def local(moment: datetime, tz_name: str | None) -> datetime:
    return moment.astimezone(zone(tz_name))


FILTERS = {"money": money, "money_full": money_full, "number": number, "when": when, "pct": percent_used,
           "policy_value": policy_value, "duration": duration,
           "event_details": event_details, "dumps": dumps}
