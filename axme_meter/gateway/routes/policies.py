"""``PUT|GET|DELETE /v1/mesh/agents/{address_id}/policies/cost`` (PUT/DELETE need an admin key).

A policy may be set by full address before the agent first reports: the agent
row is created then. Every change is an event and takes effect on the next
request on every replica (policies are read per request, never cached).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import _queries, _store
from .._auth import require_admin
from .._errors import not_found
from .._ingest import in_transaction
from .._schemas import CostPolicy
from ._common import agent_ref, gateway, principal, read_json, validate
from .agents import ensure_visible_agent


async def put_policy(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    require_admin(who)
    ref = agent_ref(request)
    policy = validate(CostPolicy, await read_json(request))
    now = gw.clock.now()
    ts = int(now.timestamp())

    def tx(conn: Any) -> dict[str, Any] | None:
        row = ensure_visible_agent(conn, who.org, ref, ts)
        if row is None:
            return None
        _store.set_policy(conn, row["address_id"], policy.to_storage(), ts)
        _store.add_event(conn, row["org"], row["address_id"], "policy.updated", {"agent": row["address"], "policy": policy.to_wire()}, ts)
        status = _queries.load_status(conn, {**row, "policy": _json(policy)}, now)
        return {"ok": True, "address_id": row["address_id"], "address": row["address"], "policy": policy.to_wire(),
                "state": status.state, "policies": [p.to_wire() for p in status.policies], **policy.to_wire()}

    found = await run_in_threadpool(in_transaction, gw.engine, tx)
    if found is None:
        raise not_found(f"agent {ref!r}")
    return JSONResponse(found)


def _json(policy: CostPolicy) -> str:
    import json

    return json.dumps(policy.to_storage())


async def get_policy(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    ref = agent_ref(request)

    def read() -> tuple[Any, Any]:
        with gw.engine.connect() as conn:
            row = _queries.find_agent(conn, who.org, ref)
            return row, (_queries.get_policy(conn, who.org, ref) if row else None)

    row, policy = await run_in_threadpool(read)
    if row is None or policy is None:
        raise not_found(f"cost policy of {ref!r}")
    return JSONResponse({"ok": True, "address_id": row["address_id"], "address": row["address"], "policy": policy, **policy})


async def delete_policy(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    require_admin(who)
    ref = agent_ref(request)
    ts = int(gw.clock.now().timestamp())

    def tx(conn: Any) -> dict[str, Any] | None:
        row = _queries.find_agent(conn, who.org, ref)
        if row is None or row["policy"] is None:
            return None
        _store.set_policy(conn, row["address_id"], None, ts)
        _store.add_event(conn, row["org"], row["address_id"], "policy.deleted", {"agent": row["address"]}, ts)
        return {"ok": True, "address_id": row["address_id"], "address": row["address"], "deleted": True}

    found = await run_in_threadpool(in_transaction, gw.engine, tx)
    if found is None:
        raise not_found(f"cost policy of {ref!r}")
    return JSONResponse(found)
