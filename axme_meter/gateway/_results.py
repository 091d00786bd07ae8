"""The read side's typed results: integer pico-dollars, ints and aware datetimes, never wire strings.

``_queries`` and ``_fleet`` return these; each edge renders them once: ``routes/_wire.py`` for the
API (``_protocol.money``, ISO instants), ``dashboard/_format.py`` for people (``_money.display_usd``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from ._policies import AgentStatus, PolicyStatus
from ._schemas import CostPolicy
from ._store import COUNTER_FIELDS
from ._windows import WINDOWS

HEALTH = ("healthy", "degraded", "unreachable", "killed", "unknown")


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
        return cls(*(int(values.get(f) or 0) for f in COUNTER_FIELDS))

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
    """A stop reported by a client process (a local limit, its lease, fail-closed) or a grant the gateway
    refused because no slice fits the next call, while current (see ``_client_blocks.py``)."""

    policy: str | None
    limit: int | None
    spent: int | None
    resets_at: datetime | None
    at: datetime | None
    source: str | None = None


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
