"""Agent reads and admin actions: list, detail, costs, pause / resume / kill, events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import _commands, _fleet, _queries
from .._results import SORTS, AgentQuery
from .._errors import ApiError, not_found
from .._windows import UTC, WINDOWS, iso, parse_instant
from . import _wire
from ._common import agent_ref, gateway, principal

#: ``from`` / ``to`` must lie in this range: window math near year 1 or 9999 overflows, and no spend is older than 1970.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _window(request: Request, default: str = "day") -> str:
    window = request.query_params.get("window", default)
    if window not in WINDOWS:
        raise ApiError(422, "validation_error", f"window: must be one of {', '.join(WINDOWS)}", {"field": "window"})
    return window


def _instant(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = parse_instant(raw)
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_error", f"{name}: expected an ISO-8601 timestamp", {"field": name}) from None
    if not EARLIEST <= moment <= LATEST:
        raise ApiError(422, "validation_error", f"{name}: must lie between {iso(EARLIEST)} and {iso(LATEST)}", {"field": name})
    return moment


async def _read(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    gw = gateway(request)

    def run() -> Any:
        with gw.engine.connect() as conn:
            return fn(conn, *args)

    return await run_in_threadpool(run)


#: ``GET /v1/mesh/agents`` paging: at most this many agents per page.
MAX_PAGE = 1000
MAX_OFFSET = 10**9
PAGING = ("limit", "offset", "q", "sort", "order")


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(422, "validation_error", f"{name}: expected an integer from {low} to {high}, got {raw[:40]!r}",
                       {"field": name})
    return int(raw)


def agent_query(request: Request) -> AgentQuery:
    """The listing's query parameters: ``window``, ``health`` (AXME's SDK), and the optional paging ones."""
    q = request.query_params
    sort = q.get("sort") or "name"
    if sort not in SORTS:
        raise ApiError(422, "validation_error", f"sort: must be one of {', '.join(SORTS)}", {"field": "sort"})
    order = q.get("order") or ""
    if order not in ("", "asc", "desc"):
        raise ApiError(422, "validation_error", "order: must be asc or desc", {"field": "order"})
    text = q.get("q") or ""
    if len(text) > 200:
        raise ApiError(422, "validation_error", "q: at most 200 characters", {"field": "q"})
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ApiError(422, "validation_error", "q: control characters are not allowed (addresses never contain them)",
                       {"field": "q"})
    return AgentQuery(
        window=_window(request), q=text, health=q.get("health") or "", sort=sort,
        descending=None if not order else order == "desc", limit=_int_param(request, "limit", 1, MAX_PAGE),
        offset=_int_param(request, "offset", 0, MAX_OFFSET) or 0,
    )


async def list_agents(request: Request) -> JSONResponse:
    """Every visible agent by address, as AXME's SDK expects; ``limit`` / ``offset`` / ``q`` / ``sort`` /
    ``order`` page, search and sort in the database, and add ``"page"`` to the answer."""
    who = principal(request)
    query = agent_query(request)
    page = await _read(request, _fleet.list_agents, who.org, gateway(request).clock.now(), query)
    paged = any(request.query_params.get(name) for name in PAGING)
    return JSONResponse(_wire.agent_list(page, paged=paged))


async def get_agent(request: Request) -> JSONResponse:
    who = principal(request)
    ref = agent_ref(request)
    found = await _read(request, _fleet.get_agent, who.org, ref, gateway(request).clock.now())
    if found is None:
        raise not_found(f"agent {ref!r}")
    return JSONResponse(_wire.agent_detail(found))


async def agent_costs(request: Request) -> JSONResponse:
    who = principal(request)
    ref = agent_ref(request)
    window = _window(request)
    start, end = _instant(request, "from"), _instant(request, "to")
    if start and end and start >= end:
        raise ApiError(422, "validation_error", "from: must be before to", {"field": "from"})
    found = await _read(request, _queries.agent_costs, who.org, ref, gateway(request).clock.now(), window, start, end)
    if found is None:
        raise not_found(f"agent {ref!r}")
    return JSONResponse(_wire.agent_costs(found))


async def change_state(request: Request) -> JSONResponse:
    """``POST …/pause|resume|kill`` (admin). Works for an agent that has not reported yet, by full address."""
    gw = gateway(request)
    who = principal(request)
    action = request.url.path.rsplit("/", 1)[-1]
    answer = await run_in_threadpool(_commands.change_state, gw.engine, who, agent_ref(request), action, gw.clock.now())
    return JSONResponse(answer)


async def list_events(request: Request) -> JSONResponse:
    who = principal(request)
    q = request.query_params
    try:
        after = int(q["after_id"]) if q.get("after_id") else None
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise ApiError(422, "validation_error", "after_id/limit: expected integers", {"field": "limit"}) from None
    if after is not None and not 0 <= after < 2**62:
        raise ApiError(422, "validation_error", "after_id: out of range", {"field": "after_id"})
    types = q.getlist("type") or [t for t in q.get("types", "").split(",") if t]
    found = await _read(request, lambda conn: _queries.list_events(conn, who.org, agent_ref=q.get("agent"), types=types,
                                                                    after_id=after, limit=limit))
    if found is None:
        raise not_found(f"agent {q.get('agent')!r}")
    return JSONResponse(_wire.event_page(found))
