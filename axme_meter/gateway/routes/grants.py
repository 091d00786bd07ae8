"""``POST /v1/mesh/grants``: a client process asks for its slices of an agent's money policies (see ``_grants``)."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ... import _money
from ..._protocol import money
from .._errors import ApiError
from .._grants import GrantOutcome, grant_tx, unpriced_rule
from .._ingest import in_transaction
from .._schemas import GrantRequest
from .._store import org_of
from ._common import block_error, gateway, principal, read_json, validate

#: A refusal because other processes hold the rest of the budget is retried soon: they return or spend it.
RESERVED_RETRY_SECONDS = 5


async def create_grants(request: Request) -> JSONResponse:
    gw = gateway(request)
    who = principal(request)
    body = validate(GrantRequest, await read_json(request))
    address = body.agent or who.agent
    if address is None:
        raise ApiError(422, "validation_error", "agent: required (this key is not bound to an agent)", {"field": "agent"})
    if not who.can_write_agent(address):
        raise ApiError(404, "not_found", f"agent {address!r} not found", {"resource": "agent"})
    now = gw.clock.now()
    started = time.perf_counter()
    outcome: GrantOutcome = await run_in_threadpool(
        in_transaction, gw.engine, lambda conn: grant_tx(conn, org_of(address), address, body, now))
    gw.metrics.policy_seconds.observe(time.perf_counter() - started)
    status = outcome.status
    if status.state != "active" or outcome.refusal is not None:
        err = block_error(status, now, outcome.refusal)
        refusal = outcome.refusal
        if refusal is not None and not refusal.breached:
            # Not spent yet, but reserved by other running processes: they spend it or give it back soon.
            err.message = (f"{address} has no {refusal.name} budget left to grant: spent "
                           f"{_money.format_usd(refusal.spent)} of {_money.format_usd(refusal.limit)}, the rest is "
                           "held by other running processes of this agent; retry shortly")
            err.headers["Retry-After"] = str(min(int(err.headers.get("Retry-After", "1")), RESERVED_RETRY_SECONDS))
            err.extra["reserved"] = True
        gw.metrics.rejects.labels(err.code).inc()
        return err.response()
    answer: dict[str, Any] = {
        "agent": address, "address_id": status.address_id, "state": status.state,
        "grants": [g.to_wire() for g in outcome.grants],
        # No money policy: nothing to grant, the process may spend (blocks still arrive with heartbeats).
        "unlimited": not outcome.grants,
        "call_cost_usd": money(outcome.call_cost),
    }
    rule = unpriced_rule(outcome.policy, gw.settings.unpriced_rates)
    if rule is not None:
        answer["unpriced"] = rule
    return JSONResponse(answer)
