"""The read side, shared by the HTTP routes and the dashboard.

All functions take an open SQLAlchemy ``Connection`` (``engine.connect()``), an
``org`` scope (``"*"`` = every org, otherwise only ``agent://<org>/…`` is visible)
and an aware ``now`` (use the app's ``Clock`` so tests with a clock file agree),
and return plain JSON-ready dicts with money as decimal strings:

- ``list_agents(conn, org, now, window="day") -> dict``
  ``{"ok": True, "agents": [agent_summary…], "summary": {"total", "healthy", "degraded", "unreachable", "killed", "unknown", "blocked", "paused", "cost_period", "intents_period"}}``;
  each agent has ``address_id, address, display_name, org, state, health_status, last_heartbeat_at, created_at,
  intents_period, cost_period, cost_today, intents_today, metadata, policies`` (policies as in heartbeat answers),
  and ``client_block`` (``{policy, limit, spent, resets_at, at, source}``) only while a client process reports
  that it stopped the agent on its own (see ``_client_blocks.py``).
- ``get_agent(conn, org, ref, now) -> dict | None`` — one agent summary plus ``policy`` (the cost policy
  with webhook URLs redacted, or ``None``) and ``windows`` (``{"hour"|"day"|"week"|"month": {"start","end","cost_usd","llm_calls","tokens_in","tokens_out","intents","heartbeats"}}``).
  ``ref`` is an ``addr_…`` id or a full ``agent://`` address.
- ``agent_costs(conn, org, ref, now, window="day", start=None, end=None) -> dict | None`` —
  ``{"address_id","address","window","timezone","from","to","totals": {...},"series": [{"start","end","cost_usd",…}],
  "by_intent": [{"intent_id","cost_usd",…}], "by_model": [{"model","cost_usd",…}]}``; ``window`` is the bucket size
  and the default range is the last 24 hours / 30 days / 12 weeks / 12 months.
- ``intent_cost(conn, org, intent_id) -> dict | None`` — ``{"intent_id","agent","address_id","cost_usd","llm_calls","tokens_in","tokens_out","created_at","last_seen_at","labels"}``.
- ``list_events(conn, org, *, agent_ref=None, types=None, after_id=None, limit=100) -> dict`` — ``{"events": [{"id","type","agent","address_id","created_at","data"}], "next_after_id"}``
  (webhook URLs in ``data`` redacted, also in rows written before redaction existed).
- ``get_policy(conn, org, ref) -> dict | None`` — the stored cost policy in wire form, webhook URLs in full
  (the caller redacts them for anyone but org admins; ``None`` when unset or unknown agent).
- ``load_status(conn, agent_row, now, intent_ids=()) -> AgentStatus`` — effective state + policy statuses
  (``AgentStatus.to_wire()`` gives the heartbeat answer's ``{"address_id", "state", "policies"}``).
- ``load_statuses(conn, agent_rows, now, intent_ids_by_address=None) -> {address: AgentStatus}`` — the same, one query.
- ``find_agent(conn, org, ref) -> row | None`` — resolve an id or address within an org.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from .._attribution import InvalidAgentAddress, validate_address
from .._protocol import money
from . import _client_blocks, _store
from ._db import agents, counters, events, intents
from ._policies import AgentStatus, evaluate, windows_needed
from ._redact import redact_event, redact_policy
from ._schemas import CostPolicy, policy_from_storage
from ._windows import WINDOWS, bounds, buckets, iso, window_starts

HEALTHY_SECONDS = 90
DEGRADED_SECONDS = 300
_DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30), "week": timedelta(weeks=12), "month": timedelta(days=365)}
_RANGE_LIMIT = 2000


def parse_policy(raw: str | None) -> CostPolicy | None:
    return policy_from_storage(json.loads(raw)) if raw else None


def _visible(org: str) -> Any:
    return True if org == "*" else agents.c.org == org


def find_agent(conn: Connection, org: str, ref: str) -> Mapping[Any, Any] | None:
    """An agent by ``addr_…`` id or full address, only if ``org`` may see it."""
    if ref.startswith("agent://"):
        try:
            aid = _store.address_id(validate_address(ref))
        except InvalidAgentAddress:
            return None
    else:
        aid = ref
    row = conn.execute(select(agents).where(agents.c.address_id == aid)).mappings().first()
    if row is None or (org != "*" and row["org"] != org):
        return None
    return row


def load_status(conn: Connection, row: Mapping[Any, Any], now: datetime, intent_ids: Iterable[str] = ()) -> AgentStatus:
    policy = parse_policy(row["policy"])
    needed = windows_needed(policy)
    totals = {}
    if needed:
        starts = window_starts(now, policy.timezone if policy else None)
        totals = _store.read_totals(conn, row["address_id"], {w: starts[w] for w in needed})
    costs: dict[str, int] = {}
    if policy is not None and policy.max_cost_per_intent_usd is not None:
        costs = _store.intent_costs(conn, row["org"], intent_ids)
    return evaluate(row["address"], row["address_id"], row["state"], policy, totals, now, costs)


def load_statuses(
    conn: Connection, rows: Sequence[Mapping[Any, Any]], now: datetime, intent_ids: Mapping[str, Iterable[str]] | None = None
) -> dict[str, AgentStatus]:
    """``load_status`` for several agents with one counters query; keyed by address."""
    policies = {row["address_id"]: parse_policy(row["policy"]) for row in rows}
    wanted: dict[str, dict[str, int]] = {}
    for row in rows:
        policy = policies[row["address_id"]]
        needed = windows_needed(policy)
        if needed:
            starts = window_starts(now, policy.timezone if policy else None)
            wanted[row["address_id"]] = {w: starts[w] for w in needed}
    totals = _store.read_totals_many(conn, wanted)
    out: dict[str, AgentStatus] = {}
    for row in rows:
        policy = policies[row["address_id"]]
        costs: dict[str, int] = {}
        if policy is not None and policy.max_cost_per_intent_usd is not None:
            costs = _store.intent_costs(conn, row["org"], (intent_ids or {}).get(row["address"], ()))
        out[row["address"]] = evaluate(row["address"], row["address_id"], row["state"], policy,
                                       totals.get(row["address_id"], {}), now, costs)
    return out


def _health(row: Mapping[Any, Any], now: datetime) -> str:
    if row["state"] == "killed":
        return "killed"
    last = row["last_heartbeat_at"]
    if last is None:
        return "unknown"
    age = now.timestamp() - last
    return "healthy" if age < HEALTHY_SECONDS else "degraded" if age <= DEGRADED_SECONDS else "unreachable"


def _money_fields(values: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "cost_usd": money(int(values.get("cost_pico") or 0)),
        "llm_calls": int(values.get("llm_calls") or 0),
        "tokens_in": int(values.get("tokens_in") or 0),
        "tokens_out": int(values.get("tokens_out") or 0),
        "heartbeats": int(values.get("heartbeats") or 0),
        "intents": int(values.get("intents") or 0),
    }


def _summary(conn: Connection, row: Mapping[Any, Any], now: datetime, window: str) -> dict[str, Any]:
    return _summaries(conn, [row], now, window)[0]


def _summaries(conn: Connection, rows: Sequence[Mapping[Any, Any]], now: datetime, window: str) -> list[dict[str, Any]]:
    """Agent summaries with two queries in all (statuses, then today's and the period's totals)."""
    statuses = load_statuses(conn, rows, now)
    tzs = {row["address_id"]: _tz(row) for row in rows}
    wanted = {}
    for row in rows:
        starts = window_starts(now, tzs[row["address_id"]])
        wanted[row["address_id"]] = {"day": starts["day"], window: starts[window]}
    totals = _store.read_totals_many(conn, wanted)
    out = []
    for row in rows:
        t = totals[row["address_id"]]
        status = statuses[row["address"]]
        out.append({
            "address_id": row["address_id"],
            "address": row["address"],
            "display_name": row["address"].rsplit("/", 1)[-1],
            "org": row["org"],
            "state": status.state,
            "health_status": _health(row, now),
            "last_heartbeat_at": iso(row["last_heartbeat_at"]),
            "created_at": iso(row["created_at"]),
            "window": window,
            "intents_period": t[window]["intents"],
            "cost_period": money(t[window]["cost_pico"]),
            "intents_today": t["day"]["intents"],
            "cost_today": money(t["day"]["cost_pico"]),
            "timezone": tzs[row["address_id"]] or "UTC",
            "metadata": {},
            "policies": [p.to_wire() for p in status.policies],
        })
        client_block = _client_blocks.current(row, now.timestamp())
        if client_block is not None:
            out[-1]["client_block"] = client_block
    return out


def _tz(row: Mapping[Any, Any]) -> str | None:
    policy = parse_policy(row["policy"])
    return policy.timezone if policy else None


def list_agents(conn: Connection, org: str, now: datetime, window: str = "day") -> dict[str, Any]:
    rows = list(conn.execute(select(agents).where(_visible(org)).order_by(agents.c.address)).mappings().all())
    listed = _summaries(conn, rows, now, window)
    summary: dict[str, Any] = {"total": len(listed)}
    for name in ("healthy", "degraded", "unreachable", "killed", "unknown"):
        summary[name] = sum(1 for a in listed if a["health_status"] == name)
    for name in ("blocked", "paused"):
        summary[name] = sum(1 for a in listed if a["state"] == name)
    summary["cost_period"] = money(sum(_store_pico(a["cost_period"]) for a in listed))
    summary["intents_period"] = sum(a["intents_period"] for a in listed)
    return {"ok": True, "window": window, "agents": listed, "summary": summary}


def _store_pico(text: str) -> int:
    from .._money import from_usd

    return from_usd(text)


def get_agent(conn: Connection, org: str, ref: str, now: datetime) -> dict[str, Any] | None:
    row = find_agent(conn, org, ref)
    if row is None:
        return None
    out = _summary(conn, row, now, "day")
    policy = parse_policy(row["policy"])
    tz = policy.timezone if policy else None
    totals = _store.read_totals(conn, row["address_id"], window_starts(now, tz))
    out["windows"] = {}
    for w in WINDOWS:
        start, end = bounds(w, now, tz)
        out["windows"][w] = {"start": iso(start), "end": iso(end), **_money_fields(totals[w])}
    out["policy"] = redact_policy(policy.to_wire()) if policy else None  # webhook URLs: only via the policy endpoint
    return {"ok": True, "agent": out, **out}


def agent_costs(
    conn: Connection, org: str, ref: str, now: datetime, window: str = "day",
    start: datetime | None = None, end: datetime | None = None,
) -> dict[str, Any] | None:
    """Totals, a series per ``window`` bucket and breakdowns by intent and model over ``[start, end)``."""
    row = find_agent(conn, org, ref)
    if row is None:
        return None
    policy = parse_policy(row["policy"])
    tz = policy.timezone if policy else None
    end = end or bounds(window, now, tz)[1]
    start = start or (end - _DEFAULT_SPAN[window])
    starts = buckets(window, start, end, tz, _RANGE_LIMIT)
    aid = row["address_id"]
    base = and_(counters.c.address_id == aid, counters.c.window == window,
                counters.c.start >= (starts[0] if starts else 0), counters.c.start <= (starts[-1] if starts else -1))
    rows = conn.execute(select(counters).where(base)).mappings().all()
    totals_by_start = {r["start"]: r for r in rows if r["dim"] == "total"}
    series = []
    for s in starts:
        b_start = datetime.fromtimestamp(s, tz=start.tzinfo)
        series.append({"start": iso(s), "end": iso(bounds(window, b_start, tz)[1]), **_money_fields(totals_by_start.get(s, {}))})
    total = _sum(r for r in rows if r["dim"] == "total")
    return {
        "ok": True, "address_id": aid, "address": row["address"], "window": window, "timezone": tz or "UTC",
        "from": iso(start), "to": iso(end), "totals": _money_fields(total), "series": series,
        "by_intent": _breakdown(rows, "intent", "intent_id"), "by_model": _breakdown(rows, "model", "model"),
    }


def _sum(rows: Iterable[Mapping[Any, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        for f in _store.COUNTER_FIELDS:
            out[f] = out.get(f, 0) + int(r[f])
    return out


def _breakdown(rows: Iterable[Mapping[Any, Any]], dim: str, name: str) -> list[dict[str, Any]]:
    grouped: dict[str, list[Mapping[Any, Any]]] = {}
    for r in rows:
        if r["dim"] == dim:
            grouped.setdefault(r["key"], []).append(r)
    items = [(key, _sum(rs)) for key, rs in grouped.items()]
    items.sort(key=lambda kv: (-kv[1].get("cost_pico", 0), kv[0]))
    return [{name: key, **_money_fields(values)} for key, values in items]


def intent_cost(conn: Connection, org: str, intent_id: str) -> dict[str, Any] | None:
    query = select(intents, agents.c.address).join(agents, agents.c.address_id == intents.c.address_id).where(
        intents.c.intent_id == intent_id
    )
    if org != "*":
        query = query.where(intents.c.org == org)
    row = conn.execute(query.limit(1)).mappings().first()
    if row is None:
        return None
    return {
        "ok": True, "intent_id": row["intent_id"], "agent": row["address"], "address_id": row["address_id"],
        "cost_usd": money(int(row["cost_pico"])), "llm_calls": int(row["llm_calls"]), "tokens_in": int(row["tokens_in"]),
        "tokens_out": int(row["tokens_out"]), "created_at": iso(row["created_at"]), "last_seen_at": iso(row["last_seen_at"]),
        "labels": json.loads(row["labels"] or "{}"),
    }


def list_events(
    conn: Connection, org: str, *, agent_ref: str | None = None, types: Iterable[str] | None = None,
    after_id: int | None = None, limit: int = 100,
) -> dict[str, Any] | None:
    """Newest first; ``after_id`` pages forward for pollers (then oldest first). ``None`` if the agent is unknown."""
    query = select(events, agents.c.address).outerjoin(agents, agents.c.address_id == events.c.address_id)
    if org != "*":
        query = query.where(events.c.org == org)
    if agent_ref is not None:
        row = find_agent(conn, org, agent_ref)
        if row is None:
            return None
        query = query.where(events.c.address_id == row["address_id"])
    types = [t for t in (types or []) if t]
    if types:
        query = query.where(events.c.type.in_(types))
    if after_id is not None:
        query = query.where(events.c.id > after_id).order_by(events.c.id.asc())
    else:
        query = query.order_by(events.c.id.desc())
    rows = conn.execute(query.limit(max(1, min(limit, 1000)))).mappings().all()
    listed = [
        {"id": r["id"], "type": r["type"], "agent": r["address"], "address_id": r["address_id"],
         "created_at": iso(r["created_at"]), "data": redact_event(json.loads(r["data"]))}
        for r in rows
    ]
    return {"ok": True, "events": listed, "next_after_id": max((e["id"] for e in listed), default=after_id)}


def get_policy(conn: Connection, org: str, ref: str) -> dict[str, Any] | None:
    row = find_agent(conn, org, ref)
    policy = parse_policy(row["policy"]) if row else None
    return policy.to_wire() if policy else None


def count_agents(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(agents)).scalar() or 0)
