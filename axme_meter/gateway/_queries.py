"""The read side, shared by the HTTP routes and the dashboard: typed results, rendered at each edge.

Results are the dataclasses of ``_results`` (integer pico-dollars, ints, aware datetimes; never
JSON-ready strings), so no caller parses a number back: ``routes/_wire.py`` renders them for the
API with ``_protocol.money``, the dashboard with ``_money.display_usd``.

All functions take an open SQLAlchemy ``Connection``, an ``org`` scope (``"*"`` = every org,
otherwise only ``agent://<org>/…`` is visible) and, where time matters, an aware ``now`` (the
app's ``Clock``, so tests with a clock file agree). The fleet listing and one agent's summary
(``list_agents``, ``get_agent``, ``list_orgs``) are ``_fleet``'s; here:

- ``agent_costs(conn, org, ref, now, window, start, end) -> AgentCosts | None`` — a
  series per ``window`` bucket and breakdowns by intent and model over ``[start, end)``.
- ``intent_cost(conn, org, intent_id) -> IntentCost | None``; ``intents_of`` for several.
- ``list_events(conn, org, agent_ref=, types=, after_id=, limit=) -> EventPage | None``
  (webhook URLs in ``data`` redacted, also in rows written before redaction existed).
- ``get_policy(conn, org, ref) -> AgentPolicy | None`` — the stored policy, webhook URLs
  in full (the caller redacts them for anyone but org admins).
- ``load_status`` / ``load_statuses`` — effective state + policy statuses for the write
  paths (heartbeats, intents, grants, admin commands).
- ``find_agent(conn, org, ref) -> row | None`` — resolve an id or address within an org.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.engine import Connection

from .._attribution import InvalidAgentAddress, validate_address
from . import _approvals, _store
from ._db import agents, counters, events, intents
from ._policies import AgentStatus, evaluate, windows_needed
from ._redact import redact_event
from ._results import (
    Agent, AgentCosts, AgentPage, AgentPolicy, AgentQuery, Breakdown, Bucket, ClientBlock, Event, EventPage, FleetSummary,
    IntentCost, Totals, Window,
)
from ._schemas import CostPolicy, policy_from_storage
from ._windows import UTC, bounds, buckets, window_starts

__all__ = [
    "Agent", "AgentCosts", "AgentPage", "AgentPolicy", "AgentQuery", "Breakdown", "Bucket", "ClientBlock", "Event", "EventPage",
    "FleetSummary", "IntentCost", "Totals", "Window", "agent_costs", "count_agents", "find_agent", "get_policy", "intent_cost",
    "intents_of", "list_events", "load_status", "load_statuses", "parse_policy",
]
_DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30), "week": timedelta(weeks=12), "month": timedelta(days=365)}
_RANGE_LIMIT = 2000


# -- helpers shared with the write paths -----------------------------------------------------------

def parse_policy(raw: str | None) -> CostPolicy | None:
    """The stored policy JSON as a ``CostPolicy``, parsed once per distinct text: a heartbeat needs each of its
    agents' policies several times (window keys, evaluation, alerts), and callers never change the result."""
    return _parsed_policy(raw) if raw else None


@lru_cache(maxsize=4096)
def _parsed_policy(raw: str) -> CostPolicy:
    return policy_from_storage(json.loads(raw))


def visible_to(org: str) -> Any:
    return true() if org == "*" else agents.c.org == org


def moment(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def agent_id_of(ref: str) -> str | None:
    """An ``addr_…`` id, or the id of a full ``agent://`` address (``None`` if it is not a valid one)."""
    if not ref.startswith("agent://"):
        return ref
    try:
        return _store.address_id(validate_address(ref))
    except InvalidAgentAddress:
        return None


def find_agent(conn: Connection, org: str, ref: str) -> Mapping[Any, Any] | None:
    """An agent by ``addr_…`` id or full address, only if ``org`` may see it."""
    aid = agent_id_of(ref)
    if aid is None:
        return None
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
    identical = _identical(conn, {row["address_id"]: policy}, now).get(row["address_id"], 0)
    raises = _raises(conn, [row["address_id"]], policy is not None and policy.action_on_breach == "require_approval", now)
    return evaluate(row["address"], row["address_id"], row["state"], policy, totals, now, costs, identical,
                    raises.get(row["address_id"]))


def _identical(conn: Connection, policies: Mapping[str, CostPolicy | None], now: datetime) -> dict[str, int]:
    """The current hour's highest identical-request count of each agent with a loop policy (one read each)."""
    from . import _loops

    wanted = {aid: window_starts(now, p.timezone)["hour"] for aid, p in policies.items()
              if p is not None and p.max_identical_requests_per_hour is not None}
    return _loops.highest(conn, wanted) if wanted else {}


def _raises(conn: Connection, ids: Sequence[str], wanted: bool, now: datetime) -> dict[str, dict[tuple[str, int], int]]:
    """Approved raises (``_approvals``), read only for agents whose policy asks for approvals."""
    return _approvals.active_raises(conn, ids, int(now.timestamp())) if wanted and ids else {}


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
    identical = _identical(conn, policies, now)
    approving = [aid for aid, p in policies.items() if p is not None and p.action_on_breach == "require_approval"]
    raises = _raises(conn, approving, True, now)
    out: dict[str, AgentStatus] = {}
    for row in rows:
        policy = policies[row["address_id"]]
        costs: dict[str, int] = {}
        if policy is not None and policy.max_cost_per_intent_usd is not None:
            costs = _store.intent_costs(conn, row["org"], (intent_ids or {}).get(row["address"], ()))
        out[row["address"]] = evaluate(row["address"], row["address_id"], row["state"], policy,
                                       totals.get(row["address_id"], {}), now, costs, identical.get(row["address_id"], 0),
                                       raises.get(row["address_id"]))
    return out


# -- costs, intents, events, policies --------------------------------------------------------------

def agent_costs(
    conn: Connection, org: str, ref: str, now: datetime, window: str = "day",
    start: datetime | None = None, end: datetime | None = None,
) -> AgentCosts | None:
    """Totals, a series per ``window`` bucket and breakdowns by intent and model over ``[start, end)``.

    The default range is the last 24 hours / 30 days / 12 weeks / 12 months up to the current bucket's end."""
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
    c = counters.c
    rows = conn.execute(select(c.start, c.dim, c.key, *(_store.summed(c[f]).label(f) for f in _store.COUNTER_FIELDS))
                        .where(base).group_by(c.start, c.dim, c.key)).mappings().all()  # shards summed
    totals_by_start = {r["start"]: r for r in rows if r["dim"] == "total"}
    series = []
    for s in starts:
        b_start = datetime.fromtimestamp(s, tz=start.tzinfo)
        series.append(Bucket(datetime.fromtimestamp(s, UTC), bounds(window, b_start, tz)[1], Totals.of(totals_by_start.get(s))))
    total = sum((Totals.of(r) for r in rows if r["dim"] == "total"), Totals())
    return AgentCosts(aid, row["address"], window, tz or "UTC", start, end, total, series,
                      _breakdown(rows, "intent"), _breakdown(rows, "model"))


def _breakdown(rows: Iterable[Mapping[Any, Any]], dim: str) -> list[Breakdown]:
    grouped: dict[str, Totals] = {}
    for r in rows:
        if r["dim"] == dim:
            grouped[r["key"]] = grouped.get(r["key"], Totals()) + Totals.of(r)
    items = sorted(grouped.items(), key=lambda kv: (-kv[1].cost_pico, kv[0]))
    return [Breakdown(key, totals) for key, totals in items]


def intent_cost(conn: Connection, org: str, intent_id: str) -> IntentCost | None:
    query = select(intents, agents.c.address).join(agents, agents.c.address_id == intents.c.address_id).where(
        intents.c.intent_id == intent_id
    )
    if org != "*":
        query = query.where(intents.c.org == org)
    row = conn.execute(query.limit(1)).mappings().first()
    if row is None:
        return None
    return IntentCost(
        row["intent_id"], row["address"], row["address_id"],
        Totals(int(row["cost_pico"]), int(row["llm_calls"]), int(row["tokens_in"]), int(row["tokens_out"])),
        datetime.fromtimestamp(row["created_at"], UTC), datetime.fromtimestamp(row["last_seen_at"], UTC),
        json.loads(row["labels"] or "{}"),
    )


def intents_of(conn: Connection, org: str, ids: Iterable[str]) -> dict[str, IntentCost]:
    """Several intents of one org at once (the dashboard's intent table), by id."""
    ids = list(set(ids))
    if not ids:
        return {}
    query = select(intents, agents.c.address).join(agents, agents.c.address_id == intents.c.address_id).where(
        intents.c.intent_id.in_(ids))
    if org != "*":
        query = query.where(intents.c.org == org)
    out: dict[str, IntentCost] = {}
    for row in conn.execute(query).mappings():
        out.setdefault(row["intent_id"], IntentCost(
            row["intent_id"], row["address"], row["address_id"],
            Totals(int(row["cost_pico"]), int(row["llm_calls"]), int(row["tokens_in"]), int(row["tokens_out"])),
            datetime.fromtimestamp(row["created_at"], UTC), datetime.fromtimestamp(row["last_seen_at"], UTC),
            json.loads(row["labels"] or "{}")))
    return out


def list_events(
    conn: Connection, org: str, *, agent_ref: str | None = None, types: Iterable[str] | None = None,
    after_id: int | None = None, limit: int = 100,
) -> EventPage | None:
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
    listed = [Event(r["id"], r["type"], r["address"], r["address_id"], datetime.fromtimestamp(r["created_at"], UTC),
                    redact_event(json.loads(r["data"]))) for r in rows]
    return EventPage(listed, max((e.id for e in listed), default=after_id))


def get_policy(conn: Connection, org: str, ref: str) -> AgentPolicy | None:
    """The stored policy with webhook URLs in full; ``None`` for an agent ``org`` cannot see."""
    row = find_agent(conn, org, ref)
    if row is None:
        return None
    return AgentPolicy(row["address_id"], row["address"], parse_policy(row["policy"]))


def count_agents(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(agents)).scalar() or 0)
