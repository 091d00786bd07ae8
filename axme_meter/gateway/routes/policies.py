"""``PUT|GET|DELETE /v1/mesh/agents/{address_id}/policies/cost`` (PUT/DELETE need an admin key).

A policy may be set by full address before the agent first reports: the agent
row is created then. Every change is an event and takes effect on the next
request on every replica (policies are read per request, never cached). Writes
go through ``_commands`` (scope, audit events); webhook URLs are read back in
full only by org admins, here and nowhere else.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import _commands, _queries
from .._auth import require_admin
from .._errors import not_found
from .._results import AgentPolicy
from .._schemas import CostPolicy
from . import _wire
from ._common import agent_ref, gateway, principal, read_json, validate


async def put_policy(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    ref = agent_ref(request)
    require_admin(who)  # before reading the body (``set_policy`` checks again, for every caller)
    policy = validate(CostPolicy, await read_json(request))
    return JSONResponse(await run_in_threadpool(_commands.set_policy, gw.engine, who, ref, policy, gw.clock.now()))


async def get_policy(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    ref = agent_ref(request)

    def read() -> AgentPolicy | None:
        with gw.engine.connect() as conn:
            return _queries.get_policy(conn, who.org, ref)

    found = await run_in_threadpool(read)
    if found is None or found.policy is None:
        raise not_found(f"cost policy of {ref!r}")
    return JSONResponse(_wire.policy(found, who))


async def delete_policy(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    return JSONResponse(await run_in_threadpool(_commands.delete_policy, gw.engine, who, agent_ref(request), gw.clock.now()))
