"""The fleet listing: a page of agents, filtered, sorted and paged in one statement; one agent's row.

Every visible agent is ranked on narrow rows (its current windows' totals are primary-key lookups,
``_store.join_window_totals``), the summary counts and the matching agents' sums are window
aggregates over them, and only the page's agents are joined back with their full rows and all four
windows' totals, evaluated in Python as heartbeats are. Window starts depend on each agent's
timezone, which lives in its policy JSON: the statement maps it with ``CASE tz WHEN … THEN start``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, case, desc, false, func, literal, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement, Select

from .._protocol import LOOP_POLICY, parse_iso, parse_money
from . import _approvals, _client_blocks, _store
from ._db import agents, repeats
from ._policies import WINDOWED, evaluate
from ._queries import agent_id_of, moment, parse_policy, visible_to
from ._results import HEALTH, STATE_RANK, Agent, AgentPage, AgentQuery, ClientBlock, FleetSummary, Totals, Window
from ._windows import UTC, WINDOWS, bounds, window_starts

HEALTHY_SECONDS = 90
DEGRADED_SECONDS = 300


class _Zones:
    """Timezones the agent statement has window starts for (``UTC`` plus every one seen in a policy).

    Window starts depend on each agent's timezone, which lives inside its policy JSON, so the
    statement carries a ``CASE timezone WHEN … THEN start`` per window. A timezone not listed
    yet is noticed in the answer (``zones_known``), learnt, and the statement runs once more:
    that happens once per new timezone per process. A name listed but unused costs nothing,
    so one list serves every database in the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: tuple[str, ...] = ("UTC",)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def learn(self, names: Iterable[str]) -> None:
        from ._windows import zone

        fresh = []
        for name in names:
            try:
                zone(name)
            except Exception:  # noqa: BLE001 - a stored name the zoneinfo database lacks: leave it unknown
                continue
            fresh.append(name)
        with self._lock:
            self._names = tuple(sorted(set(self._names) | set(fresh)))


_ZONES = _Zones()


def _tz_column(dialect: str, source: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    return func.coalesce(_store.policy_field(dialect, "timezone", source=source), "UTC")


def _effective_state(dialect: str, cols: Any, totals: Mapping[str, Mapping[str, ColumnElement[Any]]],
                     identical: ColumnElement[Any]) -> ColumnElement[Any]:
    """``blocked`` as :func:`_policies.evaluate` derives it, in SQL: an active agent whose ``block`` policy
    has a windowed money limit spent (``spent >= limit``) or its identical-request limit passed this hour;
    otherwise the stored state. Sorting by state and the summary counts use it; listed agents are evaluated
    in Python as well (the two are tested to agree). ``cols`` has ``address_id``, ``state`` and ``policy``
    (a :func:`_store.parsed_policy` column); ``identical`` is the agent's highest identical-request count this hour."""
    breaches = []
    for name, (window, column, kind) in WINDOWED.items():
        if kind == "usd":
            limit = _store.policy_field(dialect, name, number=True, source=cols.policy)
            breaches.append(and_(limit.is_not(None), func.coalesce(totals[window][column], 0) >= limit))
    loop_limit = _store.policy_field(dialect, LOOP_POLICY, number=True, source=cols.policy)
    breaches.append(and_(loop_limit.is_not(None), func.coalesce(identical, 0) > loop_limit))
    action = func.coalesce(_store.policy_field(dialect, "action_on_breach", source=cols.policy), "block")
    return case((and_(cols.state == "active", action == "block", or_(*breaches)), "blocked"), else_=cols.state)


def _health(now: datetime, cols: Any = agents.c) -> ColumnElement[Any]:
    last = cols.last_heartbeat_at
    age = literal(now.timestamp(), Float) - last
    return case((cols.state == "killed", "killed"), (last.is_(None), "unknown"), (age < HEALTHY_SECONDS, "healthy"),
                (age <= DEGRADED_SECONDS, "degraded"), else_="unreachable")


#: window → the policy limits evaluated on its totals
_LIMITS_BY_WINDOW = {w: [name for name, (win, _c, _k) in WINDOWED.items() if win == w] for w in WINDOWS}


def _starts(tz: ColumnElement[Any], now: datetime, zones: Sequence[str]) -> dict[str, ColumnElement[Any]]:
    """Each window's current start for an agent whose timezone is ``tz``: ``CASE tz WHEN … THEN start``."""
    by_zone = {z: window_starts(now, z) for z in zones}
    return {w: case({z: s[w] for z, s in by_zone.items()}, value=tz) for w in WINDOWS}


def _full_totals(dialect: str, base: Any, aid: ColumnElement[Any], tz: ColumnElement[Any], now: datetime,
                 zones: Sequence[str]) -> tuple[Any, list[Any]]:
    """``base`` joined with every window's totals row (all counter fields), labelled ``<window>_<field>``."""
    joined, totals = _store.join_window_totals(dialect, base, aid, _starts(tz, now, zones))
    return joined, [totals[w][f].label(f"{w}_{f}") for w in WINDOWS for f in _store.COUNTER_FIELDS]


def _agent_select(conn: Connection, org: str, now: datetime, zones: Sequence[str]) -> Select[Any]:
    """Every visible agent with all four current windows' totals and its health: one row each."""
    dialect = conn.dialect.name
    tz = _tz_column(dialect)
    joined, columns = _full_totals(dialect, agents, agents.c.address_id, tz, now, zones)
    return select(
        agents.c.address_id, agents.c.address, agents.c.org, agents.c.state, agents.c.created_at,
        agents.c.last_heartbeat_at, agents.c.policy, agents.c.client_block, tz.label("tz"),
        case({z: 1 for z in zones}, value=tz, else_=0).label("zone_known"), _health(now).label("health"), *columns,
        _identical(now).label("identical"),
    ).select_from(joined).where(visible_to(org))


def _this_hour(now: datetime) -> ColumnElement[Any]:
    """The repeats rows of the hour window that started within the last hour, whatever the agent's timezone."""
    ts = int(now.timestamp())
    return and_(repeats.c.window_start > ts - 3600, repeats.c.window_start <= ts)


def _identical(now: datetime) -> Any:
    """The current hour's highest identical-request count (loop policy), for one listed agent: a primary-key
    range lookup per row. (The ranking over every agent joins :func:`_identical_by_agent` instead.)"""
    return (select(func.max(repeats.c["count"])).where(repeats.c.address_id == agents.c.address_id, _this_hour(now))
            .scalar_subquery())


def _identical_by_agent(now: datetime) -> Any:
    """The current hour's highest identical-request count of every agent that has one: one pass over
    ``axme_repeats`` (it keeps about two hours of rows), left-joined by the ranking."""
    return (select(repeats.c.address_id, func.max(repeats.c["count"]).label("identical"))
            .where(_this_hour(now)).group_by(repeats.c.address_id).subquery("loops"))


def _raises(conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, dict[tuple[str, int], int]]:
    """Approved raises (``_approvals``) of the listed agents whose policy asks for approvals: one query, if any."""
    ids = [r["address_id"] for r in rows if r["policy"] and "require_approval" in r["policy"]]
    return _approvals.active_raises(conn, ids, int(now.timestamp())) if ids else {}


def _agent_of(row: Mapping[str, Any], now: datetime, window_bounds: dict[tuple[str, str], tuple[datetime, datetime]],
              raises: Mapping[str, Mapping[tuple[str, int], int]] | None = None) -> Agent:
    """A row with ``_agent_select``'s columns as an :class:`Agent`, its policies evaluated exactly as heartbeats do."""
    tz = row["tz"]
    policy = parse_policy(row["policy"])
    totals = {w: Totals.of({f: row[f"{w}_{f}"] for f in _store.COUNTER_FIELDS}) for w in WINDOWS}
    status = evaluate(row["address"], row["address_id"], row["state"], policy, {w: t.as_counters() for w, t in totals.items()}, now,
                      identical=int(row.get("identical") or 0), raises=(raises or {}).get(row["address_id"]))
    windows = {}
    for w in WINDOWS:
        span = window_bounds.get((w, tz))
        if span is None:
            span = window_bounds[(w, tz)] = bounds(w, now, tz)
        windows[w] = Window(span[0], span[1], totals[w])
    return Agent(row["address_id"], row["address"], row["org"], status, row["health"], moment(row["last_heartbeat_at"]),
                 datetime.fromtimestamp(row["created_at"], UTC), tz, windows, policy, _client_block(row, now))


def _client_block(row: Mapping[str, Any], now: datetime) -> ClientBlock | None:
    """The agent's stored client-side stop, typed, while it is current."""
    current = _client_blocks.current(row, now.timestamp())
    if current is None:
        return None
    resets_at, at = parse_iso(current.get("resets_at")), parse_iso(current.get("at"))
    return ClientBlock(current.get("policy"), parse_money(current.get("limit")), parse_money(current.get("spent")),
                       datetime.fromtimestamp(resets_at, UTC) if resets_at is not None else None,
                       datetime.fromtimestamp(at, UTC) if at is not None else None, current.get("source"))


def get_agent(conn: Connection, org: str, ref: str, now: datetime) -> Agent | None:
    aid = agent_id_of(ref)
    if aid is None:
        return None
    row = None
    for _attempt in range(2):
        row = conn.execute(_agent_select(conn, org, now, _ZONES.names).where(agents.c.address_id == aid)).mappings().first()
        if row is None or row["zone_known"]:
            break
        _ZONES.learn([row["tz"]])
    return None if row is None else _agent_of(row, now, {}, _raises(conn, [row], now))


def _ranking_select(conn: Connection, org: str, now: datetime, zones: Sequence[str], query: AgentQuery) -> Select[Any]:
    """Every visible agent, narrow: what sorting, filtering and the summary need, nothing more.

    Each window joined here is one primary-key lookup per agent: the windows the listing sums or sorts
    by (``query.shown``) for every agent; the others only for agents whose policy limits them (what the
    ``blocked`` state needs); a NULL start finds nothing at almost no cost. Only cost and intents are read."""
    dialect = conn.dialect.name
    # the visible agents with their policy parsed once per row (MATERIALIZED: PostgreSQL would otherwise inline
    # the CTE and parse the policy text again for every field read below)
    fleet = select(agents.c.address_id, agents.c.address, agents.c.org, agents.c.state, agents.c.last_heartbeat_at,
                   _store.parsed_policy(dialect).label("policy")).where(visible_to(org)).cte("fleet")
    fleet = fleet.prefix_with("MATERIALIZED", dialect="postgresql")
    f = fleet.c
    tz = _tz_column(dialect, f.policy)
    starts = _starts(tz, now, zones)
    wanted = {}
    for w in WINDOWS:
        if w in query.shown:
            wanted[w] = starts[w]
        elif _LIMITS_BY_WINDOW[w]:
            limited = or_(*(_store.policy_field(dialect, name, source=f.policy).is_not(None) for name in _LIMITS_BY_WINDOW[w]))
            wanted[w] = case((limited, starts[w]), else_=None)
    joined, totals = _store.join_window_totals(dialect, fleet, f.address_id, wanted, ("cost_pico", "intents"))
    loops = _identical_by_agent(now)
    joined = joined.outerjoin(loops, loops.c.address_id == f.address_id)
    health = _health(now, f)
    matches = [true()]
    # an address or org never holds a control character, and PostgreSQL refuses NUL in any string: such a
    # filter matches nothing without asking the database; an unknown health matches nothing too
    if query.q:
        matches.append(func.lower(f.address).contains(query.q.lower(), autoescape=True) if _printable(query.q) else false())
    if query.org:
        matches.append(f.org == query.org if _printable(query.org) else false())
    if query.health:
        matches.append(health == query.health if query.health in HEALTH else false())
    return select(
        f.address_id, f.address, f.last_heartbeat_at, tz.label("tz"), case({z: 1 for z in zones}, value=tz, else_=0).label("zone_known"),
        _effective_state(dialect, f, totals, loops.c.identical).label("effective_state"), health.label("health"), and_(*matches).label("matches"),
        *(totals[w][c].label(f"rank_{w}_{c}") for w in wanted for c in ("cost_pico", "intents")),
    ).select_from(joined)


def _printable(text: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _split_sum(value: ColumnElement[Any], when: ColumnElement[Any] | None = None) -> tuple[Any, Any]:
    """Two window sums whose ``hi * 10**9 + lo`` is the exact total: SQLite's SUM of 64-bit ints raises on
    overflow, and a fleet's month may pass $9.2M (9.2e18 pico-dollars); each part stays far below that."""
    value = func.coalesce(value, 0)
    if when is not None:
        value = case((when, value), else_=0)
    return func.sum(value // 10**9).over(), func.sum(value % 10**9).over()


def _order(b: Any, query: AgentQuery) -> list[Any]:
    """ORDER BY for ``query.sort``; the address always breaks ties, so pages never overlap or skip."""
    def direction(col: Any) -> Any:
        return desc(col) if query.reverse else col

    period = func.coalesce(b[f"rank_{query.window}_cost_pico"], 0)
    if query.sort == "cost":
        keys = [direction(period), direction(func.coalesce(b["rank_day_cost_pico"], 0))]
    elif query.sort == "last_heartbeat":  # never reported: last, either way
        keys = [case((b["last_heartbeat_at"].is_(None), 1), else_=0), direction(b["last_heartbeat_at"])]
    elif query.sort == "state":
        keys = [direction(case(STATE_RANK, value=b["effective_state"], else_=len(STATE_RANK))), desc(period)]
    else:
        return [direction(b["address"])]
    return [*keys, b["address"]]


def _page_select(conn: Connection, org: str, now: datetime, query: AgentQuery, zones: Sequence[str]) -> Select[Any]:
    """One statement: every agent ranked (narrow rows), the fleet's counts and the matching agents' sums as
    window aggregates, then the page's agents joined back with their full rows and all windows' totals.

    At least one row comes back whenever an agent is visible (``rank = 1``), so the counts arrive even
    for an empty page; the caller keeps the rows that match and fall inside the page."""
    narrow = _ranking_select(conn, org, now, zones, query).subquery("agent")
    b = narrow.c
    aggregates: dict[str, Any] = {"fleet_total": func.count().over()}
    for name in HEALTH:
        aggregates[f"fleet_{name}"] = func.sum(case((b["health"] == name, 1), else_=0)).over()
    for name in ("blocked", "paused"):
        aggregates[f"fleet_{name}"] = func.sum(case((b["effective_state"] == name, 1), else_=0)).over()
    aggregates["fleet_cost_hi"], aggregates["fleet_cost_lo"] = _split_sum(b[f"rank_{query.window}_cost_pico"])
    aggregates["fleet_intents"] = func.sum(func.coalesce(b[f"rank_{query.window}_intents"], 0)).over()
    aggregates["matching"] = func.sum(case((b["matches"], 1), else_=0)).over()
    for w in query.shown:
        aggregates[f"matching_{w}_hi"], aggregates[f"matching_{w}_lo"] = _split_sum(b[f"rank_{w}_cost_pico"], b["matches"])
    aggregates["zones_known"] = func.min(b["zone_known"]).over()
    aggregates["rank"] = func.row_number().over(partition_by=b["matches"], order_by=_order(b, query))
    ranked = select(b["address_id"], b["tz"], b["health"], b["matches"], *(v.label(k) for k, v in aggregates.items())).subquery("ranked")
    r = ranked.c
    page = and_(r["matches"], r["rank"] > query.offset)
    if query.limit is not None:
        page = and_(page, r["rank"] <= query.offset + query.limit)
    picked = select(ranked).where(or_(page, r["rank"] == 1)).subquery("picked")
    p = picked.c
    dialect = conn.dialect.name
    joined, columns = _full_totals(dialect, picked.join(agents, agents.c.address_id == p["address_id"]), p["address_id"],
                                   p["tz"], now, zones)
    return select(
        agents.c.address_id, agents.c.address, agents.c.org, agents.c.state, agents.c.created_at, agents.c.last_heartbeat_at,
        agents.c.policy, agents.c.client_block, *(p[k] for k in ("tz", "health", "matches", *aggregates)), *columns,
        _identical(now).label("identical"),
    ).select_from(joined).order_by(p["rank"])


def list_agents(conn: Connection, org: str, now: datetime, query: AgentQuery | None = None) -> AgentPage:
    """A page of the fleet (every matching agent without ``query.limit``) and the fleet's summary."""
    query = query or AgentQuery()
    rows: Sequence[Mapping[str, Any]] = []
    for _attempt in range(2):
        rows = conn.execute(_page_select(conn, org, now, query, _ZONES.names)).mappings().all()
        if not rows or rows[0]["zones_known"]:
            break
        tz = _tz_column(conn.dialect.name)
        _ZONES.learn(conn.execute(select(tz).where(visible_to(org)).distinct()).scalars())
    if not rows:
        return AgentPage(query, [], FleetSummary(), 0, dict.fromkeys(query.shown, 0))
    first = rows[0]
    summary = FleetSummary(
        first["fleet_total"], *(int(first[f"fleet_{h}"]) for h in HEALTH), int(first["fleet_blocked"]),
        int(first["fleet_paused"]), int(first["fleet_cost_hi"]) * 10**9 + int(first["fleet_cost_lo"]),
        int(first["fleet_intents"]),
    )
    matching_cost = {w: int(first[f"matching_{w}_hi"]) * 10**9 + int(first[f"matching_{w}_lo"]) for w in query.shown}
    end = None if query.limit is None else query.offset + query.limit
    spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    shown = [r for r in rows if r["matches"] and r["rank"] > query.offset and (end is None or r["rank"] <= end)]
    raises = _raises(conn, shown, now)
    listed = [_agent_of(r, now, spans, raises) for r in shown]
    return AgentPage(query, listed, summary, int(first["matching"] or 0), matching_cost)


def list_orgs(conn: Connection, org: str) -> list[str]:
    """Orgs with agents visible to ``org`` (the super-admin's org filter)."""
    return list(conn.execute(select(agents.c.org).where(visible_to(org)).distinct().order_by(agents.c.org)).scalars())
