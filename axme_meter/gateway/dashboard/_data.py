"""What the pages show, read only through ``gateway._queries`` (the JSON API's own read functions).

Keeping every number on the page a value that ``_queries`` returned is what makes
the dashboard and ``/v1/mesh/...`` unable to disagree; this module only selects,
filters and sorts.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from .. import _queries
from .._windows import bounds

#: view → (bucket size for the chart, the calendar window it covers)
VIEWS: dict[str, tuple[str, str]] = {"day": ("hour", "day"), "week": ("day", "week"), "month": ("day", "month")}
MAX_INTENT_ROWS = 50


def overview(conn: Connection, org: str, now: datetime, text: str = "", only_org: str = "") -> dict[str, Any]:
    """Agents visible to ``org`` with day / week / month windows, biggest spender first."""
    listed = _queries.list_agents(conn, org, now, "day")["agents"]
    orgs = sorted({a["org"] for a in listed})
    needle = text.strip().lower()
    rows = []
    for summary in listed:
        if only_org and summary["org"] != only_org:
            continue
        if needle and needle not in summary["address"].lower():
            continue
        detail = _queries.get_agent(conn, org, summary["address_id"], now)
        if detail is not None:
            rows.append(detail["agent"])
    rows.sort(key=lambda a: (-Decimal(a["windows"]["month"]["cost_usd"]), -Decimal(a["windows"]["day"]["cost_usd"]), a["address"]))
    return {"agents": rows, "orgs": orgs, "total_agents": len(listed)}


def agent_page(conn: Connection, org: str, ref: str, now: datetime, view: str, intent: str | None = None) -> dict[str, Any] | None:
    """One agent: its summary, the chart series for the chosen view, breakdowns, events, policy."""
    detail = _queries.get_agent(conn, org, ref, now)
    if detail is None:
        return None
    agent = detail["agent"]
    bucket, window = VIEWS[view]
    start, end = bounds(window, now, agent["timezone"])
    costs = _queries.agent_costs(conn, org, ref, now, bucket, start, end)
    assert costs is not None
    intents = []
    for row in costs["by_intent"][:MAX_INTENT_ROWS]:
        info = _queries.intent_cost(conn, org, row["intent_id"]) or {}
        intents.append({**row, "created_at": info.get("created_at"), "last_seen_at": info.get("last_seen_at")})
    selected = _queries.intent_cost(conn, org, intent) if intent else None
    if selected is not None and selected["address_id"] != agent["address_id"]:
        selected = None
    events = (_queries.list_events(conn, org, agent_ref=ref, limit=20) or {"events": []})["events"]
    return {"agent": agent, "view": view, "bucket": bucket, "costs": costs, "intents": intents,
            "selected_intent": selected, "events": events, "policy": agent["policy"]}
