"""Agent reads and admin actions: list, detail, costs, pause / resume / kill, events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import _queries, _store
from .._auth import require_admin
from .._errors import ApiError, bad_request, not_found
from .._ingest import in_transaction
from .._windows import WINDOWS, parse_instant
from ._common import agent_ref, gateway, principal

_TRANSITIONS = {"pause": ("paused", "agent.paused"), "resume": ("active", "agent.resumed"), "kill": ("killed", "agent.killed")}


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
        return parse_instant(raw)
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_error", f"{name}: expected an ISO-8601 timestamp", {"field": name}) from None


async def _read(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    gw = gateway(request)

    def run() -> Any:
        with gw.engine.connect() as conn:
            return fn(conn, *args)

    return await run_in_threadpool(run)


async def list_agents(request: Request) -> JSONResponse:
    who = principal(request)
    window = _window(request)
    body = await _read(request, _queries.list_agents, who.org, gateway(request).clock.now(), window)
    health = request.query_params.get("health")
    if health:  # AXME's SDK filters by health
        body["agents"] = [a for a in body["agents"] if a["health_status"] == health]
    return JSONResponse(body)


async def get_agent(request: Request) -> JSONResponse:
    who = principal(request)
    ref = agent_ref(request)
    found = await _read(request, _queries.get_agent, who.org, ref, gateway(request).clock.now())
    if found is None:
        raise not_found(f"agent {ref!r}")
    return JSONResponse(found)


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
    return JSONResponse(found)


async def change_state(request: Request) -> JSONResponse:
    """``POST …/pause|resume|kill`` (admin). Works for an agent that has not reported yet, by full address."""
    gw = gateway(request)
    who = principal(request)
    require_admin(who)
    action = request.url.path.rsplit("/", 1)[-1]
    state, event = _TRANSITIONS[action]
    ref = agent_ref(request)
    now = gw.clock.now()
    ts = int(now.timestamp())

    def tx(conn: Any) -> dict[str, Any] | None:
        row = ensure_visible_agent(conn, who.org, ref, ts)
        if row is None:
            return None
        before = _store.set_state(conn, row["address_id"], state)
        if before != state:
            _store.add_event(conn, row["org"], row["address_id"], event, {"agent": row["address"], "from": before, "by": "admin"}, ts)
        status = _queries.load_status(conn, {**row, "state": state}, now)
        return {"ok": True, "address_id": row["address_id"], "address": row["address"], "previous_state": before,
                "state": status.state, "policies": [p.to_wire() for p in status.policies]}

    found = await run_in_threadpool(in_transaction, gw.engine, tx)
    if found is None:
        raise not_found(f"agent {ref!r}")
    return JSONResponse(found)


def ensure_visible_agent(conn: Any, org: str, ref: str, ts: int) -> Any:
    """Find the agent; a full address of the caller's org that never reported is created on the spot."""
    row = _queries.find_agent(conn, org, ref)
    if row is None and ref.startswith("agent://"):
        try:
            address = _validate(ref)
        except ValueError:
            raise bad_request(f"invalid agent address {ref!r}", code="validation_error", status=422, field="address_id") from None
        if org != "*" and _store.org_of(address) != org:
            return None
        _store.ensure_agents(conn, [address], ts)
        row = _queries.find_agent(conn, org, ref)
    return row


def _validate(ref: str) -> str:
    from ..._attribution import validate_address

    return validate_address(ref)


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
    return JSONResponse(found)
