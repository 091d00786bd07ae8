"""The read side, shared by the HTTP routes and the dashboard: typed results, rendered at each edge.

Results are dataclasses with integer pico-dollars, ints and aware datetimes (never
JSON-ready strings), so no caller parses a number back: ``routes/_wire.py`` renders
them for the API with ``_protocol.money``, the dashboard with ``_money.display_usd``.

All functions take an open SQLAlchemy ``Connection``, an ``org`` scope (``"*"`` =
every org, otherwise only ``agent://<org>/…`` is visible) and, where time matters,
an aware ``now`` (the app's ``Clock``, so tests with a clock file agree):

- ``list_agents(conn, org, now, AgentQuery(...)) -> AgentPage`` — one statement for a
  whole fleet page: each agent's current hour / day / week / month totals (in its
  policy's timezone), its effective state and health, filtered (address substring,
  org, health), sorted (name, cost, last heartbeat, state) and paged in SQL, with the
  fleet's summary counts computed over every visible agent in the same statement.
- ``get_agent(conn, org, ref, now) -> Agent | None`` — the same row for one agent.
- ``agent_costs(conn, org, ref, now, window, start, end) -> AgentCosts | None`` — a
  series per ``window`` bucket and breakdowns by intent and model over ``[start, end)``.
- ``intent_cost(conn, org, intent_id) -> IntentCost | None``.
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
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, desc, false, func, literal, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement, Select

from .._attribution import InvalidAgentAddress, validate_address
from . import _store
from ._db import agents, counters, events, intents
from ._policies import WINDOWED, AgentStatus, PolicyStatus, evaluate, windows_needed
from ._redact import redact_event
from ._schemas import CostPolicy, policy_from_storage
from ._windows import UTC, WINDOWS, bounds, buckets, window_starts

HEALTHY_SECONDS = 90
DEGRADED_SECONDS = 300
HEALTH = ("healthy", "degraded", "unreachable", "killed", "unknown")
_DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30), "week": timedelta(weeks=12), "month": timedelta(days=365)}
_RANGE_LIMIT = 2000


# -- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Totals:
    """Counter fields of one window, one bucket or one breakdown row; money in pico-dollars."""

    cost_pico: int = 0
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    heartbeats: int = 0
    intents: int = 0

    @classmethod
    def of(cls, values: Mapping[str, Any] | None) -> Totals:
        """From a counters row (or ``None``: zeros); NULL columns of an outer join read as 0."""
        if not values:
            return cls()
        return cls(*(int(values.get(f) or 0) for f in _store.COUNTER_FIELDS))

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_counters(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Window:
    """The current window of one kind, in the agent's timezone."""

    start: datetime
    end: datetime
    totals: Totals


@dataclass(frozen=True, slots=True)
class ClientBlock:
    """A stop the client made itself (a local limit or its lease), while current. The gateway does not
    receive these yet (the heartbeat carries no client stops); the dashboard already shows one when set."""

    policy: str | None
    limit: int | None
    spent: int | None
    resets_at: datetime | None
    at: datetime | None


@dataclass(slots=True)
class Agent:
    """One agent now: stored facts, effective state and policy statuses, health, current windows."""

    address_id: str
    address: str
    org: str
    status: AgentStatus
    health: str  # healthy | degraded | unreachable | killed | unknown
    last_heartbeat_at: datetime | None
    created_at: datetime
    timezone: str
    windows: dict[str, Window]  # the current hour / day / week / month
    policy: CostPolicy | None
    client_block: ClientBlock | None = None

    @property
    def state(self) -> str:
        return self.status.state

    @property
    def policies(self) -> list[PolicyStatus]:
        return self.status.policies

    @property
    def display_name(self) -> str:
        return self.address.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """Counts over every agent the key can see (filters and paging do not change them)."""

    total: int = 0
    healthy: int = 0
    degraded: int = 0
    unreachable: int = 0
    killed: int = 0
    unknown: int = 0
    blocked: int = 0
    paused: int = 0
    cost_pico: int = 0  # summed over the list's window
    intents: int = 0


#: sort key → its natural direction (descending?): the biggest spender, the newest heartbeat first.
SORTS: dict[str, bool] = {"name": False, "cost": True, "last_heartbeat": True, "state": False}
#: ``sort=state`` lists trouble first.
STATE_RANK = {"killed": 0, "paused": 1, "blocked": 2, "active": 3}


@dataclass(frozen=True, slots=True)
class AgentQuery:
    """What a fleet listing asks for. ``descending=None`` is the sort key's natural direction."""

    window: str = "day"
    q: str = ""  # address substring, case-insensitive
    org: str = ""  # only this org (for the super-admin)
    health: str = ""
    sort: str = "name"
    descending: bool | None = None
    limit: int | None = None  # None: every matching agent
    offset: int = 0
    #: windows summed over the matching agents (``AgentPage.matching_cost``) besides ``day`` and ``window``:
    #: each costs a lookup per visible agent (listed agents carry all four windows' totals anyway)
    windows: tuple[str, ...] = ()

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(w for w in WINDOWS if w in {"day", self.window, *self.windows})

    @property
    def reverse(self) -> bool:
        return SORTS[self.sort] if self.descending is None else self.descending


@dataclass(slots=True)
class AgentPage:
    query: AgentQuery
    agents: list[Agent]
    summary: FleetSummary
    matching: int  # agents matching the filters, over all pages
    matching_cost: dict[str, int]  # each shown window's cost summed over the matching agents

    @property
    def next_offset(self) -> int | None:
        end = self.query.offset + len(self.agents)
        return end if self.query.limit is not None and end < self.matching else None


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    end: datetime
    totals: Totals


@dataclass(frozen=True, slots=True)
class Breakdown:
    key: str  # intent id or model
    totals: Totals


@dataclass(slots=True)
class AgentCosts:
    address_id: str
    address: str
    window: str
    timezone: str
    start: datetime
    end: datetime
    totals: Totals
    series: list[Bucket]
    by_intent: list[Breakdown]
    by_model: list[Breakdown]


@dataclass(frozen=True, slots=True)
class IntentCost:
    intent_id: str
    agent: str
    address_id: str
    totals: Totals  # cost, calls and tokens (intents keep no heartbeat / intent counts)
    created_at: datetime
    last_seen_at: datetime
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    agent: str | None
    address_id: str | None
    created_at: datetime
    data: dict[str, Any]  # free-form, as stored (amounts in it are already wire strings), URLs redacted


@dataclass(slots=True)
class EventPage:
    events: list[Event]
    next_after_id: int | None


@dataclass(frozen=True, slots=True)
class AgentPolicy:
    address_id: str
    address: str
    policy: CostPolicy | None


# -- helpers shared with the write paths -----------------------------------------------------------

def parse_policy(raw: str | None) -> CostPolicy | None:
    return policy_from_storage(json.loads(raw)) if raw else None


def _visible(org: str) -> Any:
    return true() if org == "*" else agents.c.org == org


def _moment(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _ref_id(ref: str) -> str | None:
    """An ``addr_…`` id, or the id of a full ``agent://`` address (``None`` if it is not a valid one)."""
    if not ref.startswith("agent://"):
        return ref
    try:
        return _store.address_id(validate_address(ref))
    except InvalidAgentAddress:
        return None


def find_agent(conn: Connection, org: str, ref: str) -> Mapping[Any, Any] | None:
    """An agent by ``addr_…`` id or full address, only if ``org`` may see it."""
    aid = _ref_id(ref)
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


# -- agents: one statement for a page of the fleet -------------------------------------------------

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


def _effective_state(dialect: str, cols: Any, totals: Mapping[str, Mapping[str, ColumnElement[Any]]]) -> ColumnElement[Any]:
    """``blocked`` as :func:`_policies.evaluate` derives it, in SQL: an active agent whose ``block`` policy
    has a windowed money limit spent (``spent >= limit``); otherwise the stored state. Sorting by state and
    the summary counts use it; listed agents are evaluated in Python as well (the two are tested to agree).
    ``cols`` has ``state`` and ``policy`` (a :func:`_store.parsed_policy` column)."""
    breaches = []
    for name, (window, column, kind) in WINDOWED.items():
        if kind == "usd":
            limit = _store.policy_field(dialect, name, number=True, source=cols.policy)
            breaches.append(and_(limit.is_not(None), func.coalesce(totals[window][column], 0) >= limit))
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
        agents.c.last_heartbeat_at, agents.c.policy, tz.label("tz"),
        case({z: 1 for z in zones}, value=tz, else_=0).label("zone_known"), _health(now).label("health"), *columns,
    ).select_from(joined).where(_visible(org))


def _agent_of(row: Mapping[str, Any], now: datetime, window_bounds: dict[tuple[str, str], tuple[datetime, datetime]]) -> Agent:
    """A row with ``_agent_select``'s columns as an :class:`Agent`, its policies evaluated exactly as heartbeats do."""
    tz = row["tz"]
    policy = parse_policy(row["policy"])
    totals = {w: Totals.of({f: row[f"{w}_{f}"] for f in _store.COUNTER_FIELDS}) for w in WINDOWS}
    status = evaluate(row["address"], row["address_id"], row["state"], policy, {w: t.as_counters() for w, t in totals.items()}, now)
    windows = {}
    for w in WINDOWS:
        span = window_bounds.get((w, tz))
        if span is None:
            span = window_bounds[(w, tz)] = bounds(w, now, tz)
        windows[w] = Window(span[0], span[1], totals[w])
    return Agent(row["address_id"], row["address"], row["org"], status, row["health"], _moment(row["last_heartbeat_at"]),
                 datetime.fromtimestamp(row["created_at"], UTC), tz, windows, policy)


def get_agent(conn: Connection, org: str, ref: str, now: datetime) -> Agent | None:
    aid = _ref_id(ref)
    if aid is None:
        return None
    row = None
    for _attempt in range(2):
        row = conn.execute(_agent_select(conn, org, now, _ZONES.names).where(agents.c.address_id == aid)).mappings().first()
        if row is None or row["zone_known"]:
            break
        _ZONES.learn([row["tz"]])
    return None if row is None else _agent_of(row, now, {})


def _ranking_select(conn: Connection, org: str, now: datetime, zones: Sequence[str], query: AgentQuery) -> Select[Any]:
    """Every visible agent, narrow: what sorting, filtering and the summary need, nothing more.

    Each window joined here is one primary-key lookup per agent: the windows the listing sums or sorts
    by (``query.shown``) for every agent; the others only for agents whose policy limits them (what the
    ``blocked`` state needs); a NULL start finds nothing at almost no cost. Only cost and intents are read."""
    dialect = conn.dialect.name
    # the visible agents with their policy parsed once per row (MATERIALIZED: PostgreSQL would otherwise inline
    # the CTE and parse the policy text again for every field read below)
    fleet = select(agents.c.address_id, agents.c.address, agents.c.org, agents.c.state, agents.c.last_heartbeat_at,
                   _store.parsed_policy(dialect).label("policy")).where(_visible(org)).cte("fleet")
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
        _effective_state(dialect, f, totals).label("effective_state"), health.label("health"), and_(*matches).label("matches"),
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
        agents.c.policy, *(p[k] for k in ("tz", "health", "matches", *aggregates)), *columns,
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
        _ZONES.learn(conn.execute(select(tz).where(_visible(org)).distinct()).scalars())
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
    listed = [_agent_of(r, now, spans) for r in rows if r["matches"] and r["rank"] > query.offset and (end is None or r["rank"] <= end)]
    return AgentPage(query, listed, summary, int(first["matching"] or 0), matching_cost)


def list_orgs(conn: Connection, org: str) -> list[str]:
    """Orgs with agents visible to ``org`` (the super-admin's org filter)."""
    return list(conn.execute(select(agents.c.org).where(_visible(org)).distinct().order_by(agents.c.org)).scalars())


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
    rows = conn.execute(select(counters).where(base)).mappings().all()
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
