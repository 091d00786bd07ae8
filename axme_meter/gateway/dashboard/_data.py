"""What the pages show, read only through ``gateway._queries`` (the JSON API's own read functions).

Every number on a page is a value ``_queries`` returned (the same typed results the
JSON API renders), so the dashboard and ``/v1/mesh/...`` cannot disagree. The overview
is one ``list_agents`` statement: filtering, sorting and paging happen in the database,
so a refresh costs the same at 5,000 agents as at 50 (plus the org menu for super-admins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from .. import _approvals, _fleet, _queries, _spend_rate
from .._results import Agent, AgentCosts, AgentQuery, Breakdown, Event, IntentCost
from .._results import AgentPage as FleetPage
from .._windows import bounds

#: view → (bucket size for the chart, the calendar window it covers)
VIEWS: dict[str, tuple[str, str]] = {"day": ("hour", "day"), "week": ("day", "week"), "month": ("day", "month")}
MAX_INTENT_ROWS = 50
PAGE_SIZE = 50
#: the overview's default order: the biggest spender this month first (then today, then by address)
DEFAULT_SORT = "cost"


@dataclass(frozen=True, slots=True)
class Listing:
    """The overview's filters, order and page, as the URL carries them (``?q=&org=&sort=&order=&page=``)."""

    q: str = ""
    org: str = ""
    sort: str = DEFAULT_SORT
    order: str = ""  # "" = the sort's natural direction, else asc | desc
    page: int = 1

    def query(self) -> AgentQuery:
        return AgentQuery(window="month", q=self.q.strip(), org=self.org, sort=self.sort,
                                   descending=None if not self.order else self.order == "desc",
                                   limit=PAGE_SIZE, offset=(self.page - 1) * PAGE_SIZE, windows=("week",))

    def params(self, **changes: Any) -> dict[str, str]:
        """URL parameters for this listing with ``changes`` applied; defaults left out."""
        values = {"q": self.q, "org": self.org, "sort": self.sort, "order": self.order, "page": str(self.page), **changes}
        defaults = {"sort": DEFAULT_SORT, "page": "1"}
        return {k: str(v) for k, v in values.items() if v not in ("", None) and str(v) != defaults.get(k)}


@dataclass(slots=True)
class Overview:
    listing: Listing
    page: FleetPage
    orgs: list[str] = field(default_factory=list)

    @property
    def agents(self) -> list[Agent]:
        return self.page.agents

    @property
    def total_agents(self) -> int:
        return self.page.summary.total

    @property
    def pages(self) -> int:
        return max(1, -(-self.page.matching // PAGE_SIZE))


def overview(conn: Connection, org: str, now: datetime, listing: Listing) -> Overview:
    """One page of the agents visible to ``org`` with day / week / month windows."""
    page = _fleet.list_agents(conn, org, now, listing.query())
    return Overview(listing, page, _fleet.list_orgs(conn, org) if org == "*" else [])


@dataclass(slots=True)
class AgentPage:
    agent: Agent
    view: str
    bucket: str
    costs: AgentCosts
    intents: list[tuple[Breakdown, IntentCost | None]]
    selected_intent: IntentCost | None
    events: list[Event]
    #: The spend-rate baseline of each hourly bucket (day view only), see ``_spend_rate``.
    baselines: list[_spend_rate.Baseline] = field(default_factory=list)
    #: Requests for more budget that can still be decided (``require_approval``).
    approvals: list[_approvals.Approval] = field(default_factory=list)


def agent_page(conn: Connection, org: str, ref: str, now: datetime, view: str, intent: str | None = None) -> AgentPage | None:
    """One agent: its summary, the chart series for the chosen view, breakdowns, events, policy."""
    agent = _fleet.get_agent(conn, org, ref, now)
    if agent is None:
        return None
    bucket, window = VIEWS[view]
    start, end = bounds(window, now, agent.timezone)
    costs = _queries.agent_costs(conn, org, ref, now, bucket, start, end)
    assert costs is not None
    shown = costs.by_intent[:MAX_INTENT_ROWS]
    # intent ids are unique per org: look them up in the agent's (a super-admin's "*" would match any org's)
    found = _queries.intents_of(conn, agent.org, [row.key for row in shown])
    intents = [(row, found.get(row.key)) for row in shown]
    selected = _queries.intent_cost(conn, agent.org, intent) if intent else None
    if selected is not None and selected.address_id != agent.address_id:
        selected = None
    events = _queries.list_events(conn, org, agent_ref=ref, limit=20)
    baselines = (_spend_rate.baselines(conn, agent.address_id, [b.start for b in costs.series], agent.timezone)
                 if bucket == "hour" else [])
    pending = _approvals.list_requests(conn, org, state="pending", agent_id=agent.address_id, now=int(now.timestamp()))
    return AgentPage(agent, view, bucket, costs, intents, selected, events.events if events else [], baselines, pending)
